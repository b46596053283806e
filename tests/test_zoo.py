"""models_zoo: every trained model loads, has a complete card, and reproduces its held-out metric."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from resprunet import models, zoo

REQUIRED = {"unet2d_ct", "unet3d_mri", "respr_unet3d_mri", "blind_unet2d_ct", "blind_unet3d_mri", "blind_unet2d_grey",
            "microscopy_unet2d_pg", "histology_irunet2d_rgb", "n2v2_unet2d_pg", "divnoising2d_pg"}
CARD_KEYS = ("name", "summary", "architecture", "normalization", "noise", "training_data",
             "training", "evaluation", "tuning", "metrics")


def test_zoo_holds_the_required_models_under_30_mb():
    assert REQUIRED <= set(zoo.list())
    size = sum(p.stat().st_size for p in zoo.root().rglob("*") if p.is_file())
    assert size < 30 * 2**20


def test_unknown_name_and_env_override(tmp_path, monkeypatch):
    with pytest.raises(zoo.ZooError, match="unknown zoo model 'nope'; available: .*unet2d_ct"):
        zoo.card("nope")
    monkeypatch.setenv("RESPRUNET_ZOO", str(tmp_path))
    assert zoo.root() == tmp_path and zoo.list() == []
    with pytest.raises(zoo.ZooError, match="available: none"):
        zoo.load("unet2d_ct")


@pytest.mark.parametrize("name", sorted(set(zoo.list()) | REQUIRED))
def test_model_card_and_held_out_metric(name):
    """Every zoo model loads with this Keras and reproduces the held-out metric of its card."""
    model, card = zoo.load(name)
    assert card == zoo.card(name) and zoo.path(name) == zoo.root() / name
    for key in CARD_KEYS:
        assert card.get(key) is not None, f"{name}: card lacks {key!r}"
    info = models.describe(model)
    assert info.ndim == card["architecture"]["ndim"]
    assert info.needs_prior == bool(card.get("prior"))
    assert card["training"]["seconds"] > 0 and card["training"]["epochs"] >= 1
    assert card["training_data"]["licence"]
    metrics = card["metrics"]
    assert {"tv"} | ({"bm3d"} if info.ndim == 2 else {"bm4d"}) <= set(metrics)
    got = zoo.evaluate(model, card)
    assert abs(got["model"]["psnr"] - metrics["model"]["psnr"]) <= 0.2
    assert abs(got["noisy"]["psnr"] - metrics["noisy"]["psnr"]) <= 0.01
    assert got["model"]["psnr"] > got["noisy"]["psnr"] + 1.0  # it does denoise
    for sigma, other in card.get("metrics_at_other_sigmas", {}).items():  # the same case, other levels
        recipe = {**card["evaluation"], "noise": {**card["evaluation"]["noise"], "sigma": float(sigma)}}
        got = zoo.evaluate(model, {**card, "evaluation": recipe})
        assert abs(got["model"]["psnr"] - other["model"]["psnr"]) <= 0.2, (sigma, got, other)


def test_blind_model_works_across_noise_levels():
    model, card = zoo.load("blind_unet2d_ct")
    gains = []
    for sigma in (0.03, 0.15):
        recipe = {**card["evaluation"], "noise": {"kind": "gaussian", "sigma": sigma}}
        got = zoo.evaluate(model, {**card, "evaluation": recipe})
        gains.append(got["model"]["psnr"] - got["noisy"]["psnr"])
    assert min(gains) > 0.5


def test_heldout_case_is_seeded_and_normalised():
    card = zoo.card("unet3d_mri")
    case = zoo.heldout_case(card)
    again = zoo.heldout_case(card)
    assert case.prior is None and np.array_equal(case.noisy, again.noisy)
    assert case.clean.shape == tuple(hi - lo for lo, hi in card["evaluation"]["crop"])
    assert abs(float(np.std(case.noisy - case.clean)) - card["evaluation"]["noise"]["sigma"]) < 0.005
    # the noisy source a user would have maps to the noisy crop in reference units
    np.testing.assert_allclose(case.reference(case.noisy_source)[case.crop], case.noisy, atol=1e-5)
    prior = zoo.heldout_case(zoo.card("respr_unet3d_mri")).prior
    assert prior is not None and prior.shape == case.clean.shape
    assert Path(zoo.path("unet3d_mri") / "model.keras").is_file()


def test_zoo_validation_is_never_a_training_volume(tmp_path):
    """Every zoo recipe validates on volumes that are not among its training volumes."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "models_zoo" / "train_zoo.py"
    spec = importlib.util.spec_from_file_location("train_zoo", script)
    train_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_zoo)

    def content(entry: str) -> bytes:
        import data_pipelines as dp

        return np.ascontiguousarray(dp.read_volume(entry).array if Path(entry).exists()
                                    else dp.sample(entry).array).tobytes()

    has_nilearn = importlib.util.find_spec("nilearn") is not None  # the zoo extra (MRI validation volume)
    for name, model_spec in train_zoo.SPECS.items():
        if model_spec["train_files"] == "mri" and not has_nilearn:
            continue
        data = train_zoo._config(name, model_spec, tmp_path, 1).data
        assert data.val and not set(data.train) & set(data.val), name
        assert not {content(v) for v in data.val} & {content(t) for t in data.train}, name
    cell = train_zoo.SPECS["microscopy_unet2d_pg"]["evaluation"]["crop"][1]
    assert cell[0] >= 500  # the test rows lie below the validation (420-500) and training (0-400) rows


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_zoo_file_opens_with_plain_keras(name):
    """No training state (custom metrics, optimizer) in the file: keras alone can load it."""
    with zipfile.ZipFile(zoo.path(name) / "model.keras") as archive:
        assert not json.loads(archive.read("config.json")).get("compile_config")
