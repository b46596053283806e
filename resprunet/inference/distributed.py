"""Tiled inference of a chunked volume (Zarr, Dask) on a ``dask.distributed`` cluster.

The result equals :func:`resprunet.inference.predict_volume` on the same input and tiles (to
float rounding, max abs difference well under 1e-5) because the blending is the same sum:

1. **One global tile grid** is planned on the client (:func:`~.predict.plan_grid`, the grid
   ``predict_volume`` uses: the same tiles, halos and Gaussian weights).
2. **Blocks.** The volume is cut into blocks (output chunks): the input's chunks, grouped
   so that a block is at least one tile along each axis, then halved while one task's
   accumulators would exceed :data:`BLOCK_FRACTION` of a worker's memory limit. Input chunks
   smaller than the model's halo are always re-chunked this way, and a warning says so.
3. **Tile tasks** (``resprunet-tiles-*``): every tile belongs to the block holding its first
   voxel, so each tile runs through the model exactly once. A tile task reads the box its
   tiles cover (about its block plus the tiles' overlap) once, cuts the tiles from it (each
   with the halo it carries, reflect-padded at the volume's end as in ``predict_volume``),
   predicts them in batches and accumulates the Gaussian-weighted predictions and the weights
   over the box, then cuts that box into one piece per block it overlaps.
4. **Block tasks** (``resprunet-block-*``) add the pieces sent to their block by the (at most
   2 per axis, with blocks of at least a tile) tile tasks that reach it, divide the weighted
   sum by the weights, optionally de-normalise, and write the block, a whole chunk of the
   output Zarr array, so no two tasks write one chunk.

Pieces travel as ``.npy`` files in a scratch folder beside the output (deleted once their
block is written), not as task results held in memory: in z-major order the pieces bound
for the next z-layer of blocks wait a whole layer, about the volume's yx area times the
tiles' depth, which for a large volume exceeds a worker's memory limit. A worker holds one
box's or one block's accumulators and a batch of tiles, never the volume. Each worker process
loads the model once (:func:`worker_model`, a cache keyed by the file's path, size and
modification time). A worker that dies loses its results; the scheduler reruns the tasks that
made them (block tasks only overwrite their own chunk), so the output is the same.

The output is written to a temporary Zarr folder and renamed when complete
(:func:`data_pipelines.io.atomic.atomic_path`). :func:`denoise_distributed` (``resprunet
denoise IN.ome.zarr OUT.ome.zarr --workers N``) normalises on the workers and writes an
OME-Zarr with its pyramid through :func:`data_pipelines.write_volume`.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import operator
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from data_pipelines.errors import InvalidDataError
from tqdm.auto import tqdm

from .cluster import connect, worker_memory_limit
from .predict import _model_axes, _pad_to, _predict_in_chunks, _WithNoiseLevel, plan_grid
from .tiles import Shape3, TileGrid, gaussian_weights, halo_weights, model_halo

__all__ = ["predict_distributed", "denoise_distributed", "plan_blocks", "fit_normalizer", "worker_model",
           "value_range", "default_tile_budget", "task_bytes_per_voxel", "BLOCK_FRACTION", "TILE_FRACTION"]

log = logging.getLogger(__name__)

#: Fraction of a worker's memory limit one tile task's accumulators may fill.
BLOCK_FRACTION = 0.125
#: Fraction of a worker's memory limit the default tiling gives the model's activations.
TILE_FRACTION = 0.25
#: Voxels along each axis that one task of :func:`value_range` reads at least (whole chunks).
RANGE_SIDE = 128
#: Memory limit assumed for workers of an existing cluster that report none, bytes.
ASSUMED_WORKER_MEMORY = 4 * 2**30

Block = tuple[int, int, int]
#: A tile task's share of one block: (offset (z, y, x) in the block, the ``.npy`` file holding
#: the weighted sum (channels 0..c'-1) and the weights (channel c'), float32).
_Piece = tuple[tuple[int, ...], str]


@functools.lru_cache(maxsize=2)
def _load_model(path: str, stamp: tuple[int, int]) -> Any:
    from resprunet import zoo

    return zoo.load_path(path)[0]


def worker_model(path: str | os.PathLike) -> Any:
    """The Keras model at ``path`` (a ``.keras`` file), loaded once per process and kept.

    The cache is keyed by the resolved path, the file's modification time and size, so a
    replaced file is loaded again. Used by every task on a worker and by the client.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _load_model(str(resolved), (st.st_mtime_ns, st.st_size))


