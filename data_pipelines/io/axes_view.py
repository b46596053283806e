"""A lazy view of a chunked array (Zarr) with its axes reordered to (z, y, x[, c]).

OME-NGFF stores axes in the order (t, c, z, y, x) with channels first, and 2D images as (y, x);
this package's volumes are channels-last (z, y, x[, c]) with 2D images as (1, y, x). An
:class:`AxesView` presents such a store in the package's order without reading a voxel: indexing
it reads only the chunks the index touches, then moves the axes of that (small) result.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["AxesView", "axes_view"]


def _normalise_key(key: Any, ndim: int) -> tuple[int | slice, ...]:
    """``key`` as a tuple of ``ndim`` ints and slices (Ellipsis expanded, missing axes ``:``)."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    if len(key) > ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions: {len(key)}")
    key = key + (slice(None),) * (ndim - len(key))
    for k in key:
        if not isinstance(k, (slice, int, np.integer)):
            raise IndexError(f"AxesView supports int and slice indices only, got {type(k).__name__}")
    return tuple(int(k) if isinstance(k, np.integer) else k for k in key)


class AxesView:
    """Read-only, lazy (z, y, x[, c]) view of a chunked array stored with other axes.

    Parameters
    ----------
    source : array-like
        A chunked array (``zarr.Array``) with ``shape``, ``dtype``, ``chunks`` and
        ``__getitem__`` taking tuples of ints and slices.
    source_axes : sequence of str
        One name per axis of ``source``, e.g. ``("c", "z", "y", "x")`` or ``("t", "c", "z", "y", "x")``.
    target_axes : sequence of str
        The view's axes, each a name of ``source_axes`` or ``"z"`` (a length-1 axis added when
        the source is 2D), e.g. ``("z", "y", "x", "c")``.

    Notes
    -----
    Source axes absent from ``target_axes`` must have length 1 (they are indexed at 0).
    ``np.asarray(view)`` reads everything; ``view[k]`` reads what ``k`` selects.
    """

    def __init__(self, source: Any, source_axes: Sequence[str], target_axes: Sequence[str]) -> None:
        self.source = source
        self.source_axes = tuple(source_axes)
        self.target_axes = tuple(target_axes)
        if len(self.source_axes) != len(source.shape):
            raise ValueError(f"{len(self.source_axes)} axis names for a source of shape {source.shape}")
        for name, size in zip(self.source_axes, source.shape):
            if name not in self.target_axes and size != 1:
                raise ValueError(f"source axis {name!r} of length {size} is not in the view {self.target_axes}")
        for name in self.target_axes:
            if name not in self.source_axes and name != "z":
                raise ValueError(f"view axis {name!r} is not a source axis {self.source_axes}")

    def _source_size(self, name: str, values: Sequence[Any], default: Any) -> Any:
        return values[self.source_axes.index(name)] if name in self.source_axes else default

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in the view's axis order."""
        return tuple(int(self._source_size(a, self.source.shape, 1)) for a in self.target_axes)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape of the source, in the view's axis order."""
        return tuple(int(self._source_size(a, self.source.chunks, 1)) for a in self.target_axes)

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype."""
        return np.dtype(self.source.dtype)

    @property
    def ndim(self) -> int:
        """Number of view axes."""
        return len(self.target_axes)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"AxesView(shape={self.shape}, dtype={self.dtype}, axes={''.join(self.target_axes)}, "
                f"source={self.source!r})")

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _normalise_key(key, self.ndim)
        by_axis = dict(zip(self.target_axes, key))
        added = [a for a in self.target_axes if a not in self.source_axes]
        for name in added:  # a length-1 axis the source lacks
            k = by_axis[name]
            if isinstance(k, int) and k not in (0, -1):
                raise IndexError(f"index {k} is out of bounds for axis {name!r} of length 1")
        source_key = tuple(by_axis.get(name, 0) for name in self.source_axes)
        data = np.asarray(self.source[source_key])
        kept = [n for n in self.source_axes if isinstance(by_axis.get(n, 0), slice)]
        wanted = [n for n in self.target_axes if n in kept]
        data = np.transpose(data, [kept.index(n) for n in wanted])
        for position, name in enumerate(self.target_axes):
            if name in added and isinstance(by_axis[name], slice):
                at = sum(1 for n in self.target_axes[:position] if isinstance(by_axis[n], slice))
                data = np.expand_dims(data, at)[(slice(None),) * at + (by_axis[name],)]
        return data

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)


def axes_view(source: Any, source_axes: Sequence[str], target_axes: Sequence[str]) -> Any:
    """``source`` itself when its axes already are ``target_axes``, else an :class:`AxesView`."""
    if tuple(source_axes) == tuple(target_axes):
        return source
    return AxesView(source, source_axes, target_axes)
