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

import logging
import math
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from data_pipelines.errors import InvalidDataError, ShapeMismatchError

__all__ = ["predict_volume", "denoise_array", "TileGrid", "plan_tiles", "gaussian_weights"]

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


def _per_axis(value: int | tuple[int, ...] | list[int], name: str, spatial: int) -> Shape3:
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


class _SlabAccumulator:
    """Weighted sums over a slab of z slices; finished slices are written to ``sink``."""

    def __init__(self, sink: "_Sink", yx: tuple[int, int], channels: int) -> None:
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


def _release_pages(array: Any, start: int, stop: int) -> None:
    """Drop rows ``start:stop`` (axis 0) of a memory-mapped array from resident memory.

    Written pages are flushed to the file first; the data stays in the file (and the page
    cache), only this process's resident set shrinks. A no-op for anything but a
    C-contiguous ``np.memmap``, and for a writeable copy-on-write one (``mode="c"``), whose
    changes live only in memory.
    """
    mm = getattr(array, "_mmap", None)
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


class _Sink:
    """Writes finished (z, y, x, c) slabs into the caller's output array or dataset."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def write(self, z0: int, slab: np.ndarray) -> None:
        z1 = z0 + slab.shape[0]
        if self.target.ndim == 2:  # a 2D image: (y, x)
            self.target[...] = slab.reshape(self.target.shape)
        else:
            self.target[z0:z1] = slab.reshape((z1 - z0, *self.target.shape[1:]))
            _release_pages(self.target, z0, z1)


class _OutOfMemory(Exception):
    """A tile batch of one still did not fit; the tile must shrink."""


def _is_oom(exc: BaseException) -> bool:
    """True for TensorFlow's ResourceExhaustedError, MemoryError, or an "out of memory" message."""
    import tensorflow as tf

    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    return "out of memory" in str(exc).lower()


def _pad_to(block: np.ndarray, shape: Shape3) -> np.ndarray:
    """Reflect-pad the end of the three spatial axes of ``block`` up to ``shape``."""
    pads = [(0, t - s) for s, t in zip(block.shape[:3], shape)]
    if not any(p for _, p in pads):
        return block
    return np.pad(block, pads + [(0, 0)] * (block.ndim - 3), mode="reflect")


def _model_batch(
    model: Any, tiles: np.ndarray, priors: np.ndarray | None, ndim: int
) -> np.ndarray:
    """Run one batch (b, z, y, x, c) through the model; returns float32 (b, z, y, x, c')."""
    if ndim == 2:
        tiles = tiles[:, 0]
        priors = None if priors is None else priors[:, 0]
    inputs: Any = tiles if priors is None else {"noisy": tiles, "prior": priors}
    out = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
    return out[:, np.newaxis] if ndim == 2 else out


def _predict_in_chunks(
    model: Any,
    tiles: np.ndarray,
    priors: np.ndarray | None,
    ndim: int,
    batch_size: list[int],
) -> np.ndarray:
    """Predict ``tiles`` in chunks of ``batch_size[0]``, halving it on out-of-memory."""
    outputs = []
    i = 0
    while i < len(tiles):
        size = batch_size[0]
        chunk = slice(i, i + size)
        try:
            outputs.append(
                _model_batch(model, tiles[chunk], None if priors is None else priors[chunk], ndim)
            )
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM
            if not _is_oom(exc):
                raise
            if size == 1:
                raise _OutOfMemory(str(exc)) from exc
            batch_size[0] = size // 2
            log.warning(
                "out of memory on a batch of %d tiles; retrying with batch_size=%d",
                size, batch_size[0],
            )
            continue
        i += size
    return np.concatenate(outputs)


def _run_grid(
    model: Any,
    x: np.ndarray,
    prior: np.ndarray | None,
    grid: TileGrid,
    weights: np.ndarray,
    ndim: int,
    batch_size: list[int],
    sink: _Sink,
    out_channels: int,
    progress: bool,
) -> None:
    """Predict every tile of ``grid``, blend with ``weights`` (the tile's shape) into ``sink``."""
    acc = _SlabAccumulator(sink, x.shape[1:3], out_channels)
    starts = list(grid)
    z_len = x.shape[0]
    with tqdm(total=len(starts), desc="tiles", unit="tile", disable=not progress) as bar:
        b = 0
        while b < len(starts):
            batch = starts[b : b + batch_size[0]]
            tiles, priors = [], []
            for z0, y0, x0 in batch:
                region = (slice(z0, z0 + grid.tile_shape[0]), slice(y0, y0 + grid.tile_shape[1]),
                          slice(x0, x0 + grid.tile_shape[2]))
                tiles.append(_pad_to(np.asarray(x[region], np.float32), grid.tile_shape))
                if prior is not None:
                    priors.append(_pad_to(np.asarray(prior[region], np.float32), grid.tile_shape))
            pred = _predict_in_chunks(
                model, np.stack(tiles), np.stack(priors) if priors else None, ndim, batch_size
            )
            for (z0, y0, x0), p in zip(batch, pred):
                dz, dy, dx = (min(t, n - s) for t, n, s in
                              zip(grid.tile_shape, x.shape[:3], (z0, y0, x0)))
                acc.add((z0, y0, x0), p[:dz, :dy, :dx], weights[:dz, :dy, :dx])
            b += len(batch)
            done = starts[b][0] if b < len(starts) else z_len
            acc.flush(done)
            for source in (x, prior):  # input rows below ``done`` are not read again
                _release_pages(source, 0, done)
            bar.update(len(batch))


