"""Signal-dependent Gaussian-mixture noise model (PN2V / DivNoising).

After Prakash et al., "Fully unsupervised probabilistic Noise2Void" (ISBI 2020) and
"DivNoising" (ICLR 2021): ``p(x | s) = sum_k w_k(s) N(x; mu_k(s), var_k(s))`` with K
components whose weights, means and variances are polynomials of the clean signal ``s``.

Parameterisation (the coefficients this module stores):

- ``t = clip((s - min_signal) / (max_signal - min_signal), 0, 1)``: the signal normalised to
  the fitted range; outside it every parameter keeps its value at the nearest end (only the
  means still follow ``s``), so a decoder output beyond the range never meets an extrapolated
  polynomial.
- weights: ``w(s) = softmax_k(P^w_k(t))``;
- means: ``mu_k(s) = s + o_k(t) - sum_j w_j(s) o_j(t)`` with offsets ``o_k = P^o_k(t)``, so the
  mixture's mean is exactly the signal (the noise is unbiased, as in PN2V);
- variances: ``var_k(s) = max(P^v_k(t), min_variance)``, a polynomial in the signal's units
  squared (so ``sigma^2 = a + b s``, Poisson-Gaussian, is exactly degree 1), floored.

``P_k(t) = sum_d c[k, d] t**d``. Offsets are in the signal's units, variances in its units
squared. Fitting: :mod:`resprunet.noise_models.fit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from keras import ops

from .base import NoiseModel, gaussian_log_density

__all__ = ["GaussianMixtureNoiseModel", "mixture_components", "mixture_log_likelihood"]


def _polynomial(coefficients: Any, t: Any) -> Any:
    """``sum_d coefficients[:, d] * t**d`` by Horner's rule: t (..., 1), coefficients (K, D+1) -> (..., K)."""
    degree = int(coefficients.shape[1]) - 1
    value = ops.zeros_like(t) + coefficients[:, degree]
    for d in range(degree - 1, -1, -1):
        value = value * t + coefficients[:, d]
    return value


def mixture_components(signal: Any, weight_coefficients: Any, offset_coefficients: Any,
                       variance_coefficients: Any, signal_range: tuple[float, float],
                       min_variance: float) -> tuple[Any, Any, Any]:
    """Per-pixel mixture parameters, with :mod:`keras.ops` (coefficients may be variables).

    Parameters
    ----------
    signal : tensor
        float32, any shape S, in the signal's units.
    weight_coefficients, offset_coefficients, variance_coefficients : tensor
        (K, D+1) each (D may differ between them); see the module docstring.
    signal_range : (float, float)
        (min_signal, max_signal) of the normalisation.
    min_variance : float
        Variance floor, signal units squared.

    Returns
    -------
    log_weights, offsets, variances : tensor
        Shape S + (K,): log w_k, mu_k - s (centred so the mixture mean is s), var_k.
    """
    low, high = signal_range
    t = ops.clip((signal - low) / (high - low), 0.0, 1.0)[..., None]
    log_weights = ops.log_softmax(_polynomial(weight_coefficients, t), axis=-1)
    offsets = _polynomial(offset_coefficients, t)
    offsets = offsets - ops.sum(ops.exp(log_weights) * offsets, axis=-1, keepdims=True)
    variances = ops.maximum(_polynomial(variance_coefficients, t), min_variance)
    return log_weights, offsets, variances


def mixture_log_likelihood(observation: Any, signal: Any, *coefficients: Any,
                           signal_range: tuple[float, float], min_variance: float) -> Any:
    """Per-pixel log p(observation | signal) of the mixture, with :mod:`keras.ops`.

    ``coefficients`` are the weight, offset and variance coefficients of
    :func:`mixture_components`; observation and signal broadcast; returns their broadcast shape.
    """
    log_weights, offsets, variances = mixture_components(signal, *coefficients, signal_range, min_variance)
    log_densities = gaussian_log_density(observation[..., None], signal[..., None] + offsets, variances)
    return ops.logsumexp(log_weights + log_densities, axis=-1)


