"""BM3D (2D, slice-wise for volumes) and BM4D (3D) over the optional ``bm3d``/``bm4d`` packages.

Both denoise white Gaussian noise; on Poisson-Gaussian data (``photons`` given) they run in
the domain of the generalised Anscombe transform (:mod:`resprunet.variational.vst`).
Both packages (PyPI ``bm3d``, ``bm4d``; non-commercial licence) are the optional extra
``bm``: ``pip install -e ".[bm]"`` from a clone (``pip install "resprunet[bm]"`` once the
package is on PyPI). They are imported on first use only.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

import numpy as np

from ._validate import as_float_image, output_dtype
from .vst import generalized_anscombe, inverse_generalized_anscombe

INSTALL_HINT = ('pip install -e ".[bm]" in a clone of resprunet '
                '(pip install "resprunet[bm]" once the package is published)')


class BMPackageMissingError(ImportError):
    """The optional ``bm3d`` or ``bm4d`` package is not installed."""


class DenoiserFailedError(RuntimeError):
    """A denoiser returned without an error but its output is unusable."""


def require_bm(name: str) -> ModuleType:
    """Import the optional package ``name`` ("bm3d" or "bm4d") or raise
    :class:`BMPackageMissingError` with the install command (cheap: call it before loading
    anything heavy)."""
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
        require_bm(name)
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


def _gaussian_or_stabilised(f: np.ndarray, sigma: float | None, photons: float | None,
                            denoise: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """``denoise(f, sigma)`` for Gaussian noise; for Poisson-Gaussian noise (``photons`` given),
    ``denoise`` with sigma 1 between the forward and the unbiased inverse GAT."""
    if photons is None:
        return denoise(f, _resolve_sigma(f, sigma))
    if sigma is None:
        raise ValueError("with photons, give sigma: the Gaussian part in normalised units (0 for pure Poisson)")
    stabilised = generalized_anscombe(f, photons, sigma)
    return inverse_generalized_anscombe(denoise(stabilised, 1.0), photons, sigma)


def bm3d_denoise(noisy: np.ndarray, sigma: float | None = None, *, photons: float | None = None,
                 profile: str = "np") -> np.ndarray:
    """BM3D denoising of an image, or of each (y, x) slice of a (z, y, x) volume.

    Parameters
    ----------
    noisy : np.ndarray
        Image (y, x) or volume (z, y, x), finite, in data units; each side >= 8 pixels.
    sigma : float, optional
        Standard deviation of the white Gaussian noise, in the data's units (0.05 for
        "5 %" of a [0, 1] range). Default: estimated from the data
        (:func:`resprunet.variational.estimate_noise_sigma`). Give the true sigma when known.
        With ``photons``: the Gaussian part of Poisson-Gaussian noise, normalised units,
        required (0 for pure Poisson).
    photons : float, optional
        Poisson-Gaussian noise (:class:`data_pipelines.PoissonGaussianNoise`): expected
        photon count at intensity 1 of data normalised to [0, 1]. The data are stabilised
        with the generalised Anscombe transform, denoised with sigma 1 and mapped back with
        the unbiased inverse (:mod:`resprunet.variational.vst`).
    profile : str
        ``bm3d`` profile ("np", "refilter", "vn", "high", ...).

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy``; float32 for float32 input (else float64).

    Raises
    ------
    BMPackageMissingError
        The ``bm3d`` package is missing (an ImportError naming :data:`INSTALL_HINT`).
    DenoiserFailedError
        The package returned an unusable result.
    ValueError
        Bad ``sigma`` or ``photons`` (e.g. photons <= 0, or photons without sigma).
    """
    package = require_bm("bm3d")
    f = as_float_image(noisy, "noisy")

    def denoise(g: np.ndarray, s: float) -> np.ndarray:
        slices = [g] if g.ndim == 2 else list(g)
        return np.stack([check_denoiser_output(z, package.bm3d(z, s, profile=profile), "bm3d") for z in slices])

    out = _gaussian_or_stabilised(f, sigma, photons, denoise)
    return out.reshape(f.shape).astype(output_dtype(noisy), copy=False)


def bm3d_rgb_denoise(noisy: np.ndarray, sigma: float, *, profile: str = "np") -> np.ndarray:
    """Colour BM3D of an RGB image, or of each slice of a stack of RGB images.

    ``bm3d.bm3d_rgb``: block matching on the luminance of the opponent colour transform,
    the same groups filtered in every channel; stronger than grey BM3D per channel.

    Parameters
    ----------
    noisy : np.ndarray
        (y, x, 3) or (z, y, x, 3), finite, in data units.
    sigma : float
        Standard deviation of the white Gaussian noise of each channel, in the data's units.
    profile : str
        ``bm3d`` profile ("np", "refilter", ...).

    Returns
    -------
    np.ndarray
        Denoised array, shape of ``noisy``; float32 for float32 input (else float64).

    Raises
    ------
    ValueError
        Not 3 channels on the last axis, or sigma <= 0.
    """
    package = require_bm("bm3d")
    f = as_float_image(noisy, "noisy", ndims=(3, 4))
    if f.shape[-1] != 3:
        raise ValueError(f"colour BM3D needs 3 channels on the last axis, got shape {f.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    slices = [f] if f.ndim == 3 else list(f)
    out = np.stack([check_denoiser_output(z, package.bm3d_rgb(z, sigma, profile=profile), "bm3d_rgb")
                    for z in slices])
    return out.reshape(f.shape).astype(output_dtype(noisy), copy=False)


def bm4d_denoise(noisy: np.ndarray, sigma: float | None = None, *, photons: float | None = None,
                 profile: str = "np") -> np.ndarray:
    """BM4D denoising of a volume (z, y, x) with collaborative filtering of 3D blocks.

    Parameters
    ----------
    noisy : np.ndarray
        Volume (z, y, x), finite, in data units; each side >= the block size (4 voxels).
        BM4D is slow (about 3 s for 16 x 32 x 32 voxels on one core): crop large volumes.
    sigma : float, optional
        Noise standard deviation in the data's units; default estimated from the data
        slice-wise (:func:`resprunet.variational.estimate_noise_sigma`). With ``photons``:
        the Gaussian part, normalised units, required (0 for pure Poisson).
    photons : float, optional
        Poisson-Gaussian noise: expected photon count at intensity 1; denoised in the
        generalised Anscombe domain as in :func:`bm3d_denoise`.
    profile : str
        ``bm4d`` profile ("np", "refilter", "lc", ...).

    Returns
    -------
    np.ndarray
        Denoised volume, shape of ``noisy``; float32 for float32 input (else float64).

    Raises
    ------
    BMPackageMissingError
        The ``bm4d`` package is missing (an ImportError naming :data:`INSTALL_HINT`).
    DenoiserFailedError
        The package returned silently without denoising (its own failure mode: a constant,
        unchanged, non-finite or mis-shaped output).
    ValueError
        Bad ``sigma`` or ``photons``.
    """
    package = require_bm("bm4d")
    f = as_float_image(noisy, "noisy", ndims=(3,))

    def denoise(g: np.ndarray, s: float) -> np.ndarray:
        return check_denoiser_output(g, package.bm4d(g, s, profile=profile), "bm4d")

    return _gaussian_or_stabilised(f, sigma, photons, denoise).astype(output_dtype(noisy), copy=False)