@contextmanager
def _output_target(out: Any, shape: tuple[int, ...]) -> Iterator[Any]:
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


def _model_info(model: Any) -> Any:
    from resprunet import models

    return models.describe(model)


def _as_zyxc(x: np.ndarray, name: str, ndim: int, channels: int) -> np.ndarray:
    """View ``x`` as (z, y, x, c): (y, x) -> (1, y, x, 1); (z, y, x) -> (z, y, x, 1)."""
    if x.ndim == 2:
        if ndim == 3:
            raise InvalidDataError(
                f"{name} is a 2D image of shape {x.shape}; a 3D model needs a (z, y, x) volume"
            )
        x = x[np.newaxis]
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise InvalidDataError(
            f"{name} has shape {x.shape}; expected (y, x), (z, y, x) or (z, y, x, c)"
        )
    if x.shape[-1] != channels:
        raise InvalidDataError(
            f"{name} has {x.shape[-1]} channel(s) (shape {x.shape}); the model expects {channels}"
        )
    return x


def predict_volume(
    model: Any,
    x: np.ndarray,
    prior: np.ndarray | None = None,
    *,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    blend: str = "gaussian",
    out: np.ndarray | str | os.PathLike | Any | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Denoise a 2D image or a volume with a Keras model, tile by tile.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`resprunet.models.build` (or loaded from the zoo). Its
        :func:`resprunet.models.describe` gives the dimensionality, channels, whether it
        needs a prior, the divisor each tile axis must be a multiple of, and the receptive
        field. A 2D model is applied slice by slice (tiles in y, x); a 3D model on 3D tiles.
    x : np.ndarray
        Normalised input (float32, typically in [0, 1]): (y, x) for a 2D image, (z, y, x)
        or (z, y, x, c). May be a ``np.memmap``; only one slab of tiles is read at a time.
    prior : np.ndarray, optional
        Same shape as ``x``; required when the model needs a prior (ResPr-UNet), which then
        receives ``{"noisy": tile, "prior": prior_tile}``.
    tile_shape : tuple of int, optional
        (z, y, x) tile in voxels ((y, x) for a 2D model); rounded up to the model's divisor
        and clipped to the volume. None: the whole volume in one tile.
    overlap : float
        Fraction of each tile shared with its neighbours (0.25 = 25 %), raised per axis to
        at least half the model's receptive field.
    batch_size : int
        Tiles per model call; halved (then the tile halved) when TensorFlow runs out of
        memory, with a warning.
    blend : {"gaussian", "constant"}
        Weights for blending overlapping tiles: Gaussian (sigma = tile / 8) or uniform.
    out : np.ndarray, np.memmap, str, os.PathLike or h5py.Dataset, optional
        Where to write the result, slab by slab along z. A ``.npy`` path is created as a
        memory-mapped array (written atomically). Its shape must be the output shape.
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    np.ndarray
        float32 prediction with the shape of ``x`` (the model's output channels replace
        the input's; a channel axis of 1 is dropped when ``x`` had none). When ``out`` is
        given, that array (or the memory-mapped file reopened read-only, or the dataset).

    Raises
    ------
    InvalidDataError
        Wrong dimensionality or channels for the model, or bad tiling parameters.
    ShapeMismatchError
        ``prior`` is missing for a model that needs one, or its shape differs from ``x``.
    """
    info = _model_info(model)
    ndim = int(info.ndim)
    if blend not in ("gaussian", "constant"):
        raise InvalidDataError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    if batch_size < 1:
        raise InvalidDataError(f"batch_size must be >= 1, got {batch_size}")
    x_in = np.asarray(x) if not isinstance(x, np.ndarray) else x
    x4 = _as_zyxc(x_in, "x", ndim, int(info.channels))
    p4 = None
    if info.needs_prior:
        if prior is None:
            raise ShapeMismatchError(
                f"this model needs a prior of the same shape as x {x_in.shape}; none was given"
            )
        if tuple(np.shape(prior)) != tuple(x_in.shape):
            raise ShapeMismatchError(
                f"prior has shape {tuple(np.shape(prior))}; expected the shape of x {x_in.shape}"
            )
        p4 = _as_zyxc(np.asarray(prior) if not isinstance(prior, np.ndarray) else prior,
                      "prior", ndim, int(info.channels))
    elif prior is not None:
        log.warning("the model takes no prior; the prior given is ignored")

    out_channels = int(model.outputs[0].shape[-1])
    out_shape = tuple(x_in.shape[:-1]) if x_in.ndim == 4 else tuple(x_in.shape)
    out_shape = out_shape + ((out_channels,) if (x_in.ndim == 4 or out_channels > 1) else ())

    spatial = 2 if ndim == 2 else 3
    divisor = _per_axis(info.divisor, "divisor", spatial)
    rf = _per_axis(info.receptive_field, "receptive_field", spatial)
    tile = None if tile_shape is None else _per_axis(tuple(tile_shape)[-spatial:], "tile_shape", spatial)
    if ndim == 2 and tile is None:
        tile = (1, *x4.shape[1:3])
    batch = [int(batch_size)]
    with _output_target(out, out_shape) as target:
        while True:
            grid = plan_tiles(x4.shape[:3], tile, divisor=divisor, receptive_field=rf,
                              overlap=overlap)
            weights = (gaussian_weights(grid) if blend == "gaussian"
                       else np.ones(grid.tile_shape, np.float32))
            try:
                _run_grid(model, x4, p4, grid, weights, ndim, batch, _Sink(target), out_channels,
                          progress)
                break
            except _OutOfMemory as exc:
                smaller = tuple(max(d, d * math.ceil(t // 2 / d))
                                for t, d in zip(grid.tile_shape, divisor))
                if smaller == grid.tile_shape:
                    raise MemoryError(
                        f"out of memory on a single tile of shape {grid.tile_shape}, the smallest "
                        f"this model allows: {exc}"
                    ) from exc
                log.warning("out of memory on one tile of shape %s; retrying with tiles of %s",
                            grid.tile_shape, smaller)
                tile = smaller  # type: ignore[assignment]
        result = target
    if isinstance(out, (str, os.PathLike)):
        return np.load(out, mmap_mode="r")
    return result


def denoise_array(
    model: Any,
    array: np.ndarray,
    normalizer: Any,
    *,
    prior: str | np.ndarray | None = "auto",
    prior_options: dict[str, Any] | None = None,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Denoise an array in source units (HU, counts): normalise, predict, invert exactly.

    Parameters
    ----------
    model : keras.Model
        A denoising model (see :func:`predict_volume`).
    array : np.ndarray
        (z, y, x) or (z, y, x, c) in the source's units, as in ``Volume.array``; a 2D
        image is (1, y, x).
    normalizer : data_pipelines.Normalizer
        The model's normalisation (from its card). One that needs statistics (percentile,
        min-max) is fitted on ``array``; the same fitted map is inverted on the output.
    prior : "auto", "none", None or np.ndarray
        For a model that needs a prior: ``"auto"`` builds the neighbour-slice prior from the
        normalised input (with ``prior_options``); an array (source units, shape of
        ``array``) is normalised with the same map. Ignored for a model without a prior
        input (an array given to such a model is an error).
    prior_options : dict, optional
        Keyword arguments of :func:`data_pipelines.neighbour_slice_prior` (size, decay,
        include_self), e.g. from the model card.
    tile_shape, overlap, batch_size, progress
        See :func:`predict_volume`.

    Returns
    -------
    np.ndarray
        float32, shape of ``array``, in the source's units.

    Raises
    ------
    InvalidDataError
        A 3D model given a single 2D slice, or channels (frames) that do not match the model.
    ShapeMismatchError
        The prior is missing, unwanted, or of another shape than ``array``.
    """
    import data_pipelines as dp

    info = _model_info(model)
    if info.ndim == 3 and array.shape[0] < 2:
        raise InvalidDataError(
            f"the input is a single 2D slice (shape {array.shape}); this 3D model needs a "
            "(z, y, x) volume with z >= 2 (use a 2D model)"
        )
    channels = array.shape[-1] if array.ndim == 4 else 1
    if channels != info.channels:
        raise InvalidDataError(
            f"the input has {channels} channels or frames (shape {array.shape}); this model "
            f"expects {info.channels}: pick one channel or frame first"
        )
    norm = normalizer if normalizer.fitted else normalizer.fit(array)
    x = norm(array)
    p = None
    if isinstance(prior, np.ndarray):
        if not info.needs_prior:
            raise ShapeMismatchError("a prior was given, but this model takes no prior input")
        if prior.shape != array.shape:
            raise ShapeMismatchError(
                f"prior has shape {prior.shape}; expected the input's shape {array.shape}"
            )
        p = norm(prior)
    elif info.needs_prior:
        if prior != "auto":
            raise ShapeMismatchError(
                "this model needs a prior: use prior='auto' (neighbour slices) or give an array"
            )
        p = dp.neighbour_slice_prior(x, **(prior_options or {}))
    y = predict_volume(model, x, p, tile_shape=tile_shape, overlap=overlap,
                       batch_size=batch_size, progress=progress)
    return norm.inverse(y)
