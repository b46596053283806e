"""Denoising models for 2D images and 3D volumes (Keras 3 functional models).

>>> from resprunet import models
>>> m = models.build("unet", ndim=3, filters=8, depth=2)
>>> models.describe(m).divisor
4

Names: "convnet", "resnet", "unet", "respr_unet" (inputs ``{"noisy", "prior"}``), "irunet".
``preset="seed"`` reproduces the original architectures. All models are plain functional
models of built-in Keras layers: ``.keras`` files load without custom objects.
"""
from __future__ import annotations

from .convnet import convnet
from .info import ModelInfo, describe
from .irunet import irunet
from .registry import available, build, presets
from .resnet import resnet
from .respr_unet import respr_unet
from .unet import unet

__all__ = [
    "ModelInfo",
    "available",
    "build",
    "convnet",
    "describe",
    "irunet",
    "presets",
    "resnet",
    "respr_unet",
    "unet",
]