@dataclass(frozen=True)
class _Job:
    """What a task needs; pickled with every task (the input array by reference: a Zarr
    array pickles as its store's path, a Dask array as its graph)."""

    model_path: str
    source: Any
    grid: TileGrid
    batch_size: int
    blend: str
    ndim: int
    out_channels: int
    sigma: float | None
    normalizer: Any
    value_range: tuple[float, float] | None

    def model(self) -> Any:
        model = worker_model(self.model_path)
        return _WithNoiseLevel(model, self.sigma) if self.sigma is not None else model


def _read(source: Any, region: tuple[slice, ...]) -> np.ndarray:
    """``source[region]`` as an ndarray (z, y, x, c) in the stored dtype; a Dask array is
    computed here, in this process (synchronously)."""
    part = source[region]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    part = np.asarray(part)
    return part if part.ndim == 4 else part[..., np.newaxis]


def _grown(region: tuple[slice, ...], shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """``region`` grown by one voxel per side within ``shape``, and ``region`` inside the grown one."""
    grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(region, shape))
    inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(region, grown))
    return grown, inner


def _extremes(x: np.ndarray) -> list[tuple[tuple[np.ndarray, ...], np.ndarray]]:
    """:func:`data_pipelines.isolated_extremes` of each channel of a (z, y, x, c) array."""
    import data_pipelines as dp

    return [dp.isolated_extremes(x[..., c]) for c in range(x.shape[-1])]


def _model_input(job: _Job, region: tuple[slice, ...]) -> np.ndarray:
    """The model's float32 input over ``region`` (z, y, x, c): as stored, or normalised with
    isolated extremes replaced by their neighbours' median as :func:`~.predict.denoise_array`
    does (found on the region grown by the one voxel their 3 x 3 x 3 neighbourhood needs)."""
    if job.normalizer is None:
        return _read(job.source, region).astype(np.float32, copy=False)
    grown, inner = _grown(region, job.grid.volume_shape)
    x = job.normalizer(_read(job.source, grown))
    for c, (where, values) in enumerate(_extremes(x)):
        x[..., c][where] = values
    return x[inner]


def _piece_path(scratch: str | os.PathLike, tag: str, block: Block) -> str:
    """The ``.npy`` file of the piece that the tile task ``tag`` sends to ``block``."""
    return os.path.join(scratch, f"{tag}-to-{'-'.join(map(str, block))}.npy")


def _block_key(index: Block, token: str) -> str:
    """The Dask key of the block task writing block ``index`` in the run ``token``."""
    return f"resprunet-block-{'-'.join(map(str, index))}-{token}"


def _tile_region(start: Shape3, grid: TileGrid) -> tuple[slice, ...]:
    return tuple(slice(s, min(s + t, n)) for s, t, n in zip(start, grid.tile_shape, grid.volume_shape))


