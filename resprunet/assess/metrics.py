"""Image-quality metrics in numpy, each optionally restricted to a mask (science note 3).

Conventions: ``x`` is the reference (clean) and ``x_hat`` the estimate, same shape, same
units; ``data_range`` (max - min of the data's possible range, 1.0 for [0, 1] data) is
always explicit. A ``mask`` (bool, shape of ``x``) restricts a metric to a region (e.g.
the body, not the air): the pixel metrics use the masked voxels only; SSIM averages its
map over the masked voxels away from the border (see :func:`ssim_2d`).

No TensorFlow: this module imports numpy and scipy only.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SSIM_SIGMA = 1.5
_TRUNCATE = 3.5
_SSIM_RADIUS = int(_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: an 11-wide window, as skimage


def _pair(x: np.ndarray, x_hat: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """float64 copies of ``x``, ``x_hat`` and a bool mask, after checking shapes."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"x_hat must have the shape of x {a.shape}, got {b.shape}")
    if mask is None:
        return a, b, None
    m = np.asarray(mask)
    if m.shape != a.shape:
        raise ValueError(f"mask must have the shape of x {a.shape}, got {m.shape}")
    m = m.astype(bool)
    if not m.any():
        raise ValueError("mask selects no voxel; expected a non-empty region")
    return a, b, m


