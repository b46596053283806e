"""Final evaluation of a run: PSNR/SSIM of noisy input vs denoised output on the test volumes."""
from __future__ import annotations

from typing import Any

import data_pipelines as dp
import keras
import numpy as np

from ..inference import denoise_array
from ..models import describe
from .config import DataConfig
from .data import make_noise, make_normalizer
from .metrics import psnr, ssim


def _scores(clean: np.ndarray, estimate: np.ndarray, ndim: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM at data range 1.0: 3D SSIM for 3D models, mean per-slice 2D SSIM else;
    over every frame of a (z, y, x, t) volume (PSNR of all voxels, the mean of the frames' SSIM)."""
    if clean.ndim == 4:
        per_frame = [_scores(clean[..., t], estimate[..., t], ndim)[1] for t in range(clean.shape[-1])]
        return float(psnr(clean[None], estimate[None])[0]), float(np.mean(per_frame))
    if ndim == 3:
        a, b = clean[None, ..., None], estimate[None, ..., None]
    else:  # a 2D model sees slices: the mean of the per-slice 2D SSIMs
        a, b = clean[..., None], estimate[..., None]
    whole_psnr = float(psnr(clean[None], estimate[None])[0])
    return whole_psnr, float(np.mean(keras.ops.convert_to_numpy(ssim(a, b))))


def evaluate_volume(
    model: keras.Model, volume: dp.Volume, config: DataConfig, ndim: int, seed: int
) -> dict[str, Any]:
    """Denoise one whole test volume corrupted with fixed, seeded noise, as a user would, and score it.

    The noise is added in the units of the normaliser fitted on the clean volume (the units
    the noise sigma is given in, and the units of the scores); the noisy volume is mapped
    back to the source units and denoised by :func:`resprunet.inference.denoise_array`,
    which fits the normaliser on the noisy input exactly as ``resprunet denoise`` does
    (the normalisation contract, :mod:`data_pipelines.normalize`).

    Parameters
    ----------
    model : keras.Model
        Trained denoiser (its ``"prior"`` input, if any, gets the prior it was trained with:
        neighbour slices or the mean of the frames of the noisy volume, or the volume's prior
        file, ``volume.meta["prior"]``).
    volume : Volume
        Test volume in its own units, (z, y, x), or (z, y, x, t) frames (each denoised and
        scored).
    config : DataConfig
        ``normalize``, ``eval_noise`` (or ``noise``), ``prior_options``, ``patch_shape``.
    ndim : int
        The model's dimensionality (2: slice-wise, mean per-slice SSIM; 3: 3D SSIM).
    seed : int
        Seed of the noise.

    Returns
    -------
    dict
        ``volume``, ``shape``, ``noise``, ``noisy_psnr``, ``noisy_ssim``, ``denoised_psnr``,
        ``denoised_ssim``, ``psnr_gain`` (dB), ``ssim_kind``.
    """
    reference = make_normalizer(config.normalize).fit(volume.array)
    clean = reference(volume.array).astype(np.float32)
    noise_spec = config.eval_noise or config.noise
    noisy = make_noise(noise_spec, "data.eval_noise")(clean, np.random.default_rng(seed)).astype(np.float32)
    tile = tuple(2 * p for p in config.patch_shape)
    noisy_source = reference.inverse(noisy)
    sigma = noise_spec.get("sigma") if noise_spec.get("kind") == "gaussian" else None
    if describe(model).needs_sigma and isinstance(sigma, (int, float)):
        # a noise-conditioned model is told the true sigma, in its own units
        model_units = make_normalizer(config.normalize).fit(noisy_source)
        sigma = float(sigma) * (reference.high - reference.low) / (model_units.high - model_units.low)
    else:
        sigma = None  # other models ignore it; a blind range is estimated
    options = {"prior_options": dict(config.prior_options), "tile_shape": tile, "progress": False,
               "sigma": sigma}
    if noisy.ndim == 4 and config.prior == "temporal":  # every frame, beside the mean of all
        denoised_source = denoise_array(model, noisy_source, make_normalizer(config.normalize),
                                        prior="temporal", **options)
    elif noisy.ndim == 4:  # a model of single frames (e.g. spectral bins without the prior)
        denoised_source = np.stack([
            denoise_array(model, noisy_source[..., t], make_normalizer(config.normalize), **options)
            for t in range(noisy.shape[-1])
        ], axis=-1)
    else:  # a prior file is a real image of the object: used as it is, without added noise
        prior = volume.meta["prior"] if config.prior == "file" else "auto"
        denoised_source = denoise_array(model, noisy_source, make_normalizer(config.normalize),
                                        prior=prior, **options)
    denoised = reference(denoised_source)
    noisy_psnr, noisy_ssim = _scores(clean, noisy, ndim)
    den_psnr, den_ssim = _scores(clean, denoised, ndim)
    return {
        "volume": volume.name,
        "shape": list(clean.shape),
        "noise": dict(noise_spec),
        "noisy_psnr": noisy_psnr,
        "noisy_ssim": noisy_ssim,
        "denoised_psnr": den_psnr,
        "denoised_ssim": den_ssim,
        "psnr_gain": den_psnr - noisy_psnr,
        "ssim_kind": "3D SSIM" if ndim == 3 else "mean of per-slice 2D SSIM",
    }
