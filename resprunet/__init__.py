"""resprunet: deep and classical denoising of 2D and 3D CT and microscopy images."""
from __future__ import annotations

__version__ = "0.1.0"
