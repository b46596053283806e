"""TIFF stacks via tifffile, with ImageJ spacing.

Spacing sources, first found wins:

1. ImageJ files: x/y from the XResolution/YResolution tags (pixels per unit), z from the
   ImageJ ``spacing`` entry (1.0 when absent), unit from the ImageJ ``unit`` entry.
2. tifffile "shaped" JSON description with ``spacing`` and ``spacing_unit`` (what this
   module writes for dtypes ImageJ cannot hold, e.g. int16).
3. Resolution tags in inches or centimetres, converted to mm (z then 1.0).

Otherwise ``spacing`` is None. The unit is kept in ``meta["spacing_unit"]`` (``"um"`` for
ImageJ micrometres, ``"mm"`` otherwise); values are NOT converted to mm for ImageJ files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import VolumeReadError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype

__all__ = ["read_tiff", "write_tiff"]

_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
_MICRON_NAMES = {"micron", "microns", "um", "\\u00B5m", "\u00b5m", "\u03bcm"}
_MM_PER_UNIT = {2: 25.4, 3: 10.0}  # TIFF ResolutionUnit: 2 inch, 3 centimetre


def _unit_name(unit: str | None) -> str | None:
    if unit is None:
        return None
    return "um" if unit in _MICRON_NAMES else unit


def _pixel_size(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """(dy, dx) from the resolution tags in the tags' unit, or None when absent."""
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if xres is None or yres is None:
        return None
    (xn, xd), (yn, yd) = xres.value, yres.value
    if not (xn and yn):
        return None
    return yd / yn, xd / xn


def _spacing(tif: tifffile.TiffFile) -> tuple[tuple[float, float, float] | None, str | None]:
    page = tif.pages.first
    size = _pixel_size(page)
    if tif.is_imagej:
        info = tif.imagej_metadata or {}
        if size is None:
            return None, None
        return (float(info.get("spacing", 1.0)), *size), _unit_name(info.get("unit"))
    shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
    if "spacing" in shaped:
        return tuple(float(s) for s in shaped["spacing"]), shaped.get("spacing_unit")
    unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    if size is None or unit not in _MM_PER_UNIT:
        return None, None
    scale = _MM_PER_UNIT[unit]
    return (1.0, size[0] * scale, size[1] * scale), "mm"


def read_tiff(path: Path) -> Volume:
    """Read a TIFF stack (the first series) as a :class:`Volume`.

    Parameters
    ----------
    path : pathlib.Path
        ``.tif`` or ``.tiff`` file: a 2D image (becomes (1, y, x)), a (z, y, x) stack or a
        (z, y, x, c) stack.

    Returns
    -------
    Volume
        ``array`` float32; ``spacing`` (dz, dy, dx) in ``meta["spacing_unit"]`` (see the
        module notes) or None; ``meta["dtype"]`` the stored dtype (uint8, uint16, float32, ...).

    Raises
    ------
    VolumeReadError
        Not a TIFF, or truncated/corrupt.
    """
    try:
        with tifffile.TiffFile(str(path)) as tif:
            data = tif.series[0].asarray()
            spacing, unit = _spacing(tif)
            imagej = bool(tif.is_imagej)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, IndexError, KeyError) as exc:
        raise VolumeReadError(f"{path}: not a readable TIFF (expected a complete .tif/.tiff): {exc}") from exc
    meta: dict[str, Any] = {"format": "tiff", "dtype": data.dtype.name, "imagej": imagej}
    if unit is not None:
        meta["spacing_unit"] = unit
    return Volume(as_volume_array(data, str(path)), spacing=spacing, meta=meta, source=str(path))


def write_tiff(
    array: np.ndarray,
    path: Path,
    *,
    dtype: str,
    spacing: tuple[float, ...] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a (z, y, x[, c]) array as a TIFF stack.

    Grey uint8/uint16/float32 stacks are written as ImageJ hyperstacks (resolution tags for
    x/y, ImageJ ``spacing`` for z, ImageJ ``unit``); other dtypes or channel stacks as plain
    TIFF with a JSON description holding ``spacing`` and ``spacing_unit``.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) or (z, y, x, c).
    path : pathlib.Path
        Output ``.tif``/``.tiff`` file.
    dtype : str
        Stored dtype; integer outputs are rounded and clipped.
    spacing : tuple of float or None
        (dz, dy, dx) in ``meta["spacing_unit"]`` (default ``"mm"``).
    meta : dict or None
        Metadata of the source volume.
    """
    meta = meta or {}
    data = cast_to_dtype(array, dtype, str(path))
    unit = meta.get("spacing_unit", "mm")
    if dtype in _IMAGEJ_DTYPES and data.ndim == 3:
        metadata: dict[str, Any] = {"axes": "ZYX"}
        resolution = None
        if spacing is not None:
            metadata.update(spacing=float(spacing[0]), unit="micron" if unit == "um" else unit)
            resolution = (1.0 / float(spacing[2]), 1.0 / float(spacing[1]))
        tifffile.imwrite(str(path), data, imagej=True, resolution=resolution, metadata=metadata)
        return
    description: dict[str, Any] = {}
    if spacing is not None:
        description = {"spacing": [float(s) for s in spacing], "spacing_unit": unit}
    tifffile.imwrite(str(path), data, photometric="minisblack", metadata=description)
