"""Fitting a :class:`~resprunet.noise_models.GaussianMixtureNoiseModel` to (signal, observation)
pairs: from calibration data (repeated images of a static sample, whose mean is the signal) or
bootstrapped from noisy data and a first denoised estimate (N2V, BM3D output).

Method: maximum likelihood. The variance polynomial starts at the least-squares fit of the
squared residuals ``(x - s)^2`` against ``t`` (the moment estimate, exact in expectation for one
component), the components' offsets spread around 0 and their weights equal; then Adam
maximises the mean log-likelihood on mini-batches drawn with a fixed seed, its learning rate
decaying (cosine) to 1 % over the steps. Offsets and variances are optimised in units of the
residuals' standard deviation, so the same learning rate suits any intensity scale. The fit
runs with TensorFlow (``tf.GradientTape``); the fitted model works on any Keras backend.

A bootstrapped model is only as good as the estimate: noise the estimate left in, or structure
it removed, ends up in the model (DivNoising's note).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from data_pipelines.errors import InvalidDataError, ShapeMismatchError

from .mixture import GaussianMixtureNoiseModel, mixture_log_likelihood

__all__ = ["calibration_pairs", "fit_bootstrap", "fit_calibration", "fit_mixture"]

_OFFSET_SPREAD = 0.25  # initial component offsets, in residual standard deviations
_MIN_STD_FRACTION = 0.01  # default variance floor: (1 % of the residuals' std)^2
_MOMENT_SAMPLE = 200_000  # pairs used for the initial least-squares variance fit


def _finite(name: str, array: np.ndarray) -> None:
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InvalidDataError(f"{name} has {bad} non-finite values (NaN or Inf) of {array.size}; "
                               "a noise model needs finite data")


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ShapeMismatchError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
                                 "they must be the same")


def _range(signal: np.ndarray, signal_range: tuple[float, float] | None) -> tuple[float, float]:
    """The (min_signal, max_signal) to fit on: given (checked to cover the signal) or the signal's."""
    bounds = (signal.min(), signal.max()) if signal_range is None else tuple(np.ravel(signal_range))
    if len(bounds) != 2:
        raise ValueError(f"signal_range must be (min_signal, max_signal), got {signal_range!r}")
    low, high = map(float, bounds)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        what = "the signal is constant" if signal_range is None else "signal_range must be finite (low, high)"
        raise ValueError(f"{what}: [min_signal, max_signal] = [{low:g}, {high:g}] needs low < high")
    outside = (signal < low) | (signal > high)
    if outside.any():
        values = signal[outside]
        raise ValueError(f"signal range [{low:g}, {high:g}] does not cover the data: {values.size} of "
                         f"{signal.size} signal values fall outside, from {values.min():g} to {values.max():g}")
    return low, high


