"""Where prepared (normalised, padded) volumes live while a dataset reads patches from them.

:class:`VolumeStore` holds one (z, y, x, c) float32 array per volume, either in memory or
as a read-only ``np.load(mmap_mode="r")`` memory map of a ``.npy`` file written once by
:func:`spill`, so that a collection larger than memory can still be trained on: each
patch reads only its own crop from disk.

The file name is :func:`content_key`: a hash of the stored (normalised, padded) content
AND of the settings that made it (normaliser, padding, crop). A changed normaliser gives a
new file, never a stale one (MONAI's PersistentDataset trap).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .patches import crop_slab

#: Bump when the prepared layout changes, so old cache files are not reused.
CACHE_FORMAT = 1


def content_key(arrays: list[np.ndarray], settings: dict[str, Any]) -> str:
    """SHA-256 (hex) of the arrays' dtype, shape and bytes plus the JSON of ``settings``."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, **settings}, sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def spill(array: np.ndarray, key: str, cache_dir: str | os.PathLike) -> np.memmap:
    """Write ``array`` to ``cache_dir/<key>.npy`` (atomically, once) and memory-map it read-only.

    An existing file with that key is reused as is.
    """
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npy"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(suffix=".npy.tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array, dtype=np.float32))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return np.load(path, mmap_mode="r")


class VolumeStore:
    """Prepared volumes, (z, y, x, c) float32 each, in memory or memory-mapped.

    Parameters
    ----------
    arrays : list of np.ndarray
        One array (or ``np.memmap``) per volume.
    """

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = list(arrays)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Shape of each stored volume."""
        return [tuple(a.shape) for a in self.arrays]

    @property
    def on_disk(self) -> bool:
        """True when the volumes are memory-mapped files."""
        return any(isinstance(a, np.memmap) for a in self.arrays)

    @property
    def nbytes(self) -> int:
        """Total size of the stored volumes in bytes."""
        return int(sum(a.nbytes for a in self.arrays))

    def read(
        self, index: int, corner: tuple[int, int, int], crop: tuple[int, int, int], margin: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Crop volume ``index``; see :func:`data_pipelines.patches.crop_slab`."""
        return crop_slab(self.arrays[index], corner, crop, margin)
