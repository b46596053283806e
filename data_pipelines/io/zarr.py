"""Zarr and OME-Zarr (``*.zarr``, ``*.ome.zarr`` folders), read lazily, written with a pyramid.

Needs the optional packages ``zarr`` and ``ome-zarr`` (``pip install "resprunet[zarr]"``).

Reading (:func:`read_zarr`) opens the store and returns a :class:`~data_pipelines.volume.Volume`
whose ``array`` is the chunked Zarr array itself (an :class:`~.axes_view.AxesView` of it when the
store's axes are not (z, y, x), e.g. OME's channels-first (c, z, y, x)); no voxel is read until
the array is indexed. ``Volume.load()``, ``np.asarray(volume.array)`` and every function that
takes a NumPy array (normalisation, ``denoise_array``, writing another format) read it all.

* **OME-Zarr** (OME-NGFF 0.3 to 0.5 ``multiscales``): axes from the metadata, ``level`` picks a
  resolution level (0 = full resolution), ``spacing`` is that level's ``scale`` for (z, y, x)
  in the axes' unit (``meta["spacing_unit"]``: ``"um"``, ``"mm"``, ...). Axes without a unit
  give ``spacing=None`` (the raw ``scale`` is in ``meta["scale"]``). Singleton ``t``/``c`` axes
  are dropped; one ``t`` or ``c`` axis longer than 1 becomes the last axis (z, y, x, c).
* **Plain Zarr** (an array, or a group without OME metadata): axes are assumed (z, y, x)
  ((y, x) for 2D, (z, y, x, c) for 4D), no voxel size, and a warning says so.

Writing (:func:`write_zarr`) makes an OME-Zarr (OME-NGFF 0.5, Zarr format 3) store, whatever
the suffix (``.zarr`` or ``.ome.zarr``): level 0 is the array in its stored dtype, chunked
(32, 256, 256) along (z, y, x) by default, and a pyramid of block-mean levels follows
(:mod:`.pyramid`: y and x halved per level, z too when the voxels are near isotropic, down
to a 64-voxel side, at most 8 levels). Each level carries its ``scale`` (voxel size) and the
``translation`` of its first voxel's centre; axes carry the unit. The store is written
chunk by chunk, so a lazy input is never held in memory whole.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataPipelineError, VolumeReadError
from ..volume import Volume
from .arrays import cast_to_dtype
from .axes_view import axes_view
from .ome_meta import AXIS_TYPES, ngff_unit, parse_multiscales, short_unit
from .pyramid import block_mean, level_shape, pyramid_factors

__all__ = ["DEFAULT_CHUNKS", "ZarrMissingError", "read_zarr", "write_zarr"]

log = logging.getLogger(__name__)

#: Default chunk shape (z, y, x) of written stores (clipped to the array's shape).
DEFAULT_CHUNKS = (32, 256, 256)
_SPATIAL = ("z", "y", "x")


class ZarrMissingError(DataPipelineError, ImportError):
    """The optional ``zarr`` / ``ome-zarr`` packages are not installed."""


def _import_zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise ZarrMissingError(
            'Zarr support needs the optional packages zarr and ome-zarr: pip install "resprunet[zarr]"'
        ) from exc
    return zarr


def _check_dtype(source: str, dtype: np.dtype) -> None:
    if dtype.names is not None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
                                       or np.issubdtype(dtype, np.bool_)):
        raise VolumeReadError(f"{source}: dtype {dtype} is not a real number type; expected integer or "
                              "floating-point image data")


def _target_axes(source: str, axes: Sequence[str], shape: Sequence[int]) -> tuple[str, ...]:
    """The view's axes (z, y, x[, c]) for a store with ``axes``; see the module notes."""
    if "y" not in axes or "x" not in axes:
        raise VolumeReadError(f"{source}: axes {tuple(axes)} lack y or x; expected spatial axes (z,) y, x")
    others = [a for a in axes if a not in _SPATIAL]
    long = [a for a in others if shape[list(axes).index(a)] > 1]
    if len(long) > 1:
        raise VolumeReadError(
            f"{source}: axes {tuple(axes)} of shape {tuple(shape)} have {len(long)} non-spatial axes "
            f"longer than 1 ({', '.join(long)}); expected at most one channel or time axis (z, y, x, c)"
        )
    return _SPATIAL + tuple(long)


