"""Array helpers shared by the readers and writers: shape to (z, y, x[, c]), dtype casts, and
the check of a file's declared size before anything is allocated."""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import InvalidDataError, VolumeReadError, VolumeWriteError

__all__ = ["MAX_COMPRESSION_RATIO", "as_volume_array", "available_memory", "cast_to_dtype",
           "check_declared_size", "count_nonfinite"]

#: Largest ratio of declared (uncompressed) bytes to stored bytes a compressed file may claim;
#: deflate (gzip, HDF5's gzip filter) cannot exceed about 1032:1, so a larger claim is a lie.
MAX_COMPRESSION_RATIO = 1100
#: Share of the available memory a file's float32 array may take.
MEMORY_FRACTION = 0.8


def available_memory() -> int | None:
    """Bytes of memory available now: ``MemAvailable`` from ``/proc/meminfo`` (Linux), else the
    physical memory from ``os.sysconf``; None when neither is known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_declared_size(
    source: str,
    shape: tuple[int, ...],
    itemsize: int,
    stored_bytes: int | None,
    *,
    compressed: bool,
    memory: int | None = None,
) -> None:
    """Refuse a file whose header declares more data than it can hold, or than memory allows.

    Called with the header's shape before any voxel is read, so a crafted 100-byte file that
    claims 600^3 voxels fails at once instead of allocating gigabytes.

    Parameters
    ----------
    source : str
        File (and dataset) name for the message.
    shape : tuple of int
        Declared array shape.
    itemsize : int
        Bytes per stored element.
    stored_bytes : int or None
        Bytes the file holds for the data (after any header); None: not known.
    compressed : bool
        The data are deflate-compressed: at most :data:`MAX_COMPRESSION_RATIO` times
        ``stored_bytes`` may be declared; else at most ``stored_bytes``.
    memory : int, optional
        Bytes available (default :func:`available_memory`); the float32 array the reader
        makes may take :data:`MEMORY_FRACTION` of it.

    Raises
    ------
    VolumeReadError
        The declared size is impossible for the file, or too large for memory.
    """
    voxels = math.prod(int(n) for n in shape)
    declared = voxels * int(itemsize)
    if stored_bytes is not None:
        limit = stored_bytes * (MAX_COMPRESSION_RATIO if compressed else 1)
        if declared > limit:
            raise VolumeReadError(
                f"{source}: the header declares shape {tuple(shape)} ({declared:,} bytes) but the file holds "
                f"{stored_bytes:,} bytes of {'compressed ' if compressed else ''}data; the file is truncated "
                "or its header is wrong"
            )
    memory = available_memory() if memory is None else memory
    needed = voxels * 4  # the float32 array every reader returns
    if memory is not None and needed > MEMORY_FRACTION * memory:
        raise VolumeReadError(
            f"{source}: shape {tuple(shape)} needs {needed / 2**30:.1f} GiB as float32, more than "
            f"{MEMORY_FRACTION:.0%} of the {memory / 2**30:.1f} GiB available; crop the volume, or save it as "
            ".npy and denoise it from a memory map"
        )


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


def check_finite(array: np.ndarray, source: str, allow_nonfinite: bool = False) -> None:
    """Refuse NaN/Inf voxels of a volume just read (unless ``allow_nonfinite``).

    Raises
    ------
    InvalidDataError
        ``array`` holds NaN or +-Inf values and ``allow_nonfinite`` is False.
    """
    bad = count_nonfinite(array)
    if bad and not allow_nonfinite:
        raise InvalidDataError(
            f"{source}: {bad} of {array.size} voxels are NaN/Inf; expected finite values "
            "(pass allow_nonfinite=True to read them anyway)"
        )


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
