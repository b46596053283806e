"""Classical baselines with fair parameters (science note 7), ready for :func:`assess`.

TV, SPADE, Chambolle TV and non-local means are tuned by grid search on a VALIDATION case
(:func:`resprunet.variational.tune_on_validation`, which widens a grid whose best value is
on its edge); BM3D, BM4D and wavelet shrinkage get the true noise sigma and need no tuning.
On Poisson-Gaussian data BM3D and BM4D get the photon count too and denoise in the domain
of the generalised Anscombe transform. The grids scale with sigma, so they suit data in any
units.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import variational as var
from ..variational import TuningResult
from .api import Case, Method


@dataclass(frozen=True)
class Baseline:
    """How to tune and build one classical method.

    Attributes
    ----------
    denoiser : callable
        ``denoiser(sigma)`` -> the function ``f(noisy, [prior,] **params)`` searched over.
    grid : callable
        ``grid(sigma) -> {param: values}``; None when the method is not tuned.
    build : callable
        ``build(sigma, **params) -> Method`` (also ``photons=`` when ``stabilises``).
    needs_prior : bool
    ndims : tuple of int
        Dimensionalities the method applies to (2 for images, 3 for volumes).
    bounds : dict
        ``{param: (low, high)}`` the grid widening never crosses (default (0, inf)).
    stabilises : bool
        Takes ``photons`` and denoises Poisson-Gaussian data through the Anscombe transform.
    """

    denoiser: Callable[[float], Callable[..., np.ndarray]]
    grid: Callable[[float], dict[str, list[Any]]] | None
    build: Callable[..., Method]
    needs_prior: bool = False
    ndims: tuple[int, ...] = (2, 3)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    stabilises: bool = False


def _scaled(sigma: float, factors: Sequence[float]) -> list[float]:
    return [float(sigma * f) for f in factors]


BASELINES: dict[str, Baseline] = {
    "tv": Baseline(
        lambda s: var.tv_denoise,
        lambda s: {"weight": _scaled(s, (0.4, 0.6, 0.8, 1.0, 1.3))},
        lambda sigma, weight: Method.tv(weight),
    ),
    "spade": Baseline(
        lambda s: var.spade_denoise,
        lambda s: {"weight": _scaled(s, (0.4, 0.6, 0.8, 1.0)), "alpha": [0.0, 0.25, 0.5]},
        lambda sigma, weight, alpha: Method.spade(weight, alpha),
        needs_prior=True,
        bounds={"alpha": (0.0, 1.0)},
    ),
    "tv_chambolle": Baseline(
        lambda s: var.tv_chambolle_denoise,
        lambda s: {"weight": _scaled(s, (0.4, 0.6, 0.8, 1.0, 1.3))},
        lambda sigma, weight: Method.tv_chambolle(weight),
    ),
    "nl_means": Baseline(
        lambda s: lambda noisy, h: var.nl_means_denoise(noisy, h, sigma=s),
        lambda s: {"h": _scaled(s, (0.4, 0.6, 0.8, 1.0))},
        lambda sigma, h: Method.nl_means(h, sigma=sigma),
    ),
    "wavelet": Baseline(lambda s: var.wavelet_denoise, None, lambda sigma: Method.wavelet(sigma)),
    "bm3d": Baseline(lambda s: var.bm3d_denoise, None, lambda sigma, photons=None: Method.bm3d(sigma, photons=photons),
                     stabilises=True),
    "bm4d": Baseline(lambda s: var.bm4d_denoise, None, lambda sigma, photons=None: Method.bm4d(sigma, photons=photons),
                     ndims=(3,), stabilises=True),
}


def tuned_baselines(
    validation: Case,
    sigma: float | None,
    names: Sequence[str] = ("tv", "spade", "tv_chambolle", "nl_means", "wavelet", "bm3d"),
    *,
    photons: float | None = None,
    data_range: float = 1.0,
    grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    return_tuning: bool = False,
) -> tuple[list[Method], dict[str, dict[str, Any]]] | tuple[list[Method], dict[str, dict[str, Any]], dict[str, TuningResult]]:
    """Tune the named baselines on a validation case and return them as methods.

    Parameters
    ----------
    validation : Case
        A VALIDATION case (clean, noisy and, for "spade", a prior built the same way as
        the test cases' priors); never a case that will be reported.
    sigma : float or None
        True noise standard deviation, in the data's units (0.05 for 5 % of [0, 1]). None:
        the grids scale with the sigma estimated on the validation noisy data, and BM3D,
        BM4D and wavelet estimate sigma on each input they denoise. With ``photons``: the
        Gaussian part of Poisson-Gaussian noise, normalised units (0 for pure Poisson).
    names : sequence of str
        Keys of :data:`BASELINES`.
    photons : float, optional
        Poisson-Gaussian noise (:class:`data_pipelines.PoissonGaussianNoise`) with this
        expected photon count at intensity 1 of data normalised to [0, 1]. BM3D and BM4D then
        denoise through the Anscombe transform; the grids and wavelet use the effective sigma
        ``sqrt(mean(validation clean) / photons + sigma**2)``.
    data_range : float
        Data range for the PSNR the grid search maximises.
    grids : mapping, optional
        ``{name: {param: values}}`` replacing the default sigma-scaled grids (still widened
        when the best value is on an edge).
    return_tuning : bool
        Also return ``{name: TuningResult}`` for the tuned methods (scores, grid widenings).

    Returns
    -------
    methods : list of Method
        One per name, with the chosen parameters.
    params : dict
        Name -> chosen parameters (``{"sigma": ...}``, plus ``"photons"`` for BM3D/BM4D on
        Poisson-Gaussian data, for the untuned ones).
    tuning : dict
        Only with ``return_tuning``: name -> :class:`TuningResult` of each tuned method.

    Raises
    ------
    KeyError
        Unknown name.
    ValueError
        "spade" without a validation prior, a method that does not apply to the validation
        case's dimensionality (e.g. "bm4d" on an image), or ``photons`` without ``sigma``.
    """
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise KeyError(f"unknown baseline(s) {unknown}; available: {sorted(BASELINES)}")
    if photons is not None:
        if sigma is None:
            raise ValueError("with photons, give sigma: the Gaussian part in normalised units (0 for pure Poisson)")
        if not np.isfinite(photons) or photons <= 0:
            raise ValueError(f"photons must be a finite number > 0, got {photons!r}")
        scale = float(np.sqrt(np.mean(np.clip(validation.clean, 0, None)) / photons + sigma**2))
    else:
        scale = var.estimate_noise_sigma(validation.noisy) if sigma is None else sigma
    methods, chosen, tuning = [], {}, {}
    for name in names:
        spec = BASELINES[name]
        if validation.ndim not in spec.ndims:
            raise ValueError(f"baseline {name!r} applies to {spec.ndims}-D data, not to the {validation.ndim}-D case")
        if spec.needs_prior and validation.prior is None:
            raise ValueError(f"baseline {name!r} needs a prior on the validation case {validation.name!r}")
        grid = (grids or {}).get(name) or (spec.grid(scale) if spec.grid else None)
        if grid is not None:
            tuning[name] = var.tune_on_validation(
                spec.denoiser(scale), validation.clean, validation.noisy, grid,
                prior=validation.prior if spec.needs_prior else None, data_range=data_range,
                bounds=spec.bounds, return_result=True,
            )
            chosen[name] = dict(tuning[name].best)
            methods.append(spec.build(scale, **chosen[name]))
        elif photons is not None and spec.stabilises:
            chosen[name] = {"sigma": sigma, "photons": photons}
            methods.append(spec.build(sigma, photons=photons))
        else:
            chosen[name] = {"sigma": sigma if photons is None else scale}
            methods.append(spec.build(chosen[name]["sigma"]))
    return (methods, chosen, tuning) if return_tuning else (methods, chosen)