def _open(path: Path) -> Any:
    zarr = _import_zarr()
    try:
        return zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many kinds (FileNotFoundError, ValueError, JSON errors)
        raise VolumeReadError(f"{path}: not a readable Zarr store ({type(exc).__name__}: {exc})") from exc


def _plain(path: Path, array: Any, level: int | None, key: str | None) -> Volume:
    """A Zarr array without OME metadata: axes assumed, no spacing, and a warning."""
    source = f"{path}[{key}]" if key else str(path)
    if level not in (None, 0):
        raise VolumeReadError(f"{source}: no resolution level {level}; a plain Zarr array (no OME-NGFF "
                              "multiscales) has only level 0")
    assumed = {2: ("y", "x"), 3: _SPATIAL, 4: _SPATIAL + ("c",)}.get(array.ndim)
    if assumed is None:
        raise VolumeReadError(f"{source}: plain Zarr array of shape {array.shape}; expected 2 to 4 "
                              "dimensions (y, x), (z, y, x) or (z, y, x, c)")
    _check_dtype(source, np.dtype(array.dtype))
    log.warning("%s: plain Zarr without OME-NGFF metadata: axes assumed (%s), voxel size unknown",
                source, ", ".join(assumed))
    view = axes_view(array, assumed, _SPATIAL + assumed[3:])
    meta: dict[str, Any] = {"format": "zarr", "dtype": np.dtype(array.dtype).name, "ome": False,
                            "axes": "".join(assumed), "level": 0, "levels": 1, "chunks": tuple(view.chunks)}
    if key:
        meta["key"] = key
    return Volume(view, spacing=None, meta=meta, source=str(path))


