"""End-to-end training runs in-process on the embedded samples (tiny models, few steps)."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from pydicom.data import get_testdata_file

from resprunet.training import TrainConfig, load_config, train
from resprunet.runtime import precision_policy
from resprunet.training.build import build_model, compile_model
from resprunet.training.callbacks import panel_image

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
CT_TEST = get_testdata_file("693_UNCR.dcm")  # a third CT scan (pydicom-data), the test volume


def _tags(folder: Path) -> dict[str, int]:
    """Summary tag -> number of values over the event files under ``folder``."""
    counts: dict[str, int] = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                counts[value.tag] = counts.get(value.tag, 0) + 1
    return counts


def _panel_shape(summary_dir: Path) -> tuple[int, int, int]:
    for path in summary_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "panel":
                    png = tf.make_ndarray(value.tensor)[2]  # [width, height, png images...]
                    return tuple(tf.io.decode_png(png).shape)
    raise AssertionError(f"no panel image under {summary_dir}")


def test_respr_unet_3d_run_writes_everything(tmp_path, capsys, monkeypatch):
    # the profiler must write its trace without the optional viewer plugin
    monkeypatch.setitem(sys.modules, "tensorboard_plugin_profile", None)
    config = load_config(
        CONFIGS / "respr_unet_3d.yaml",
        [
            "model.filters=4", "model.depth=1",
            "data.patch_shape=[12, 24, 24]", "data.val_patch_shape=[12, 24, 24]",
            "data.batch_size=2", "data.patches_per_epoch=64", "data.val_patches=4",
            "epochs=2", "optimizer.learning_rate=3e-3",
            "callbacks.histogram_freq=1", "callbacks.profile_batch=[2, 3]",
            f"run.root={tmp_path}",
        ],
    )
    result = train(config, verbose=0)
    run = result.run_dir
    assert run.parent == tmp_path / "respr_unet_3d" and run.name.endswith("Z")
    assert load_config(run / "config.yaml") == config
    # per-epoch log and history: both epochs, finite, validation PSNR above 10 dB
    assert result.history["epoch"] == [0.0, 1.0]
    assert np.all(np.isfinite(result.history["loss"]))
    # training improved on where the untrained model starts: a zero head returns the prior.
    # (On t1_head, 2 mm slices, the neighbour prior is far worse than the noisy input: 12 dB
    # against 20 dB; measured 12.58 after 2 epochs.)
    baseline = result.final_metrics["val_baseline"]
    assert baseline["noisy_psnr"] == pytest.approx(20.0, abs=0.3)
    assert result.history["val_psnr"][-1] > baseline["prior_psnr"] + 0.3, (result.history, baseline)
    assert {"psnr", "ssim", "val_psnr", "val_ssim", "learning_rate"} <= set(result.history)
    assert result.history["learning_rate"][1] < result.history["learning_rate"][0]  # cosine decay
    # TensorBoard: scalars, weight histograms, image panel, profiler trace
    train_tags = _tags(run / "tb" / "train")
    assert train_tags["epoch_loss"] == 2 and train_tags["epoch_psnr"] == 2
    assert any(tag.endswith("kernel/histogram") for tag in train_tags), sorted(train_tags)[:10]
    assert _tags(run / "tb" / "validation")["epoch_psnr"] == 2
    assert _tags(run / "tb" / "images")["panel"] == 2  # one per epoch
    height, width, channels = _panel_shape(run / "tb" / "images")
    # 4 labelled columns (noisy | prior | denoised | clean) x 3 views (24x24 axial, 12x24,
    # 12x24), 2 px gaps, enlarged 3x, under a 14-px label strip and beside a 16-px margin
    assert (height, width, channels) == (14 + 3 * (24 + 12 + 12 + 3 * 2), 16 + 3 * 4 * (24 + 2), 1)
    traces = list((run / "tb" / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert traces and traces[0].stat().st_size > 0
    # checkpoint, final model, final metrics on the whole held-out volume
    assert (run / "checkpoints" / "best.keras").is_file()
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert len(model.inputs) == 2  # noisy and prior
    with zipfile.ZipFile(run / "model.keras") as archive:  # no custom metrics needed to load it
        assert not json.loads(archive.read("config.json")).get("compile_config")
    saved = json.loads((run / "final_metrics.json").read_text())
    assert saved == json.loads(json.dumps(result.final_metrics))
    (ev,) = saved["evaluations"]
    assert saved["test_volumes"] == ["example4d_epi"]  # data.test; t1_head only chose the checkpoint
    assert ev["volume"] == "example4d_epi" and ev["shape"] == [24, 96, 128]
    assert ev["noisy_psnr"] == pytest.approx(20.0, abs=0.3)  # sigma 0.1 of the range: 20 dB
    assert ev["ssim_kind"] == "3D SSIM"
    assert "noisy PSNR" in capsys.readouterr().out


def test_2d_mixed_bfloat16_run_on_ct_slices_split_by_scan(tmp_path):
    config = load_config(
        CONFIGS / "unet_2d.yaml",
        [
            "data.train=[ct_slices]", "data.val=[]", "data.val_fraction=0.5", f"data.test=[{CT_TEST}]",
            "data.normalize={method: ct, window: [-1000.0, 400.0]}",
            "model.filters=4", "model.depth=2", "data.patch_shape=[32, 32]",
            "data.batch_size=4", "data.patches_per_epoch=32", "data.val_patches=4",
            "epochs=2", "loss=l1_ssim", "precision=mixed_bfloat16", "strategy=mirrored",
            "callbacks.panel_samples=3", "early_stopping.patience=5",
            f"run.root={tmp_path}",
        ],
    )
    before = keras.config.dtype_policy().name
    seen: list[tuple[int, str]] = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((epoch, recorder.model.name)))
    result = train(config, verbose=0, callbacks=[recorder])
    assert keras.config.dtype_policy().name == before  # policy restored after the run
    model = keras.models.load_model(result.run_dir / "model.keras", compile=False)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.dtype_policy.name == "mixed_bfloat16"
    assert seen == [(0, model.name), (1, model.name)]  # the extra callback saw every epoch of this model
    assert model.output.dtype == "float32"
    assert result.history["loss"][1] < result.history["loss"][0]
    (ev,) = result.final_metrics["evaluations"]
    assert result.final_metrics["test_volumes"] == [ev["volume"]] and "subject" not in ev["volume"]
    assert ev["ssim_kind"] == "mean of per-slice 2D SSIM"
    assert _tags(result.run_dir / "tb" / "images")["panel"] == 2


def test_mixed_float16_uses_loss_scaling():
    config = load_config(overrides=["model.filters=4", "model.depth=1", "precision=mixed_float16"])
    with precision_policy(config.precision):
        model = build_model(config)
        compile_model(model, config, steps_per_epoch=4)
    assert keras.config.dtype_policy().name == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[1].compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_prior_mismatch_is_a_config_error(tmp_path):
    config = TrainConfig.from_dict(
        {"model": {"name": "respr_unet", "ndim": 3, "filters": 4, "depth": 1},
         "run": {"root": str(tmp_path)}}
    )
    with pytest.raises(ValueError, match=r"data.prior.*neighbour"):
        train(config, verbose=0)


def test_panel_image_layout_2d_and_3d():
    a2 = np.full((20, 30, 1), 0.5, np.float32)
    assert panel_image([a2, a2, a2]).shape == (22, 3 * 32, 1)
    a3 = np.zeros((10, 20, 30, 1), np.float32)
    a3[5, 10, 15] = 2.0  # clipped to 1 for display
    image = panel_image([a3, a3])
    assert image.shape == (20 + 10 + 10 + 6, 2 * 32, 1)
    assert image.max() == 1.0


def test_collapse_warning_names_a_collapse_a_divergence_and_nothing_else():
    from resprunet.training.runs import collapse_warning

    rising = {"val_psnr": [22.0, 28.0, 30.5, 31.9, 31.7]}
    assert collapse_warning(rising, 20.4) is None  # a dip of 0.2 dB at the end is noise
    collapsed = {"val_psnr": [22.0, 28.0, 31.9, 20.45, 20.44]}  # every unit dead: the noisy input
    said = collapse_warning(collapsed, 20.4)
    assert said is not None and "collapsed to returning its input" in said
    assert "epoch 3" in said and "31.90" in said and "best.keras" in said
    diverged = collapse_warning({"val_psnr": [22.0, 31.9, 27.0]}, 20.4)
    assert diverged is not None and "diverged" in diverged
    assert collapse_warning({"val_loss": [0.1, 0.5]}) is None  # noisy-only runs have no val_psnr
    assert collapse_warning({"val_psnr": [25.0]}) is None
