"""Choosing denoiser parameters fairly: on a validation case, or self-supervised.

Never tune on the case you report (science note 7): :func:`tune_on_validation` needs the
ground truth of a *validation* image or volume (another slice range, subject or volume);
:func:`calibrate_j_invariance` needs no ground truth and may run on the noisy data itself.

Both search a grid and widen it: when the best value of a numeric parameter is the smallest
or largest of its grid, that axis is extended geometrically beyond the edge and searched
again (at most ``max_extensions`` times per parameter), so the optimum found is interior, at
a bound the caller gave, or reported as still on the edge (:attr:`TuningResult.at_edge`).
"""
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from skimage import restoration

from ._validate import as_float_image, check_same_shape

log = logging.getLogger(__name__)

Denoiser = Callable[..., np.ndarray]
Bounds = Mapping[str, tuple[float, float]]
DEFAULT_BOUNDS = (0.0, math.inf)
MAX_EXTENSIONS = 6


@dataclass(frozen=True)
class TuningResult:
    """Outcome of a parameter search.

    Attributes
    ----------
    best : dict
        The parameter set with the best score.
    params : list of dict
        Every parameter set tried: the grid in grid order, then those of each widening.
    scores : np.ndarray
        Score of each set (PSNR in dB for :func:`tune_on_validation`, higher is better;
        J-invariant MSE in squared data units for :func:`calibrate_j_invariance`, lower is better).
    widened : dict
        ``{parameter: [values added beyond the grid's edges, in the order added]}`` for each
        parameter whose grid was widened; empty when the optimum was interior.
    at_edge : dict
        ``{parameter: reason}`` for each parameter whose best value is still the smallest or
        largest value tried: at a bound (e.g. ``alpha`` = 0), not a positive number (so not
        extended geometrically), or after ``max_extensions`` widenings (also logged as a warning).
    """

    best: dict[str, Any]
    params: list[dict[str, Any]]
    scores: np.ndarray
    widened: dict[str, list[Any]] = field(default_factory=dict)
    at_edge: dict[str, str] = field(default_factory=dict)

    def describe_widening(self) -> str:
        """One line on widened and edge parameters, e.g. ``"weight widened to 0.08, 0.16"``; "" if none."""
        parts = [f"{name} widened to " + ", ".join(f"{v:.3g}" for v in values) for name, values in self.widened.items()]
        parts += [f"{name} {reason}" for name, reason in self.at_edge.items()]
        return "; ".join(parts)


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


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_bounds(grid: Mapping[str, Sequence[Any]], bounds: Bounds | None, max_extensions: int) -> dict[str, tuple[float, float]]:
    """``bounds`` completed with :data:`DEFAULT_BOUNDS`; raise on unknown names, bad or violated bounds."""
    if int(max_extensions) < 0:
        raise ValueError(f"max_extensions must be >= 0, got {max_extensions!r}")
    given = dict(bounds or {})
    unknown = sorted(set(given) - set(grid))
    if unknown:
        raise ValueError(f"bounds given for {unknown}, which are not in the grid {sorted(grid)}")
    for name, (lo, hi) in given.items():
        if not lo < hi:
            raise ValueError(f"bounds for {name!r} must be (low, high) with low < high, got {(lo, hi)!r}")
        outside = [v for v in grid[name] if _is_number(v) and not lo <= v <= hi]
        if outside:
            raise ValueError(f"grid values {outside} of {name!r} are outside its bounds {(lo, hi)!r}")
    return {name: tuple(given.get(name, DEFAULT_BOUNDS)) for name in grid}


def _next_value(values: Sequence[Any], best: Any, lo: float, hi: float) -> tuple[Any, str | None]:
    """The value that extends ``values`` beyond the edge ``best`` sits on, or why there is none.

    Returns ``(None, None)`` when ``best`` is interior or the axis is not a numeric one with
    at least two values; ``(None, reason)`` when ``best`` is on an edge that cannot be
    extended; ``(value, None)`` otherwise. The step is the ratio of the two outermost values
    (2 when the neighbour is not positive), clipped to ``[lo, hi]``; integer axes stay integer.
    """
    if not all(_is_number(v) for v in values):
        return None, None
    distinct = sorted(set(values))
    if len(distinct) < 2 or best not in (distinct[0], distinct[-1]):
        return None, None
    integer = all(isinstance(v, Integral) for v in distinct)
    if best == distinct[-1]:
        if best >= hi:
            return None, f"at its upper bound {hi:g}"
        if best <= 0:
            return None, f"on the upper edge {best:g}, not a positive number, so not extended"
        ratio = best / distinct[-2] if distinct[-2] > 0 else 2.0
        new = math.ceil(best * ratio) if integer else best * ratio
        new = new if new <= hi else (math.floor(hi) if integer else hi)
        bound = f"at its upper bound {hi:g}"
    else:
        if best <= lo:
            return None, f"at its lower bound {lo:g}"
        if best <= 0:
            return None, f"on the lower edge {best:g}, not a positive number, so not extended"
        ratio = distinct[1] / best
        new = math.floor(best / ratio) if integer else best / ratio
        new = new if new >= lo else (math.ceil(lo) if integer else lo)
        bound = f"at its lower bound {lo:g}"
    if new == best:  # an integer axis with no integer left between its edge and the bound
        return None, bound
    return (int(new) if integer else float(new)), None


