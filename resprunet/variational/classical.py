"""scikit-image's classical denoisers as named functions with explicit units.

Each takes an image (y, x) or a volume (z, y, x) in data units and returns an array of
the same shape; none of them clips the output.
"""
from __future__ import annotations

import numpy as np
from skimage import restoration

from ._validate import as_float_image, output_dtype


def tv_chambolle_denoise(noisy: np.ndarray, weight: float, *, max_num_iter: int = 200, eps: float = 2e-4) -> np.ndarray:
    """Isotropic TV denoising by Chambolle's projection (``skimage.restoration.denoise_tv_chambolle``).

    Minimises ``1/2 ||u - f||^2 + weight * TV(u)`` over all axes (3D TV for a volume),
    the same functional as :func:`resprunet.variational.tv_denoise` with ``isotropic=True``.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), data units.
    weight : float
        TV weight in data units (> 0).
    max_num_iter, eps
        skimage's iteration cap and relative stopping tolerance on the objective.

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy``.
    """
    f = as_float_image(noisy, "noisy")
    out = restoration.denoise_tv_chambolle(f, weight=weight, max_num_iter=max_num_iter, eps=eps, channel_axis=None)
    return out.astype(output_dtype(noisy), copy=False)


def nl_means_denoise(
    noisy: np.ndarray,
    h: float,
    *,
    sigma: float = 0.0,
    patch_size: int = 5,
    patch_distance: int = 6,
    fast_mode: bool = True,
) -> np.ndarray:
    """Non-local means (``skimage.restoration.denoise_nl_means``), 2D or 3D.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), data units.
    h : float
        Patch-distance cut-off in data units (> 0); about 0.6-1.0 x sigma with ``sigma`` given.
    sigma : float
        Noise standard deviation in data units, subtracted from patch distances (0: none).
    patch_size, patch_distance : int
        Patch side and search radius, in pixels/voxels.
    fast_mode : bool
        skimage's fast (uniform patch weights) variant.

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy``.
    """
    f = as_float_image(noisy, "noisy")
    if not h > 0:
        raise ValueError(f"h must be > 0 (data units), got {h!r}")
    single = f.ndim == 3 and f.shape[0] == 1  # a one-slice volume: skimage would drop the axis
    out = restoration.denoise_nl_means(
        f[0] if single else f, h=h, sigma=sigma, patch_size=patch_size,
        patch_distance=patch_distance, fast_mode=fast_mode, channel_axis=None,
    )
    return out.reshape(f.shape).astype(output_dtype(noisy), copy=False)


def wavelet_denoise(
    noisy: np.ndarray,
    sigma: float | None = None,
    *,
    wavelet: str = "db1",
    mode: str = "soft",
    method: str = "BayesShrink",
) -> np.ndarray:
    """Wavelet shrinkage (``skimage.restoration.denoise_wavelet``), 2D or 3D.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), data units.
    sigma : float, optional
        Noise standard deviation in data units; estimated by skimage when None.
    wavelet, mode, method
        PyWavelets wavelet name, "soft"/"hard" thresholding, "BayesShrink"/"VisuShrink".

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy`` (not rescaled, not clipped).
    """
    f = as_float_image(noisy, "noisy")
    out = restoration.denoise_wavelet(
        f, sigma=sigma, wavelet=wavelet, mode=mode, method=method, rescale_sigma=True, channel_axis=None,
    )
    return out.astype(output_dtype(noisy), copy=False)