def _predict_tiles(job: _Job, starts: list[Shape3], box: tuple[slice, ...],
                   targets: dict[Block, tuple[slice, ...]], scratch: str, tag: str) -> dict[Block, _Piece]:
    """Tile task: predict the tiles at ``starts``, blend them over ``box`` (z, y, x) and
    save, for each block of ``targets`` (block -> its slices), the part of the box inside
    it (the weighted sum (z, y, x, c') and the weights (z, y, x, 1) as one float32 ``.npy``
    file of c' + 1 channels in the folder ``scratch``, written to a temporary name and
    renamed, so a rerun task replaces it whole); returns, per block, where the part starts
    in the block (z, y, x) and its file. Only these paths are kept in the worker's memory
    between tasks (the parts bound for blocks of the next z-layer wait a whole layer)."""
    model = job.model()
    grid = job.grid
    weights = gaussian_weights(grid) if job.blend == "gaussian" else halo_weights(grid)
    lo = [s.start for s in box]
    shape = tuple(s.stop - s.start for s in box)
    x = _model_input(job, box)  # read once; the tiles are cut from it
    total = np.zeros((*shape, job.out_channels), np.float32)
    weight = np.zeros((*shape, 1), np.float32)
    batch = [job.batch_size]
    b = 0
    while b < len(starts):
        part = starts[b : b + batch[0]]
        cuts = [tuple(slice(r.start - o, r.stop - o) for r, o in zip(_tile_region(s, grid), lo)) for s in part]
        tiles = np.stack([_pad_to(x[at], grid.tile_shape) for at in cuts])
        pred = _predict_in_chunks(model, tiles, {}, job.ndim, batch)
        for at, p in zip(cuts, pred):
            d = tuple(a.stop - a.start for a in at)
            w = weights[: d[0], : d[1], : d[2]]
            total[at] += p[: d[0], : d[1], : d[2]] * w[..., np.newaxis]
            weight[at] += w[..., np.newaxis]
        b += len(part)
    pieces = {}
    for block, region in targets.items():
        first = tuple(max(r.start, s.start) for r, s in zip(region, box))
        at = tuple(slice(f - o, min(r.stop, s.stop) - o) for f, r, s, o in zip(first, region, box, lo))
        offset = tuple(f - r.start for f, r in zip(first, region))
        path = _piece_path(scratch, tag, block)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp.npy"
        np.save(tmp, np.concatenate([total[at], weight[at]], axis=-1))
        os.replace(tmp, path)
        pieces[block] = (offset, path)
    return pieces


def _write_block(job: _Job, out_path: str, region: tuple[slice, ...],
                 *pieces: _Piece) -> int:
    """Block task: add the pieces (see :func:`_predict_tiles`) at their offsets, divide,
    de-normalise (clip to ``value_range``, restore isolated extremes) and write the block's
    chunk of the Zarr array at ``out_path``; returns the voxels written."""
    import zarr

    shape = tuple(s.stop - s.start for s in region)
    total = np.zeros((*shape, job.out_channels), np.float32)
    weight = np.zeros((*shape, 1), np.float32)
    for offset, path in pieces:
        part = np.load(path)
        at = tuple(slice(o, o + n) for o, n in zip(offset, part.shape[:3]))
        total[at] += part[..., :-1]
        weight[at] += part[..., -1:]
        del part
    y = total / weight
    if job.normalizer is not None:
        lo, hi = job.value_range if job.value_range is not None else (-np.inf, np.inf)
        y = np.clip(job.normalizer.inverse(y), lo, hi)
        grown, inner = _grown(region, job.grid.volume_shape)
        raw = _read(job.source, grown)
        for c, (where, _) in enumerate(_extremes(job.normalizer(raw))):
            if where[0].size:
                mask = np.zeros(raw.shape[:3], bool)
                mask[where] = True
                keep = mask[inner]
                y[..., c][keep] = raw[inner][..., c][keep]
    out = zarr.open_array(out_path, mode="r+")
    out[region] = y.reshape(shape + tuple(out.shape[3:]))
    return int(math.prod(s.stop - s.start for s in region))


def task_bytes_per_voxel(channels: int) -> int:
    """Bytes per voxel of a tile task's box: the float32 input (``channels``) and, twice
    (the box and its pieces), the weighted sums (``channels``) and weights."""
    return 4 * (channels + 2 * (channels + 1))


