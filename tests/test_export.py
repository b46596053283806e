"""`resprunet export`: ONNX (tf2onnx, checked in onnxruntime) and BioImage Model Zoo packages
(validated by bioimageio.spec) for every zoo model; unexportable layers and unsupported inputs."""
from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from PIL import Image
from ruyaml import YAML

from model_helpers import random_head
from resprunet import cli, models, zoo
from resprunet.export import ExportError, export_bioimageio, run_onnx, to_onnx
from resprunet.inference.tiles import model_halo

bioimageio_spec = pytest.importorskip("bioimageio.spec")

ZOO = zoo.list()
#: DivNoising models sample their output (an "eps" input of latent noise): ONNX only, no package
SAMPLED = [n for n in ZOO if zoo.card(n)["architecture"]["name"] == "divnoising"]
PACKAGED = [n for n in ZOO if n not in SAMPLED]


@keras.saving.register_keras_serializable(package="resprunet_tests")
class InverseErf(keras.layers.Layer):
    """A layer whose TensorFlow op (Erfinv) has no ONNX equivalent in tf2onnx."""

    def call(self, x):
        return keras.ops.erfinv(keras.ops.tanh(x))


def _unexportable() -> keras.Model:
    noisy = keras.Input((None, None, 1), name="noisy")
    x = keras.layers.Conv2D(1, 3, padding="same", name="conv")(noisy)
    return keras.Model(noisy, InverseErf(name="inverse_erf")(x), name="odd")


