"""Noise models (resprunet.noise_models): closed forms, the PN2V/DivNoising Gaussian mixture
fitted from calibration stacks and by bootstrap, densities, save/load, plot, bad input, and the
keras.ops likelihood on tensors inside a tf.function. Small data: the file runs in seconds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from scipy.integrate import trapezoid
from scipy.ndimage import gaussian_filter
from scipy.stats import norm, poisson

from data_pipelines.errors import InvalidDataError, OutputExistsError, ShapeMismatchError
from resprunet.noise_models import (
    GaussianMixtureNoiseModel,
    GaussianNoiseModel,
    NoiseModel,
    PoissonGaussianNoiseModel,
    calibration_pairs,
    fit_bootstrap,
    fit_calibration,
    fit_mixture,
    plot_noise_model,
)

FIT = {"steps": 300, "batch_size": 4096}
TRUE_PG = PoissonGaussianNoiseModel(photons=50.0, sigma=0.03)  # variance s / 50 + 9e-4; read noise 1.5 counts


def _clean() -> np.ndarray:
    """A smooth 48 x 48 image spanning [0.05, 0.95]."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    return (0.5 + 0.45 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)).astype(np.float32)


def _repeats(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([TRUE_PG.sample(_clean(), rng) for _ in range(n)])


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    """(observation, true signal) pairs from fresh repeats, never used in a fit."""
    noisy = _repeats(4, seed=99)
    return noisy, np.broadcast_to(_clean(), noisy.shape)


@pytest.fixture(scope="module")
def calibrated() -> GaussianMixtureNoiseModel:
    return fit_calibration(_repeats(16, seed=0), n_components=3, degree=2, **FIT)


def _mean_ll(model: NoiseModel, pairs: tuple[np.ndarray, np.ndarray]) -> float:
    return float(np.mean(model.log_likelihood(*pairs)))


def _exact_poisson_gaussian_ll(pairs: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean exact log-density of TRUE_PG's observations: a Poisson sum of Gaussians in counts."""
    observation, signal = (np.asarray(a, np.float64).ravel()[:, None] for a in pairs)
    photons, sigma = TRUE_PG.photons, TRUE_PG.sigma
    counts = np.arange(0, int(photons * signal.max() + 12 * np.sqrt(photons) + 12))[None, :]
    density = np.sum(poisson.pmf(counts, photons * np.maximum(signal, 0))
                     * norm.pdf(photons * observation, counts, photons * sigma), axis=1) * photons
    return float(np.mean(np.log(density)))


def _pooled_gaussian(signal: np.ndarray, observation: np.ndarray) -> GaussianNoiseModel:
    return GaussianNoiseModel(float(np.std(observation - signal)))


def _linear_variance_pairs(n: int, seed: int, a: float = 4e-4, b: float = 4e-3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0.1, 0.9, n).astype(np.float32)
    return signal, (signal + np.sqrt(a + b * signal) * rng.standard_normal(n)).astype(np.float32)


# closed forms ----------------------------------------------------------------------------
def test_gaussian_log_likelihood_is_the_closed_form():
    rng = np.random.default_rng(0)
    signal = rng.uniform(0, 1, (7, 9))
    observation = signal + 0.07 * rng.standard_normal((7, 9))
    ll = GaussianNoiseModel(0.07).log_likelihood(observation, signal)
    assert isinstance(ll, np.ndarray) and ll.shape == (7, 9)
    np.testing.assert_allclose(ll, norm.logpdf(observation, signal, 0.07), rtol=0, atol=1e-5)


def test_poisson_gaussian_log_likelihood_is_its_gaussian_approximation():
    signal = np.array([-0.1, 0.0, 0.3, 1.0])
    observation = np.array([0.02, -0.01, 0.25, 1.1])
    expected = norm.logpdf(observation, signal, np.sqrt(np.maximum(signal, 0) / 50.0 + 0.03**2))
    np.testing.assert_allclose(TRUE_PG.log_likelihood(observation, signal), expected, rtol=0, atol=1e-5)


# the mixture: recovery -------------------------------------------------------------------
def test_one_component_recovers_a_linear_variance_and_its_likelihood():
    a, b = 4e-4, 4e-3
    model = fit_mixture(*_linear_variance_pairs(20_000, seed=0), n_components=1, degree=1, **FIT)
    ends = model.variance(np.array([0.1, 0.9]))
    fitted_b = (ends[1] - ends[0]) / 0.8
    fitted_a = ends[0] - 0.1 * fitted_b
    assert fitted_a == pytest.approx(a, rel=0.1) and fitted_b == pytest.approx(b, rel=0.05)

    signal, observation = _linear_variance_pairs(20_000, seed=1)
    truth = float(np.mean(norm.logpdf(observation, signal, np.sqrt(a + b * signal))))
    fitted = _mean_ll(model, (observation, signal))
    constant = _mean_ll(_pooled_gaussian(signal, observation), (observation, signal))
    assert abs(fitted - truth) < 0.002
    assert fitted > constant + 0.03  # truth - constant is about 0.045 here


def test_mixture_learns_bimodal_noise_that_one_gaussian_cannot():
    """The moment start is a Gaussian; only the likelihood ascent finds the two modes."""
    def pairs(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        signal = rng.uniform(0, 1, 20_000).astype(np.float32)
        first = rng.random(signal.size) < 0.7
        noise = np.where(first, -0.03 + 0.01 * rng.standard_normal(signal.size),
                         0.07 + 0.02 * rng.standard_normal(signal.size))
        return signal, (signal + noise).astype(np.float32)

    model = fit_mixture(*pairs(0), n_components=2, degree=1, **FIT)
    signal, observation = pairs(1)
    truth = float(np.mean(np.log(0.7 * norm.pdf(observation, signal - 0.03, 0.01)
                                 + 0.3 * norm.pdf(observation, signal + 0.07, 0.02))))
    fitted = _mean_ll(model, (observation, signal))
    assert abs(fitted - truth) < 0.01
    assert fitted > _mean_ll(_pooled_gaussian(signal, observation), (observation, signal)) + 0.5


def test_calibration_fit_is_close_to_the_true_poisson_gaussian(calibrated, held_out):
    signal, observation = calibration_pairs(_repeats(16, seed=0))
    exact = _exact_poisson_gaussian_ll(held_out)
    fitted = _mean_ll(calibrated, held_out)
    pooled = _mean_ll(_pooled_gaussian(signal, observation), held_out)
    assert abs(fitted - exact) < 0.003  # the Gaussian approximation is 0.004 below exact here
    assert fitted > pooled + 0.03  # exact - pooled is about 0.055 here
    levels = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(calibrated.variance(levels), TRUE_PG.variance(levels), rtol=0.05)


def test_two_repeats_give_the_noise_variance_not_half_of_it():
    model = fit_calibration([_repeats(2, seed=s) for s in range(8)], n_components=1, degree=1, **FIT)
    levels = np.array([0.1, 0.5, 0.9])
    # uncorrected pairs (repeat against the mean of 2) would give half; the noisy mean also
    # blurs the signal axis, hence the looser tolerance than with 16 repeats
    np.testing.assert_allclose(model.variance(levels), TRUE_PG.variance(levels), rtol=0.15)


def test_bootstrap_fit_from_noisy_data_and_an_estimate(held_out):
    noisy = _repeats(4, seed=1)
    estimate = np.broadcast_to(gaussian_filter(_repeats(8, seed=2).mean(axis=0), 0.7), noisy.shape)
    model = fit_bootstrap(noisy, estimate, **FIT)  # a denoiser's output, its noise independent of noisy's
    fitted = _mean_ll(model, held_out)
    assert abs(fitted - _exact_poisson_gaussian_ll(held_out)) < 0.003
    assert fitted > _mean_ll(_pooled_gaussian(estimate, noisy), held_out) + 0.03


def test_the_fit_is_reproducible_with_its_seed():
    pairs = _linear_variance_pairs(5_000, seed=3)
    first, second = (fit_mixture(*pairs, n_components=2, degree=1, steps=30, seed=7) for _ in range(2))
    assert first.to_dict() == second.to_dict()


# densities -------------------------------------------------------------------------------
def _hand_made_mixture() -> GaussianMixtureNoiseModel:
    """Three components whose weights, offsets and variances all change with the signal."""
    return GaussianMixtureNoiseModel(
        weight_coefficients=[[0.0, 1.0, -1.0], [0.5, -2.0, 0.0], [-0.5, 0.0, 1.5]],
        offset_coefficients=[[-0.02, 0.01, 0.0], [0.0, 0.0, 0.0], [0.05, -0.03, 0.01]],
        variance_coefficients=[[1e-4, 4e-4, 0.0], [4e-4, 0.0, 1e-3], [2e-4, 1e-3, 0.0]],
        min_signal=0.0, max_signal=1.0, min_variance=1e-6)


@pytest.mark.parametrize("model", [GaussianNoiseModel(0.05), TRUE_PG, _hand_made_mixture()],
                         ids=["gaussian", "poisson_gaussian", "mixture"])
@pytest.mark.parametrize("signal", [-0.2, 0.05, 0.5, 0.97, 1.3])
def test_density_integrates_to_one_with_mean_signal_and_stated_variance(model, signal):
    x = np.linspace(signal - 1.5, signal + 1.5, 60_001)
    density = np.exp(model.log_likelihood(x, np.full_like(x, signal)).astype(np.float64))
    assert trapezoid(density, x) == pytest.approx(1.0, abs=1e-4)
    assert trapezoid(x * density, x) == pytest.approx(signal, abs=1e-5)
    assert trapezoid((x - signal) ** 2 * density, x) == pytest.approx(float(model.variance(signal)), rel=1e-3)


def test_mixture_samples_follow_its_variance():
    model = _hand_made_mixture()
    signal = np.full(200_000, 0.6, np.float32)
    samples = model.sample(signal, np.random.default_rng(0))
    assert samples.dtype == np.float32 and samples.shape == signal.shape
    assert samples.mean() == pytest.approx(0.6, abs=2e-4)
    assert samples.var() == pytest.approx(float(model.variance(0.6)), rel=0.02)


# tensors, save/load, plot ----------------------------------------------------------------
@pytest.mark.parametrize("model", [GaussianNoiseModel(0.05), TRUE_PG, _hand_made_mixture()],
                         ids=["gaussian", "poisson_gaussian", "mixture"])
def test_log_likelihood_on_tensors_inside_tf_function(model):
    rng = np.random.default_rng(0)
    signal = rng.uniform(0, 1, (2, 16, 16, 1)).astype(np.float32)
    observation = (signal + 0.05 * rng.standard_normal(signal.shape)).astype(np.float32)

    @tf.function
    def loss_and_gradient(x: tf.Tensor, s: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(s)
            ll = model.log_likelihood(x, s)
            loss = -tf.reduce_mean(ll)
        return ll, tape.gradient(loss, s)

    ll, gradient = loss_and_gradient(tf.constant(observation), tf.constant(signal))
    assert ll.shape == (2, 16, 16, 1) and ll.dtype == tf.float32
    np.testing.assert_allclose(ll.numpy(), model.log_likelihood(observation, signal), rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(gradient.numpy())) and np.abs(gradient.numpy()).max() > 0


@pytest.mark.parametrize("model", [GaussianNoiseModel(0.05), TRUE_PG, _hand_made_mixture()],
                         ids=["gaussian", "poisson_gaussian", "mixture"])
def test_save_load_round_trip(model, tmp_path, held_out):
    path = model.save(tmp_path / "noise_model.json")
    json.loads(path.read_text())  # plain JSON
    loaded = NoiseModel.load(path)
    assert type(loaded) is type(model) and loaded.to_dict() == model.to_dict()
    np.testing.assert_array_equal(loaded.log_likelihood(*held_out), model.log_likelihood(*held_out))
    with pytest.raises(OutputExistsError, match="exists"):
        model.save(path)


def test_fitted_model_round_trips_and_plots(calibrated, held_out, tmp_path):
    loaded = NoiseModel.load(calibrated.save(tmp_path / "noise_model.json"))
    np.testing.assert_array_equal(loaded.log_likelihood(*held_out), calibrated.log_likelihood(*held_out))
    png = tmp_path / "noise_model.png"
    fig = plot_noise_model(calibrated, [0.1, 0.5, 0.9], png, pairs=calibration_pairs(_repeats(16, seed=0)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(fig.axes) == 3  # image, colour bar, slices
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


# bad input -------------------------------------------------------------------------------
def _one_line_error(error: type[Exception], match: str, call, *args, **kwargs) -> str:
    with pytest.raises(error, match=match) as info:
        call(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_calibration_stacks_are_clear_errors():
    stack = _repeats(3, seed=0)
    message = _one_line_error(ValueError, "differ in shape", fit_calibration, [stack, stack[:, :40]])
    assert "(3, 48, 48)" in message and "(3, 40, 48)" in message
    _one_line_error(ValueError, "fewer than 2 repeats", fit_calibration, stack[:1])
    _one_line_error(ValueError, "fewer than 2 repeats", fit_calibration, _clean()[0])
    broken = stack.copy()
    broken[1, 2, 3] = np.nan
    _one_line_error(InvalidDataError, "calibration stack 1 has 1 non-finite", fit_calibration, [stack, broken])


def test_bad_pairs_are_clear_errors():
    signal, observation = _linear_variance_pairs(1000, seed=0)
    message = _one_line_error(ValueError, r"signal range \[0, 0.5\] does not cover", fit_mixture,
                              signal, observation, signal_range=(0.0, 0.5))
    outside = signal[signal > 0.5]
    assert f"{outside.size} of 1000" in message and f"to {outside.max():g}" in message
    bad = observation.copy()
    bad[:2] = np.inf
    _one_line_error(InvalidDataError, "observation has 2 non-finite", fit_mixture, signal, bad)
    _one_line_error(InvalidDataError, "signal has 2 non-finite", fit_bootstrap, observation, bad)
    _one_line_error(ShapeMismatchError, r"noisy has shape \(1000,\) but estimate has shape \(999,\)",
                    fit_bootstrap, observation, signal[:999])
    _one_line_error(InvalidDataError, "no noise", fit_mixture, signal, signal)
    _one_line_error(ValueError, "n_components must be an integer >= 1", fit_mixture, signal, observation,
                    n_components=0)


def test_bad_files_and_parameters_are_clear_errors(tmp_path):
    (tmp_path / "other.json").write_text('{"a": 1}')
    _one_line_error(ValueError, "not a noise model file", NoiseModel.load, tmp_path / "other.json")
    _one_line_error(ValueError, "unknown noise model kind 'laplace'", NoiseModel.from_dict, {"kind": "laplace"})
    _one_line_error(ValueError, "sigma must be a finite number > 0", GaussianNoiseModel, 0.0)
    _one_line_error(ValueError, "has 2 components", GaussianMixtureNoiseModel, np.zeros((3, 2)), np.zeros((2, 2)),
                    np.ones((3, 2)), 0.0, 1.0, 1e-6)
