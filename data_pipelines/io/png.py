"""PNG slices: one file, a folder of slices (one volume), or one subfolder per subject.

Slices in a folder are ordered by natural sort of their names (``slice2`` before
``slice10``), as in the original ResPr-UNet data layout. PNG has no physical spacing, so
``spacing`` is None. Grey 8- and 16-bit images are read as (y, x); RGB(A) as (y, x, c).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import VolumeReadError, VolumeWriteError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype

__all__ = ["natural_key", "read_png", "read_png_subjects", "write_png"]

_PNG_DTYPES = ("uint8", "uint16")


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the digit runs of ``name`` by value: ``slice2`` < ``slice10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image, dtype=np.uint16)
            if image.mode == "I":
                return np.asarray(image).astype(np.uint16)
            if image.mode not in ("L", "RGB", "RGBA"):
                image = image.convert("L")
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise VolumeReadError(f"{path}: not a readable PNG image (expected a complete .png): {exc}") from exc


def _png_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def read_png(path: Path) -> Volume:
    """Read one PNG image (-> (1, y, x)) or a folder of PNG slices (-> (z, y, x)).

    Parameters
    ----------
    path : pathlib.Path
        A ``.png`` file or a folder of ``.png`` slices, ordered by natural sort.

    Returns
    -------
    Volume
        ``array`` float32 (z, y, x) or (z, y, x, c); ``spacing`` None; ``meta`` holds the
        stored ``dtype`` (uint8 or uint16) and the slice ``files`` names.

    Raises
    ------
    VolumeReadError
        An empty folder, an unreadable slice, or slices of different sizes or dtypes.
    """
    files = _png_files(path) if path.is_dir() else [path]
    if not files:
        raise VolumeReadError(f"{path}: folder holds no .png slices")
    slices = [_read_image(f) for f in files]
    kinds = {(s.shape, s.dtype.name) for s in slices}
    if len(kinds) > 1:
        raise VolumeReadError(
            f"{path}: PNG slices differ in shape/dtype {sorted(kinds)}; expected one size and bit depth"
        )
    data = np.stack(slices)
    meta = {"format": "png", "dtype": data.dtype.name, "files": [f.name for f in files]}
    return Volume(as_volume_array(data, str(path)), spacing=None, meta=meta, source=str(path))


def read_png_subjects(root: str | Path) -> list[Volume]:
    """Read a root folder holding one subfolder of PNG slices per subject.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder whose subfolders (natural sort) each hold one subject's slices.

    Returns
    -------
    list of Volume
        One (z, y, x) volume per subfolder, in natural order; ``meta["subject"]`` is the
        subfolder name.

    Raises
    ------
    VolumeReadError
        ``root`` is missing, not a folder, or has no subfolders; or a subfolder is unreadable.
    """
    root = Path(root)
    if not root.is_dir():
        raise VolumeReadError(f"{root}: expected a folder with one subfolder of PNG slices per subject")
    subjects = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: natural_key(p.name))
    if not subjects:
        raise VolumeReadError(f"{root}: no subject subfolders (expected one folder of PNG slices per subject)")
    volumes = []
    for folder in subjects:
        volume = read_png(folder)
        volume.meta["subject"] = folder.name
        volumes.append(volume)
    return volumes


def write_png(array: np.ndarray, path: Path, *, dtype: str, folder: bool) -> None:
    """Write a (z, y, x[, c]) array as PNG.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) grey or (z, y, x, 3|4) colour values.
    path : pathlib.Path
        With ``folder=True`` an existing empty folder that receives ``slice_0000.png``,
        ``slice_0001.png``, ...; otherwise a ``.png`` file (then z must be 1).
    dtype : str
        ``"uint8"`` or ``"uint16"`` (grey only); values are rounded and clipped.
    folder : bool
        Write one file per slice into the folder ``path``.

    Raises
    ------
    VolumeWriteError
        Another dtype, 16-bit colour, several slices to one file, or NaN/Inf values.
    """
    if dtype not in _PNG_DTYPES:
        raise VolumeWriteError(f"{path}: PNG stores uint8 or uint16, not {dtype}; pass dtype='uint8' or 'uint16'")
    if array.ndim == 4 and (array.shape[-1] not in (3, 4) or dtype != "uint8"):
        raise VolumeWriteError(f"{path}: PNG colour slices must be uint8 RGB/RGBA, got shape {array.shape} {dtype}")
    if not folder and array.shape[0] != 1:
        raise VolumeWriteError(
            f"{path}: {array.shape[0]} slices cannot go in one .png; write to a folder (a path without suffix)"
        )
    data = cast_to_dtype(array, dtype, str(path))
    if not folder:
        Image.fromarray(data[0]).save(path, format="PNG")
        return
    width = max(4, len(str(data.shape[0] - 1)))
    for index, plane in enumerate(data):
        Image.fromarray(plane).save(path / f"slice_{index:0{width}d}.png")