def default_tile_budget(per_voxel: float, channels: int, memory_limit: float) -> float:
    """The memory budget (bytes) for :func:`~.predict.plan_grid`'s default tiling on a worker of
    ``memory_limit`` bytes: :data:`TILE_FRACTION` of it for the activations of a model of
    ``per_voxel`` bytes per tile voxel, less where a tile task's box (taken as two tiles,
    :func:`task_bytes_per_voxel` per voxel) would not fit :data:`BLOCK_FRACTION`."""
    return min(TILE_FRACTION * memory_limit,
               per_voxel * BLOCK_FRACTION * memory_limit / (2 * task_bytes_per_voxel(channels)))


def _longest_box(starts: Sequence[int], tile: int, length: int, block: int) -> int:
    """Along one axis: the longest box (first owned tile start to last owned tile end) of a
    block of ``block`` voxels over the tiles at ``starts``."""
    owned: dict[int, list[int]] = {}
    for s in starts:
        owned.setdefault(s // block, []).append(s)
    return max(min(max(v) + tile, length) - min(v) for v in owned.values())


def plan_blocks(
    volume_shape: Shape3,
    chunks: Sequence[int],
    grid: TileGrid,
    halo: Shape3,
    *,
    channels: int,
    memory_limit: float,
) -> Shape3:
    """Block shape (z, y, x) of the tasks and output chunks.

    Along each axis: the input's chunk, or the smallest multiple of it that holds a tile;
    then the axis with the most tiles per block is halved (never below a tile) while one tile
    task's arrays over its box (the union of the tiles it owns: about the block plus the
    tiles' overlap), :func:`task_bytes_per_voxel` per voxel, exceed :data:`BLOCK_FRACTION`
    of ``memory_limit``. Logs the blocks when they differ from the chunks, as a warning when a
    chunk is smaller than the model's ``halo``.

    Parameters
    ----------
    volume_shape : tuple of int
        (z, y, x) in voxels.
    chunks : sequence of int
        The input's chunk shape (z, y, x), voxels.
    grid : TileGrid
        The global tile grid.
    halo : tuple of int
        The model's halo along (z, y, x) (:func:`~.tiles.model_halo`), voxels.
    channels : int
        Output channels.
    memory_limit : float
        One worker's memory limit, bytes.

    Returns
    -------
    tuple of int
    """
    tile = grid.tile_shape
    block = [min(c * math.ceil(t / c), n) if c < t else min(c, n)
             for c, t, n in zip(chunks, tile, volume_shape)]

    def need(b: Sequence[int]) -> float:
        return task_bytes_per_voxel(channels) * math.prod(
            _longest_box(starts, t, n, x) for starts, t, n, x in zip(grid.starts, tile, volume_shape, b))

    while need(block) > BLOCK_FRACTION * memory_limit:
        axis = max(range(3), key=lambda a: block[a] / tile[a])
        if block[axis] <= tile[axis]:
            break
        block[axis] = max(tile[axis], block[axis] // 2)
    result: Shape3 = (block[0], block[1], block[2])
    if result != tuple(min(c, n) for c, n in zip(chunks, volume_shape)):
        small = any(c < h for c, h in zip(chunks, halo))
        (log.warning if small else log.info)(
            "input chunks %s are %s; re-chunked: tasks and output chunks are blocks of %s voxels "
            "(tiles %s)", tuple(chunks),
            f"smaller than the halo {tuple(halo)} the model's receptive field needs" if small
            else "not blocks of whole tiles within the memory limit", result, tile)
    return result


def _blocks(volume_shape: Shape3, block: Shape3) -> Iterator[Block]:
    """Block indices in z-major order."""
    yield from itertools.product(*(range(math.ceil(n / b)) for n, b in zip(volume_shape, block)))


def _block_region(index: Block, volume_shape: Shape3, block: Shape3) -> tuple[slice, ...]:
    return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, volume_shape))


