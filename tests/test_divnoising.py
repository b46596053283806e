"""DivNoising: loss terms against closed forms, posterior statistics of a known posterior, the
per-pixel mode, the saved model (safe mode, same samples for the same eps), config errors, and a
short run through ``train()`` whose folder serves ``resprunet denoise --samples`` (small shapes)."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import layers

import data_pipelines as dp
from resprunet import cli, divnoising as dn, models, zoo
from resprunet.assess import Method
from resprunet.noise_models import GaussianNoiseModel
from resprunet.training import load_config, train
from resprunet.training.config import ConfigError

A, B, M0, VAR = 2.0, 0.25, 0.1, 0.09  # decoder signal = A * z + B; latent mu = pooled input + M0, variance VAR


def _linear_posterior_model() -> keras.Model:
    """A DivNoising-shaped model (the builder's layer names) with a known posterior:
    mu = 2x2 mean of noisy + M0, logvar = log VAR, signal = A * upsample(z) + B, so the MMSE is
    A * (pooled noisy + M0) + B and the posterior variance A^2 * VAR at every pixel."""
    noisy = keras.Input((None, None, 1), name="noisy")
    eps = keras.Input((None, None, 1), name="eps")
    pooled = layers.AveragePooling2D(2)(noisy)
    mu = layers.Conv2D(1, 1, name="mu", kernel_initializer="ones",
                       bias_initializer=keras.initializers.Constant(M0))(pooled)
    logvar = layers.Conv2D(1, 1, name="logvar", kernel_initializer="zeros",
                           bias_initializer=keras.initializers.Constant(math.log(VAR)))(pooled)
    eps_latent = layers.Rescaling(2.0)(layers.AveragePooling2D(2)(eps))  # mean of 4 N(0,1) x 2: N(0,1)
    std = layers.Activation("exponential")(layers.Rescaling(0.5)(logvar))
    z = layers.Add(name="z")([mu, layers.Multiply()([std, eps_latent])])
    signal = layers.Conv2D(1, 1, name="signal", kernel_initializer=keras.initializers.Constant(A),
                           bias_initializer=keras.initializers.Constant(B))(layers.UpSampling2D(2)(z))
    return keras.Model({"noisy": noisy, "eps": eps}, signal, name="divnoising")


def _expected_mmse(image: np.ndarray) -> np.ndarray:
    pooled = image.reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).mean(axis=(1, 3))
    return A * (np.repeat(np.repeat(pooled, 2, 0), 2, 1) + M0) + B


def _noisy_images(n: int = 48, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    clean = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (y * rng.uniform(0.5, 2) + x * rng.uniform(0.5, 2)))
                      for _ in range(n)])
    return (clean + 0.1 * rng.standard_normal(clean.shape))[..., None].astype(np.float32)


def test_kl_term_matches_the_closed_form():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(2, 4, 4, 3)), rng.normal(size=(2, 4, 4, 3))
    s2 = np.exp(logvar)
    expected = np.log(1 / np.sqrt(s2)) + (s2 + mu**2) / 2 - 0.5  # KL(N(mu, s2) || N(0, 1))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dn.kl_divergence(mu, logvar)), expected, rtol=1e-5)
    noisy = np.zeros((2, 16, 16, 1), np.float32)  # N = 512 image values
    _, kl = dn.elbo_terms(noisy, noisy, mu, logvar, GaussianNoiseModel(0.1))
    assert float(kl) == pytest.approx(expected.sum() / noisy.size, rel=1e-5)
    _, zero = dn.elbo_terms(noisy, noisy, np.zeros_like(mu), np.zeros_like(logvar), GaussianNoiseModel(0.1))
    assert float(zero) == 0.0  # q = prior


def test_reconstruction_term_is_the_gaussian_negative_log_likelihood():
    rng = np.random.default_rng(1)
    noisy, signal = rng.random((2, 8, 8, 1), np.float32), rng.random((2, 8, 8, 1), np.float32)
    sigma = 0.07
    reconstruction, _ = dn.elbo_terms(noisy, signal, np.zeros((2, 2, 2, 1)), np.zeros((2, 2, 2, 1)),
                                      GaussianNoiseModel(sigma))
    expected = 0.5 * np.log(2 * np.pi * sigma**2) + np.mean((noisy - signal) ** 2) / (2 * sigma**2)
    assert float(reconstruction) == pytest.approx(expected, rel=1e-5)


def test_train_step_lowers_the_loss_and_the_trained_model_denoises():
    keras.utils.set_random_seed(0)
    images = _noisy_images()
    trainer = dn.DivNoisingTrainer(dn.build_divnoising(2, filters=8, depth=2, latent_channels=4),
                                   GaussianNoiseModel(0.1))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = [w.copy() for w in trainer.vae.get_weights()]
    history = trainer.fit(images, batch_size=8, epochs=6, verbose=0).history
    assert set(history) >= {"loss", "reconstruction", "kl"}
    assert history["loss"][-1] < 0.5 * history["loss"][0], history
    assert any(not np.allclose(a, b) for a, b in zip(before, trainer.vae.get_weights()))
    mmse = trainer.predict(images[:4], verbose=0)
    assert mmse.shape == images[:4].shape


def test_mmse_and_variance_of_a_known_posterior():
    model = _linear_posterior_model()
    image = np.random.default_rng(2).random((16, 24)).astype(np.float32)
    mmse, variance = dn.posterior_moments(model, image, 2000, seed=0)
    expected = _expected_mmse(image)
    assert np.abs(mmse - image).mean() > 0.3  # not the identity
    # Monte-Carlo mean of 2000 samples of std A * sqrt(VAR) = 0.6: error ~0.013 per pixel
    np.testing.assert_allclose(mmse, expected, atol=0.06)
    assert np.abs(mmse - expected).mean() < 0.02
    assert variance.mean() == pytest.approx(A**2 * VAR, rel=0.03)  # 0.36
    np.testing.assert_allclose(variance, A**2 * VAR, rtol=0.2)
    samples = dn.sample_posterior(model, image, 50, seed=0)
    assert samples.shape == (50, 16, 24)
    np.testing.assert_allclose(samples.mean(0), dn.posterior_moments(model, image, 50, seed=0)[0], atol=1e-5)


def test_tiled_mmse_and_variance_in_source_units():
    """Through denoise_array's tiles and normalisation: MMSE and variance in source units
    (a fixed window [0, 2]: x = 2 y, variance x 4), with whole slices or overlapping tiles."""
    model = _linear_posterior_model()
    source = 2 * np.random.default_rng(3).random((2, 32, 40)).astype(np.float32)
    norm = dp.Normalizer.fixed(0.0, 2.0)
    for tile in (None, (24, 24)):
        mmse, variance = dn.denoise_divnoising(model, source, norm, samples=400, variance=True, tile_shape=tile,
                                               progress=False)
        expected = np.clip(2 * np.stack([_expected_mmse(s / 2) for s in source]), source.min(), source.max())
        assert np.abs(mmse - expected).mean() < 0.05, tile
        assert variance.shape == source.shape and variance.mean() == pytest.approx(4 * A**2 * VAR, rel=0.08)
    mmse_only, none = dn.denoise_divnoising(model, source, norm, samples=4, progress=False)
    assert none is None and mmse_only.shape == source.shape
    method = Method.from_model(model, samples=400)  # assess: normalised units, default (planned) tiles
    assert np.abs(method(source[0] / 2) - _expected_mmse(source[0] / 2)).mean() < 0.03
    with pytest.raises(ValueError, match="only DivNoising models"):
        Method.from_model(models.build("unet", 2, filters=4, depth=1), samples=4)


def test_map_estimate_finds_the_mode():
    rng = np.random.default_rng(4)
    n = 4000
    bimodal = np.where(rng.random((n, 3)) < [0.7, 0.3, 0.5], 0.0, 1.0) + 0.05 * rng.standard_normal((n, 3))
    unimodal = 0.5 + 0.1 * rng.standard_normal((n, 1))
    skewed = rng.gamma(2.0, 0.1, (n, 1))  # mode 0.1, mean 0.2
    samples = np.concatenate([bimodal, unimodal, skewed], axis=1).reshape(n, 1, 5)
    mode = dn.map_estimate(samples)[0]
    assert mode[0] == pytest.approx(0.0, abs=0.03) and mode[1] == pytest.approx(1.0, abs=0.03)
    assert min(abs(mode[2]), abs(mode[2] - 1)) < 0.03  # either mode of an even mixture, not 0.5
    assert mode[3] == pytest.approx(0.5, abs=0.02)
    assert mode[4] == pytest.approx(0.1, abs=0.03) and samples[:, 0, 4].mean() > 0.18
    np.testing.assert_array_equal(dn.map_estimate(np.full((5, 2, 2), 0.3)), np.full((2, 2), 0.3, np.float32))


@pytest.mark.parametrize(("ndim", "shape"), [(2, (16, 20)), (3, (8, 8, 12))])
def test_saved_model_loads_in_safe_mode_and_reproduces_samples(tmp_path, ndim, shape):
    vae = dn.build_divnoising(ndim, filters=4, depth=2, latent_channels=3)
    model = dn.inference_model(vae)
    path = dn.save_divnoising(model, GaussianNoiseModel(0.05), tmp_path / "run" / "model.keras")
    assert (tmp_path / "run" / "noise_model.json").is_file()
    loaded = keras.saving.load_model(path, safe_mode=True)  # no custom objects
    assert models.describe(loaded).divisor == 4 and models.describe(loaded).ndim == ndim
    rng = np.random.default_rng(5)
    x = {"noisy": rng.random((2, *shape, 1), np.float32), "eps": rng.standard_normal((2, *shape, 3), np.float32)}
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    other = {**x, "eps": rng.standard_normal((2, *shape, 3), np.float32)}
    assert np.abs(loaded.predict(other, verbose=0) - loaded.predict(x, verbose=0)).max() > 1e-6  # eps matters
    again, noise_model = dn.load_divnoising(tmp_path / "run")
    assert noise_model == GaussianNoiseModel(0.05) and dn.is_divnoising(again)
    np.testing.assert_array_equal(dn.sample_posterior(loaded, x["noisy"][0], 3, seed=1),
                                  dn.sample_posterior(model, x["noisy"][0], 3, seed=1))


def test_noise_model_from_a_file_a_dict_an_estimate_or_a_bootstrap(tmp_path):
    from resprunet.noise_models import GaussianMixtureNoiseModel, PoissonGaussianNoiseModel

    patches = _noisy_images(16, 32, seed=6)  # 0.5 + 0.3 sin(...) + N(0, 0.1^2)
    GaussianNoiseModel(0.03).save(tmp_path / "nm.json")
    assert dn.resolve_noise_model(str(tmp_path / "nm.json"), patches) == GaussianNoiseModel(0.03)
    spec = {"kind": "poisson_gaussian", "photons": 50.0, "sigma": 0.02}
    assert dn.resolve_noise_model(spec, patches) == PoissonGaussianNoiseModel(50.0, 0.02)
    estimated = dn.resolve_noise_model({"kind": "gaussian", "sigma": "estimate"}, patches)
    assert estimated.sigma == pytest.approx(0.1, rel=0.15)
    mixture = dn.resolve_noise_model({"kind": "bootstrap", "n_components": 2, "degree": 0, "steps": 100}, patches)
    assert isinstance(mixture, GaussianMixtureNoiseModel)
    # TV at its MSE-best weight leaves part of the noise in the estimate, so the bootstrapped
    # noise is too weak (measured 0.056 for a true 0.1): the model is only as good as its estimate
    assert 0.04 < float(np.sqrt(mixture.variance(0.5))) < 0.1
    for bad in ({"kind": "gaussian"}, {"kind": "bootstrap", "colour": 1}, 3):
        with pytest.raises(ValueError):
            dn.check_noise_spec(bad)


def test_bad_sample_counts_and_configs_are_clear_errors():
    model = _linear_posterior_model()
    for bad in (0, -3):
        with pytest.raises(ValueError, match="samples >= 1"):
            dn.sample_posterior(model, np.zeros((8, 8), np.float32), bad)
        with pytest.raises(ValueError, match="samples >= 1"):
            dn.PosteriorMean(model, bad)
    base = ["method=divnoising", "model.name=divnoising", "model.ndim=2", "data.patch_shape=[32, 32]",
            "data.val_patch_shape=[32, 32]", "data.test=[]", "data.simulate_noise={kind: gaussian, sigma: 0.1}"]
    config = load_config(None, [*base, "divnoising.noise_model={kind: gaussian, sigma: 0.1}"])
    assert config.divnoising.samples == 100
    with pytest.raises(ConfigError, match="needs a noise model"):
        load_config(None, base)
    with pytest.raises(ConfigError, match="samples >= 1"):
        load_config(None, [*base, "divnoising.noise_model={kind: gaussian, sigma: 0.1}", "divnoising.samples=0"])
    with pytest.raises(ConfigError, match="no such noise model file"):
        load_config(None, [*base, "divnoising.noise_model=missing/noise_model.json"])
    with pytest.raises(ConfigError, match="multiple of 2"):
        load_config(None, [*base, "divnoising.noise_model={kind: gaussian, sigma: 0.1}", "data.patch_shape=[30, 32]"])
    with pytest.raises(ConfigError, match="go together"):
        load_config(None, ["method=divnoising", "data.test=[]"])


def test_run_resumes_and_its_folder_serves_denoise_with_samples(tmp_path, capsys):
    images = _noisy_images(12, 32)[..., 0]
    np.save(tmp_path / "train.npy", images[:8])
    np.save(tmp_path / "val.npy", images[8:])
    overrides = ["method=divnoising", "model.name=divnoising", "model.ndim=2", "model.filters=8", "model.depth=2",
                 "model.latent_channels=4", f"data.train=[{tmp_path / 'train.npy'}]",
                 f"data.val=[{tmp_path / 'val.npy'}]", "data.test=[]", "data.patch_shape=[32, 32]",
                 "data.batch_size=4", "data.patches_per_epoch=16", "data.val_patches=4", "data.foreground=0.0",
                 "divnoising.noise_model={kind: gaussian, sigma: estimate}", "epochs=2", f"run.root={tmp_path}",
                 "callbacks.image_panel=true"]
    config = load_config(None, overrides)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        train(config, verbose=0, callbacks=[Stop()])
    (run_dir,) = (tmp_path / config.run.name).iterdir()
    assert (run_dir / "noise_model.json").is_file() and (run_dir / "backup").is_dir()
    result = train(config, run_dir=run_dir, verbose=0)  # resumes at epoch 2
    assert len(result.history["loss"]) == 2 and {"reconstruction", "kl", "val_loss"} <= set(result.history)
    sigma = dn.load_divnoising(run_dir)[1].sigma
    assert 0.05 < sigma < 0.2  # estimated from the noisy patches (0.1 before normalisation)
    assert (run_dir / "checkpoints" / "best.keras").is_file() and list((run_dir / "tb").iterdir())
    noisy = images[8:10]
    np.save(tmp_path / "noisy.npy", noisy)
    out, var = tmp_path / "mmse.npy", tmp_path / "var.npy"
    assert cli.main(["-q", "denoise", str(tmp_path / "noisy.npy"), str(out), "--model", str(run_dir),
                     "--samples", "4", "--variance", str(var)]) == 0
    mmse, variance = np.load(out), np.load(var)
    assert mmse.shape == variance.shape == noisy.shape
    assert np.abs(mmse - noisy).mean() > 1e-3 and variance.min() >= 0 and variance.max() > 0
    model, card = zoo.load_path(run_dir)
    expected, _ = dn.denoise_divnoising(model, noisy, zoo.normalizer(card), samples=4, progress=False)
    np.testing.assert_allclose(mmse, expected, atol=1e-5)  # the CLI is the library
    capsys.readouterr()
    assert cli.main(["-q", "denoise", str(tmp_path / "noisy.npy"), str(tmp_path / "z.npy"), "--model",
                     str(run_dir), "--samples", "0"]) == 2
    assert "--samples 0" in capsys.readouterr().err


def test_samples_on_a_deterministic_model_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "unet"
    folder.mkdir()
    models.build("unet", 2, filters=4, depth=1).save(folder / "model.keras")
    (folder / "card.yaml").write_text("name: tiny\nnormalization: {kind: percentile, params: [1.0, 99.8]}\n")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((1, 16, 16)).astype(np.float32))
    code = cli.main(["-q", "denoise", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--model", str(folder),
                     "--samples", "4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "for DivNoising models" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()
