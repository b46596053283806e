"""The :class:`Volume` container shared by every reader and writer."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidDataError


def is_lazy_array(array: Any) -> bool:
    """True for a chunked array that reads its data on indexing (``zarr.Array``, a Dask array,
    :class:`data_pipelines.io.axes_view.AxesView`): not a NumPy array, but with ``shape``,
    ``dtype``, ``ndim``, ``chunks`` and ``__getitem__``."""
    return not isinstance(array, np.ndarray) and all(
        hasattr(array, name) for name in ("shape", "dtype", "ndim", "chunks", "__getitem__"))


@dataclass
class Volume:
    """An image volume with the metadata needed to write it back.

    Attributes
    ----------
    array : np.ndarray or lazy array
        float32, shape (z, y, x) or (z, y, x, c), in the source's units (HU for CT,
        after DICOM rescale slope/intercept). A 2D image is stored as (1, y, x).
        Zarr inputs give a *lazy* chunked array instead (:attr:`is_lazy`), in the stored
        dtype and not yet read: index it to read a part, or call :meth:`load`.
    spacing : tuple of float or None
        Voxel size (z, y, x) in mm (or in the file's own unit, e.g. micrometres for
        ImageJ TIFF, stated in ``meta["spacing_unit"]``); None when the file has none.
    meta : dict
        Format-specific metadata used by :func:`data_pipelines.write_volume`:
        ``format`` (reader name), ``dtype`` (the stored dtype, e.g. ``"int16"``),
        and e.g. ``affine``/``header`` (NIfTI), ``datasets`` (DICOM tags), ``key`` (NPZ/HDF5).
    source : str or None
        Path the volume was read from.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        if not is_lazy_array(self.array):
            self.array = np.asarray(self.array)
        if self.array.ndim not in (3, 4):
            raise InvalidDataError(
                f"{self.source or 'Volume'}: array must be (z, y, x) or (z, y, x, c), "
                f"got shape {self.array.shape}"
            )
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of :attr:`array`."""
        return tuple(self.array.shape)

    @property
    def name(self) -> str:
        """A short name: the source's file name without suffixes, or ``"volume"``."""
        if not self.source:
            return "volume"
        base = Path(self.source).name
        for suffix in (".ome.zarr", ".zarr", ".nii.gz", ".nii", ".npz", ".npy", ".h5", ".hdf5", ".tif", ".tiff", ".dcm"):
            if base.lower().endswith(suffix):
                return base[: -len(suffix)]
        return base

    @property
    def is_lazy(self) -> bool:
        """True when :attr:`array` is a chunked array not yet read into memory (Zarr)."""
        return is_lazy_array(self.array)

    def load(self, *, allow_nonfinite: bool = False) -> "Volume":
        """This volume with its array read into memory as float32 (itself when already in memory).

        Parameters
        ----------
        allow_nonfinite : bool
            Accept NaN/Inf voxels (checked here for lazy arrays, since reading them lazily
            skips the check :func:`data_pipelines.read_volume` makes).

        Returns
        -------
        Volume
            ``array`` a float32 np.ndarray of the same shape; same spacing, meta and source.

        Raises
        ------
        VolumeReadError
            The float32 array would not fit in the available memory (checked before reading).
        InvalidDataError
            NaN/Inf voxels and ``allow_nonfinite`` is False.
        """
        if not self.is_lazy:
            return self
        from .io.arrays import as_volume_array, check_declared_size, check_finite

        source = self.source or "volume"
        check_declared_size(source, tuple(self.array.shape), np.dtype(self.array.dtype).itemsize, None,
                            compressed=True)
        array = as_volume_array(np.asarray(self.array), source)
        check_finite(array, source, allow_nonfinite)
        return replace(self, array=array, meta=dict(self.meta))

    def with_array(self, array: np.ndarray) -> "Volume":
        """Return a copy holding ``array`` with this volume's spacing and metadata."""
        return replace(self, array=np.asarray(array), meta=dict(self.meta))
