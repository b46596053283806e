"""Noise models p(observation | signal) for denoising without clean data (PN2V, DivNoising).

- :class:`GaussianNoiseModel`, :class:`PoissonGaussianNoiseModel`: closed forms;
- :class:`GaussianMixtureNoiseModel`: the signal-dependent Gaussian mixture of PN2V/DivNoising,
  fitted by :func:`fit_calibration` (repeated images of a static sample),
  :func:`fit_bootstrap` (noisy data and a first denoised estimate) or :func:`fit_mixture`
  (any (signal, observation) pairs);
- :func:`plot_noise_model`: the density over (signal, observation) and slices of it.

Every model has ``log_likelihood(observation, signal)`` in :mod:`keras.ops` (for a VAE's
train step; numpy in, numpy out), ``sample(signal, rng)``, ``variance(signal)``,
``to_dict()`` / ``NoiseModel.from_dict`` and ``save(path)`` / ``NoiseModel.load(path)`` (JSON).
"""
from __future__ import annotations

from .base import NoiseModel
from .fit import calibration_pairs, fit_bootstrap, fit_calibration, fit_mixture
from .gaussian import GaussianNoiseModel, PoissonGaussianNoiseModel
from .mixture import GaussianMixtureNoiseModel, mixture_components, mixture_log_likelihood
from .plot import plot_noise_model

__all__ = [
    "GaussianMixtureNoiseModel",
    "GaussianNoiseModel",
    "NoiseModel",
    "PoissonGaussianNoiseModel",
    "calibration_pairs",
    "fit_bootstrap",
    "fit_calibration",
    "fit_mixture",
    "mixture_components",
    "mixture_log_likelihood",
    "plot_noise_model",
]
