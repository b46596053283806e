"""Closed-form noise models: additive Gaussian, and Poisson-Gaussian in its Gaussian
approximation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from keras import ops

from data_pipelines.noise import PoissonGaussianNoise

from .base import NoiseModel, gaussian_log_density

__all__ = ["GaussianNoiseModel", "PoissonGaussianNoiseModel"]


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


@dataclass(frozen=True)
class GaussianNoiseModel(NoiseModel):
    """Additive white Gaussian noise: ``x ~ N(s, sigma^2)``.

    Parameters
    ----------
    sigma : float
        Standard deviation, in the units of the signal (a fraction of the normalised range
        [0, 1] in this package: 0.05 is "5 % noise").
    """

    sigma: float
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive("sigma", self.sigma))

    def _log_likelihood(self, observation: Any, signal: Any) -> Any:
        return gaussian_log_density(observation, signal, self.sigma**2)

    def sample(self, signal: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        signal = np.asarray(signal, dtype=np.float32)
        noise = np.random.default_rng(rng).standard_normal(signal.shape, dtype=np.float32)
        return signal + np.float32(self.sigma) * noise

    def variance(self, signal: np.ndarray | float) -> np.ndarray:
        return np.full(np.shape(signal), self.sigma**2)

    def _parameters(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


@dataclass(frozen=True)
class PoissonGaussianNoiseModel(NoiseModel):
    """Poisson shot noise plus Gaussian read noise, in the Gaussian approximation.

    The observation is ``x = (Poisson(photons * max(s, 0)) + photons * sigma * N(0, 1)) / photons``
    (as :class:`data_pipelines.PoissonGaussianNoise` simulates it, and as :meth:`sample` does).
    Its likelihood is approximated by a Gaussian of the same mean and variance,
    ``x ~ N(s, max(s, 0) / photons + sigma^2)``, accurate when the expected count
    ``photons * s`` is more than a few tens or the read noise dominates.

    Parameters
    ----------
    photons : float
        Expected photon count at signal 1.0 (the normalised range's top).
    sigma : float
        Read-noise standard deviation in the units of the signal; > 0, so the variance stays
        positive where the signal is 0.
    """

    photons: float
    sigma: float
    kind: ClassVar[str] = "poisson_gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "photons", _positive("photons", self.photons))
        object.__setattr__(self, "sigma", _positive("sigma", self.sigma))

    def _log_likelihood(self, observation: Any, signal: Any) -> Any:
        variance = ops.maximum(signal, 0.0) / self.photons + self.sigma**2
        return gaussian_log_density(observation, signal, variance)

    def sample(self, signal: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        return PoissonGaussianNoise(photons=self.photons, sigma=self.sigma)(signal, rng)

    def variance(self, signal: np.ndarray | float) -> np.ndarray:
        return np.maximum(np.asarray(signal, dtype=np.float64), 0.0) / self.photons + self.sigma**2

    def _parameters(self) -> dict[str, Any]:
        return {"photons": self.photons, "sigma": self.sigma}
