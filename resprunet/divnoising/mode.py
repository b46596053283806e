"""A MAP-like estimate from posterior samples: the per-pixel mode, by mean shift.

DivNoising's paper approximates the MAP estimate by the mode of whole-image samples (mean
shift in image space). This module takes the mode of each pixel's MARGINAL distribution
instead, which needs no image-space clustering and scales to any image: for every pixel, with
the samples ``s_1..s_n`` and a Gaussian kernel of bandwidth ``h``, mean shift iterates

    m <- sum_i w_i s_i / sum_i w_i,   w_i = exp(-(s_i - m)^2 / (2 h^2))

from ``starts`` starting points (quantiles of the samples, 10 % to 90 %) until it moves less
than ``1e-6 h``; of the points reached, the one where the kernel density estimate is highest
is the mode. The default bandwidth is Silverman's rule per pixel,
``h = 0.9 * min(std, IQR / 1.34) * n^(-1/5)`` (``std`` where the IQR is 0), so unimodal
samples give about their mean and well-separated modes are found as such. The per-pixel mode
is not the joint mode of the image: for a unimodal posterior both agree with the MMSE; where
the posterior is multimodal the per-pixel mode picks the most likely value of each pixel
alone.
"""
from __future__ import annotations

import numpy as np

from .posterior import check_samples

__all__ = ["map_estimate", "silverman_bandwidth"]

_CHUNK = 4096  # pixels per vectorised step (memory: starts * n * _CHUNK float64 values)


def silverman_bandwidth(samples: np.ndarray) -> np.ndarray:
    """Silverman's rule of thumb per pixel: (n, *shape) samples -> (*shape) bandwidths, float64
    (0 where all samples of a pixel are equal)."""
    s = np.asarray(samples, np.float64)
    n = s.shape[0]
    std = s.std(axis=0, ddof=1) if n > 1 else np.zeros(s.shape[1:])
    q75, q25 = np.percentile(s, [75, 25], axis=0)
    spread = np.where(q75 > q25, np.minimum(std, (q75 - q25) / 1.34), std)
    return 0.9 * spread * n ** -0.2


def map_estimate(samples: np.ndarray, bandwidth: float | np.ndarray | None = None, *, starts: int = 5,
                 iterations: int = 100) -> np.ndarray:
    """The per-pixel mode of posterior samples (see the module docstring).

    Parameters
    ----------
    samples : np.ndarray
        (n, *shape): n >= 1 samples of an image, e.g. from
        :func:`~resprunet.divnoising.sample_posterior`.
    bandwidth : float or np.ndarray, optional
        Kernel standard deviation in the samples' units, one value or one per pixel
        (``shape``); default :func:`silverman_bandwidth`.
    starts : int
        Mean-shift starting points per pixel (quantiles from 10 % to 90 %), >= 1.
    iterations : int
        Most mean-shift iterations, >= 1.

    Returns
    -------
    np.ndarray
        (*shape), float32: the mode of each pixel (its value where all samples agree).

    Raises
    ------
    ValueError
        No samples, or a negative bandwidth.
    """
    s = np.asarray(samples, np.float64)
    if s.ndim < 1:
        raise ValueError("samples must be an array (n, *shape) of n >= 1 samples")
    n = check_samples(s.shape[0])
    h = silverman_bandwidth(s) if bandwidth is None else np.broadcast_to(np.asarray(bandwidth, np.float64), s.shape[1:])
    if np.any(h < 0):
        raise ValueError("bandwidth must be >= 0")
    flat, h = s.reshape(n, -1), np.asarray(h, np.float64).reshape(-1)
    out = np.empty(flat.shape[1])
    quantiles = np.linspace(0.1, 0.9, starts) if starts > 1 else np.array([0.5])
    for lo in range(0, flat.shape[1], _CHUNK):
        part, hp = flat[:, lo:lo + _CHUNK], h[lo:lo + _CHUNK]
        out[lo:lo + _CHUNK] = _mode(part, np.maximum(hp, 1e-12), quantiles, iterations)
    return out.reshape(s.shape[1:]).astype(np.float32)


def _mode(s: np.ndarray, h: np.ndarray, quantiles: np.ndarray, iterations: int) -> np.ndarray:
    """Mean shift for (n, p) samples with (p,) bandwidths from (k,) quantile starts -> (p,) modes."""
    m = np.quantile(s, quantiles, axis=0)  # (k, p)
    for _ in range(iterations):
        w = np.exp(-0.5 * ((s[np.newaxis] - m[:, np.newaxis]) / h) ** 2)  # (k, n, p)
        total = w.sum(axis=1)
        new = np.where(total > 0, (w * s).sum(axis=1) / np.maximum(total, 1e-300), m)
        moved = np.max(np.abs(new - m) / h)
        m = new
        if moved < 1e-6:
            break
    density = np.exp(-0.5 * ((s[np.newaxis] - m[:, np.newaxis]) / h) ** 2).sum(axis=1)  # (k, p)
    return np.take_along_axis(m, density.argmax(axis=0)[np.newaxis], axis=0)[0]
