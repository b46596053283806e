"""Array helpers shared by the readers and writers: shape to (z, y, x[, c]), dtype casts."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidDataError, VolumeWriteError

__all__ = ["as_volume_array", "cast_to_dtype", "count_nonfinite"]


def as_volume_array(array: np.ndarray, source: str) -> np.ndarray:
    """Return ``array`` as float32 (z, y, x) or (z, y, x, c); a 2D (y, x) image becomes (1, y, x).

    Parameters
    ----------
    array : np.ndarray
        Image data of 2, 3 or 4 dimensions.
    source : str
        File name used in error messages.

    Raises
    ------
    InvalidDataError
        The array has fewer than 2 or more than 4 dimensions, or no voxels.
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim not in (3, 4):
        raise InvalidDataError(
            f"{source}: expected a 2D (y, x), 3D (z, y, x) or 4D (z, y, x, c) image, "
            f"got shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidDataError(f"{source}: image has no voxels (shape {array.shape})")
    return array.astype(np.float32, copy=False)


def count_nonfinite(array: np.ndarray) -> int:
    """Number of NaN or +-Inf values in ``array`` (0 for integer arrays)."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def cast_to_dtype(array: np.ndarray, dtype: str | np.dtype, target: str) -> np.ndarray:
    """Convert ``array`` to ``dtype`` for writing.

    Integer outputs are rounded to the nearest integer and clipped to the dtype's range
    (never truncated); floating outputs are a plain cast.

    Parameters
    ----------
    array : np.ndarray
        Values in the source's units, any shape.
    dtype : str or np.dtype
        Output dtype, e.g. ``"uint8"``, ``"int16"``, ``"float32"``.
    target : str
        Output path, used in error messages.

    Raises
    ------
    VolumeWriteError
        ``dtype`` is not numeric, or an integer output is asked for and the array holds
        NaN/Inf values (they have no integer representation).
    """
    out = np.dtype(dtype)
    if out.kind in "iu":
        bad = count_nonfinite(array)
        if bad:
            raise VolumeWriteError(
                f"{target}: {bad} NaN/Inf voxels cannot be stored as {out.name}; "
                "replace them or write a float format"
            )
        info = np.iinfo(out)
        return np.clip(np.rint(array), info.min, info.max).astype(out)
    if out.kind == "f":
        return np.asarray(array).astype(out)
    raise VolumeWriteError(f"{target}: cannot write dtype {out.name!r}; expected an int, uint or float dtype")
