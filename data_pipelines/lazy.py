"""Prepared volumes read region by region from lazy (Zarr) arrays, for :mod:`data_pipelines.datasets`.

A volume in memory is prepared once for training: cast to float32, put in the (z, y, x, c)
layout, normalised, its parts (clean, real noisy, external prior) stacked along c, and padded
to the patch. :class:`LazyPrepared` gives the same array without holding it: indexing it reads
only the region asked for from each part (a lazy chunked array reads only the chunks the region
touches), and applies the same steps to that region, so a patch read from it is bit-identical to
the same patch cut from the prepared in-memory array. Padding is an index map (numpy's
``reflect`` applied to voxel indices), so a padded axis reads at most its own (short) extent.

Normaliser statistics cannot be taken of the whole volume without reading it; they are taken
of :func:`statistics_blocks`, a bounded, deterministic set of blocks spread evenly over the
volume (see there).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidDataError
from .normalize import SMOOTHING, Normalizer

#: Voxels (per channel) read for the normaliser statistics of a lazy volume: 4 Mi voxels
#: (16 MiB as float32), read block by block.
LAZY_STATISTICS_VOXELS = 1 << 22
#: Largest y and x side (voxels) of a statistics block.
STATISTICS_BLOCK_SIDE = 256


@dataclass(frozen=True)
class LazyPart:
    """One part (clean, real noisy or external prior) of a prepared volume, not yet read.

    Attributes
    ----------
    array : array-like
        A lazy chunked array (``zarr.Array``, :class:`~data_pipelines.io.axes_view.AxesView`)
        or an np.ndarray, indexed with tuples of slices; (z, y, x), (z, y, x, c), or without z
        when ``prepend_z``.
    prepend_z : bool
        ``array`` lacks the z axis (one 2D image): a length-1 z axis is added.
    append_c : bool
        ``array`` lacks the channel axis: a length-1 channel axis is added.
    normalizer : Normalizer or None
        Fitted map applied to every region read (None: the values are used as they are).
    """

    array: Any
    prepend_z: bool = False
    append_c: bool = False
    normalizer: Normalizer | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """(z, y, x, c) of the part."""
        shape = tuple(int(n) for n in self.array.shape)
        return (1,) * self.prepend_z + shape + (1,) * self.append_c

    def read(self, z: slice, y: slice, x: slice, name: str) -> np.ndarray:
        """The region (z, y, x) as float32 (dz, dy, dx, c), normalised when the part has a normaliser.

        Raises
        ------
        InvalidDataError
            The region holds NaN/Inf voxels (``name`` and the region are named).
        """
        key = (y, x) if self.prepend_z else (z, y, x)
        data = np.asarray(self.array[key], dtype=np.float32)
        if self.prepend_z:
            data = data[None][z]
        if self.append_c:
            data = data[..., None]
        finite = np.isfinite(data)
        if not finite.all():
            region = ", ".join(f"{s.start}:{s.stop}" for s in (z, y, x))
            raise InvalidDataError(f"{name} holds {int(data.size - finite.sum())} NaN/Inf voxels in the region "
                                   f"[{region}] (shape {self.shape[:3]}); expected finite values")
        return data if self.normalizer is None else self.normalizer(data)


def _padded_index(size: int, widths: tuple[int, int], mode: str) -> np.ndarray | None:
    """Source index of every voxel of a padded axis (-1 for a zero of ``"constant"``); None unpadded."""
    if widths == (0, 0):
        return None
    if mode == "constant":
        return np.pad(np.arange(size), widths, mode="constant", constant_values=-1)
    return np.pad(np.arange(size), widths, mode=mode)


def _bounded(key: Any, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``key`` as one step-1 slice per axis of ``shape``, clipped to it."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > len(shape) or not all(isinstance(k, slice) for k in key):
        raise IndexError(f"a LazyPrepared volume takes up to {len(shape)} slices, got {key!r}")
    slices = []
    for k, n in zip(key + (slice(None),) * (len(shape) - len(key)), shape):
        start, stop, step = k.indices(n)
        if step != 1:
            raise IndexError(f"a LazyPrepared volume takes slices of step 1, got {k!r}")
        slices.append(slice(start, max(start, stop)))
    return tuple(slices)


class LazyPrepared:
    """A prepared (z, y, x, c) float32 volume whose regions are read on indexing.

    Parameters
    ----------
    parts : sequence of LazyPart
        Clean first, then the real noisy volume and the external prior if any; equal
        (z, y, x). Their channels are stacked in this order.
    widths : list of (int, int) or None
        Padding (before, after) of z, y and x (:func:`~data_pipelines.patches.pad_widths`).
    pad : {"reflect", "constant"} or None
        Padding mode (``"constant"`` pads with zeros after normalisation).
    name : str
        Names the volume in errors.

    Notes
    -----
    ``volume[z0:z1, y0:y1, x0:x1(, c0:c1)]`` returns the float32 np.ndarray that the same index
    gives on the prepared in-memory array; only step-1 slices are accepted.
    """

    def __init__(self, parts: Sequence[LazyPart], widths: list[tuple[int, int]] | None, pad: str | None,
                 name: str) -> None:
        self.parts = list(parts)
        self.name = name
        zyx = self.parts[0].shape[:3]
        widths = widths or [(0, 0)] * 3
        self.index = [_padded_index(n, w, pad or "constant") for n, w in zip(zyx, widths)]
        channels = sum(p.shape[3] for p in self.parts)
        self.shape = tuple(n + a + b for n, (a, b) in zip(zyx, widths)) + (channels,)

    ndim = 4
    dtype = np.dtype(np.float32)

    def __repr__(self) -> str:
        return f"LazyPrepared({self.name}, shape={self.shape}, parts={len(self.parts)})"

    def __getitem__(self, key: Any) -> np.ndarray:
        z, y, x, c = _bounded(key, self.shape)
        source, gather = [], []
        for axis, (wanted, index) in enumerate(zip((z, y, x), self.index)):
            if index is None:
                source.append(wanted)
                continue
            picked = index[wanted]
            inside = picked >= 0
            lo = int(picked[inside].min()) if inside.any() else 0
            hi = int(picked[inside].max()) + 1 if inside.any() else 1
            source.append(slice(lo, hi))
            gather.append((axis, np.where(inside, picked - lo, 0), inside))
        data = np.concatenate([p.read(*source, self.name) for p in self.parts], axis=-1)
        for axis, local, inside in gather:
            data = np.take(data, local, axis=axis)
            data[(slice(None),) * axis + (~inside,)] = 0.0
        return np.ascontiguousarray(data[..., c])


def statistics_blocks(part: LazyPart, name: str, max_voxels: int | None = None) -> np.ndarray:
    """A bounded, deterministic sample of a lazy part for normaliser statistics.

    Blocks of ``min(SMOOTHING, z)`` slices and at most :data:`STATISTICS_BLOCK_SIDE` voxels
    along y and x tile the volume on a grid (z slabs at :func:`numpy.linspace` starts, as
    :func:`~data_pipelines.normalize.statistics_sample` picks them for a large in-memory
    volume); when the grid holds more than ``max_voxels`` voxels, the grid (in z, y, x order)
    is cut into as many equal strata as the budget allows blocks and the middle block of each
    is kept (so a sample of few blocks is not drawn from the volume's edges, often background).
    Each block is read on its own. The blocks are returned side
    by side along the channel axis, so that :meth:`Normalizer.fit` winsorises all of them
    together and box-smooths each block on its own (never across two blocks), as it does for
    the slabs of a large in-memory volume: for a volume whose y-x planes fit in a block and
    whose slabs are all kept, the statistics equal those of ``statistics_sample`` with
    ``max_voxels``.

    Parameters
    ----------
    part : LazyPart
        Without a normaliser (raw values, float32).
    name : str
        Names the volume in errors.
    max_voxels : int, optional
        Budget in voxels per channel; default :data:`LAZY_STATISTICS_VOXELS` (read when
        called, so a test can lower it).

    Returns
    -------
    np.ndarray
        float32 (depth, by, bx, c * blocks) with depth = ``min(SMOOTHING, z)``.

    Raises
    ------
    InvalidDataError
        A block holds NaN/Inf voxels.
    """
    budget = LAZY_STATISTICS_VOXELS if max_voxels is None else int(max_voxels)
    z, y, x = part.shape[:3]
    block = (min(SMOOTHING, z), min(STATISTICS_BLOCK_SIDE, y), min(STATISTICS_BLOCK_SIDE, x))
    grid = [np.unique(np.linspace(0, n - b, max(1, math.ceil(n / b) if i else n // b)).astype(int))
            for i, (n, b) in enumerate(zip((z, y, x), block))]
    corners = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, 3)
    keep = max(1, min(len(corners), budget // math.prod(block)))
    chosen = corners[(2 * np.arange(keep) + 1) * len(corners) // (2 * keep)]  # the middle block of each stratum
    blocks = [part.read(*(slice(int(s), int(s) + b) for s, b in zip(corner, block)), name) for corner in chosen]
    return np.concatenate(blocks, axis=-1)
