"""Where tiled predictions go: z-slab accumulators and in-memory, ``.npy`` or HDF5 outputs."""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from data_pipelines.errors import InvalidDataError, ShapeMismatchError

from .tiles import Shape3


class SlabAccumulator:
    """Weighted sums over a slab of z slices; finished slices are written to ``sink``."""

    def __init__(self, sink: "Sink", yx: tuple[int, int], channels: int) -> None:
        self.sink = sink
        self.yx = yx
        self.channels = channels
        self.z_lo = 0
        self.total = np.zeros((0, *yx, channels), np.float32)
        self.weight = np.zeros((0, *yx, 1), np.float32)

    def _cover(self, z_hi: int) -> None:
        extra = z_hi - self.z_lo - self.total.shape[0]
        if extra > 0:
            self.total = np.concatenate(
                [self.total, np.zeros((extra, *self.yx, self.channels), np.float32)]
            )
            self.weight = np.concatenate([self.weight, np.zeros((extra, *self.yx, 1), np.float32)])

    def add(self, start: Shape3, pred: np.ndarray, weight: np.ndarray) -> None:
        """Add ``pred`` (z, y, x, c), already cropped to the volume, with ``weight`` (z, y, x)."""
        z0, y0, x0 = start
        dz, dy, dx = pred.shape[:3]
        self._cover(z0 + dz)
        zs = slice(z0 - self.z_lo, z0 - self.z_lo + dz)
        self.total[zs, y0 : y0 + dy, x0 : x0 + dx] += pred * weight[..., None]
        self.weight[zs, y0 : y0 + dy, x0 : x0 + dx] += weight[..., None]

    def flush(self, z_end: int) -> None:
        """Write the slices below ``z_end`` (no later tile touches them) and drop them."""
        n = z_end - self.z_lo
        if n <= 0:
            return
        self.sink.write(self.z_lo, self.total[:n] / self.weight[:n])
        self.total = self.total[n:].copy()
        self.weight = self.weight[n:].copy()
        self.z_lo = z_end


def _mapping_of(array: Any) -> mmap.mmap | None:
    """The ``mmap.mmap`` an ``np.memmap`` (or a view of one) lies in, found through the public
    ``ndarray.base`` chain; None for anything else."""
    if not isinstance(array, np.memmap):
        return None
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return base if isinstance(base, mmap.mmap) else None


def release_pages(array: Any, start: int, stop: int) -> None:
    """Drop rows ``start:stop`` (axis 0) of a memory-mapped array from resident memory.

    Written pages are flushed to the file first; the data stays in the file (and the page
    cache), only this process's resident set shrinks. A no-op for anything but a
    C-contiguous ``np.memmap``, and for a writeable copy-on-write one (``mode="c"``), whose
    changes live only in memory.
    """
    mm = _mapping_of(array)
    if mm is None or not array.flags.c_contiguous or stop <= start or not hasattr(mm, "madvise"):
        return
    if array.flags.writeable and getattr(array, "mode", None) == "c":
        return
    base = np.frombuffer(mm, np.uint8).ctypes.data
    row = array.strides[0]
    first = array.ctypes.data - base + start * row
    last = array.ctypes.data - base + stop * row
    page = mmap.PAGESIZE
    first, last = -(-first // page) * page, (last // page) * page
    if last > first:
        if array.flags.writeable:
            mm.flush(first, last - first)
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)


class Sink:
    """Writes finished (z, y, x, c) slabs into the caller's output array or dataset."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, z0: int, slab: np.ndarray) -> None:
        z1 = z0 + slab.shape[0]
        if self.target.ndim == 2:  # a 2D image: (y, x)
            self.target[...] = slab.reshape(self.target.shape)
        else:
            self.target[z0:z1] = slab.reshape((z1 - z0, *self.target.shape[1:]))
            release_pages(self.target, z0, z1)



@contextmanager
def output_target(out: Any, shape: tuple[int, ...]) -> Iterator[Any]:
    """Yield an array-like to write into: a new array, the caller's array/dataset, or a
    memory-mapped ``.npy`` written atomically at the path ``out``."""
    if out is None:
        yield np.empty(shape, np.float32)
        return
    if isinstance(out, (str, os.PathLike)):
        from data_pipelines.io.atomic import atomic_path

        path = Path(out)
        if path.suffix != ".npy":
            raise InvalidDataError(f"{path}: out must be a .npy path (memory-mapped), got {path.suffix!r}")
        with atomic_path(path, force=True) as tmp:
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            yield target
            target.flush()
            del target
        return
    if tuple(out.shape) != tuple(shape):
        raise ShapeMismatchError(f"out has shape {tuple(out.shape)}; expected {tuple(shape)}")
    yield out


