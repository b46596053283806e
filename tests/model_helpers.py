"""Helpers shared by tests that need untrained models with a non-trivial output."""
from __future__ import annotations

import keras
import numpy as np


def random_head(model: keras.Model, seed: int = 0, scale: float = 0.5) -> keras.Model:
    """Give ``output_conv`` random weights and return the model.

    A model with a skip (global residual, or ResPr-UNet's prior) starts with a zero head, so
    untrained it returns its input (or prior); comparisons of its outputs would be trivial.
    """
    head = model.get_layer("output_conv")
    rng = np.random.default_rng(seed)
    head.set_weights([rng.normal(0.0, scale, w.shape).astype(w.dtype) for w in head.get_weights()])
    return model
