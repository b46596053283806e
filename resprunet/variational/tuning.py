"""Choosing denoiser parameters fairly: on a validation case, or self-supervised.

Never tune on the case you report (science note 7): :func:`tune_on_validation` needs the
ground truth of a *validation* image or volume (another slice range, subject or volume);
:func:`calibrate_j_invariance` needs no ground truth and may run on the noisy data itself.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage import restoration

from ._validate import as_float_image, check_same_shape

Denoiser = Callable[..., np.ndarray]


@dataclass(frozen=True)
class TuningResult:
    """Outcome of a parameter search.

    Attributes
    ----------
    best : dict
        The parameter set with the best score.
    params : list of dict
        Every parameter set tried, in grid order.
    scores : np.ndarray
        Score of each set (PSNR in dB for :func:`tune_on_validation`, higher is better;
        J-invariant MSE in squared data units for :func:`calibrate_j_invariance`, lower is better).
    """

    best: dict[str, Any]
    params: list[dict[str, Any]]
    scores: np.ndarray


def parameter_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of ``{name: values}`` as a list of ``{name: value}`` dicts."""
    if not grid:
        raise ValueError("the parameter grid is empty; give at least one {name: [values]}")
    for name, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"parameter {name!r} has no values in the grid")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _bind(method: Denoiser, prior: np.ndarray | None, params: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """``method`` with the prior (when given) and ``params`` bound: a function of the noisy data."""
    if prior is None:
        return lambda noisy: method(noisy, **params)
    return lambda noisy: method(noisy, prior, **params)


def tune_on_validation(
    method: Denoiser,
    clean: np.ndarray,
    noisy: np.ndarray,
    grid: Mapping[str, Sequence[Any]],
    *,
    prior: np.ndarray | None = None,
    data_range: float = 1.0,
    return_result: bool = False,
) -> dict[str, Any] | TuningResult:
    """Grid search of ``method``'s parameters for the best PSNR against a validation ground truth.

    Parameters
    ----------
    method : callable
        ``method(noisy, **params)``, or ``method(noisy, prior, **params)`` when ``prior`` is
        given (e.g. :func:`tv_denoise`, :func:`spade_denoise`).
    clean, noisy : np.ndarray
        A VALIDATION image (y, x) or volume (z, y, x) and its noisy version, same shape, data
        units; never the case that will be reported.
    grid : mapping
        ``{parameter name: values to try}``; every combination is tried.
    prior : np.ndarray, optional
        Prior for ``method``, same shape as ``noisy``.
    data_range : float
        Data range for PSNR (1.0 for data normalised to [0, 1]).
    return_result : bool
        Return a :class:`TuningResult` (all scores) instead of the best parameters only.

    Returns
    -------
    dict or TuningResult
        The best parameters, e.g. ``{"weight": 0.08}``.
    """
    from ..assess.metrics import psnr

    clean_f = as_float_image(clean, "clean")
    noisy_f = as_float_image(noisy, "noisy")
    check_same_shape(clean_f, noisy_f, "clean", "noisy")
    if prior is not None:
        check_same_shape(clean_f, prior, "clean", "prior")
    candidates = parameter_grid(grid)
    scores = np.array([psnr(clean_f, _bind(method, prior, p)(noisy_f), data_range) for p in candidates])
    result = TuningResult(dict(candidates[int(np.argmax(scores))]), candidates, scores)
    return result if return_result else result.best


def calibrate_j_invariance(
    method: Denoiser,
    noisy: np.ndarray,
    grid: Mapping[str, Sequence[Any]],
    *,
    prior: np.ndarray | None = None,
    stride: int = 4,
    approximate_loss: bool = True,
    return_result: bool = False,
) -> dict[str, Any] | TuningResult:
    """Self-supervised choice of parameters by the J-invariant loss (no ground truth needed).

    Each candidate is made J-invariant by masking a grid of pixels (spacing ``stride``),
    filling them from their neighbours, denoising and keeping the output at the masked
    pixels; the loss is the MSE of that output to the noisy data, which equals the MSE to
    the clean data plus the noise variance for pixel-independent noise (Batson & Royer 2019).
    This is :func:`skimage.restoration.calibrate_denoiser` with a prior passed through.

    Parameters
    ----------
    method : callable
        ``method(noisy, **params)`` or ``method(noisy, prior, **params)``.
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), data units.
    grid : mapping
        ``{parameter name: values to try}``.
    prior : np.ndarray, optional
        Prior for ``method``; its noise must be independent of ``noisy``'s (e.g. a
        neighbour-slice prior built with ``include_self=False``).
    stride : int
        Mask grid spacing in pixels.
    approximate_loss : bool
        Use one mask offset (fast) instead of all ``stride ** ndim`` of them.
    return_result : bool
        Return a :class:`TuningResult` instead of the best parameters only.

    Returns
    -------
    dict or TuningResult
        The parameters with the lowest J-invariant loss.
    """
    noisy_f = as_float_image(noisy, "noisy")
    if prior is not None:
        check_same_shape(noisy_f, prior, "noisy", "prior")
    candidates = parameter_grid(grid)
    index = {"_candidate": list(range(len(candidates)))}

    def by_index(image: np.ndarray, _candidate: int) -> np.ndarray:
        return _bind(method, prior, candidates[_candidate])(image)

    _, (tested, losses) = restoration.calibrate_denoiser(
        noisy_f, by_index, index, stride=stride, approximate_loss=approximate_loss, extra_output=True
    )
    order = [t["_candidate"] for t in tested]
    scores = np.empty(len(candidates))
    scores[order] = losses
    result = TuningResult(dict(candidates[int(np.argmin(scores))]), candidates, scores)
    return result if return_result else result.best


def estimate_noise_sigma(noisy: np.ndarray) -> float:
    """Estimate the Gaussian noise sigma from the data (wavelet MAD, Donoho & Johnstone).

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x), or volume (z, y, x) estimated slice by slice (each (y, x) slice with
        :func:`skimage.restoration.estimate_sigma`) and summarised by the median.

    Returns
    -------
    float
        Noise standard deviation in the data's units.
    """
    f = as_float_image(noisy, "noisy")
    slices = [f] if f.ndim == 2 else list(f)
    return float(np.median([restoration.estimate_sigma(s, channel_axis=None) for s in slices]))
