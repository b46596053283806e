"""Variance stabilisation of Poisson-Gaussian data: the generalised Anscombe transform.

Noise model (as :class:`data_pipelines.PoissonGaussianNoise`), for a clean intensity ``x``
normalised so that intensity 1 collects ``photons`` photons on average::

    y = (Poisson(photons * max(x, 0)) + photons * sigma * N(0, 1)) / photons

In counts ``z = photons * y`` this is Poisson with unit gain plus Gaussian read noise of
standard deviation ``s = photons * sigma`` counts. The generalised Anscombe transform (GAT;
J.-L. Starck, F. Murtagh and A. Bijaoui, "Image Processing and Data Analysis: The
Multiscale Approach", Cambridge University Press, 1998; Mäkitalo & Foi 2013)::

    f(z) = 2 * sqrt(z + 3/8 + s**2)   for z > -3/8 - s**2, else 0

makes the noise approximately Gaussian with unit variance, so a Gaussian denoiser (BM3D,
BM4D) applies with sigma 1. Its algebraic inverse is biased; the estimate of ``E[f(z)]`` a
denoiser returns is mapped back with the closed-form approximation of the exact unbiased
inverse of M. Mäkitalo and A. Foi, "Optimal inversion of the generalized Anscombe
transformation for Poisson-Gaussian noise", IEEE Trans. Image Process. 22(1):91-103, 2013
(with unit gain and zero mean)::

    I(D) = D**2/4 + sqrt(3/2)/(4 D) - 11/(8 D**2) + 5 sqrt(3/2)/(8 D**3) - 1/8 - s**2

clipped at 0 counts.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_image, output_dtype

_SQRT_3_2 = np.sqrt(1.5)


def _counts_sigma(photons: float, sigma: float) -> float:
    """Gaussian read noise in counts, ``photons * sigma``, after checking both arguments."""
    if not np.isfinite(photons) or photons <= 0:
        raise ValueError(f"photons must be a finite number > 0 (expected count at intensity 1), got {photons!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 (Gaussian part, normalised units), got {sigma!r}")
    return float(photons) * float(sigma)


def generalized_anscombe(noisy: np.ndarray, photons: float, sigma: float = 0.0) -> np.ndarray:
    """Forward generalised Anscombe transform of Poisson-Gaussian data (see the module docstring).

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x) in normalised units (photon counts / ``photons``).
    photons : float
        Expected photon count at intensity 1 (> 0).
    sigma : float
        Standard deviation of the Gaussian part, normalised units (0: pure Poisson).

    Returns
    -------
    np.ndarray
        Stabilised data, noise standard deviation about 1 (dimensionless); float64.
    """
    s = _counts_sigma(photons, sigma)
    z = as_float_image(noisy, "noisy") * float(photons)
    return 2.0 * np.sqrt(np.maximum(z + 0.375 + s * s, 0.0))


def inverse_generalized_anscombe(stabilised: np.ndarray, photons: float, sigma: float = 0.0) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse GAT (Mäkitalo & Foi 2013).

    Parameters
    ----------
    stabilised : np.ndarray
        Estimate of ``E[f(z)]`` in the stabilised domain (e.g. a denoised
        :func:`generalized_anscombe` output).
    photons, sigma : float
        As given to :func:`generalized_anscombe`.

    Returns
    -------
    np.ndarray
        Estimate of the clean intensity in normalised units, >= 0; float32 for float32
        input (else float64).

    Notes
    -----
    The closed form is increasing for ``D >= sqrt(3/2)``, where its Poisson part is 0 (the
    smallest value ``E[f(z)]`` takes for pure Poisson noise); smaller ``D`` map to 0.
    """
    s = _counts_sigma(photons, sigma)
    d = np.maximum(as_float_image(stabilised, "stabilised"), _SQRT_3_2)
    counts = d**2 / 4 + _SQRT_3_2 / (4 * d) - 11 / (8 * d**2) + 5 * _SQRT_3_2 / (8 * d**3) - 1 / 8 - s * s
    out = np.maximum(counts, 0.0) / float(photons)
    return out.astype(output_dtype(stabilised), copy=False)
