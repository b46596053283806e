"""SPADE: prior-based sparse total variation solved by split Bregman (science note 8)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._split_bregman import BregmanInfo, gradient, normalise_axes, split_bregman
from ._validate import as_float_image, check_same_shape, check_solver_args, output_dtype


def spade_denoise(
    noisy: np.ndarray,
    prior: np.ndarray,
    *,
    weight: float,
    alpha: float,
    isotropic: bool = True,
    axes: Sequence[int] | None = None,
    penalty: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, BregmanInfo]:
    """Denoise with a prior image: sparse TV of the image and of its difference to the prior.

    Minimises, over images ``u`` of the shape of ``f = noisy``, with ``p = prior``,

        E(u) = 1/2 ||u - f||_2^2 + weight * [ (1 - alpha) TV(u) + alpha TV(u - p) ]

    i.e. ``min_u (1 - a) ||grad u||_1 + a ||grad (u - p)||_1 + (mu / 2) ||u - f||^2`` with
    ``a = alpha`` and ``mu = 1 / weight`` (a PICCS-type functional). ``TV`` and ``grad`` are
    those of :func:`tv_denoise` (forward differences, Neumann boundary, isotropic or
    anisotropic l1 norm, along ``axes``). ``alpha = 0`` is exactly :func:`tv_denoise`; as
    ``alpha`` grows, edges present in the prior cost less and the result follows the prior's
    structure. Solved by split Bregman with one auxiliary field per term
    (``d1 = grad u``, ``d2 = grad u - grad p``) and an exact DCT solve of the linear step.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), finite, in data units.
    prior : np.ndarray
        Prior image of the same shape and units (e.g. the neighbour-slice average of
        :func:`data_pipelines.neighbour_slice_prior`, or a previous scan).
    weight : float
        Overall regularisation weight (>= 0), in data units (``1 / mu``).
    alpha : float
        Share of the prior term, in [0, 1].
    isotropic, axes, penalty, max_iter, tol, return_info
        As in :func:`tv_denoise`.

    Returns
    -------
    np.ndarray or (np.ndarray, BregmanInfo)
        Denoised array, shape of ``noisy``; float32 for float32 input (else float64).
    """
    f = as_float_image(noisy, "noisy")
    p = as_float_image(prior, "prior")
    check_same_shape(f, p, "noisy", "prior")
    check_solver_args(weight, penalty, max_iter, tol)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (share of the prior term), got {alpha!r}")
    axes_t = normalise_axes(f.ndim, axes)
    terms = [(weight * (1.0 - alpha), None), (weight * alpha, gradient(p, axes_t))]
    u, info = split_bregman(
        f, terms, axes=axes_t, isotropic=isotropic, penalty=penalty, max_iter=max_iter, tol=tol, record=return_info
    )
    u = u.astype(output_dtype(noisy), copy=False)
    return (u, info) if return_info else u