def _coefficients(name: str, value: Any, n_components: int | None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1 or array.shape[0] < 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite (n_components, degree + 1) array, got shape {array.shape}")
    if n_components is not None and array.shape[0] != n_components:
        raise ValueError(f"{name} has {array.shape[0]} components (rows); the weights have {n_components}")
    return array


@dataclass(frozen=True, eq=False)
class GaussianMixtureNoiseModel(NoiseModel):
    """Signal-dependent Gaussian mixture ``p(x | s)`` (PN2V / DivNoising); see the module docstring.

    Parameters
    ----------
    weight_coefficients : array-like, (K, D_w + 1)
        Polynomial coefficients (in ``t``, lowest degree first) of the mixture logits.
    offset_coefficients : array-like, (K, D_o + 1)
        Of the mean offsets, signal units.
    variance_coefficients : array-like, (K, D_v + 1)
        Of the variances, signal units squared.
    min_signal, max_signal : float
        Signal range the polynomials were fitted on (``t`` = 0 and 1).
    min_variance : float
        Floor of every component's variance, signal units squared, > 0.
    """

    weight_coefficients: np.ndarray
    offset_coefficients: np.ndarray
    variance_coefficients: np.ndarray
    min_signal: float
    max_signal: float
    min_variance: float
    kind: ClassVar[str] = "gaussian_mixture"

    def __post_init__(self) -> None:
        weights = _coefficients("weight_coefficients", self.weight_coefficients, None)
        object.__setattr__(self, "weight_coefficients", weights)
        for name in ("offset_coefficients", "variance_coefficients"):
            object.__setattr__(self, name, _coefficients(name, getattr(self, name), weights.shape[0]))
        low, high = float(self.min_signal), float(self.max_signal)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"signal range must be finite with min_signal < max_signal, got [{low!r}, {high!r}]")
        if not (np.isfinite(self.min_variance) and self.min_variance > 0):
            raise ValueError(f"min_variance must be a finite number > 0, got {self.min_variance!r}")
        object.__setattr__(self, "min_signal", low)
        object.__setattr__(self, "max_signal", high)
        object.__setattr__(self, "min_variance", float(self.min_variance))

    @property
    def n_components(self) -> int:
        """K, the number of Gaussian components."""
        return int(self.weight_coefficients.shape[0])

    def _tensors(self) -> tuple[Any, Any, Any]:
        return tuple(ops.convert_to_tensor(c.astype(np.float32)) for c in
                     (self.weight_coefficients, self.offset_coefficients, self.variance_coefficients))

    def _log_likelihood(self, observation: Any, signal: Any) -> Any:
        return mixture_log_likelihood(observation, signal, *self._tensors(),
                                      signal_range=(self.min_signal, self.max_signal),
                                      min_variance=self.min_variance)

    def _numpy_components(self, signal: np.ndarray | float) -> tuple[np.ndarray, ...]:
        """(signal, weights, offsets, variances) as numpy float32; see :meth:`components`."""
        signal = ops.convert_to_tensor(np.asarray(signal, dtype=np.float32))
        log_weights, offsets, variances = mixture_components(
            signal, *self._tensors(), (self.min_signal, self.max_signal), self.min_variance)
        return tuple(ops.convert_to_numpy(a) for a in (signal, ops.exp(log_weights), offsets, variances))

    def components(self, signal: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mixture parameters at each signal value, numpy float32.

        Parameters
        ----------
        signal : array-like, shape S
            Clean signal, its units.

        Returns
        -------
        weights, means, variances : np.ndarray
            Shape S + (K,): w_k(s) (summing to 1), mu_k(s), var_k(s) (units squared).
        """
        signal, weights, offsets, variances = self._numpy_components(signal)
        return weights, signal[..., None] + offsets, variances

    def variance(self, signal: np.ndarray | float) -> np.ndarray:
        _, weights, offsets, variances = self._numpy_components(signal)
        return np.sum(weights * (variances + offsets.astype(np.float64) ** 2), axis=-1)

    def sample(self, signal: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        rng = np.random.default_rng(rng)
        weights, means, variances = self.components(signal)
        uniform = rng.random(weights.shape[:-1] + (1,))
        chosen = np.minimum((np.cumsum(weights, axis=-1) < uniform).sum(axis=-1, keepdims=True),
                            self.n_components - 1)
        mean = np.take_along_axis(means, chosen, axis=-1)[..., 0]
        std = np.sqrt(np.take_along_axis(variances, chosen, axis=-1)[..., 0])
        return (mean + std * rng.standard_normal(mean.shape)).astype(np.float32)

    def _parameters(self) -> dict[str, Any]:
        return {
            "weight_coefficients": self.weight_coefficients.tolist(),
            "offset_coefficients": self.offset_coefficients.tolist(),
            "variance_coefficients": self.variance_coefficients.tolist(),
            "min_signal": self.min_signal,
            "max_signal": self.max_signal,
            "min_variance": self.min_variance,
        }
