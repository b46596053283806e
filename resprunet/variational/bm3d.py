"""BM3D (2D, slice-wise for volumes) and BM4D (3D) over the optional ``bm3d``/``bm4d`` packages.

Both packages (PyPI ``bm3d``, ``bm4d``; non-commercial licence) are the optional extra
``bm``: ``pip install "resprunet[bm]"``. They are imported on first use only.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

from ._validate import as_float_image, output_dtype

INSTALL_HINT = 'pip install "resprunet[bm]"'


class BMPackageMissingError(ImportError):
    """The optional ``bm3d`` or ``bm4d`` package is not installed."""


class DenoiserFailedError(RuntimeError):
    """A denoiser returned without an error but its output is unusable."""


def _import_package(name: str) -> ModuleType:
    """Import the optional package ``name`` or raise :class:`BMPackageMissingError`."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise BMPackageMissingError(
            f"{name}_denoise needs the optional package {name!r}, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from err


def bm_available(name: str) -> bool:
    """Whether the optional package ``name`` ("bm3d" or "bm4d") can be imported."""
    try:
        _import_package(name)
    except BMPackageMissingError:
        return False
    return True


def check_denoiser_output(noisy: np.ndarray, out: object, name: str) -> np.ndarray:
    """Return ``out`` as an array, or raise when a denoiser failed without saying so.

    The ``bm4d`` package returns early on an internal error (e.g. out of memory) with a
    constant or unfinished estimate instead of raising; a wrapper could also hand back its
    input. Each of these is caught here.

    Raises
    ------
    DenoiserFailedError
        ``out`` has the wrong shape, holds NaN/Inf, equals the input exactly, or is constant
        while the input is not.
    """
    arr = np.asarray(out)
    if arr.shape != noisy.shape:
        raise DenoiserFailedError(f"{name} returned shape {arr.shape}, expected the input's {noisy.shape}")
    if not np.all(np.isfinite(arr)):
        raise DenoiserFailedError(f"{name} returned {np.count_nonzero(~np.isfinite(arr))} NaN/Inf values")
    if np.array_equal(arr, noisy) and np.ptp(noisy) > 0:
        raise DenoiserFailedError(f"{name} returned its input unchanged (an internal failure)")
    if np.ptp(arr) == 0 and np.ptp(noisy) > 0:
        raise DenoiserFailedError(
            f"{name} returned a constant image ({float(arr.flat[0]):g}) for a non-constant input "
            "(an internal failure, e.g. out of memory)"
        )
    return arr


def _resolve_sigma(f: np.ndarray, sigma: float | None) -> float:
    from .tuning import estimate_noise_sigma

    value = estimate_noise_sigma(f) if sigma is None else float(sigma)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"sigma must be a finite number > 0 in the data's units, got {sigma!r}")
    return value


def bm3d_denoise(noisy: np.ndarray, sigma: float | None = None, *, profile: str = "np") -> np.ndarray:
    """BM3D denoising of an image, or of each (y, x) slice of a (z, y, x) volume.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), finite, in data units; each side >= 8 pixels.
    sigma : float, optional
        Standard deviation of the white Gaussian noise, in the data's units (0.05 for
        "5 %" of a [0, 1] range). Default: estimated from the data
        (:func:`resprunet.variational.estimate_noise_sigma`). Give the true sigma when known.
    profile : str
        ``bm3d`` profile ("np", "refilter", "vn", "high", ...).

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy``; float32 for float32 input (else float64).

    Raises
    ------
    BMPackageMissingError
        The ``bm3d`` package is missing (an ImportError naming ``pip install "resprunet[bm]"``).
    DenoiserFailedError
        The package returned an unusable result.
    """
    package = _import_package("bm3d")
    f = as_float_image(noisy, "noisy")
    s = _resolve_sigma(f, sigma)
    slices = [f] if f.ndim == 2 else list(f)
    out = np.stack([check_denoiser_output(z, package.bm3d(z, s, profile=profile), "bm3d") for z in slices])
    return out.reshape(f.shape).astype(output_dtype(noisy), copy=False)


def bm4d_denoise(noisy: np.ndarray, sigma: float | None = None, *, profile: str = "np") -> np.ndarray:
    """BM4D denoising of a volume (z, y, x) with collaborative filtering of 3D blocks.

    Parameters
    ----------
    noisy : np.ndarray
        Volume (z, y, x), finite, in data units; each side >= the block size (4 voxels).
        BM4D is slow (about 3 s for 16 x 32 x 32 voxels on one core): crop large volumes.
    sigma : float, optional
        Noise standard deviation in the data's units; default estimated from the data
        slice-wise (:func:`resprunet.variational.estimate_noise_sigma`).
    profile : str
        ``bm4d`` profile ("np", "refilter", "lc", ...).

    Returns
    -------
    np.ndarray
        Denoised volume, shape of ``noisy``; float32 for float32 input (else float64).

    Raises
    ------
    BMPackageMissingError
        The ``bm4d`` package is missing (an ImportError naming ``pip install "resprunet[bm]"``).
    DenoiserFailedError
        The package returned silently without denoising (its own failure mode: a constant,
        unchanged, non-finite or mis-shaped output).
    """
    package = _import_package("bm4d")
    f = as_float_image(noisy, "noisy", ndims=(3,))
    s = _resolve_sigma(f, sigma)
    out = check_denoiser_output(f, package.bm4d(f, s, profile=profile), "bm4d")
    return out.astype(output_dtype(noisy), copy=False)
