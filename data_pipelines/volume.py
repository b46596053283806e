"""The :class:`Volume` container shared by every reader and writer."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidDataError


@dataclass
class Volume:
    """An image volume with the metadata needed to write it back.

    Attributes
    ----------
    array : np.ndarray
        float32, shape (z, y, x) or (z, y, x, c), in the source's units (HU for CT,
        after DICOM rescale slope/intercept). A 2D image is stored as (1, y, x).
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
        for suffix in (".nii.gz", ".nii", ".npz", ".npy", ".h5", ".hdf5", ".tif", ".tiff", ".dcm"):
            if base.lower().endswith(suffix):
                return base[: -len(suffix)]
        return base

    def with_array(self, array: np.ndarray) -> "Volume":
        """Return a copy holding ``array`` with this volume's spacing and metadata."""
        return replace(self, array=np.asarray(array), meta=dict(self.meta))
