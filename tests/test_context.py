"""2.5D: a 2D U-Net given the neighbouring noisy slices as channels ("context"), in the data
pipeline, the model, inference and training alike."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import data_pipelines as dp
from model_helpers import random_head
from resprunet import models
from resprunet.inference import predict_volume
from resprunet.inference.predict import context_slices


def _slices(z: int = 5) -> np.ndarray:
    """Slice z holds the value z / 10 everywhere: the channels say which slice they came from."""
    return np.stack([np.full((32, 32), k / 10, np.float32) for k in range(z)])


def test_the_pipeline_serves_the_neighbouring_slices_nearest_first():
    ds = dp.make_dataset([_slices()], patch_shape=(16, 16), noise=dp.GaussianNoise(0.0), context=2,
                         batch_size=5, patches_per_epoch=10, augment=False, training=False)
    seen = {}
    for inputs, _ in ds:
        noisy, context = inputs["noisy"].numpy(), inputs["context"].numpy()
        assert context.shape == noisy.shape[:-1] + (4,)
        for n, c in zip(noisy, context):
            seen[round(float(n.mean()), 2)] = [round(float(c[..., k].mean()), 2) for k in range(4)]
    # z-1, z+1, z-2, z+2; zeros beyond the volume (slices 0..4)
    assert seen[0.2] == [0.1, 0.3, 0.0, 0.4]
    assert seen[0.4] == [0.3, 0.0, 0.2, 0.0]
    assert seen[0.1] == [0.0, 0.2, 0.0, 0.3]
    with pytest.raises(ValueError, match="needs 2D patches"):
        dp.make_dataset([_slices()], patch_shape=(2, 16, 16), context=1)
    with pytest.raises(ValueError, match="cannot be combined with a prior"):
        dp.make_dataset([_slices()], patch_shape=(16, 16), context=1, prior="neighbour")


def test_inference_builds_the_same_context_and_the_model_uses_it(tmp_path):
    x = _slices()[..., None]
    np.testing.assert_allclose(context_slices(x, 2)[2].mean(axis=(0, 1)), [0.1, 0.3, 0.0, 0.4], atol=1e-5)
    keras.utils.set_random_seed(0)
    model = random_head(models.build("unet", ndim=2, filters=4, depth=1, context=2), scale=0.3)
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    first.set_weights([np.random.default_rng(1).normal(0, 0.5, w.shape).astype(w.dtype)
                       for w in first.get_weights()])
    info = models.describe(model)
    assert info.context == 2 and info.ndim == 2 and not info.needs_prior
    rng = np.random.default_rng(2)
    volume = rng.random((6, 32, 32)).astype(np.float32)
    out = predict_volume(model, volume, progress=False)
    direct = np.asarray(model.predict_on_batch(
        {"noisy": volume[..., None], "context": context_slices(volume[..., None], 2)}))[..., 0]
    np.testing.assert_allclose(out, direct, atol=1e-5)
    shuffled = volume.copy()
    shuffled[[1, 3]] = shuffled[[3, 1]]  # slice 2 keeps its pixels but gets other neighbours
    assert np.abs(predict_volume(model, shuffled, progress=False)[2] - out[2]).mean() > 1e-3
    model.save(tmp_path / "m.keras")
    assert models.describe(keras.models.load_model(tmp_path / "m.keras")).context == 2
    with pytest.raises(ValueError, match="for 2D models"):
        models.build("unet", ndim=3, filters=4, depth=1, context=1)


def test_a_2_5d_run_trains_and_evaluates(tmp_path):
    from resprunet.training import load_config, train

    config = load_config(overrides=[
        "model.name=unet", "model.ndim=2", "model.filters=4", "model.depth=1", "model.context=1",
        "data.patch_shape=[32, 32]", "data.batch_size=4", "data.patches_per_epoch=8",
        "data.val_patches=4", "epochs=1", "callbacks.histogram_freq=0", f"run.root={tmp_path}",
    ])
    result = train(config, verbose=0)
    (ev,) = result.final_metrics["evaluations"]
    assert ev["volume"] == "example4d_epi" and ev["ssim_kind"] == "mean of per-slice 2D SSIM"
    assert set(result.final_metrics["val_baseline"]) == {"noisy_psnr"}