def _check_options(n_components: int, degree: int, steps: int, batch_size: int, learning_rate: float) -> None:
    for name, value, minimum in (("n_components", n_components, 1), ("degree", degree, 0),
                                 ("steps", steps, 1), ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")


def _initial_variance(t: np.ndarray, residual: np.ndarray, degree: int, floor: float,
                      rng: np.random.Generator) -> np.ndarray:
    """Least-squares polynomial of ``residual**2`` in ``t`` (lowest degree first); a constant
    where that polynomial dips under ``10 * floor`` on [0, 1]."""
    if t.size > _MOMENT_SAMPLE:
        pick = rng.choice(t.size, _MOMENT_SAMPLE, replace=False)
        t, residual = t[pick], residual[pick]
    squared = residual.astype(np.float64) ** 2
    if np.unique(t).size > degree:
        coefficients = np.polynomial.polynomial.polyfit(t, squared, degree)
        if np.polynomial.polynomial.polyval(np.linspace(0.0, 1.0, 101), coefficients).min() > 10 * floor:
            return coefficients
    return np.concatenate([[squared.mean()], np.zeros(degree)])


def fit_mixture(signal: np.ndarray, observation: np.ndarray, *, n_components: int = 3, degree: int = 2,
                signal_range: tuple[float, float] | None = None, min_variance: float | None = None,
                steps: int = 1000, batch_size: int = 8192, learning_rate: float = 0.02,
                seed: int = 0) -> GaussianMixtureNoiseModel:
    """Fit a Gaussian-mixture noise model to (signal, observation) pairs by maximum likelihood.

    Parameters
    ----------
    signal, observation : np.ndarray
        Same shape (any); the clean signal and its noisy observation, same units.
    n_components : int
        K, the number of Gaussian components (PN2V/DivNoising use 3).
    degree : int
        Degree of the polynomials in the signal (0: constant; 1: e.g. Poisson-Gaussian variance).
    signal_range : (float, float), optional
        (min_signal, max_signal) the polynomials are normalised to; must cover every signal
        value. Default: the signal's minimum and maximum.
    min_variance : float, optional
        Floor of the components' variances, signal units squared. Default: (1 % of the
        standard deviation of ``observation - signal``)^2.
    steps : int
        Adam steps.
    batch_size : int
        Pairs per step (all of them when there are fewer).
    learning_rate : float
        Adam's initial learning rate (offsets and variances in units of the residuals' std).
    seed : int
        Seed of the mini-batch draws; the same data and seed give the same model.

    Returns
    -------
    GaussianMixtureNoiseModel

    Raises
    ------
    data_pipelines.ShapeMismatchError
        Signal and observation differ in shape.
    data_pipelines.InvalidDataError
        Non-finite values, no data, or no noise (observation equals signal).
    ValueError
        A signal range that does not cover the signal, or a bad option.
    """
    _check_options(n_components, degree, steps, batch_size, learning_rate)
    signal = np.asarray(signal, dtype=np.float32)
    observation = np.asarray(observation, dtype=np.float32)
    _same_shape("observation", observation, "signal", signal)
    if signal.size == 0:
        raise InvalidDataError("signal and observation are empty; a noise model needs data")
    _finite("signal", signal)
    _finite("observation", observation)
    low, high = _range(signal, signal_range)
    signal, observation = signal.ravel(), observation.ravel()
    scale = float(np.std(observation.astype(np.float64) - signal))
    if scale == 0.0:
        raise InvalidDataError("observation equals signal everywhere: there is no noise to model")
    if min_variance is None:
        min_variance = (_MIN_STD_FRACTION * scale) ** 2
    if not (np.isfinite(min_variance) and min_variance > 0):
        raise ValueError(f"min_variance must be a finite number > 0, got {min_variance!r}")
    rng = np.random.default_rng(seed)
    t = (signal - low) / (high - low)
    variance = _initial_variance(t, (observation - signal) / scale, degree, min_variance / scale**2, rng)
    offsets = np.zeros((n_components, degree + 1))
    offsets[:, 0] = np.linspace(-_OFFSET_SPREAD, _OFFSET_SPREAD, n_components) if n_components > 1 else 0.0
    normalised = _adam(signal, observation, [np.zeros((n_components, degree + 1)), offsets,
                                             np.tile(variance, (n_components, 1))],
                       scale, (low, high), min_variance, steps, batch_size, learning_rate, rng)
    return GaussianMixtureNoiseModel(normalised[0], normalised[1] * scale, normalised[2] * scale**2,
                                     low, high, min_variance)


def _adam(signal: np.ndarray, observation: np.ndarray, initial: list[np.ndarray], scale: float,
          signal_range: tuple[float, float], min_variance: float, steps: int, batch_size: int,
          learning_rate: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Adam on the normalised coefficients (weights, offsets / scale, variances / scale^2)."""
    variables = [keras.Variable(c.astype(np.float32), dtype="float32") for c in initial]
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.01)
    optimizer = keras.optimizers.Adam(schedule)
    units = tf.constant([1.0, scale, scale**2], tf.float32)

    @tf.function
    def step(s: tf.Tensor, x: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            coefficients = [v * units[i] for i, v in enumerate(variables)]
            loss = -tf.reduce_mean(mixture_log_likelihood(x, s, *coefficients, signal_range=signal_range,
                                                          min_variance=min_variance))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    batch_size = min(batch_size, signal.size)
    for _ in range(steps):
        pick = rng.integers(0, signal.size, batch_size) if batch_size < signal.size else slice(None)
        step(tf.constant(signal[pick]), tf.constant(observation[pick]))
    return [v.numpy().astype(np.float64) for v in variables]


def calibration_pairs(stacks: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(signal, observation) pairs of calibration data: each repeat against the mean of its stack.

    A repeat deviates from the mean of its ``n`` repeats by ``(n - 1) / n`` of the noise's
    variance (the mean shares its noise), so the observations returned are
    ``signal + sqrt(n / (n - 1)) * (repeat - signal)``: their deviation from the signal has the
    noise's variance (exact for the second moment; with 2 repeats, uncorrected pairs would halve
    it).

    Parameters
    ----------
    stacks : np.ndarray or sequence of np.ndarray
        One stack (n_repeats, ...) of repeated noisy images of a static sample, n_repeats >= 2,
        or several stacks of the same shape.

    Returns
    -------
    signal, observation : np.ndarray
        1-D float32, n_stacks * n_repeats * pixels each (observations rescaled as above).

    Raises
    ------
    ValueError
        No stack, fewer than 2 repeats, or stacks of different shapes.
    data_pipelines.InvalidDataError
        Non-finite values.
    """
    arrays = [np.asarray(stacks, dtype=np.float32)] if isinstance(stacks, np.ndarray) else \
        [np.asarray(s, dtype=np.float32) for s in stacks]
    if not arrays:
        raise ValueError("no calibration stack given; expected an array (n_repeats, ...) or a list of them")
    shapes = [a.shape for a in arrays]
    if len(set(shapes)) > 1:
        raise ValueError(f"calibration stacks differ in shape: {', '.join(map(str, shapes))}; "
                         "every stack must have the same shape (n_repeats, ...)")
    if arrays[0].ndim < 2 or arrays[0].shape[0] < 2:
        raise ValueError(f"calibration stack of shape {shapes[0]} has fewer than 2 repeats; expected "
                         "(n_repeats, ...) with n_repeats >= 2 repeated images of a static sample along axis 0")
    for i, a in enumerate(arrays):
        _finite(f"calibration stack {i}", a)
    n = arrays[0].shape[0]
    means = [np.broadcast_to(a.mean(axis=0, dtype=np.float64), a.shape) for a in arrays]
    observations = [m + np.sqrt(n / (n - 1)) * (a - m) for a, m in zip(arrays, means)]
    return (np.concatenate([m.ravel() for m in means]).astype(np.float32),
            np.concatenate([o.ravel() for o in observations]).astype(np.float32))


def fit_calibration(stacks: np.ndarray | Sequence[np.ndarray], **options) -> GaussianMixtureNoiseModel:
    """Fit from calibration data: every repeat is an observation of its stack's mean.

    Parameters
    ----------
    stacks : np.ndarray or sequence of np.ndarray
        See :func:`calibration_pairs`.
    **options
        Keyword options of :func:`fit_mixture`.

    Returns
    -------
    GaussianMixtureNoiseModel
    """
    return fit_mixture(*calibration_pairs(stacks), **options)


def fit_bootstrap(noisy: np.ndarray, estimate: np.ndarray, **options) -> GaussianMixtureNoiseModel:
    """Fit from noisy data and a first denoised estimate of it, used as the signal.

    Parameters
    ----------
    noisy : np.ndarray
        Noisy images, any shape.
    estimate : np.ndarray
        Denoised estimate of ``noisy`` (N2V, BM3D, ...), same shape and units.
    **options
        Keyword options of :func:`fit_mixture`.

    Returns
    -------
    GaussianMixtureNoiseModel
    """
    noisy, estimate = np.asarray(noisy), np.asarray(estimate)
    _same_shape("noisy", noisy, "estimate", estimate)
    return fit_mixture(estimate, noisy, **options)
