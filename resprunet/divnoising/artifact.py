"""A trained DivNoising model on disk: ``model.keras`` (the inference model, inputs
``{"noisy", "eps"}``, output the signal; opens with ``keras.saving.load_model`` in safe mode
without custom objects) and ``noise_model.json`` beside it (:mod:`resprunet.noise_models`)."""
from __future__ import annotations

import os
from pathlib import Path
import keras

from ..noise_models import NoiseModel

__all__ = ["NOISE_MODEL_FILE", "load_divnoising", "save_divnoising"]

NOISE_MODEL_FILE = "noise_model.json"


def save_divnoising(model: keras.Model, noise_model: NoiseModel, path: str | os.PathLike,
                    force: bool = False) -> Path:
    """Save the inference model as ``path`` (a ``.keras`` file; its folder is created) and the
    noise model beside it (``force``: replace an existing noise model file).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_model.save(path.parent / NOISE_MODEL_FILE, force=force)
    model.save(path, overwrite=True)
    return path


def load_divnoising(path: str | os.PathLike) -> tuple[keras.Model, NoiseModel]:
    """Load ``model.keras`` (a file, or a folder holding it) in safe mode and its noise model.

    Raises
    ------
    FileNotFoundError
        No model file or no ``noise_model.json`` beside it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    noise_path = path.parent / NOISE_MODEL_FILE
    if not noise_path.is_file():
        raise FileNotFoundError(f"{noise_path}: no noise model beside the DivNoising model {path}")
    return keras.saving.load_model(path, compile=False, safe_mode=True), NoiseModel.load(noise_path)

