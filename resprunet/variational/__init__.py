"""Classical and variational denoisers (numpy/scipy/skimage only; no TensorFlow).

Every denoiser takes an image (y, x) or a volume (z, y, x) in data units and returns an
array of the same shape. Parameters with units (weights, sigma, h) are in the data's units.
"""
from __future__ import annotations

from ._split_bregman import BregmanInfo
from .bm3d import (
    INSTALL_HINT,
    BMPackageMissingError,
    DenoiserFailedError,
    bm3d_denoise,
    bm3d_rgb_denoise,
    bm4d_denoise,
    bm_available,
    require_bm,
)
from .channels import per_channel
from .classical import nl_means_denoise, tv_chambolle_denoise, wavelet_denoise
from .spade import spade_denoise
from .tuning import TuningResult, calibrate_j_invariance, estimate_noise_sigma, parameter_grid, tune_on_validation
from .tv import tv_denoise
from .vst import generalized_anscombe, inverse_generalized_anscombe

__all__ = [
    "INSTALL_HINT",
    "BMPackageMissingError",
    "BregmanInfo",
    "DenoiserFailedError",
    "TuningResult",
    "bm3d_denoise",
    "bm3d_rgb_denoise",
    "bm4d_denoise",
    "bm_available",
    "require_bm",
    "calibrate_j_invariance",
    "estimate_noise_sigma",
    "generalized_anscombe",
    "inverse_generalized_anscombe",
    "nl_means_denoise",
    "per_channel",
    "parameter_grid",
    "spade_denoise",
    "tune_on_validation",
    "tv_chambolle_denoise",
    "tv_denoise",
    "wavelet_denoise",
]
