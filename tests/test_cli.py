"""`resprunet` command line: denoise (formats, units, metadata, priors), errors, atomicity, zoo."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pydicom
import pytest
import yaml
from pydicom.data import get_testdata_file

import data_pipelines as dp
from model_helpers import random_head
from resprunet import cli, models
from resprunet.inference import denoise_array

REPO = Path(__file__).resolve().parent.parent


def _save_model(folder: Path, model: keras.Model, card: dict) -> Path:
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    return folder / "model.keras"


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    """A small zoo: a 2D CT model (HU window), a 3D model (percentile) and a prior model."""
    root = tmp_path_factory.mktemp("zoo")
    keras.utils.set_random_seed(0)
    # random heads: untrained, these would return their input, and the tests comparing the
    # CLI with denoise_array could not see a slice-order or slicing bug
    _save_model(root / "ct2d", random_head(models.build("unet", ndim=2, filters=4, depth=1), scale=0.3),
                {"name": "ct2d", "summary": "2D CT test model",
                 "normalization": dp.Normalizer.ct((-1000, 400)).to_dict(),
                 "noise": {"kind": "gaussian", "sigma": 0.05}})
    _save_model(root / "mri3d", random_head(models.build("unet", ndim=3, filters=4, depth=1), scale=0.3),
                {"name": "mri3d", "summary": "3D test model",
                 "normalization": dp.Normalizer.percentile(1, 99.8).to_dict(),
                 "noise": {"kind": "gaussian", "sigma": [0.0, 0.2]}})
    _save_model(root / "prior3d", random_head(models.build("respr_unet", ndim=3, filters=4, depth=1),
                                              scale=0.3),
                {"name": "prior3d", "summary": "3D prior test model",
                 "normalization": dp.Normalizer.percentile(1, 99.8).to_dict(),
                 "prior": {"kind": "neighbour", "size": 5, "decay": 0.04, "include_self": False},
                 "noise": {"kind": "gaussian", "sigma": 0.1}})
    return root


@pytest.fixture(autouse=True)
def _use_test_zoo(zoo_dir, monkeypatch):
    monkeypatch.setenv("RESPRUNET_ZOO", str(zoo_dir))


@pytest.fixture
def nifti_in(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    data = (1000 + 300 * rng.standard_normal((20, 18, 6))).astype(np.int16)  # (x, y, z) on disk
    affine = np.array([[0.9, 0, 0, -10], [0, 1.1, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data, affine


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_denoise_nifti_keeps_affine_dtype_and_units(nifti_in, tmp_path, capsys, zoo_dir):
    path, data, affine = nifti_in
    out = tmp_path / "den.nii.gz"
    code, stdout, err = _run(capsys, "denoise", path, out, "--model", "mri3d")
    assert code == 0, err
    img = nib.load(out)
    assert np.allclose(img.affine, affine)
    assert img.get_data_dtype() == np.int16
    got = np.asarray(img.dataobj)
    volume = dp.read_volume(path)
    model = keras.models.load_model(zoo_dir / "mri3d" / "model.keras")
    expected = denoise_array(model, volume.array, dp.Normalizer.percentile(1, 99.8), progress=False)
    # source units (the percentile map fitted on this input, inverted exactly), then rounded
    assert np.abs(got - np.rint(expected).transpose(2, 1, 0)).max() <= 1
    assert np.abs(got.astype(float) - data).mean() > 10  # the model changed the data (18)
    assert "wrote" in stdout

    out32 = tmp_path / "den32.nii.gz"
    assert _run(capsys, "denoise", path, out32, "--model", zoo_dir / "mri3d" / "model.keras",
                "--output-dtype", "float32", "--tile", "4,16,16")[0] == 0
    tiled = np.asarray(nib.load(out32).dataobj)
    assert nib.load(out32).get_data_dtype() == np.float32
    expected_tiled = denoise_array(model, volume.array, dp.Normalizer.percentile(1, 99.8),
                                   tile_shape=(4, 16, 16), progress=False)
    assert np.abs(tiled - expected_tiled.transpose(2, 1, 0)).max() < 1e-3


def test_denoise_dicom_ct_in_hu_as_a_new_series(tmp_path, capsys, zoo_dir):
    src = Path(get_testdata_file("CT_small.dcm"))
    out = tmp_path / "series_out"
    code, _, err = _run(capsys, "denoise", src, out, "--model", "ct2d")
    assert code == 0, err
    files = sorted(out.iterdir())
    assert len(files) == 1
    new, old = pydicom.dcmread(files[0]), pydicom.dcmread(src)
    assert new.SeriesInstanceUID != old.SeriesInstanceUID
    assert new.SOPInstanceUID != old.SOPInstanceUID
    back = dp.read_volume(out).array
    model = keras.models.load_model(zoo_dir / "ct2d" / "model.keras")
    expected = denoise_array(model, dp.read_volume(src).array, dp.Normalizer.ct((-1000, 400)),
                             progress=False)
    assert np.abs(back - np.rint(expected)).max() <= 1  # HU in, HU out
    assert -1100 < back.min() and back.max() < 1400


def test_denoise_rgb_png_with_a_colour_model(tmp_path, capsys):
    from PIL import Image

    rgb = np.random.default_rng(4).integers(40, 220, (32, 48, 3), dtype=np.uint8)
    src = tmp_path / "slide.png"
    Image.fromarray(rgb).save(src)
    keras.utils.set_random_seed(0)
    model = random_head(models.build("unet", ndim=2, channels=3, filters=4, depth=1), scale=0.3)
    path = _save_model(tmp_path / "rgb", model, {"name": "rgb", "summary": "RGB test model",
                                                 "normalization": dp.Normalizer.fixed(0, 255).to_dict(),
                                                 "noise": {"kind": "gaussian", "sigma": [0.0, 0.2]}})
    code, _, err = _run(capsys, "denoise", src, tmp_path / "out.png", "--model", path)
    assert code == 0, err
    got = np.asarray(Image.open(tmp_path / "out.png"))
    assert got.shape == rgb.shape and got.dtype == np.uint8
    expected = denoise_array(model, rgb[None].astype(np.float32), dp.Normalizer.fixed(0, 255), progress=False)[0]
    assert np.abs(got - np.rint(expected)).max() <= 1  # every channel in place, none swapped
    assert np.abs(got.astype(float) - rgb).mean() > 5  # the model changed the image
    code, _, err = _run(capsys, "denoise", src, tmp_path / "grey.png", "--model", "ct2d")
    assert code == 2 and "3 channels" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "grey.png").exists()


def test_prior_auto_file_and_mismatch(nifti_in, tmp_path, capsys):
    path, data, affine = nifti_in
    code, _, err = _run(capsys, "denoise", path, tmp_path / "a.nii.gz", "--model", "prior3d")
    assert code == 0, err
    prior = tmp_path / "prior.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), prior)
    assert _run(capsys, "denoise", path, tmp_path / "b.nii.gz", "--model", "prior3d",
                "--prior", prior)[0] == 0
    # the input itself as prior differs from the neighbour-slice prior
    a = np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj)
    b = np.asarray(nib.load(tmp_path / "b.nii.gz").dataobj)
    assert np.abs(a.astype(float) - b).max() > 0
    bad = tmp_path / "bad_prior.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, :5], affine), bad)
    code, _, err = _run(capsys, "denoise", path, tmp_path / "c.nii.gz", "--model", "prior3d",
                        "--prior", bad)
    assert code == 2
    assert "prior has shape (5, 18, 20)" in err and "(6, 18, 20)" in err
    assert not (tmp_path / "c.nii.gz").exists()
    code, _, err = _run(capsys, "denoise", path, tmp_path / "d.nii.gz", "--model", "prior3d",
                        "--prior", "none")
    assert code == 2 and "needs a prior" in err


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("unknown_model", "unknown model 'nope'"),
        ("dimensionality", "3D model needs a (z, y, x) volume"),
        ("channels", "the input has 2 channels or frames (shape (4, 16, 16, 2))"),
        ("exists", "output exists; use --force to replace it"),
    ],
)
def test_errors_are_one_line_and_exit_2(case, message, nifti_in, tmp_path, capsys):
    path, _, _ = nifti_in
    out = tmp_path / "out.nii.gz"
    argv = ["denoise", path, out, "--model", "mri3d"]
    if case == "missing":
        argv[1] = tmp_path / "missing.nii.gz"
    elif case == "unknown_model":
        argv[4] = "nope"
    elif case == "dimensionality":
        np.save(tmp_path / "slice.npy", np.ones((16, 16), np.float32))
        argv[1] = tmp_path / "slice.npy"
        argv[2] = out = tmp_path / "slice_out.npy"
    elif case == "channels":
        np.save(tmp_path / "frames.npy", np.ones((4, 16, 16, 2), np.float32))
        argv[1] = tmp_path / "frames.npy"
    elif case == "exists":
        out.write_bytes(b"keep me")
    code, stdout, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if case == "exists":
        assert out.read_bytes() == b"keep me"
        assert _run(capsys, *argv, "--force")[0] == 0
        assert nib.load(out).shape == (20, 18, 6)
    else:
        assert not out.exists()


class _InterruptedModel:
    """Wraps a model; the second tile batch raises KeyboardInterrupt (a user's Ctrl-C)."""

    def __init__(self, model):
        self._model = model
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_on_batch(self, x):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self._model.predict_on_batch(x)


def test_interrupted_run_writes_nothing(nifti_in, tmp_path, capsys, monkeypatch):
    path, _, _ = nifti_in
    real = cli._resolve_model
    wrapped: list[_InterruptedModel] = []

    def resolve(spec):
        model, card = real(spec)
        wrapped.append(_InterruptedModel(model))
        return wrapped[-1], card

    monkeypatch.setattr(cli, "_resolve_model", resolve)
    before = set(os.listdir(tmp_path))
    # a 2D model takes the 6 slices one per call: the second call is interrupted
    code, _, err = _run(capsys, "denoise", path, tmp_path / "out.nii.gz", "--model", "ct2d",
                        "--batch-size", "1")
    assert code == 130 and "interrupted" in err
    assert wrapped[0].calls == 2
    assert set(os.listdir(tmp_path)) == before


def test_failed_write_leaves_no_partial_file(nifti_in, tmp_path, capsys, monkeypatch):
    path, _, _ = nifti_in
    import data_pipelines.io as dpio

    def half_write(array, tmp, **kwargs):
        Path(tmp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(dpio, "write_nifti", half_write)
    before = set(os.listdir(tmp_path))
    code, _, err = _run(capsys, "denoise", path, tmp_path / "out.nii.gz", "--model", "mri3d")
    assert code == 2 and "disk full" in err
    assert set(os.listdir(tmp_path)) == before


def test_zoo_list_and_show(capsys):
    code, out, _ = _run(capsys, "zoo", "list")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == ["ct2d", "mri3d", "prior3d"]
    code, out, _ = _run(capsys, "zoo", "show", "prior3d")
    assert code == 0
    assert yaml.safe_load(out)["prior"]["size"] == 5
    code, _, err = _run(capsys, "zoo", "show", "nope")
    assert code == 2 and "unknown zoo model 'nope'" in err and "ct2d" in err


def test_train_config_errors(tmp_path, capsys):
    code, _, err = _run(capsys, "train", tmp_path / "none.yaml")
    assert code == 2 and "none.yaml" in err
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 1\n")
    code, _, err = _run(capsys, "train", config, "--set", "no_such_key=3")
    assert code == 2 and "no_such_key" in err


def test_help_in_a_subprocess():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "resprunet.cli", "--help"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "resprunet denoise" in proc.stdout and "examples:" in proc.stdout
    for command in ("denoise", "train", "assess", "zoo"):
        assert command in proc.stdout


def test_assess_files(tmp_path, capsys):
    rng = np.random.default_rng(3)
    from scipy import ndimage

    clean = ndimage.gaussian_filter(rng.random((12, 32, 32)), 2).astype(np.float32) * 1000
    noisy = (clean + 20 * rng.standard_normal(clean.shape)).astype(np.float32)
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "noisy.npy", noisy)
    out = tmp_path / "report"
    code, stdout, err = _run(capsys, "assess", "--clean", tmp_path / "clean.npy", "--noisy",
                             tmp_path / "noisy.npy", "--method", "tv", "--model", "mri3d", "--out", out)
    assert code == 0, err
    report = yaml.safe_load((out / "report.json").read_text())
    methods = [row["method"] for row in report["rows"]]
    assert methods[0] == "noisy" and methods[2] == "mri3d" and methods[1].startswith("tv (weight")
    tv_row = report["rows"][1]
    assert tv_row["psnr"] > report["rows"][0]["psnr"]
    assert (out / "report.md").is_file() and (out / "metrics.png").is_file()
    code, _, err = _run(capsys, "assess", "--clean", tmp_path / "clean.npy", "--noisy",
                        tmp_path / "noisy.npy", "--method", "median", "--out", tmp_path / "r2")
    assert code == 2 and "unknown --method 'median'" in err
    assert not (tmp_path / "r2").exists()


def test_sigma_is_checked_against_the_card(nifti_in, tmp_path, capsys, caplog):
    path, _, _ = nifti_in
    src = Path(get_testdata_file("CT_small.dcm"))
    with caplog.at_level("INFO", logger="resprunet"):
        assert _run(capsys, "denoise", src, tmp_path / "a", "--model", "ct2d", "--sigma", "0.1")[0] == 0
        assert "differs from the sigma 0.05" in caplog.text
        caplog.clear()
        assert _run(capsys, "denoise", path, tmp_path / "b.nii.gz", "--model", "mri3d",
                    "--sigma", "0.1")[0] == 0
        assert "blind model" in caplog.text and "ignored" in caplog.text
    code, _, err = _run(capsys, "denoise", path, tmp_path / "c.nii.gz", "--model", "mri3d",
                        "--sigma", "1.5")
    assert code == 2 and "--sigma 1.5" in err


def test_train_runs_a_config_with_overrides(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": ["ct_slices"], "val": [], "val_fraction": 0.5, "patch_shape": [32, 32],
                 "noise": {"kind": "gaussian", "sigma": 0.1},
                 "normalize": {"method": "ct", "window": [-1000.0, 400.0]},
                 "batch_size": 2, "patches_per_epoch": 4, "val_patches": 2},
        "model": {"name": "unet", "ndim": 2, "filters": 4, "depth": 1},
        "epochs": 1, "callbacks": {"histogram_freq": 0, "image_panel": False},
        "run": {"root": str(tmp_path / "runs"), "name": "tiny"},
    }))
    code, out, err = _run(capsys, "train", config, "--set", "model.filters=2", "--set", "seed=3")
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1].split("run directory: ")[1])
    assert out.count(str(run_dir)) == 1  # printed once, last
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["options"]["filters"] == 2 and saved["seed"] == 3
    # the trained run denoises through the CLI with the normalisation from its config.yaml
    src = Path(get_testdata_file("CT_small.dcm"))
    code, _, err = _run(capsys, "denoise", src, tmp_path / "den.npy", "--model", run_dir / "model.keras")
    assert code == 0, err
    assert np.load(tmp_path / "den.npy").shape == (1, 128, 128)
    # bad shortcut values and a resume with no run are one-line errors, before any training
    code, _, err = _run(capsys, "train", config, "--precision", "float8")
    assert code == 2 and "precision" in err and "float8" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "train", config, "--set", "run.name=none_yet", "--resume", "latest")
    assert code == 2 and "none_yet" in err and len(err.strip().splitlines()) == 1
