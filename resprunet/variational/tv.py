"""Total-variation denoising by split Bregman (Goldstein & Osher 2009), 2D and 3D."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._split_bregman import BregmanInfo, normalise_axes, split_bregman
from ._validate import as_float_image, check_solver_args, output_dtype


def tv_denoise(
    noisy: np.ndarray,
    weight: float,
    *,
    isotropic: bool = True,
    axes: Sequence[int] | None = None,
    penalty: float = 1.0,
    max_iter: int = 200,
    tol: float = 1e-4,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, BregmanInfo]:
    """Total-variation (ROF) denoising solved by split Bregman.

    Minimises, over images ``u`` of the shape of ``f = noisy``,

        E(u) = 1/2 ||u - f||_2^2 + weight * TV(u)

    with ``TV(u) = sum_i sqrt(sum_d (D_d u)_i^2)`` (isotropic) or
    ``TV(u) = sum_i sum_d |(D_d u)_i|`` (anisotropic), where ``D_d`` is the forward difference
    along axis ``d`` (1 voxel spacing, zero across the last voxel: Neumann boundary) and the
    sums run over every voxel ``i`` and every axis in ``axes``. ``TV`` has the units of the
    data, so ``weight`` has the units of the data too (for data normalised to [0, 1], a
    weight of about the noise sigma is a sensible start; larger smooths more). This is the
    same functional and the same ``weight`` as :func:`skimage.restoration.denoise_tv_chambolle`.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x) (any number of axes), finite, in data units.
    weight : float
        Regularisation weight (>= 0), in data units; 0 returns the input.
    isotropic : bool
        Isotropic (Euclidean length of the gradient) or anisotropic (sum of |differences|) TV.
    axes : sequence of int, optional
        Axes the gradient runs along; default all axes (3D TV for a volume). ``axes=(-2, -1)``
        denoises each slice of a (z, y, x) stack in 2D.
    penalty : float
        Split Bregman penalty ``lambda`` on ``||d - grad u - b||^2`` (dimensionless, > 0).
        It changes the speed of convergence, not the minimiser.
    max_iter : int
        Maximum number of outer (Bregman) iterations.
    tol : float
        Stop when ``||u_k - u_(k-1)|| / ||u_(k-1)||`` < tol.
    return_info : bool
        Also return a :class:`BregmanInfo` with ``objective``: E(u) after each outer
        iteration (squared data units), ``n_iter`` and ``converged``.

    Returns
    -------
    np.ndarray or (np.ndarray, BregmanInfo)
        Denoised array, shape of ``noisy``, float32 for float32 input (else float64).

    Examples
    --------
    >>> u = tv_denoise(noisy, weight=0.08)                        # doctest: +SKIP
    >>> u, info = tv_denoise(volume, 0.05, return_info=True)      # doctest: +SKIP
    """
    f = as_float_image(noisy, "noisy")
    check_solver_args(weight, penalty, max_iter, tol)
    axes_t = normalise_axes(f.ndim, axes)
    u, info = split_bregman(
        f, [(weight, None)], axes=axes_t, isotropic=isotropic, penalty=penalty, max_iter=max_iter, tol=tol,
        record=return_info,
    )
    u = u.astype(output_dtype(noisy), copy=False)
    return (u, info) if return_info else u