def read_zarr(path: Path, level: int | None = None, key: str | None = None) -> Volume:
    """Open a Zarr or OME-Zarr store as a lazy :class:`Volume` (see the module notes).

    Parameters
    ----------
    path : pathlib.Path
        The store (a ``.zarr`` / ``.ome.zarr`` folder).
    level : int or None
        Resolution level of an OME-Zarr (0, the default, is full resolution).
    key : str or None
        Array path in a plain Zarr group holding several arrays (not for OME-Zarr: use ``level``).

    Returns
    -------
    Volume
        ``array``: the ``zarr.Array`` (axes (z, y, x) or (z, y, x, c)), or an
        :class:`~.axes_view.AxesView` of it in that order; in the stored dtype, not float32,
        and not loaded. ``spacing``: (dz, dy, dx) of the level in ``meta["spacing_unit"]``, or
        None. ``meta``: ``format="zarr"``, ``dtype``, ``ome`` (bool), ``axes`` (stored axis
        names), ``level``, ``levels`` (count), ``scale``, ``chunks``, ``ome_version``, ``name``.

    Raises
    ------
    ZarrMissingError
        ``zarr`` is not installed.
    VolumeReadError
        Not a Zarr store, malformed metadata, a missing resolution level (the message lists
        those available), several arrays and no ``key``, axes this package cannot map to
        (z, y, x[, c]), or a dtype that is not a real number.
    """
    zarr = _import_zarr()
    node = _open(path)
    if isinstance(node, zarr.Array):
        if key is not None:
            raise VolumeReadError(f"{path}: key={key!r} applies to Zarr groups; this store is one array")
        return _plain(path, node, level, None)
    try:
        multiscale = parse_multiscales(dict(node.attrs), str(path))
    except ValueError as exc:
        raise VolumeReadError(str(exc)) from exc
    if multiscale is None:
        names = sorted(name for name, _ in node.arrays())
        if key is None:
            if len(names) != 1:
                raise VolumeReadError(
                    f"{path}: Zarr group without OME-NGFF metadata holds arrays {names}; choose one with "
                    "--key NAME (key=NAME in Python)" if names
                    else f"{path}: Zarr group holds no array and no OME-NGFF multiscales metadata")
            key = names[0]
        if key not in names:
            raise VolumeReadError(f"{path}: no array {key!r}; the group holds {names}")
        return _plain(path, node[key], level, key)
    if key is not None:
        raise VolumeReadError(f"{path}: key={key!r} applies to plain Zarr groups; an OME-Zarr picks "
                              "its array by resolution level (level=N)")
    paths = multiscale.paths
    level = 0 if level is None else int(level)
    if not 0 <= level < len(paths):
        listing = ", ".join(f"{i} ({p!r})" for i, p in enumerate(paths))
        raise VolumeReadError(f"{path}: no resolution level {level}; the store has levels {listing}")
    try:
        array = node[paths[level]]
    except KeyError:
        array = None
    if not isinstance(array, zarr.Array):
        raise VolumeReadError(f"{path}: resolution level {level} (array {paths[level]!r}) is listed in the "
                              "OME-NGFF metadata but missing from the store")
    source = f"{path}[{paths[level]}]"
    axes = multiscale.axes
    if len(axes) != array.ndim:
        raise VolumeReadError(f"{source}: {len(axes)} axes {axes} for an array of shape {array.shape}")
    _check_dtype(source, np.dtype(array.dtype))
    target_axes = _target_axes(source, axes, array.shape)
    view = axes_view(array, axes, target_axes)
    scale = multiscale.scales[level]
    units = {a: u for a, u in zip(axes, multiscale.units) if a in _SPATIAL and u}
    spacing = None
    meta: dict[str, Any] = {
        "format": "zarr", "dtype": np.dtype(array.dtype).name, "ome": True, "axes": "".join(axes),
        "level": level, "levels": len(paths), "scale": list(scale) if scale else None,
        "chunks": tuple(view.chunks), "ome_version": multiscale.version, "name": multiscale.name,
    }
    if scale is not None and units:
        spacing = tuple(scale[axes.index(a)] if a in axes else 1.0 for a in _SPATIAL)
        if len(set(units.values())) > 1:
            log.warning("%s: axes have different units %s; spacing is given in each axis' own unit", source, units)
        meta["spacing_unit"] = short_unit(units.get("x") or next(iter(units.values())))
    if len(target_axes) == 4:
        meta["channel_axis"] = target_axes[3]
    return Volume(view, spacing=spacing, meta=meta, source=str(path))


