"""Tile grids over a volume and their Gaussian blending weights; the default (memory-planned) tiling."""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from data_pipelines.errors import InvalidDataError
from data_pipelines.io.arrays import available_memory

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
    halo : tuple of int
        Along (z, y, x), how many voxels at each end of a tile are not trusted (their
        receptive field leaves the tile) and get a negligible blending weight
        (:data:`HALO_WEIGHT`), so that every voxel is taken from the tiles that hold its
        whole receptive field. Set on the axes they cut by :func:`plan_auto_tiles` and
        :func:`plan_tiles`; 0 on uncut axes.
    """

    volume_shape: Shape3
    tile_shape: Shape3
    overlap: Shape3
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    halo: Shape3 = (0, 0, 0)

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


def model_halo(divisor: int, receptive_field: int) -> int:
    """Voxels at each inner face of a tile whose prediction is not trusted: half the
    receptive field, rounded up to a multiple of ``divisor`` (0 for a per-voxel axis)."""
    return divisor * math.ceil(math.ceil(receptive_field / 2) / divisor) if receptive_field > 1 else 0


def _explicit_axis(
    length: int, want: int, div: int, halo: int, overlap: float, axis: int, notes: list[str]
) -> tuple[int, tuple[int, ...], int]:
    """``(tile, starts, halo)`` along one axis for a requested tile of ``want`` voxels.

    The tile is rounded up to ``div`` and raised to the least a cut axis needs, ``2 halo +
    2 gap`` with ``gap = max(halo, div)`` (``div`` without a halo); the overlap (``overlap x tile`` voxels) is raised
    to ``2 halo`` and capped at ``tile - 2 gap``. ``n`` tiles start at multiples of ``div``
    spread evenly over the axis padded to ``div``: neighbours are then at least ``gap`` and
    at most ``tile - 2 halo`` apart, so the trusted cores tile the axis and the volume's
    first and last ``halo`` voxels lie in one tile only. What differs from the request is
    appended to ``notes``.
    """
    padded = div * math.ceil(length / div)
    tile = min(div * math.ceil(want / div), padded)
    if tile >= padded:
        return padded, (0,), 0
    gap = max(halo, div)
    least = 2 * halo + 2 * gap if halo > 0 else div
    if tile < least:
        tile = min(least, padded)
        notes.append(f"axis {axis}: tile {want} is smaller than this model needs; using {tile}")
        if tile >= padded:
            return padded, (0,), 0
    wanted = int(round(overlap * tile))
    most = tile - 2 * gap
    if wanted > most and halo > 0:
        notes.append(f"axis {axis}: overlap {wanted} leaves too little of a tile of {tile}; "
                     f"using {most}")
    used = min(max(wanted, 2 * halo), most) if halo > 0 else min(wanted, tile - div)
    step = div * ((tile - used) // div)
    if halo > 0 and padded - tile < gap:  # a second tile would start inside the first one's halo
        notes.append(f"axis {axis}: tile {tile} leaves {padded - tile} voxel(s); using one tile of {padded}")
        return padded, (0,), 0
    n = math.ceil((padded - tile) / step) + 1
    span = (padded - tile) // div
    starts = tuple(sorted({div * round(i * span / (n - 1)) for i in range(n)}))
    return tile, starts, halo


def plan_tiles(
    volume_shape: Shape3,
    tile_shape: tuple[int, ...] | None,
    *,
    divisor: Shape3,
    receptive_field: Shape3,
    overlap: float = 0.25,
) -> TileGrid:
    """The tile grid for a requested tile shape (``--tile``), equal to whole-volume
    prediction to float rounding.

    Each cut axis carries the halo of :func:`model_halo` at its inner faces (outweighed by
    a neighbour's trusted core, see :func:`halo_weights`), as in :func:`plan_auto_tiles`.
    A tile smaller than the model needs, or an overlap that leaves too little of the tile,
    is changed, and what is used instead is logged (one INFO line).

    Parameters
    ----------
    volume_shape : tuple of int
        (z, y, x) of the volume, in voxels.
    tile_shape : tuple of int or None
        Requested (z, y, x) tile in voxels; None for one tile holding the whole volume.
        Each axis is clipped to the volume, rounded up to a multiple of ``divisor`` and
        raised to ``2 h + 2 max(h, divisor)``, ``h`` the halo.
    divisor : tuple of int
        Every tile axis must be a multiple of this (2**depth for a U-Net; 1 along z for a
        2D model).
    receptive_field : tuple of int
        The model's receptive field along (z, y, x), in voxels.
    overlap : float
        Fraction of the tile shared with each neighbour, in [0, 1); raised per axis to twice
        the halo, capped at the tile less twice ``max(h, divisor)``.

    Returns
    -------
    TileGrid
    """
    if not 0.0 <= overlap < 1.0:
        raise InvalidDataError(f"overlap must be in [0, 1), got {overlap}")
    requested = volume_shape if tile_shape is None else tile_shape
    if min(requested) < 1:
        raise InvalidDataError(f"tile_shape must be positive, got {tuple(requested)}")
    notes: list[str] = []
    axes = [
        _explicit_axis(length, int(want), div, model_halo(div, rf), overlap, axis, notes)
        for axis, (length, want, div, rf) in enumerate(
            zip(volume_shape, requested, divisor, receptive_field)
        )
    ]
    if notes:
        log.info("tiling: %s", "; ".join(notes))
    return TileGrid(
        volume_shape=tuple(volume_shape),  # type: ignore[arg-type]
        tile_shape=tuple(a[0] for a in axes),  # type: ignore[arg-type]
        overlap=tuple(min((a[0] - (e - s) for s, e in zip(a[1], a[1][1:])), default=0)
                      for a in axes),  # type: ignore[arg-type]
        starts=tuple(a[1] for a in axes),  # type: ignore[arg-type]
        halo=tuple(a[2] for a in axes),  # type: ignore[arg-type]
    )


#: Blending weight of a tile's halo voxels (see :attr:`TileGrid.halo`), relative to 1.
HALO_WEIGHT = 1e-9


def gaussian_weights(grid: TileGrid) -> np.ndarray:
    """Blending weights of one tile, shape ``grid.tile_shape``, float32, maximum 1.

    A separable Gaussian with sigma = 1/8 of the tile along each axis (MONAI's
    ``mode="gaussian"``), floored at 1e-4 so that no voxel gets zero weight. An axis with
    a single tile gets weight 1 (every tile covering a voxel shares it, so it cancels).
    Times :func:`halo_weights` (1 unless the grid has a halo).
    """
    w = halo_weights(grid)
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


def halo_weights(grid: TileGrid) -> np.ndarray:
    """Uniform blending weights of one tile (``blend="constant"``), shape ``grid.tile_shape``:
    1, and :data:`HALO_WEIGHT` on the ``grid.halo`` voxels at both ends of each axis that
    has more than one tile.

    With the grids of :func:`plan_auto_tiles` every voxel lies in the trusted core of some
    tile, which then outweighs the others by 1 / HALO_WEIGHT; at the volume's own faces
    every tile covering a voxel has the same factor there, so it cancels.
    """
    w = np.ones(grid.tile_shape, np.float32)
    for axis, (tile, starts, halo) in enumerate(zip(grid.tile_shape, grid.starts, grid.halo)):
        if len(starts) == 1 or halo == 0:
            continue
        h = np.ones(tile, np.float32)
        h[:halo] = h[tile - halo :] = HALO_WEIGHT
        shape = [1, 1, 1]
        shape[axis] = tile
        w = w * h.reshape(shape)
    return w


#: Fraction of the currently available RAM (``MemAvailable``) a default tiling may fill.
BUDGET_FRACTION = 0.25
#: Upper bound of the default memory budget, bytes (4 GiB).
BUDGET_CAP = 4 * 2**30
#: Factor from the live-tensor estimate to the measured peak: TensorFlow/oneDNN keep copies
#: in their own layouts and workspaces beside the graph's tensors. Measured on CPU with
#: ``predict_on_batch`` (peak RSS growth / estimate): 3D U-Net f16 d3 (BN) 1.14-1.36, f32 d3
#: 1.21, f8 d2 1.24; mixed_bfloat16 without native bf16 1.9 against its bf16 estimate, which
#: is why activations are counted at no less than 4 bytes (then 0.96).
ACTIVATION_SAFETY = 1.5
#: Bytes per voxel of the plane accumulators (weighted sum and weight, float32) that cover a
#: slab of tiles along z in :func:`resprunet.inference.predict_volume`.
ACCUMULATOR_BYTES = 8


def memory_budget(fraction: float = BUDGET_FRACTION, cap: int = BUDGET_CAP) -> int:
    """Bytes a default tiling may use: ``min(fraction x MemAvailable, cap)``.

    The available memory is :func:`data_pipelines.io.arrays.available_memory` (``MemAvailable``
    on Linux, else the physical memory); when unknown, ``cap``. The budget is for host RAM: the
    project runs TensorFlow on the CPU (a GPU's memory is not consulted; an out-of-memory
    error there still halves the batch, then the tile).
    """
    available = available_memory()
    if available is None:
        return int(cap)
    return int(min(fraction * available, cap))


_ESTIMATES: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()


def activation_bytes_per_voxel(model: Any, safety: float = ACTIVATION_SAFETY) -> float:
    """Estimated peak memory of one forward pass, in bytes per input voxel.

    The model's layers are run symbolically (``compute_output_spec``) on a small input of
    ``4 x divisor`` voxels per spatial axis to get every layer's output shape; walking the
    layers in their (topological) order, a tensor is live from the layer that makes it to the
    last layer that reads it (model outputs to the end). The largest sum of live tensors,
    counted at ``max(itemsize, 4)`` bytes per element and divided by the input's voxels, times
    ``safety`` (:data:`ACTIVATION_SAFETY`, from measurements) is returned. For a U-Net of
    ``f`` filters at full resolution this is ``1.5 x 4 x (4 f + 1)`` bytes (skip ``f``,
    concatenation ``2 f`` and a conv output ``f`` live at once, plus the input): 390 for
    f = 16, 774 for f = 32.

    Parameters
    ----------
    model : keras.Model
        A functional model from :func:`resprunet.models.build` or the zoo.
    safety : float
        Factor for framework copies and workspaces.

    Returns
    -------
    float
        Bytes per voxel of one tile in one model call (batch of one); remembered per model
        (the walk takes 10-50 ms).
    """
    try:
        return _ESTIMATES[model] * safety
    except (KeyError, TypeError):
        pass
    import keras

    from resprunet import models

    info = models.describe(model)
    n = 4 * int(info.divisor)
    voxels = n ** int(info.ndim)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    symbolic = [keras.KerasTensor((1, *([n] * int(info.ndim)), int(t.shape[-1])), dtype=t.dtype)
                for t in model.inputs]
    specs = probe.compute_output_spec(symbolic if len(symbolic) > 1 else symbolic[0])

    def nbytes(spec: Any) -> float:
        return math.prod(spec.shape[1:]) * max(np.dtype(spec.dtype).itemsize, 4) / voxels

    size = {id(t): nbytes(k) for t, k in zip(model.inputs, symbolic)}
    size.update({id(layer.output): nbytes(spec) for layer, spec in zip(layers, specs)})
    last_use: dict[int, int] = {id(t): len(layers) for t in model.outputs}
    for i, layer in enumerate(layers):  # public layer.input: every layer here is called once
        for t in keras.tree.flatten(layer.input):
            last_use[id(t)] = max(last_use.get(id(t), -1), i)
    live = {id(t): size[id(t)] for t in model.inputs}
    peak = sum(live.values())
    for i, layer in enumerate(layers):
        live[id(layer.output)] = size[id(layer.output)]
        peak = max(peak, sum(live.values()))
        for key in [k for k in live if last_use.get(k, -1) <= i]:
            del live[key]
    with contextlib.suppress(TypeError):  # a model that cannot be weakly referenced
        _ESTIMATES[model] = float(peak)
    return float(peak * safety)


def _axis_candidates(length: int, div: int, halo: int) -> list[tuple[int, tuple[int, ...]]]:
    """Ways to cut one axis: ``(tile, starts)`` for 1, 2, ... tiles.

    The axis is covered up to ``padded = div x ceil(length / div)``, as the whole volume
    would be (reflect-padded past ``length``). ``n`` tiles of ``tile = div x ceil((padded +
    (n - 1) 2 halo) / (n div))`` voxels start at multiples of ``div`` spread evenly from 0 to
    ``padded - tile``: every tile pools on the whole volume's grid and the last one sees the
    whole volume's padding. Neighbours are at most ``tile - 2 halo`` apart, so the trusted
    cores (the tile less ``halo`` at each end) tile the axis; they are at least ``halo``
    apart, so the volume's first and last ``halo`` voxels lie in one tile only.
    """
    padded = div * math.ceil(length / div)
    out: list[tuple[int, tuple[int, ...]]] = [(padded, (0,))]
    n = 2
    while True:
        tile = div * math.ceil((padded + (n - 1) * 2 * halo) / (n * div))
        if tile >= padded:
            break
        span = (padded - tile) // div  # in units of div
        starts = tuple(div * round(i * span / (n - 1)) for i in range(n))
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        if min(gaps) < max(halo, div):
            break
        if max(gaps) <= tile - 2 * halo:
            out.append((tile, starts))
        n += 1
    return out


def plan_auto_tiles(
    volume_shape: Shape3,
    *,
    divisor: Shape3,
    receptive_field: Shape3,
    bytes_per_voxel: float,
    budget_bytes: float,
    slices: bool = False,
) -> TileGrid:
    """The default tiling: the whole volume if it fits ``budget_bytes``, else the largest
    tiles that fit, cut where they cost least, overlapping only as the receptive field needs.

    Along an axis cut into ``n > 1`` tiles each tile carries a halo of ``h = divisor x
    ceil(ceil(rf / 2) / divisor)`` voxels at each end (half the receptive field, rounded up
    to the divisor so that tile starts stay multiples of it and every tile pools on the
    whole volume's grid); neighbours overlap by ``2 h`` so that their trusted cores (the
    tile less its halos) meet, and the halos get a negligible blending weight
    (:func:`halo_weights`). Every voxel is then predicted from a tile that holds its whole
    receptive field: tiled equals whole-volume prediction to float rounding. The tile is
    ``divisor x ceil((padded + (n - 1) 2 h) / (n divisor))``, ``padded`` the axis rounded
    up to the divisor. Among all per-axis choices of ``n`` whose tile fits the budget, the
    grid that runs the model on the fewest voxels (``prod(n x tile)``; then the fewest
    tiles) is taken, so cuts fall across as few axes as possible.

    The voxels processed per volume voxel stay <= 1.5 when the budget holds about a third
    of the volume: 256^3 with rf 44 (h 24), divisor 4 and 390 B/voxel (U-Net, 16 filters)
    runs 1.19 x the voxels with 4 GiB (2 tiles of 256 x 256 x 152), 1.41 x with 3 GiB,
    1.67 x with 2 GiB; cubes would cost more (3 x 3 x 3 tiles of 120^3: 2.64 x).

    Memory of one tile: ``bytes_per_voxel x tile voxels`` plus the plane accumulators,
    :data:`ACCUMULATOR_BYTES` per voxel of a ``tile_z x y x x`` slab.

    Parameters
    ----------
    volume_shape : tuple of int
        (z, y, x) of the volume in voxels (for a 2D model, z counts the slices).
    divisor : tuple of int
        (z, y, x) multiple every tile axis must be (1 along z for a 2D model).
    receptive_field : tuple of int
        The model's receptive field along (z, y, x), voxels.
    bytes_per_voxel : float
        Peak activation bytes per tile voxel (:func:`activation_bytes_per_voxel`).
    budget_bytes : float
        Memory one model call may use (:func:`memory_budget`).
    slices : bool
        A 2D model: tiles are single z slices (tile z = 1) and only y, x are planned.

    Returns
    -------
    TileGrid
        ``tile_shape`` (z, y, x), ``overlap`` (the least, per axis), aligned ``starts`` and
        ``halo`` (0 on uncut axes); one tile (``starts == ((0,), (0,), (0,))``) when the
        whole volume fits. When even the cheapest grid in memory does not fit, that grid is
        returned with a warning (the out-of-memory fallback then shrinks its tiles).
    """
    if bytes_per_voxel <= 0 or budget_bytes <= 0:
        raise InvalidDataError(
            f"bytes_per_voxel and budget_bytes must be positive, got {bytes_per_voxel}, {budget_bytes}"
        )
    plane = volume_shape[1] * volume_shape[2]
    axes, halos = [], []
    for axis, (length, div, rf) in enumerate(zip(volume_shape, divisor, receptive_field)):
        if axis == 0 and slices:
            axes.append([(1, tuple(range(length)))])
            halos.append(0)
            continue
        halo = model_halo(div, rf)
        halos.append(halo)
        axes.append(_axis_candidates(length, div, halo))

    def memory(tile: tuple[int, ...]) -> float:
        return bytes_per_voxel * math.prod(tile) + ACCUMULATOR_BYTES * tile[0] * plane

    best: tuple[tuple[int, int], tuple[Any, ...]] | None = None
    smallest: tuple[float, tuple[Any, ...]] | None = None
    for choice in itertools.product(*axes):
        tile = tuple(c[0] for c in choice)
        need = memory(tile)
        if smallest is None or need < smallest[0]:
            smallest = (need, choice)
        if need > budget_bytes:
            continue
        key = (math.prod(c[0] * len(c[1]) for c in choice), math.prod(len(c[1]) for c in choice))
        if best is None or key < best[0]:
            best = (key, choice)
    if best is None:
        assert smallest is not None
        chosen = smallest[1]
        log.warning("the smallest tiles this model allows, %s, need about %.0f MB, over the "
                    "memory budget of %.0f MB", tuple(c[0] for c in chosen), smallest[0] / 2**20,
                    budget_bytes / 2**20)
    else:
        chosen = best[1]
    cut = [len(c[1]) > 1 for c in chosen]
    return TileGrid(
        volume_shape=tuple(volume_shape),  # type: ignore[arg-type]
        tile_shape=tuple(c[0] for c in chosen),  # type: ignore[arg-type]
        overlap=tuple(min(c[0] - (b - a) for a, b in zip(c[1], c[1][1:])) if k else 0
                      for c, k in zip(chosen, cut)),  # type: ignore[arg-type]
        starts=tuple(c[1] for c in chosen),  # type: ignore[arg-type]
        halo=tuple(h if k else 0 for h, k in zip(halos, cut)),  # type: ignore[arg-type]
    )
