"""Noise-level conditioning: the sigma map served by make_dataset, the U-Net's "sigma" input,
inference with a given or estimated sigma, training and the CLI."""
from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

import data_pipelines as dp
from data_pipelines.errors import InvalidDataError
from model_helpers import random_head
from resprunet import models
from resprunet.inference import denoise_array, predict_volume


def _smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    x = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def test_each_patch_comes_with_its_own_noise_level():
    volume = 1000.0 * _smooth((6, 96, 96))  # source units: the map is in the model's units
    ds = dp.make_dataset([volume], patch_shape=(48, 48), noise=dp.GaussianNoise((0.02, 0.2)),
                         normalizer=dp.Normalizer.minmax(), noise_level=True, batch_size=8,
                         patches_per_epoch=16, augment=False)
    levels, measured = [], []
    for inputs, clean in ds:
        noisy, sigma = inputs["noisy"].numpy(), inputs["sigma"].numpy()
        assert sigma.shape == noisy.shape
        for i in range(len(sigma)):
            assert np.ptp(sigma[i]) == 0  # a constant map per patch
            levels.append(float(sigma[i].flat[0]))
            measured.append(float(np.std(noisy[i] - clean.numpy()[i])))
    np.testing.assert_allclose(measured, levels, rtol=0.1)  # the map is the noise actually added
    assert max(levels) - min(levels) > 0.05  # drawn per patch from the range
    with pytest.raises(ValueError, match="needs synthetic Gaussian noise"):
        dp.make_dataset([volume], patch_shape=(48, 48), noise=dp.PoissonNoise(30.0), noise_level=True)


@pytest.fixture(scope="module")
def conditioned() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = random_head(models.build("unet", ndim=2, filters=4, depth=2, noise_map=True), scale=0.3)
    # a random first layer too, so that the sigma channel matters
    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    first.set_weights([np.random.default_rng(1).normal(0, 0.5, w.shape).astype(w.dtype)
                       for w in first.get_weights()])
    return model


def test_the_unet_takes_a_sigma_map_and_saves_with_it(conditioned, tmp_path):
    info = models.describe(conditioned)
    assert info.needs_sigma and not info.needs_prior and info.channels == 1
    assert not models.describe(models.build("unet", ndim=2, filters=4, depth=1)).needs_sigma
    x = _smooth((2, 32, 32))[..., None]
    low = np.asarray(conditioned({"noisy": x, "sigma": np.full_like(x, 0.02)}))
    high = np.asarray(conditioned({"noisy": x, "sigma": np.full_like(x, 0.2)}))
    assert np.abs(low - high).mean() > 1e-3
    conditioned.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded({"noisy": x, "sigma": np.full_like(x, 0.2)})), high, atol=1e-6)


def test_the_rgb_irunet_takes_a_sigma_map_too(tmp_path):
    keras.utils.set_random_seed(0)
    model = models.build("irunet", ndim=2, filters=4, channels=3, noise_map=True)
    info = models.describe(model)
    assert info.needs_sigma and info.channels == 3
    assert not models.describe(models.build("irunet", ndim=2, filters=4, channels=3)).needs_sigma
    x = np.stack([_smooth((2, 32, 32), seed=c) for c in range(3)], axis=-1)
    sigma = np.full(x.shape[:-1] + (1,), 0.2, np.float32)
    high = np.asarray(model({"noisy": x, "sigma": sigma}))
    low = np.asarray(model({"noisy": x, "sigma": sigma / 10}))
    assert high.shape == x.shape and np.abs(low - high).mean() > 1e-3
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded({"noisy": x, "sigma": sigma})), high, atol=1e-6)


def test_inference_with_a_given_or_estimated_sigma(conditioned, caplog):
    clean = _smooth((3, 64, 64), seed=2)
    noisy = clean + 0.1 * np.random.default_rng(3).standard_normal(clean.shape).astype(np.float32)
    with pytest.raises(InvalidDataError, match="conditioned on the noise level"):
        predict_volume(conditioned, noisy, progress=False)
    given = predict_volume(conditioned, noisy, sigma=0.1, progress=False)
    x = noisy[..., None]
    direct = np.asarray(conditioned.predict_on_batch({"noisy": x, "sigma": np.full_like(x, 0.1)}))[..., 0]
    np.testing.assert_allclose(given, direct, atol=1e-5)
    assert np.abs(predict_volume(conditioned, noisy, sigma=0.02, progress=False) - given).mean() > 1e-3
    # denoise_array estimates sigma from the normalised input when it is not given
    norm = dp.Normalizer.ct((0.0, 1.0))
    with caplog.at_level(logging.INFO, logger="resprunet.inference.predict"):
        estimated = denoise_array(conditioned, noisy, norm, progress=False)
    match = [r.getMessage() for r in caplog.records if "noise level estimated" in r.getMessage()]
    assert match and abs(float(match[0].split("sigma ")[1].split()[0]) - 0.1) < 0.015
    assert np.abs(estimated - denoise_array(conditioned, noisy, norm, sigma=0.1, progress=False)).max() < 0.05


def test_training_and_the_cli_pass_the_noise_level(tmp_path, capsys):
    from resprunet import cli
    from resprunet.training import load_config, train

    config = load_config(overrides=[
        "model.name=unet", "model.ndim=2", "model.filters=4", "model.depth=1", "model.noise_map=true",
        "data.train=[ct_slices]", "data.val=[]", "data.val_fraction=0.5", "data.test=[epi]",
        "data.noise={kind: gaussian, sigma: [0.0, 0.2]}", "data.eval_noise={kind: gaussian, sigma: 0.1}",
        "data.patch_shape=[32, 32]", "data.batch_size=4", "data.patches_per_epoch=8",
        "data.val_patches=4", "epochs=1", "callbacks.histogram_freq=0", f"run.root={tmp_path}",
    ])
    result = train(config, verbose=0)
    assert set(result.final_metrics["val_baseline"]) == {"noisy_psnr"}  # the map is no estimate
    (ev,) = result.final_metrics["evaluations"]
    assert ev["volume"] == "example4d_epi"
    volume = dp.sample("epi")
    np.save(tmp_path / "epi.npy", volume.array.astype(np.float32))
    argv = ["-q", "denoise", str(tmp_path / "epi.npy"), str(tmp_path / "out.npy"),
            "--model", str(result.run_dir), "--sigma", "0.15"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    model = keras.models.load_model(result.run_dir / "model.keras")
    expected = denoise_array(model, volume.array.astype(np.float32), dp.Normalizer.percentile(1, 99.8),
                             sigma=0.15, progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-4)


def test_a_blind_range_without_the_noise_level_is_served_as_before():
    volume = _smooth((4, 64, 64))
    ds = dp.make_dataset([volume], patch_shape=(32, 32), noise=dp.GaussianNoise((0.0, 0.2)),
                         batch_size=4, patches_per_epoch=4)
    noisy, clean = next(iter(ds))
    assert not isinstance(noisy, dict) and noisy.shape == clean.shape == (4, 32, 32, 1)