def _masked(a: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    return a.ravel() if m is None else a[m]


def _check_range(data_range: float) -> float:
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a finite number > 0 (max - min of the data's range), got {data_range!r}")
    return float(data_range)


def psnr(x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)``, in dB.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, any equal shapes, same units.
    data_range : float
        Range of the data (1.0 for [0, 1]; 1400 for a (-1000, 400) HU window).
    mask : np.ndarray of bool, optional
        Region the MSE is taken over.

    Returns
    -------
    float
        PSNR in dB (inf when x_hat equals x on the region).
    """
    rng = _check_range(data_range)
    a, b, m = _pair(x, x_hat, mask)
    mse = float(np.mean((_masked(a, m) - _masked(b, m)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(rng * rng / mse))


def nrmse(
    x: np.ndarray, x_hat: np.ndarray, mask: np.ndarray | None = None, normalization: str = "euclidean"
) -> float:
    """Normalised root-mean-square error (dimensionless), as ``skimage.metrics.normalized_root_mse``.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate.
    mask : np.ndarray of bool, optional
        Region both the error and the normaliser are taken over.
    normalization : {"euclidean", "min-max", "mean"}
        RMSE divided by ``sqrt(mean(x^2))``, ``max(x) - min(x)`` or ``mean(x)`` on the region.

    Returns
    -------
    float
    """
    a, b, m = _pair(x, x_hat, mask)
    ref, est = _masked(a, m), _masked(b, m)
    denominators = {
        "euclidean": lambda: np.sqrt(np.mean(ref * ref)),
        "min-max": lambda: ref.max() - ref.min(),
        "mean": lambda: ref.mean(),
    }
    if normalization not in denominators:
        raise ValueError(f"normalization must be one of {sorted(denominators)}, got {normalization!r}")
    return float(np.sqrt(np.mean((ref - est) ** 2)) / denominators[normalization]())


def relative_error(x: np.ndarray, x_hat: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Relative error ``100 * ||x - x_hat||_2 / ||x||_2`` on the region, in percent.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate.
    mask : np.ndarray of bool, optional
        Region both norms are taken over (use the same one for every method).

    Returns
    -------
    float
        Percent.
    """
    a, b, m = _pair(x, x_hat, mask)
    ref, est = _masked(a, m), _masked(b, m)
    return float(100.0 * np.linalg.norm(ref - est) / np.linalg.norm(ref))


def error_map(x: np.ndarray, x_hat: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-voxel relative error ``100 * |x_hat - x| / rms(x)``, in percent of the reference's RMS.

    The root mean square of the map over the region is :func:`relative_error`, so the map
    shows where that number comes from.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, any equal shapes.
    mask : np.ndarray of bool, optional
        Region the reference's RMS is taken over (the map covers every voxel).

    Returns
    -------
    np.ndarray
        float64, shape of ``x``, percent (>= 0).
    """
    a, b, m = _pair(x, x_hat, mask)
    rms = np.sqrt(np.mean(_masked(a, m) ** 2))
    if rms == 0:
        raise ValueError("the reference is zero on the region; a relative error is undefined")
    return 100.0 * np.abs(b - a) / rms


def ssim_map(x: np.ndarray, x_hat: np.ndarray, data_range: float) -> np.ndarray:
    """Local SSIM (Wang et al. 2004) with an isotropic Gaussian window over all axes.

    Window: Gaussian, sigma 1.5 pixels, truncated at 3.5 sigma (11 wide), reflected at the
    border; population covariances; ``K1 = 0.01``, ``K2 = 0.03``. Equal to
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, full=True)[1]``.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, (y, x) or (z, y, x); every side >= 11.
    data_range : float
        Range of the data.

    Returns
    -------
    np.ndarray
        SSIM map, shape of ``x``, float64.
    """
    rng = _check_range(data_range)
    a, b, _ = _pair(x, x_hat, None)
    width = 2 * _SSIM_RADIUS + 1
    if min(a.shape) < width:
        raise ValueError(
            f"SSIM needs every side >= {width} (Gaussian window, sigma {SSIM_SIGMA}), got shape {a.shape}; "
            "for thin stacks use ssim_slicewise"
        )

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=SSIM_SIGMA, truncate=_TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def _interior(shape: tuple[int, ...]) -> np.ndarray:
    """Bool array: True away from the border by the SSIM window radius (skimage's crop)."""
    inside = np.zeros(shape, dtype=bool)
    inside[tuple(slice(_SSIM_RADIUS, n - _SSIM_RADIUS) for n in shape)] = True
    return inside


def _mean_ssim(x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None, ndim: int) -> float:
    a, b, m = _pair(x, x_hat, mask)
    if a.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D array, got shape {a.shape}")
    local = ssim_map(a, b, data_range)
    region = _interior(a.shape) if m is None else _interior(a.shape) & m
    if not region.any():
        raise ValueError(f"the mask selects no voxel at least {_SSIM_RADIUS} voxels from the border of {a.shape}")
    return float(local[region].mean())


def ssim_2d(x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of a 2D image (Gaussian window, sigma 1.5; see :func:`ssim_map`).

    The mean runs over the pixels at least 5 pixels from the border (as skimage), and with
    ``mask`` over the masked ones among them.

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, shape (y, x), each side >= 11.
    data_range : float
        Range of the data.
    mask : np.ndarray of bool, optional
        Region, shape (y, x).

    Returns
    -------
    float
        Mean SSIM in [-1, 1].
    """
    return _mean_ssim(x, x_hat, data_range, mask, ndim=2)


def ssim_3d(x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean of a true 3D SSIM map (3D Gaussian window, sigma 1.5 voxels; see :func:`ssim_map`).

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, shape (z, y, x), each side >= 11.
    data_range : float
        Range of the data.
    mask : np.ndarray of bool, optional
        Region, shape (z, y, x).

    Returns
    -------
    float
        Mean 3D SSIM in [-1, 1].
    """
    return _mean_ssim(x, x_hat, data_range, mask, ndim=3)


def ssim_slicewise(
    x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None = None, axis: int = 0
) -> float:
    """Mean over slices of the 2D SSIM of each slice along ``axis`` (not a 3D SSIM).

    Parameters
    ----------
    x, x_hat : np.ndarray
        Reference and estimate, shape (z, y, x); the slices must be >= 11 x 11.
    data_range : float
        Range of the data.
    mask : np.ndarray of bool, optional
        Region, shape (z, y, x); slices whose masked interior is empty are left out.
    axis : int
        Slicing axis.

    Returns
    -------
    float
        Mean of the per-slice SSIMs.
    """
    a, b, m = _pair(x, x_hat, mask)
    if a.ndim != 3:
        raise ValueError(f"ssim_slicewise expects a (z, y, x) volume, got shape {a.shape}")
    a, b = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    ms = [None] * len(a) if m is None else list(np.moveaxis(m, axis, 0))
    inside = _interior(a.shape[1:])
    values = [ssim_2d(sa, sb, data_range, sm) for sa, sb, sm in zip(a, b, ms) if sm is None or (sm & inside).any()]
    if not values:
        raise ValueError("the mask selects no voxel away from the border in any slice")
    return float(np.mean(values))


def ssim(x: np.ndarray, x_hat: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """SSIM of an image (:func:`ssim_2d`) or a volume (true 3D, :func:`ssim_3d`), by ``x.ndim``."""
    return ssim_3d(x, x_hat, data_range, mask) if np.ndim(x) == 3 else ssim_2d(x, x_hat, data_range, mask)


@dataclass(frozen=True)
class MetricSpec:
    """A named metric for :func:`resprunet.assess.assess`.

    Attributes
    ----------
    fn : callable
        ``fn(x, x_hat, data_range, mask) -> float``.
    higher_is_better : bool
    unit : str
    """

    fn: Callable[[np.ndarray, np.ndarray, float, np.ndarray | None], float]
    higher_is_better: bool
    unit: str


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(psnr, True, "dB"),
    "ssim": MetricSpec(ssim, True, ""),
    "ssim_2d": MetricSpec(ssim_2d, True, ""),
    "ssim_3d": MetricSpec(ssim_3d, True, ""),
    "ssim_slicewise": MetricSpec(ssim_slicewise, True, ""),
    "nrmse": MetricSpec(lambda x, y, r, m: nrmse(x, y, m), False, ""),
    "relative_error": MetricSpec(lambda x, y, r, m: relative_error(x, y, m), False, "%"),
}