def _widening_search(
    score: Callable[[list[dict[str, Any]]], np.ndarray],
    grid: Mapping[str, Sequence[Any]],
    bounds: Bounds | None,
    max_extensions: int,
    higher_is_better: bool,
) -> TuningResult:
    """Score the grid, then widen every axis whose best value is on its edge, round by round."""
    limits = _check_bounds(grid, bounds, max_extensions)
    axes = {name: list(values) for name, values in grid.items()}
    params = parameter_grid(axes)
    scores = list(score(params))
    widened: dict[str, list[Any]] = {}
    pick = np.argmax if higher_is_better else np.argmin
    while True:
        best = params[int(pick(scores))]
        at_edge: dict[str, str] = {}
        exhausted: list[str] = []
        grew = False
        for name, values in axes.items():
            new, reason = _next_value(values, best[name], *limits[name])
            if new is not None and len(widened.get(name, [])) >= max_extensions:
                new, reason = None, f"still on the edge ({best[name]:.3g}) after {max_extensions} widenings"
                exhausted.append(name)
            if reason is not None:
                at_edge[name] = reason
            if new is not None:
                values.append(new)
                widened.setdefault(name, []).append(new)
                grew = True
        if not grew:
            break
        fresh = [p for p in parameter_grid(axes) if p not in params]
        params += fresh
        scores += list(score(fresh))
    for name in exhausted:
        log.warning("tuning: the best %s is %s; widen its grid or raise max_extensions", name, at_edge[name])
    return TuningResult(dict(best), params, np.asarray(scores, dtype=np.float64), widened, at_edge)


def tune_on_validation(
    method: Denoiser,
    clean: np.ndarray,
    noisy: np.ndarray,
    grid: Mapping[str, Sequence[Any]],
    *,
    prior: np.ndarray | None = None,
    data_range: float = 1.0,
    bounds: Bounds | None = None,
    max_extensions: int = MAX_EXTENSIONS,
    return_result: bool = False,
) -> dict[str, Any] | TuningResult:
    """Grid search of ``method``'s parameters for the best PSNR against a validation ground truth.

    A numeric parameter whose best value is on the edge of its grid has its grid widened
    geometrically and searched again (see the module docstring and :class:`TuningResult`).

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
    bounds : mapping, optional
        ``{parameter name: (low, high)}``, inclusive limits the widening never crosses, e.g.
        ``{"alpha": (0.0, 1.0)}`` for a fraction. Default for every parameter: (0, inf).
    max_extensions : int
        Most widenings per parameter (0: search the grid only).
    return_result : bool
        Return a :class:`TuningResult` (all scores, widenings) instead of the best parameters only.

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

    def score(candidates: list[dict[str, Any]]) -> np.ndarray:
        return np.array([psnr(clean_f, _bind(method, prior, p)(noisy_f), data_range) for p in candidates])

    result = _widening_search(score, grid, bounds, max_extensions, higher_is_better=True)
    return result if return_result else result.best


def calibrate_j_invariance(
    method: Denoiser,
    noisy: np.ndarray,
    grid: Mapping[str, Sequence[Any]],
    *,
    prior: np.ndarray | None = None,
    stride: int = 4,
    approximate_loss: bool = True,
    bounds: Bounds | None = None,
    max_extensions: int = MAX_EXTENSIONS,
    return_result: bool = False,
) -> dict[str, Any] | TuningResult:
    """Self-supervised choice of parameters by the J-invariant loss (no ground truth needed).

    Each candidate is made J-invariant by masking a grid of pixels (spacing ``stride``),
    filling them from their neighbours, denoising and keeping the output at the masked
    pixels; the loss is the MSE of that output to the noisy data, which equals the MSE to
    the clean data plus the noise variance for pixel-independent noise (Batson & Royer 2019).
    This is :func:`skimage.restoration.calibrate_denoiser` with a prior passed through, and
    with the grid widened like :func:`tune_on_validation`'s.

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
    bounds : mapping, optional
        ``{parameter name: (low, high)}`` the widening never crosses; default (0, inf).
    max_extensions : int
        Most widenings per parameter (0: search the grid only).
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

    def score(candidates: list[dict[str, Any]]) -> np.ndarray:
        def by_index(image: np.ndarray, _candidate: int) -> np.ndarray:
            return _bind(method, prior, candidates[_candidate])(image)

        _, (tested, losses) = restoration.calibrate_denoiser(
            noisy_f, by_index, {"_candidate": list(range(len(candidates)))}, stride=stride,
            approximate_loss=approximate_loss, extra_output=True,
        )
        scores = np.empty(len(candidates))
        scores[[t["_candidate"] for t in tested]] = losses
        return scores

    result = _widening_search(score, grid, bounds, max_extensions, higher_is_better=False)
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