def _chunks_of(x: Any) -> tuple[int, int, int]:
    """The (z, y, x) chunk shape of a Zarr array, an AxesView or a Dask array (else the shape)."""
    chunks = getattr(x, "chunksize", None) or getattr(x, "chunks", None)
    if not chunks or not all(isinstance(c, (int, np.integer)) for c in chunks):
        chunks = x.shape
    return (int(chunks[0]), int(chunks[1]), int(chunks[2]))


def _memory_limit(client: Any) -> int:
    limit = worker_memory_limit(client)
    if limit is None:
        log.warning("the cluster's workers report no memory limit; planning for %.0f GiB each",
                    ASSUMED_WORKER_MEMORY / 2**30)
        return ASSUMED_WORKER_MEMORY
    return limit


def predict_distributed(
    model: str | os.PathLike,
    x: Any,
    out: str | os.PathLike,
    *,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    blend: str = "gaussian",
    sigma: float | None = None,
    normalizer: Any = None,
    value_range: tuple[float, float] | None = None,
    block_shape: Shape3 | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int = 2,
    memory_limit: int | str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Any:
    """Tiled prediction of a chunked volume on a Dask cluster, written to a Zarr array.

    See the module notes for how the work is split; the result equals
    :func:`~resprunet.inference.predict_volume` on ``np.asarray(x)`` with the same tiles.

    Parameters
    ----------
    model : str or os.PathLike
        A ``.keras`` file every worker can read (each loads it once). Models with a prior or
        context-slice input are not supported here.
    x : zarr.Array, AxesView, dask.array.Array or np.ndarray
        (z, y, x) or (z, y, x, c); normalised (float, typically [0, 1]) unless ``normalizer``
        is given. Read tile by tile on the workers; its chunks set the blocks
        (:func:`plan_blocks`). A NumPy array is pickled into every task: small inputs only.
    out : str or os.PathLike
        The output Zarr array (a folder), float32, (z, y, x) or (z, y, x, c) like
        :func:`~resprunet.inference.predict_volume`'s result, chunked by blocks; written to
        a temporary folder beside it, then renamed.
    tile_shape, overlap, batch_size, blend, sigma
        As in :func:`~resprunet.inference.predict_volume`. The default tiling plans for
        :func:`default_tile_budget` of a worker's memory limit.
    normalizer : data_pipelines.Normalizer, optional
        A fitted normaliser: ``x`` is in source units, each tile is normalised on the worker
        (isolated extremes replaced by their neighbours' median, as in
        :func:`~resprunet.inference.denoise_array`), and the output is de-normalised,
        clipped to ``value_range`` and the extremes restored.
    value_range : (float, float), optional
        (min, max) of ``x`` in source units: the output's clip range (with ``normalizer``).
    block_shape : tuple of int, optional
        (z, y, x) of the blocks (output chunks); default :func:`plan_blocks`.
    client : distributed.Client, optional
        A connected client; else one is made by :func:`~.cluster.connect` from
        ``scheduler``, ``workers`` and ``memory_limit`` (and closed at the end).
    scheduler, workers, memory_limit
        See :func:`~.cluster.connect`.
    force : bool
        Replace an existing ``out``.
    progress : bool
        A progress bar over blocks.

    Returns
    -------
    zarr.Array
        ``out``, opened read-only.

    Raises
    ------
    InvalidDataError
        A model with a prior or context input, ``x`` of the wrong rank or channels, bad
        tiling parameters.
    SchedulerUnreachableError
        ``scheduler`` did not answer.
    """
    import zarr
    from data_pipelines.io.atomic import atomic_path

    from resprunet import models

    model_path = str(Path(model).resolve())
    keras_model = worker_model(model_path)
    info = models.describe(keras_model)
    if info.needs_prior or info.context:
        raise InvalidDataError(f"{model_path}: a model with a prior or context-slice input cannot run "
                               "distributed yet; use predict_volume / resprunet denoise without --workers")
    if info.needs_sigma and (sigma is None or not sigma >= 0):
        raise InvalidDataError(f"this model is conditioned on the noise level: give sigma >= 0 in "
                               f"normalised units, got {sigma}")
    if blend not in ("gaussian", "constant"):
        raise InvalidDataError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    shape = tuple(int(n) for n in x.shape)
    channels = shape[3] if len(shape) == 4 else 1
    if len(shape) not in (3, 4) or channels != int(info.channels):
        raise InvalidDataError(f"x has shape {shape}; this model expects (z, y, x) or (z, y, x, c) "
                               f"with c = {info.channels}")
    volume: Shape3 = (shape[0], shape[1], shape[2])
    out_channels = int(keras_model.outputs[0].shape[-1])
    out_shape = volume + ((out_channels,) if (len(shape) == 4 or out_channels > 1) else ())

    def run(client: Any) -> None:
        limit = _memory_limit(client)
        wrapped = _WithNoiseLevel(keras_model, sigma) if info.needs_sigma else keras_model
        budget = None
        if tile_shape is None:
            from .tiles import activation_bytes_per_voxel

            budget = default_tile_budget(activation_bytes_per_voxel(wrapped), out_channels, limit)
        grid, batch = plan_grid(wrapped, volume, tile_shape, overlap=overlap, batch_size=batch_size,
                                memory_budget=budget)
        divisor, rf = _model_axes(info)
        halo: Shape3 = tuple(model_halo(d, r) for d, r in zip(divisor, rf))  # type: ignore[assignment]
        block = block_shape or plan_blocks(volume, _chunks_of(x), grid, halo, channels=out_channels,
                                           memory_limit=limit)
        job = _Job(model_path, x, grid, batch, blend, int(info.ndim), out_channels,
                   sigma if info.needs_sigma else None, normalizer, value_range)
        with atomic_path(out, force=force, directory=True) as tmp:
            zarr.create_array(store=str(tmp), shape=out_shape, dtype="float32", fill_value=0,
                              chunks=block + out_shape[3:], zarr_format=3, overwrite=True)
            _submit_and_wait(client, job, str(tmp), block, progress)

    if client is not None:
        run(client)
    else:
        with connect(scheduler, workers=workers, memory_limit=memory_limit) as made:
            run(made)
    return zarr.open_array(str(out), mode="r")


def _submit_and_wait(client: Any, job: _Job, out_path: str, block: Shape3, progress: bool) -> None:
    """Submit the tile and block tasks in z-major block order (a block's task right after the
    last tile task it needs) and wait for every block; the first error is raised.

    The tile tasks' parts travel as ``.npy`` files in a scratch folder beside ``out_path``
    (which every worker can write, as it writes the output): between tasks a worker holds
    only their paths, so the parts waiting for the next z-layer of blocks (a whole layer's
    overlap, more than a worker's memory limit for a large volume) are on disk, not in the
    workers' memory. A finished block's parts are deleted; the folder is removed at the end.
    """
    import shutil

    from distributed import as_completed

    grid, volume = job.grid, job.grid.volume_shape
    owned: dict[Block, list[Shape3]] = {}
    for start in grid:
        owned.setdefault(tuple(s // b for s, b in zip(start, block)), []).append(start)  # type: ignore[arg-type]
    token = uuid.uuid4().hex[:8]
    scratch = Path(out_path).parent / f".resprunet-pieces-{token}"
    scratch.mkdir()
    incoming: dict[Block, list[Any]] = {}
    files: dict[str, list[str]] = {}  # block task key -> its parts' files
    unfinished: dict[str, Any] = {}  # block task key -> its future, until it finishes
    finals = []
    try:
        for index in _blocks(volume, block):
            starts = owned.get(index)
            if starts:
                box = tuple(slice(min(s[a] for s in starts), min(max(s[a] for s in starts) + t, n))
                            for a, (t, n) in enumerate(zip(grid.tile_shape, volume)))
                targets = {j: _block_region(j, volume, block) for j in itertools.product(*(
                    range(s.start // b, math.ceil(s.stop / b)) for s, b in zip(box, block)))}
                tag = "-".join(map(str, index))
                tiles = client.submit(_predict_tiles, job, starts, box, targets, str(scratch), tag,
                                      key=f"resprunet-tiles-{tag}-{token}")
                for j in targets:
                    incoming.setdefault(j, []).append(client.submit(
                        operator.getitem, tiles, j, key=f"resprunet-piece-{tag}-{'-'.join(map(str, j))}-{token}"))
                    files.setdefault(_block_key(j, token), []).append(_piece_path(scratch, tag, j))
            pieces = incoming.pop(index)
            finals.append(client.submit(_write_block, job, out_path, _block_region(index, volume, block), *pieces,
                                        key=_block_key(index, token)))
        written, total = 0, len(finals)
        pending = as_completed(finals, loop=client.loop)
        # only unfinished blocks stay referenced: a finished one is forgotten, so a worker's
        # death cannot make it rerun, and an error cancels what is left
        unfinished.update((future.key, future) for future in finals)
        finals.clear()
        with tqdm(total=total, desc="blocks", unit="block", disable=not progress) as bar:
            for future in pending:
                del unfinished[future.key]
                written += future.result()
                for path in files.pop(future.key, ()):
                    Path(path).unlink(missing_ok=True)
                bar.update(1)
        if written != math.prod(volume):
            raise RuntimeError(f"the blocks wrote {written} voxels; expected {math.prod(volume)}")
    finally:
        client.cancel(finals + list(unfinished.values()))
        shutil.rmtree(scratch, ignore_errors=True)


def fit_normalizer(normalizer: Any, array: Any) -> Any:
    """``normalizer`` fitted on a lazy (z, y, x[, c]) array without loading it whole.

    Up to :data:`data_pipelines.normalize.MAX_STATISTICS_VOXELS` voxels: the whole array,
    exactly as :func:`~resprunet.inference.denoise_array` fits it. Larger: evenly spaced slabs
    of :data:`~data_pipelines.normalize.SMOOTHING` slices holding at most that many voxels
    (those :func:`data_pipelines.normalize.statistics_sample` would sample in memory), read
    and stacked, then fitted; the box mean then also spans the seams between slabs, so the
    map can differ slightly from an in-memory fit of the whole volume.
    """
    from data_pipelines.normalize import MAX_STATISTICS_VOXELS, SMOOTHING

    return normalizer if normalizer.fitted else normalizer.fit(_statistics_slabs(array, MAX_STATISTICS_VOXELS,
                                                                                 SMOOTHING))


def _statistics_slabs(array: Any, max_voxels: int, depth: int) -> np.ndarray:
    """The whole ``array`` when it has at most ``max_voxels`` voxels, else evenly spaced z slabs
    of ``depth`` slices, at most ``max_voxels`` voxels together, stacked along z."""
    size = math.prod(array.shape)
    if size <= max_voxels:
        return np.asarray(array)
    depth = min(depth, array.shape[0])
    per_slab = size // array.shape[0] * depth
    count = max(1, min(array.shape[0] // depth, max_voxels // per_slab))
    starts = np.unique(np.linspace(0, array.shape[0] - depth, count).astype(int))
    return np.concatenate([np.asarray(array[z : z + depth]) for z in starts])


def _block_range(source: Any, region: tuple[slice, ...]) -> tuple[float, float, int]:
    """(min, max, non-finite count) of ``source[region]``."""
    data = _read(source, region)
    finite = np.isfinite(data)
    bad = int(data.size - np.count_nonzero(finite))
    values = data[finite] if bad else data
    return (float(values.min()), float(values.max()), bad) if values.size else (np.inf, -np.inf, bad)


def value_range(client: Any, array: Any, block: Shape3) -> tuple[float, float]:
    """(min, max) of a lazy (z, y, x[, c]) array, one task per block on ``client``.

    Raises
    ------
    InvalidDataError
        The array holds NaN or Inf values.
    """
    volume = tuple(int(n) for n in array.shape[:3])
    futures = [client.submit(_block_range, array, _block_region(i, volume, block), pure=False)  # type: ignore[arg-type]
               for i in _blocks(volume, block)]  # type: ignore[arg-type]
    parts = client.gather(futures)
    bad = sum(p[2] for p in parts)
    if bad:
        raise InvalidDataError(f"the input of shape {tuple(array.shape)} holds {bad} NaN/Inf voxels; "
                               "expected finite values")
    return min(p[0] for p in parts), max(p[1] for p in parts)


def denoise_distributed(
    model: str | os.PathLike,
    volume: Any,
    out: str | os.PathLike,
    normalizer: Any,
    *,
    sigma: float | None = None,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    dtype: str | None = None,
    force: bool = False,
    scheduler: str | None = None,
    workers: int = 2,
    memory_limit: int | str | None = None,
    progress: bool = True,
) -> Path:
    """:func:`~resprunet.inference.denoise_array` of a lazy volume on a Dask cluster, written
    with the input's metadata (an OME-Zarr with its pyramid for a ``.zarr`` output).

    The normaliser is fitted on the client (:func:`fit_normalizer`), the input's range and
    finiteness checked on the cluster (:func:`value_range`), the model's output written by
    :func:`predict_distributed` to a temporary Zarr array beside ``out``, which
    :func:`data_pipelines.write_volume` then copies chunk by chunk (with the pyramid) to ``out``.

    Parameters
    ----------
    model : str or os.PathLike
        A ``.keras`` file all workers can read.
    volume : data_pipelines.Volume
        The input, usually lazy (Zarr); source units.
    out : str or os.PathLike
        Output path (format from the suffix).
    normalizer : data_pipelines.Normalizer
        The model's normalisation (from its card).
    sigma : float, optional
        For a noise-conditioned model (normalised units); None estimates it from the
        normaliser's statistics sample (:func:`resprunet.variational.estimate_noise_sigma`).
    tile_shape, overlap, batch_size, scheduler, workers, memory_limit, progress
        See :func:`predict_distributed`.
    dtype : str, optional
        Stored dtype (default the input's).
    force : bool
        Replace ``out``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import data_pipelines as dp

    from resprunet import models

    array = volume.array
    norm = fit_normalizer(normalizer, array)
    if models.describe(worker_model(model)).needs_sigma and sigma is None:
        from ..variational import estimate_noise_sigma

        from data_pipelines.normalize import MAX_STATISTICS_VOXELS, SMOOTHING

        sample = norm(_statistics_slabs(array, MAX_STATISTICS_VOXELS, SMOOTHING))
        sample = sample if sample.ndim == 4 else sample[..., np.newaxis]
        sigma = float(np.mean([estimate_noise_sigma(sample[..., c]) for c in range(sample.shape[-1])]))
        log.info("noise level estimated from the input: sigma %.4f (normalised units)", sigma)
    out = Path(out)
    with connect(scheduler, workers=workers, memory_limit=memory_limit) as client, \
            tempfile.TemporaryDirectory(prefix=f".tmp-{os.getpid()}-", suffix="-blocks", dir=out.parent) as tmp:
        side = [c * math.ceil(RANGE_SIDE / c) for c in _chunks_of(array)]  # whole chunks per task
        low_high = value_range(client, array, (side[0], side[1], side[2]))
        result = predict_distributed(model, array, Path(tmp) / "level0.zarr", tile_shape=tile_shape,
                                     overlap=overlap, batch_size=batch_size, sigma=sigma, normalizer=norm,
                                     value_range=low_high, client=client, progress=progress)
        dp.write_volume(result, out, like=volume, force=force, dtype=dtype)
    return out
