"""Multiscale pyramids: which levels to make, and block-mean downsampling.

Each level halves y and x (rounding up) from the one before; z is halved too when the
level's z voxel size is no larger than its y/x voxel size (isotropic enough), so an
anisotropic stack keeps its z resolution until y/x catch up. Levels are added while the new
level's largest y/x side is at least :data:`MIN_SIZE` voxels, at most :data:`MAX_LEVELS` in all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MAX_LEVELS", "MIN_SIZE", "block_mean", "pyramid_factors", "level_shape"]

#: The smallest level's largest y/x side, in voxels (levels stop before going below it).
MIN_SIZE = 64
#: Most levels a pyramid gets by default, level 0 included.
MAX_LEVELS = 8


def level_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """Shape (z, y, x) of a level downsampled by ``factors`` (z, y, x): ``ceil(n / f)``."""
    return tuple(math.ceil(int(n) / int(f)) for n, f in zip(shape, factors))


def pyramid_factors(
    shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    levels: int | None = None,
) -> list[tuple[int, int, int]]:
    """Downsampling factors (z, y, x) of each pyramid level relative to level 0.

    Parameters
    ----------
    shape : sequence of int
        Level-0 shape (z, y, x).
    spacing : sequence of float or None
        Level-0 voxel size (dz, dy, dx), any unit; None is taken as isotropic.
    levels : int or None
        Number of levels (level 0 included, >= 1); None: as many as the module notes say.
        Levels stop early once y and x are both 1.

    Returns
    -------
    list of (int, int, int)
        ``[(1, 1, 1), (fz, 2, 2), ...]``, one entry per level.
    """
    if levels is not None and levels < 1:
        raise ValueError(f"levels={levels}: expected at least 1 (level 0)")
    dz, dy, dx = (float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    factors = [(1, 1, 1)]
    limit = levels if levels is not None else MAX_LEVELS
    while len(factors) < limit:
        fz, fy, fx = factors[-1]
        z, y, x = level_shape(shape, factors[-1])
        if y == 1 and x == 1:
            break
        new_z = 2 if z > 1 and dz * fz <= max(dy * fy, dx * fx) else 1
        nxt = (fz * new_z, fy * (2 if y > 1 else 1), fx * (2 if x > 1 else 1))
        if levels is None and max(level_shape(shape, nxt)[1:]) < MIN_SIZE:
            break
        factors.append(nxt)
    return factors


def block_mean(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean over blocks of ``factors`` voxels (one factor per axis; the last block of an axis
    that ``factor`` does not divide is padded by repeating the edge).

    Parameters
    ----------
    array : np.ndarray
        Any shape.
    factors : sequence of int
        Block size per axis (1: unchanged).

    Returns
    -------
    np.ndarray
        float64, shape ``ceil(n / f)`` per axis.
    """
    data = np.asarray(array, dtype=np.float64)
    pad = [(0, (-n) % f) for n, f in zip(data.shape, factors)]
    if any(p for _, p in pad):
        data = np.pad(data, pad, mode="edge")
    split = []
    for n, f in zip(data.shape, factors):
        split += [n // f, f]
    return data.reshape(split).mean(axis=tuple(range(1, 2 * data.ndim, 2)))
