"""NIfTI-1/2 (.nii, .nii.gz) via nibabel.

NIfTI stores (x, y, z[, t]); volumes are (z, y, x[, c]), so axes 0 and 2 are swapped on read
and swapped back on write, and ``spacing`` is the header's zooms reversed: (dz, dy, dx).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import VolumeReadError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype, check_declared_size

__all__ = ["read_nifti", "write_nifti"]

_READ_ERRORS = (nib.filebasedimages.ImageFileError, EOFError, OSError, ValueError,
                zlib.error, gzip.BadGzipFile)


def _swap_xz(data: np.ndarray) -> np.ndarray:
    """(x, y, z[, t]) <-> (z, y, x[, t]); the same permutation is its own inverse."""
    return np.swapaxes(data, 0, 2)


def _unreadable(path: Path, exc: BaseException) -> VolumeReadError:
    return VolumeReadError(f"{path}: not a readable NIfTI file (expected a complete .nii/.nii.gz): {exc}")


def read_nifti(path: Path) -> Volume:
    """Read a NIfTI file as a :class:`Volume`.

    Parameters
    ----------
    path : pathlib.Path
        ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    Volume
        ``array`` float32 (z, y, x) or (z, y, x, t) with scl_slope/scl_inter applied;
        ``spacing`` (dz, dy, dx) from the zooms in the header's spatial unit
        (``meta["spacing_unit"]``, normally ``"mm"``); ``meta`` holds ``affine`` (4, 4),
        ``header`` (a nibabel header copy), the stored ``dtype`` and ``scaling``
        ((scl_slope, scl_inter) of the stored values, (1.0, 0.0) when unscaled).

    Raises
    ------
    VolumeReadError
        The file is not NIfTI, or is truncated/corrupt.
    """
    try:
        img = nib.load(str(path))  # the header only
        compressed = str(path).endswith(".gz")
        stored = Path(path).stat().st_size - (0 if compressed else int(img.dataobj.offset))
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    check_declared_size(str(path), img.shape, img.get_data_dtype().itemsize, stored, compressed=compressed)
    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeReadError(f"{path}: expected a NIfTI image, found {type(img).__name__}")
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    array = as_volume_array(_swap_xz(data), str(path))
    zooms = img.header.get_zooms()[:3]
    meta: dict[str, Any] = {
        "format": "nifti",
        "dtype": img.get_data_dtype().name,
        "affine": np.array(img.affine, dtype=np.float64),
        "header": img.header.copy(),
        "spacing_unit": img.header.get_xyzt_units()[0],
        "scaling": (float(img.dataobj.slope), float(img.dataobj.inter)),
    }
    return Volume(array, spacing=tuple(float(z) for z in zooms[::-1]), meta=meta, source=str(path))


def write_nifti(
    array: np.ndarray,
    path: Path,
    *,
    dtype: str,
    spacing: tuple[float, ...] | None = None,
    meta: dict[str, Any] | None = None,
    affine: np.ndarray | None = None,
) -> None:
    """Write a (z, y, x[, c]) array as NIfTI.

    With a NIfTI ``meta`` (``affine`` and ``header``) the header is reused: the result has
    the source's affine and header fields; integer data that the source stored scaled
    (``meta["scaling"]`` not (1, 0)) gets a scl_slope/scl_inter that nibabel recomputes to
    fit the values; unscaled integer data is rounded and clipped. Otherwise the affine is
    ``affine`` when given (e.g. from DICOM geometry), else ``diag(dx, dy, dz, 1)`` from
    ``spacing`` (identity when None).

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) or (z, y, x, c) values in the source's units.
    path : pathlib.Path
        Output file ending in ``.nii`` or ``.nii.gz``.
    dtype : str
        Stored dtype; integer outputs are rounded and clipped.
    spacing : tuple of float or None
        (dz, dy, dx), used only without a NIfTI header.
    meta : dict or None
        Metadata from :func:`read_nifti`.
    affine : np.ndarray or None
        (4, 4) voxel-to-RAS affine for data without a NIfTI header.
    """
    meta = meta or {}
    data = _swap_xz(array)
    if meta.get("format") == "nifti":
        header = meta["header"].copy()
        affine = np.asarray(meta["affine"], dtype=np.float64)
    else:
        header = nib.Nifti1Header()
        zooms = (1.0, 1.0, 1.0) if spacing is None else tuple(spacing)[::-1]
        affine = np.diag([*zooms, 1.0]) if affine is None else np.asarray(affine, dtype=np.float64)
        header.set_xyzt_units("mm")
    header.set_data_dtype(dtype)
    scaled = tuple(meta.get("scaling", (1.0, 0.0))) != (1.0, 0.0) and np.dtype(dtype).kind in "iu"
    if not scaled:
        data = cast_to_dtype(data, dtype, str(path))
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_class(data, affine, header)
    image.set_data_dtype(dtype)
    image.to_filename(str(path))