def _blocks(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Slices (z, y, x) of every chunk of an array of ``shape``, in storage order."""
    grid = [range(0, n, c) for n, c in zip(shape, chunks)]
    for z in grid[0]:
        for y in grid[1]:
            for x in grid[2]:
                yield tuple(slice(s, min(s + c, n)) for s, c, n in zip((z, y, x), chunks, shape))


def _stored(array: np.ndarray, channels: bool) -> np.ndarray:
    """(z, y, x, c) -> (c, z, y, x) for OME's channels-first order."""
    return np.moveaxis(array, -1, 0) if channels else array


def write_zarr(
    array: Any,
    path: Path,
    *,
    dtype: str,
    spacing: Sequence[float] | None = None,
    unit: str = "mm",
    channel_axis: str = "c",
    levels: int | None = None,
    chunks: Sequence[int] | None = None,
    name: str | None = None,
) -> None:
    """Write an OME-Zarr store with its multiscale pyramid (see the module notes).

    Not atomic by itself: :func:`data_pipelines.write_volume` calls it on a temporary folder
    and renames that onto the target.

    Parameters
    ----------
    array : np.ndarray or array-like
        (z, y, x) or (z, y, x, c) in the source's units; a lazy array (Zarr, :class:`~.axes_view.AxesView`)
        is read chunk by chunk.
    path : pathlib.Path
        The store's folder (created, or emptied when it exists).
    dtype : str
        Stored dtype of every level; integer outputs are rounded and clipped.
    spacing : sequence of float or None
        Level-0 voxel size (dz, dy, dx) in ``unit``; None writes a unit-less scale of 1 (read back
        as ``spacing=None``).
    unit : str
        Unit of ``spacing``: ``"mm"``, ``"um"``, ``"nm"``, ... or an OME-NGFF unit name. An unknown
        unit is left out of the metadata (with a warning).
    channel_axis : str
        Name of the 4th axis of a 4D array: ``"c"`` (channels) or ``"t"`` (time frames).
    levels : int or None
        Pyramid levels, level 0 included; None: automatic (:func:`.pyramid.pyramid_factors`).
    chunks : sequence of int or None
        Chunk shape (z, y, x); default :data:`DEFAULT_CHUNKS` clipped to the shape.
    name : str or None
        The image's name in the metadata (default ``"image"``).

    Raises
    ------
    ZarrMissingError
        ``zarr`` or ``ome-zarr`` is not installed.
    VolumeWriteError
        NaN/Inf values for an integer dtype (see :func:`.arrays.cast_to_dtype`).
    ValueError
        ``channel_axis`` is not ``"c"`` or ``"t"``, or ``levels`` < 1.
    """
    zarr = _import_zarr()
    try:
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscales_metadata
    except ImportError as exc:
        raise ZarrMissingError('OME-Zarr output needs the optional package ome-zarr: '
                               'pip install "resprunet[zarr]"') from exc
    if channel_axis not in ("c", "t"):
        raise ValueError(f"channel_axis={channel_axis!r}: expected 'c' or 't'")
    shape = tuple(int(n) for n in array.shape)
    has_channels = len(shape) == 4
    lead = (shape[3],) if has_channels else ()
    zyx = shape[:3]
    chunk = tuple(min(int(c), n) for c, n in zip(chunks or DEFAULT_CHUNKS, zyx))
    factors = pyramid_factors(zyx, spacing, levels)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)

    target = group.create_array("0", shape=lead + zyx, dtype=dtype, chunks=(1,) * len(lead) + chunk, fill_value=0)
    for block in _blocks(zyx, chunk):
        data = np.asarray(array[block])
        target[(slice(None),) * len(lead) + block] = cast_to_dtype(_stored(data, has_channels), dtype, str(path))

    for k in range(1, len(factors)):
        step = tuple(f // g for f, g in zip(factors[k], factors[k - 1]))
        previous, out_shape = group[str(k - 1)], level_shape(zyx, factors[k])
        level = group.create_array(str(k), shape=lead + out_shape, dtype=dtype,
                                   chunks=(1,) * len(lead) + tuple(min(c, n) for c, n in zip(chunk, out_shape)),
                                   fill_value=0)
        for block in _blocks(out_shape, chunk):
            source = tuple(slice(b.start * s, min(b.stop * s, n))
                           for b, s, n in zip(block, step, previous.shape[len(lead):]))
            data = block_mean(previous[(slice(None),) * len(lead) + source], (1,) * len(lead) + step)
            level[(slice(None),) * len(lead) + block] = cast_to_dtype(data, dtype, str(path))

    base = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    ones = [1.0] * len(lead)
    datasets = [{
        "path": str(k),
        "coordinateTransformations": [
            {"type": "scale", "scale": ones + [b * f for b, f in zip(base, fac)]},
            {"type": "translation", "translation": [0.0] * len(lead) + [b * (f - 1) / 2 for b, f in zip(base, fac)]},
        ],
    } for k, fac in enumerate(factors)]
    unit_name = ngff_unit(unit) if spacing is not None else None
    if spacing is not None and unit_name is None:
        log.warning("%s: unit %r is not an OME-NGFF unit; the voxel size is written without a unit", path, unit)
    axes: list[dict[str, str]] = [{"name": channel_axis, "type": AXIS_TYPES[channel_axis]}] if has_channels else []
    axes += [{"name": a, "type": "space", **({"unit": unit_name} if unit_name else {})} for a in _SPATIAL]
    write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=axes, name=name or "image")

