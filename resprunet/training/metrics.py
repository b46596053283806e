"""PSNR and SSIM for 2D images and 3D volumes in ``keras.ops`` (usable as metrics and in losses).

Conventions match ``skimage.metrics`` with an explicit ``data_range`` (1.0 for normalised
images): PSNR ``10 log10(data_range**2 / MSE)``; SSIM with an 11-tap Gaussian window of
sigma 1.5 voxels, K1 = 0.01, K2 = 0.03, population covariances, averaged over the valid
region (``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0)``). A volume's SSIM is a true 3D SSIM (the
Gaussian window is separable along z, y and x), never a stack of 2D SSIMs.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def psnr(y_true: Any, y_pred: Any, data_range: float = 1.0) -> Any:
    """Peak signal-to-noise ratio per sample, in dB.

    Parameters
    ----------
    y_true, y_pred : tensor, shape (batch, *spatial, channels)
        Reference and estimate, in the units of ``data_range``.
    data_range : float
        Peak-to-peak range of the data (1.0 for normalised images).

    Returns
    -------
    tensor, shape (batch,)
        float32 PSNR of each sample over all its voxels and channels.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    axes = tuple(range(1, len(y_true.shape)))
    mse = ops.mean(ops.square(y_true - y_pred), axis=axes)
    mse = ops.maximum(mse, 1e-12)
    return 10.0 * ops.log(data_range**2 / mse) / np.log(10.0)


def _gaussian_taps() -> np.ndarray:
    radius = SSIM_WINDOW // 2
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).astype("float32")


def _gaussian_filter(x: Any, spatial: int, axes: tuple[int, ...]) -> Any:
    """Valid separable Gaussian filter of ``x`` (n, *spatial, 1) along the spatial ``axes``
    (0 = first spatial axis)."""
    taps = _gaussian_taps()
    for axis in axes:
        shape = [1] * spatial + [1, 1]
        shape[axis] = SSIM_WINDOW
        x = ops.conv(x, ops.convert_to_tensor(taps.reshape(shape)), padding="valid")
    return x


def ssim(y_true: Any, y_pred: Any, data_range: float = 1.0) -> Any:
    """Structural similarity per sample: 2D for images, 3D for volumes.

    Parameters
    ----------
    y_true, y_pred : tensor, shape (batch, y, x, channels) or (batch, z, y, x, channels)
        Reference and estimate. Images: both sizes >= 11 (the Gaussian window). Volumes: y and
        x >= 11; a thinner z (a slab of fewer than 11 slices, as thick-slice 3D patches are)
        is not filtered along, so each slice is scored in 2D and the slices are averaged.
    data_range : float
        Peak-to-peak range of the data (1.0 for normalised images).

    Returns
    -------
    tensor, shape (batch,)
        float32 mean SSIM over the valid region and the channels of each sample.

    Raises
    ------
    ValueError
        If the rank is not 4 or 5, or a known in-plane (y, x) size is smaller than 11.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    rank = len(y_true.shape)
    if rank not in (4, 5):
        raise ValueError(
            f"ssim expects (batch, y, x, c) or (batch, z, y, x, c) tensors, got shape {y_true.shape}"
        )
    spatial = rank - 2
    sizes = y_true.shape[1:-1]
    if any(s is not None and s < SSIM_WINDOW for s in sizes[-2:]):
        raise ValueError(
            f"ssim needs y and x sizes >= {SSIM_WINDOW} (Gaussian window), got {tuple(sizes)}"
        )
    axes = tuple(a for a, s in enumerate(sizes) if s is None or s >= SSIM_WINDOW)
    channels = y_true.shape[-1]
    # channels -> batch, so that every channel is filtered on its own
    perm = (0, rank - 1) + tuple(range(1, rank - 1))

    def to_single_channel(t: Any) -> Any:
        t = ops.transpose(t, perm)
        return ops.expand_dims(ops.reshape(t, (-1,) + tuple(ops.shape(t)[2:])), -1)

    x, y = to_single_channel(y_true), to_single_channel(y_pred)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _gaussian_filter(x, spatial, axes)
    mu_y = _gaussian_filter(y, spatial, axes)
    var_x = _gaussian_filter(x * x, spatial, axes) - mu_x * mu_x
    var_y = _gaussian_filter(y * y, spatial, axes) - mu_y * mu_y
    cov = _gaussian_filter(x * y, spatial, axes) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    per_map = ops.mean(num / den, axis=tuple(range(1, rank)))
    return ops.mean(ops.reshape(per_map, (-1, channels)), axis=1)


@keras.saving.register_keras_serializable(package="resprunet")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Keras metric: mean per-sample PSNR (dB) at a given ``data_range`` (default 1.0)."""

    def __init__(self, data_range: float = 1.0, name: str = "psnr", dtype: Any = None) -> None:
        super().__init__(fn=psnr, name=name, dtype=dtype, data_range=data_range)
        self.data_range = data_range

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "data_range": self.data_range}


@keras.saving.register_keras_serializable(package="resprunet")
class SSIM(keras.metrics.MeanMetricWrapper):
    """Keras metric: mean per-sample SSIM (2D for images, 3D for volumes) at ``data_range``."""

    def __init__(self, data_range: float = 1.0, name: str = "ssim", dtype: Any = None) -> None:
        super().__init__(fn=ssim, name=name, dtype=dtype, data_range=data_range)
        self.data_range = data_range

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "data_range": self.data_range}