def _feeds(model: keras.Model, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs (1, [z,] y, x, c) for every model input; sizes a multiple of the divisor."""
    info = models.describe(model)
    rng = np.random.default_rng(seed)
    shape = (size,) * info.ndim
    return {t.name: rng.random((1, *shape, int(t.shape[-1])), dtype=np.float32) for t in model.inputs}


def _rdf(folder: Path) -> dict:
    """rdf.yaml as YAML 1.2 (the spec's YAML; PyYAML reads 1e-06 as a string)."""
    return YAML(typ="safe").load((folder / "rdf.yaml").read_text())


def _keras(model: keras.Model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict_on_batch(feeds if len(feeds) > 1 else feeds["noisy"]), np.float32)


def _spec_processing(steps: list[dict], x: np.ndarray, tensors: dict[str, np.ndarray], axes: list[str]) -> np.ndarray:
    """The rdf's scale_linear / scale_range / clip as the spec defines them (independent of the export)."""
    y = x.astype(np.float64)
    for step in steps:
        kw = step.get("kwargs", {})
        if step["id"] == "scale_linear":
            y = y * kw["gain"] + kw["offset"]
        elif step["id"] == "scale_range":
            ref = tensors[kw["reference_tensor"]] if kw.get("reference_tensor") else x
            axis = tuple(axes.index(a) for a in kw["axes"])
            lo = np.percentile(ref, kw["min_percentile"], axis=axis, keepdims=True)
            hi = np.percentile(ref, kw["max_percentile"], axis=axis, keepdims=True)
            y = (y - lo) / (hi - lo + kw.get("eps", 1e-6))
        elif step["id"] == "clip":
            y = np.clip(y, kw["min"], kw["max"])
        else:
            assert step["id"] == "ensure_dtype", step
    return y.astype(np.float32)


@pytest.fixture(scope="module", params=PACKAGED)
def package(request, tmp_path_factory) -> tuple[str, keras.Model, dict, Path, dict]:
    """Each zoo model exported once as a zip package: (name, model, card, folder, rdf)."""
    name = request.param
    model, card = zoo.load(name)
    out = tmp_path_factory.mktemp(name) / f"{name}.zip"
    assert export_bioimageio(model, card, out) == out
    folder = out.parent / "unzipped"
    with zipfile.ZipFile(out) as z:
        z.extractall(folder)
    return name, model, card, folder, _rdf(folder)


def test_zoo_is_covered():
    assert len(PACKAGED) >= 8 and SAMPLED, ZOO


@pytest.mark.parametrize("name", SAMPLED)
def test_sampling_model_exports_to_onnx_only(name, tmp_path):
    """A DivNoising model: ONNX with its "eps" input reproduces Keras; the package export names
    the input it cannot describe."""
    model, card = zoo.load(name)
    feeds = _feeds(model, 3 * models.describe(model).divisor)
    assert set(feeds) == {"noisy", "eps"}
    assert np.abs(run_onnx(to_onnx(model), feeds) - _keras(model, feeds)).max() <= 1e-4
    with pytest.raises(ExportError, match="input 'eps'"):
        export_bioimageio(model, card, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_onnx_reproduces_keras(package):
    """The package's ONNX weights (tf2onnx) reproduce Keras within 1e-4 on a random input."""
    _, model, _, folder, _ = package
    info = models.describe(model)
    feeds = _feeds(model, size=2 * info.divisor if info.ndim == 3 else 3 * info.divisor)
    expected = _keras(model, feeds)
    got = run_onnx(folder / "weights.onnx", feeds)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4


def test_package_validates(package):
    """bioimageio.spec loads the zip with its file checks (hashes, test tensor shapes)."""
    name, _, _, folder, _ = package
    descr = bioimageio_spec.load_description(folder.parent / f"{name}.zip")
    summary = descr.validation_summary
    assert isinstance(descr, bioimageio_spec.ModelDescr), summary.format()
    assert summary.status == "valid-format"
    assert not summary.errors
    assert descr.format_version == bioimageio_spec.ModelDescr.implemented_format_version
    assert {"keras_v3", "onnx"} <= {w for w, entry in descr.weights if entry is not None}
    assert descr.weights.onnx.parent == "keras_v3"


def test_package_geometry_and_metadata(package):
    """Axes, halo, inputs, licence, citations and card follow the model and its card."""
    name, model, card, folder, rdf = package
    info = models.describe(model)
    halo = model_halo(info.divisor, info.receptive_field)
    spatial = ["z", "y", "x"][3 - info.ndim:]
    noisy = rdf["inputs"][0]
    assert noisy["id"] == "noisy"
    assert [a.get("id", a["type"]) for a in noisy["axes"]] == ["batch", *spatial, "channel"]
    for axis in noisy["axes"][1:-1]:
        assert axis["size"] == {"min": 2 * halo + info.divisor, "step": info.divisor}
    assert len(noisy["axes"][-1]["channel_names"]) == info.channels
    least = 2 * halo + info.divisor
    test_shape = np.load(folder / noisy["test_tensor"]["source"]).shape
    # a size the package accepts without padding
    assert all(s >= least and (s - least) % info.divisor == 0 for s in test_shape[1:-1]), test_shape
    assert [t["id"] for t in rdf["inputs"]] == [t.name for t in model.inputs]
    out_axes = rdf["outputs"][0]["axes"][1:-1]
    assert [a["halo"] for a in out_axes] == [halo] * info.ndim
    assert all(a["size"] == {"tensor_id": "noisy", "axis_id": a["id"]} for a in out_axes)
    assert rdf["license"] == card.get("license", "MIT")
    assert any("10.1007/978-3-319-24574-4_28" == c.get("doi") for c in rdf["cite"])
    assert rdf["config"]["resprunet"]["card"]["name"] == name
    assert rdf["config"]["resprunet"]["receptive_field"] == info.receptive_field
    readme = (folder / "README.md").read_text()
    assert "## Validation" in readme and card["training_data"]["licence"][:40] in readme
    cover = Image.open(folder / "cover.png")
    assert cover.size[0] == 2 * cover.size[1]


def test_normalisation_as_processing(package):
    """ct/fixed windows: scale_linear there and back (output in source units); percentile:
    scale_range with the card's percentiles, the prior scaled by the noisy input's range."""
    _, model, card, _, rdf = package
    norm = card["normalization"]
    pre = [s for s in rdf["inputs"][0]["preprocessing"] if s["id"] != "ensure_dtype"]
    post = [s for s in rdf["outputs"][0]["postprocessing"] if s["id"] != "ensure_dtype"]
    if norm["kind"] in ("ct", "fixed"):
        low, high = norm["low"], norm["high"]
        assert pre[0]["id"] == "scale_linear" and post[0]["id"] == "scale_linear"
        assert np.isclose(low * pre[0]["kwargs"]["gain"] + pre[0]["kwargs"]["offset"], 0.0)
        assert np.isclose(high * pre[0]["kwargs"]["gain"] + pre[0]["kwargs"]["offset"], 1.0)
        assert np.isclose(post[0]["kwargs"]["gain"], high - low) and np.isclose(post[0]["kwargs"]["offset"], low)
    else:
        assert pre[0]["id"] == "scale_range" and post == []
        assert [pre[0]["kwargs"]["min_percentile"], pre[0]["kwargs"]["max_percentile"]] == norm["params"]
    for tensor in rdf["inputs"][1:]:
        steps = [s for s in tensor.get("preprocessing", []) if s["id"] != "ensure_dtype"]
        if tensor["id"] == "sigma":
            assert steps == []  # already in normalised units
        elif steps[0]["id"] == "scale_range":
            assert steps[0]["kwargs"]["reference_tensor"] == "noisy"


def test_test_tensors_are_the_models_output(package):
    """Test output = postprocessing(model(preprocessing(test inputs))) as the rdf declares it,
    for the Keras model and for the ONNX weights."""
    _, model, _, folder, rdf = package
    info = models.describe(model)
    axes = ["batch", *["z", "y", "x"][3 - info.ndim:], "channel"]
    raw = {t["id"]: np.load(folder / t["test_tensor"]["source"]) for t in rdf["inputs"]}
    feeds = {t["id"]: _spec_processing(t.get("preprocessing", []), raw[t["id"]], raw, axes) for t in rdf["inputs"]}
    output = rdf["outputs"][0]
    stored = np.load(folder / output["test_tensor"]["source"])
    scale = float(np.ptp(stored)) or 1.0
    for normalised in (_keras(model, feeds), run_onnx(folder / "weights.onnx", feeds)):
        got = _spec_processing(output["postprocessing"], normalised, {}, axes)
        assert got.shape == stored.shape
        assert np.abs(got - stored).max() <= 1e-4 * scale
    assert np.ptp(raw["noisy"]) > 0 and np.abs(stored - raw["noisy"]).max() > 1e-3 * scale  # it denoised


def test_unexportable_layer_is_named():
    with pytest.raises(ExportError, match=r"layer 'inverse_erf' \(InverseErf\).*'Erfinv'"):
        to_onnx(_unexportable())


def test_cli_unexportable_layer_one_line(tmp_path, capsys):
    model = _unexportable()
    model.save(tmp_path / "odd.keras")
    status = cli.main(["export", str(tmp_path / "odd.keras"), str(tmp_path / "odd.onnx"), "--format", "onnx"])
    err = capsys.readouterr().err.strip()
    assert status == cli.EXIT_ERROR
    assert len(err.splitlines()) == 1 and "inverse_erf" in err
    assert not (tmp_path / "odd.onnx").exists()


def test_unsupported_input_is_named(tmp_path):
    """A 2.5D model's "context" input: a clear error for the package (ONNX exports it)."""
    noisy = keras.Input((None, None, 1), name="noisy")
    context = keras.Input((None, None, 2), name="context")
    x = keras.layers.Conv2D(1, 3, padding="same", name="conv")(keras.layers.Concatenate()([noisy, context]))
    model = keras.Model({"noisy": noisy, "context": context}, x, name="ctx")
    card = {"name": "ctx", "normalization": {"kind": "minmax"}}
    with pytest.raises(ExportError, match="input 'context'"):
        export_bioimageio(model, card, tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()
    feeds = _feeds(model, 8)
    assert np.abs(run_onnx(to_onnx(model), feeds) - _keras(model, feeds)).max() <= 1e-5


def test_cli_onnx(tmp_path):
    out = tmp_path / "unet2d_ct.onnx"
    assert cli.main(["-q", "export", "unet2d_ct", str(out), "--format", "onnx"]) == 0
    model, _ = zoo.load("unet2d_ct")
    feeds = _feeds(model, 40, seed=1)
    assert np.abs(run_onnx(out, feeds) - _keras(model, feeds)).max() <= 1e-4
    # an existing output is kept without --force
    assert cli.main(["export", "unet2d_ct", str(out), "--format", "onnx"]) == cli.EXIT_ERROR
    assert cli.main(["export", "unet2d_ct", str(out), "--format", "onnx", "--force"]) == 0


def test_cli_bioimageio_folder_run_model(tmp_path):
    """A .keras file with a run's config.yaml (no evaluation recipe: synthetic test input;
    the folder path as name), an author from the command line, a folder package."""
    keras.utils.set_random_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    random_head(models.build("unet", ndim=2, filters=4, depth=1), scale=0.3).save(run / "model.keras")
    normalize = {"method": "percentile", "low": 2.0, "high": 99.0}
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"normalize": normalize}}))
    out = tmp_path / "pkg"
    assert cli.main(["-q", "export", str(run), str(out), "--format", "bioimageio", "--author", "Ada Lovelace"]) == 0
    descr = bioimageio_spec.load_description(out / "rdf.yaml")
    assert isinstance(descr, bioimageio_spec.ModelDescr), descr.validation_summary.format()
    # the only warning: no maintainer (a GitHub user the model zoo checks online at upload)
    assert [w.msg.split()[:2] for w in descr.validation_summary.warnings] == [["Missing", "`maintainers`"]]
    rdf = _rdf(out)
    assert rdf["name"] == f"{tmp_path.name}_run"
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace"]
    assert rdf["inputs"][0]["preprocessing"][1]["kwargs"]["min_percentile"] == 2.0
    assert rdf["config"]["resprunet"]["card"]["normalization"]["params"] == [2.0, 99.0]


def test_cli_unknown_model(tmp_path, capsys):
    assert cli.main(["export", "no_such_model", str(tmp_path / "x.zip"), "--format", "bioimageio"]) == cli.EXIT_ERROR
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
