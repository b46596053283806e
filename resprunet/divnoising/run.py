"""The ``method: divnoising`` training run: its trainer and its saved, evaluated result.

Used by :func:`resprunet.training.train`: the data come from the blind-spot path
(``build_training_data(..., noisy_only=True)``: noisy volumes, or clean ones corrupted once by
``data.simulate_noise``, served as they are), the noise model from ``divnoising.noise_model``
(:mod:`.noise`), fitted on training patches where it says so and written to the run directory
as ``noise_model.json`` at the start (a resumed run reads it back, so it keeps its noise model).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..noise_models import NoiseModel
from .artifact import NOISE_MODEL_FILE, save_divnoising
from .model import build_divnoising
from .noise import resolve_noise_model
from .posterior import PosteriorMean
from .trainer import DivNoisingTrainer

__all__ = ["NOISE_PATCH_BATCHES", "build_trainer", "save_and_reload"]

log = logging.getLogger(__name__)

#: Training batches whose noisy patches a noise model is estimated or bootstrapped from.
NOISE_PATCH_BATCHES = 16


def build_trainer(config: Any, train_data: Any, run_dir: Path) -> DivNoisingTrainer:
    """The run's :class:`DivNoisingTrainer`, built (so ``BackupAndRestore`` can restore it).

    Parameters
    ----------
    config : resprunet.training.TrainConfig
        ``model`` (ndim and the VAE's options), ``divnoising`` (noise model, KL weight), ``seed``.
    train_data : tf.data.Dataset
        The training stream of ``(noisy, noisy)`` batches (normalised units).
    run_dir : Path
        Holds (or gets) ``noise_model.json``.
    """
    noise_path = Path(run_dir) / NOISE_MODEL_FILE
    if noise_path.is_file():
        noise_model = NoiseModel.load(noise_path)
        log.info("noise model from %s: %s", noise_path, noise_model)
    else:
        patches = np.concatenate([np.asarray(x) for x, _ in train_data.take(NOISE_PATCH_BATCHES)])
        noise_model = resolve_noise_model(config.divnoising.noise_model, patches)
        noise_model.save(noise_path)
        log.info("noise model: %s (saved to %s)", noise_model, noise_path)
    vae = build_divnoising(config.model.ndim, **config.model.options)
    trainer = DivNoisingTrainer(vae, noise_model, config.divnoising.kl_weight, seed=config.seed, name="divnoising")
    channels = int(vae.get_layer("signal").output.shape[-1])
    trainer(np.zeros((1, *config.data.patch_shape, channels), np.float32))  # builds it
    return trainer


def save_and_reload(trainer: DivNoisingTrainer, config: Any, run_dir: Path) -> PosteriorMean:
    """Save ``model.keras`` (and the noise model beside it), reload it in safe mode and return it
    as an MMSE denoiser of ``divnoising.samples`` samples (for the final evaluation)."""
    path = save_divnoising(trainer.inference_model(), trainer.noise_model, Path(run_dir) / "model.keras", force=True)
    saved = keras.saving.load_model(path, compile=False, safe_mode=True)
    return PosteriorMean(saved, config.divnoising.samples, seed=config.seed + 3)
