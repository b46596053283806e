"""Tiled sliding-window prediction with Gaussian blending, memory-bounded.

A volume is cut into overlapping tiles (25 % by default, never less than half the model's
receptive field), the tiles go through the model in batches, and each prediction is added
with Gaussian weights (sigma = 1/8 of the tile, as in MONAI) into accumulators that cover
only a slab of the volume along z. When a slab is complete it is divided by its weights
and written out, so memory stays about one slab of tiles even for a volume larger than RAM
written to a memory-mapped ``.npy`` file or an HDF5 dataset.

>>> from resprunet.inference import predict_volume       # doctest: +SKIP
>>> y = predict_volume(model, x, tile_shape=(32, 64, 64), overlap=0.25)
"""
from __future__ import annotations

from .predict import denoise_array, predict_volume
from .tiles import TileGrid, gaussian_weights, plan_tiles

__all__ = ["predict_volume", "denoise_array", "TileGrid", "plan_tiles", "gaussian_weights"]
