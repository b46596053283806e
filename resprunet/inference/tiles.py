"""Tile grids over a volume and their Gaussian blending weights."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from data_pipelines.errors import InvalidDataError

log = logging.getLogger(__name__)

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a (z, y, x) volume start.

    Attributes
    ----------
    volume_shape : tuple of int
        (z, y, x) of the volume, in voxels.
    tile_shape : tuple of int
        (z, y, x) of every tile, in voxels (a multiple of the model's divisor; an axis
        shorter than its tile is reflect-padded up to the tile).
    overlap : tuple of int
        Overlap between neighbouring tiles along (z, y, x), in voxels.
    starts : tuple of tuple of int
        Tile start positions along each axis.
    """

    volume_shape: Shape3
    tile_shape: Shape3
    overlap: Shape3
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def n_tiles(self) -> int:
        """Total number of tiles."""
        return math.prod(len(s) for s in self.starts)

    def __iter__(self) -> Iterator[Shape3]:
        """Tile starts (z0, y0, x0) in z-major order (all tiles of one z row together)."""
        for z0 in self.starts[0]:
            for y0 in self.starts[1]:
                for x0 in self.starts[2]:
                    yield (z0, y0, x0)


def per_axis(value: int | tuple[int, ...] | list[int], name: str, spatial: int) -> Shape3:
    """Expand an int or a 2/3-tuple to (z, y, x); a 2D model has no z (1)."""
    if np.isscalar(value):
        vals = [int(value)] * spatial
    else:
        vals = [int(v) for v in value]  # type: ignore[union-attr]
    if len(vals) != spatial:
        raise InvalidDataError(f"{name} must have {spatial} values, got {value!r}")
    if spatial == 2:
        vals = [1, *vals]
    return (vals[0], vals[1], vals[2])


def _starts(length: int, tile: int, step: int) -> tuple[int, ...]:
    """Start positions of tiles of size ``tile`` covering ``[0, max(length, tile))``."""
    if length <= tile:
        return (0,)
    n = math.ceil((length - tile) / step) + 1
    return tuple(sorted({min(i * step, length - tile) for i in range(n)}))


def plan_tiles(
    volume_shape: Shape3,
    tile_shape: tuple[int, ...] | None,
    *,
    divisor: Shape3,
    receptive_field: Shape3,
    overlap: float = 0.25,
) -> TileGrid:
    """Choose the tile grid for a volume.

    Parameters
    ----------
    volume_shape : tuple of int
        (z, y, x) of the volume, in voxels.
    tile_shape : tuple of int or None
        Requested (z, y, x) tile in voxels; None for one tile holding the whole volume.
        Each axis is clipped to the volume and rounded up to a multiple of ``divisor``.
    divisor : tuple of int
        Every tile axis must be a multiple of this (2**depth for a U-Net; 1 along z for a
        2D model).
    receptive_field : tuple of int
        The model's receptive field along (z, y, x), in voxels.
    overlap : float
        Fraction of the tile shared with each neighbour, in [0, 1). Raised, per axis, to
        cover half the receptive field (capped at half the tile, with a warning).

    Returns
    -------
    TileGrid
    """
    if not 0.0 <= overlap < 1.0:
        raise InvalidDataError(f"overlap must be in [0, 1), got {overlap}")
    requested = volume_shape if tile_shape is None else tile_shape
    tiles, overlaps, starts, capped = [], [], [], []
    for axis, (length, want, div, rf) in enumerate(
        zip(volume_shape, requested, divisor, receptive_field)
    ):
        if want < 1:
            raise InvalidDataError(f"tile_shape must be positive, got {tuple(requested)}")
        tile = div * math.ceil(min(want, length) / div)
        if tile >= length:
            n_over = 0
        else:
            need = math.ceil(rf / 2) if div > 1 or rf > 1 else 0
            n_over = max(int(round(overlap * tile)), need)
            if n_over > tile // 2:
                capped.append(f"axis {axis}: tile {tile} < receptive field {rf}")
                n_over = tile // 2
        tiles.append(tile)
        overlaps.append(n_over)
        starts.append(_starts(length, tile, max(tile - n_over, 1)))
    if capped:
        log.warning("tiles too small for the model's receptive field (%s); overlap capped at half "
                    "the tile: use larger tiles for seamless output", "; ".join(capped))
    return TileGrid(
        volume_shape=tuple(volume_shape),  # type: ignore[arg-type]
        tile_shape=tuple(tiles),  # type: ignore[arg-type]
        overlap=tuple(overlaps),  # type: ignore[arg-type]
        starts=tuple(starts),  # type: ignore[arg-type]
    )


def gaussian_weights(grid: TileGrid) -> np.ndarray:
    """Blending weights of one tile, shape ``grid.tile_shape``, float32, maximum 1.

    A separable Gaussian with sigma = 1/8 of the tile along each axis (MONAI's
    ``mode="gaussian"``), floored at 1e-4 so that no voxel gets zero weight. An axis with
    a single tile gets weight 1 (every tile covering a voxel shares it, so it cancels).
    """
    w = np.ones(grid.tile_shape, np.float32)
    for axis, (tile, starts) in enumerate(zip(grid.tile_shape, grid.starts)):
        if len(starts) == 1:
            continue
        centre = (tile - 1) / 2.0
        sigma = tile / 8.0
        g = np.exp(-0.5 * ((np.arange(tile) - centre) / sigma) ** 2).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = tile
        w = w * np.maximum(g, 1e-4).reshape(shape)
    return w


