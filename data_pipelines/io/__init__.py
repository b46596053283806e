"""Read and write image volumes: :func:`read_volume` and :func:`write_volume`.

Formats, chosen from the path:

=====================  ==========  ===========================================
path                   format      notes
=====================  ==========  ===========================================
``*.nii``, ``*.nii.gz``  NIfTI       affine and header kept, axes (x, y, z) <-> (z, y, x)
``*.dcm`` or a folder  DICOM       file, multi-frame file, or one series per folder
``*.tif``, ``*.tiff``  TIFF        uint8/uint16/float32 ImageJ stacks with spacing
``*.png`` or a folder  PNG         one slice, or a folder of slices (natural sort)
``*.npy``, ``*.npz``   NumPy       ``key=`` picks an ``.npz`` array
``*.h5``, ``*.hdf5``   HDF5        ``key=`` is the dataset path
=====================  ==========  ===========================================

A folder is read as DICOM when it holds DICOM files, else as PNG slices. When writing, a
path without suffix is a folder: a DICOM series (one file per slice) when the metadata
comes from DICOM, else PNG slices. Every write is atomic (see :mod:`.atomic`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidDataError, UnsupportedFormatError, VolumeReadError, VolumeWriteError
from ..volume import Volume
from .arrays import count_nonfinite
from .atomic import atomic_path, check_writable
from .dicom import dicom_affine, is_dicom_file, read_dicom, write_dicom
from .hdf5 import read_hdf5, write_hdf5
from .nifti import read_nifti, write_nifti
from .npz import read_npz, read_npz_case, write_npz
from .png import read_png, read_png_subjects, write_png
from .tiff import read_tiff, write_tiff

__all__ = [
    "SUFFIXES",
    "VolumeNotFoundError",
    "atomic_path",
    "check_output",
    "check_writable",
    "detect_format",
    "read_npz_case",
    "read_png_subjects",
    "read_volume",
    "write_volume",
]

SUFFIXES = {
    ".nii.gz": "nifti", ".nii": "nifti", ".dcm": "dicom", ".tif": "tiff", ".tiff": "tiff",
    ".png": "png", ".npz": "npz", ".npy": "npz", ".h5": "hdf5", ".hdf5": "hdf5",
}
_SUPPORTED = ", ".join(SUFFIXES) + ", or a folder of DICOM or PNG slices"


class VolumeNotFoundError(VolumeReadError, FileNotFoundError):
    """The input path does not exist."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def detect_format(path: str | os.PathLike) -> str:
    """Name of the reader for ``path``: ``nifti``, ``dicom``, ``tiff``, ``png``, ``npz`` or ``hdf5``.

    Raises
    ------
    VolumeNotFoundError
        ``path`` does not exist.
    VolumeReadError
        ``path`` is an empty folder.
    UnsupportedFormatError
        Unknown suffix, or a folder with neither DICOM nor PNG files (lists what is supported).
    """
    path = Path(path)
    if not path.exists():
        raise VolumeNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        if not entries:
            raise VolumeReadError(f"{path}: empty folder (expected DICOM or PNG slices)")
        if any(is_dicom_file(p) for p in entries):
            return "dicom"
        if any(p.suffix.lower() == ".png" for p in entries):
            return "png"
        raise UnsupportedFormatError(f"{path}: folder holds neither DICOM nor PNG files; supported: {_SUPPORTED}")
    fmt = SUFFIXES.get(_suffix(path))
    if fmt is None and is_dicom_file(path):
        return "dicom"
    if fmt is None:
        raise UnsupportedFormatError(f"{path}: unknown suffix {_suffix(path)!r}; supported: {_SUPPORTED}")
    return fmt


def read_volume(
    path: str | os.PathLike,
    *,
    key: str | None = None,
    series: str | None = None,
    allow_nonfinite: bool = False,
) -> Volume:
    """Read an image file or folder as a :class:`~data_pipelines.volume.Volume`.

    Parameters
    ----------
    path : str or os.PathLike
        NIfTI, DICOM file or series folder, TIFF, PNG file or slice folder, NPY/NPZ or HDF5.
    key : str or None
        Array name (NPZ) or dataset path (HDF5).
    series : str or None
        ``SeriesInstanceUID`` to pick from a DICOM folder holding several series.
    allow_nonfinite : bool
        Accept NaN/Inf voxels. By default they raise :class:`InvalidDataError`, since every
        later step (normalisation, noise, training) would spread them.

    Returns
    -------
    Volume
        ``array`` float32 (z, y, x) or (z, y, x, c) in the source's units (HU for CT); a 2D
        image is (1, y, x). ``spacing`` (dz, dy, dx) in mm (or ``meta["spacing_unit"]``) or
        None. ``meta`` holds ``format``, the stored ``dtype`` and what the writer needs.

    Raises
    ------
    VolumeNotFoundError
        ``path`` does not exist.
    UnsupportedFormatError
        Unknown suffix.
    VolumeReadError
        Corrupt/truncated file, empty folder, ambiguous ``key``/``series``, or an option
        that does not apply to the format.
    InvalidDataError
        NaN/Inf voxels (with ``allow_nonfinite=False``) or unusable dimensions.
    """
    path = Path(path)
    fmt = detect_format(path)
    if key is not None and fmt not in ("npz", "hdf5"):
        raise VolumeReadError(f"{path}: key={key!r} applies to NPZ/HDF5 files, not {fmt}")
    if series is not None and fmt != "dicom":
        raise VolumeReadError(f"{path}: series={series!r} applies to DICOM folders, not {fmt}")
    if fmt == "nifti":
        volume = read_nifti(path)
    elif fmt == "dicom":
        volume = read_dicom(path, series=series)
    elif fmt == "tiff":
        volume = read_tiff(path)
    elif fmt == "png":
        volume = read_png(path)
    elif fmt == "npz":
        volume = read_npz(path, key=key)
    else:
        volume = read_hdf5(path, key=key)
    bad = count_nonfinite(volume.array)
    if bad and not allow_nonfinite:
        raise InvalidDataError(
            f"{path}: {bad} of {volume.array.size} voxels are NaN/Inf; expected finite values "
            "(pass allow_nonfinite=True to read them anyway)"
        )
    return volume


def _output_format(path: Path, meta: dict[str, Any]) -> tuple[str, bool]:
    """(format, is_folder) for an output path; see the module notes."""
    suffix = _suffix(path)
    if suffix == "":
        return ("dicom" if meta.get("format") == "dicom" else "png"), True
    if suffix not in SUFFIXES:
        raise UnsupportedFormatError(
            f"{path}: unknown output suffix {suffix!r}; supported: {_SUPPORTED} (a path without suffix)"
        )
    return SUFFIXES[suffix], False


def _default_dtype(array: np.ndarray, meta: dict[str, Any]) -> str:
    if "dtype" in meta:
        return str(meta["dtype"])
    return "float32" if array.dtype == np.float64 else array.dtype.name


def check_output(path: str | os.PathLike, *, like: Volume | None = None, force: bool = False) -> Path:
    """Check, before a long computation, that :func:`write_volume` can write ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The output that will be written.
    like : Volume or None
        The volume whose metadata the output will carry (the input of a denoising run).
    force : bool
        An existing output may be replaced.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    UnsupportedFormatError
        Unknown suffix.
    VolumeWriteError
        The folder is missing or not writable, or DICOM is asked for without a DICOM source.
    """
    path = check_writable(path, force)
    meta = like.meta if like is not None else {}
    fmt, _ = _output_format(path, meta)
    if fmt == "dicom" and meta.get("format") != "dicom":
        source = meta.get("format") or "an array without DICOM tags"
        raise VolumeWriteError(
            f"{path}: DICOM is written only from a DICOM input (the new series takes its tags); "
            f"the input is {source}: write .nii.gz, .tif, .npy, .npz or .h5 instead"
        )
    return path


def write_volume(
    volume_or_array: Volume | np.ndarray,
    path: str | os.PathLike,
    *,
    like: Volume | None = None,
    force: bool = False,
    key: str | None = None,
    dtype: str | None = None,
) -> Path:
    """Write a volume (or an array with another volume's metadata) atomically.

    Parameters
    ----------
    volume_or_array : Volume or np.ndarray
        Data (z, y, x) or (z, y, x, c) in the source's units; a 2D (y, x) array is one slice.
    path : str or os.PathLike
        Output; the format comes from the suffix (see the module notes). A path without
        suffix is a folder: a DICOM series when the metadata is DICOM, else PNG slices.
    like : Volume or None
        Take metadata and spacing from this volume instead (e.g. write a denoised array
        with the input's NIfTI header or DICOM tags).
    force : bool
        Replace an existing output.
    key : str or None
        Array name (NPZ) or dataset path (HDF5); default the source's key, else ``"data"``.
    dtype : str or None
        Stored dtype; default the source's stored dtype (``meta["dtype"]``), else the
        array's (float64 -> float32). Integer outputs are rounded and clipped to the
        dtype's range, never truncated.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    UnsupportedFormatError
        Unknown suffix.
    VolumeWriteError
        Bad shape, a dtype the format cannot store, NaN/Inf for an integer format, missing
        DICOM tags. Nothing is left at ``path`` (or the old output is kept) on any error.
    """
    if isinstance(volume_or_array, Volume):
        array, meta, spacing = volume_or_array.array, volume_or_array.meta, volume_or_array.spacing
    else:
        array, meta, spacing = np.asarray(volume_or_array), {}, None
    if like is not None:
        meta, spacing = like.meta, like.spacing
    path = Path(path)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim not in (3, 4) or array.size == 0:
        raise VolumeWriteError(f"{path}: expected a (z, y, x) or (z, y, x, c) array, got shape {array.shape}")
    fmt, folder = _output_format(path, meta)
    out_dtype = dtype or _default_dtype(array, meta)
    try:
        np.dtype(out_dtype)
    except TypeError as exc:
        raise VolumeWriteError(f"{path}: unknown dtype {out_dtype!r}") from exc
    same = meta.get("format") == fmt
    with atomic_path(path, force=force, directory=folder) as tmp:
        if fmt == "nifti":
            affine = dicom_affine(meta, spacing) if meta.get("format") == "dicom" else None
            write_nifti(array, tmp, dtype=out_dtype, spacing=spacing, meta=meta, affine=affine)
        elif fmt == "dicom":
            write_dicom(array, tmp, dtype=out_dtype, meta=meta, folder=folder)
        elif fmt == "tiff":
            write_tiff(array, tmp, dtype=out_dtype, spacing=spacing, meta=meta)
        elif fmt == "png":
            write_png(array, tmp, dtype=out_dtype, folder=folder)
        elif fmt == "npz":
            write_npz(array, tmp, dtype=out_dtype, spacing=spacing, key=key or meta.get("key") or "data")
        else:
            write_hdf5(array, tmp, dtype=out_dtype, spacing=spacing, key=key or meta.get("key") or "data",
                       attrs=meta.get("attrs") if same else None, unit=meta.get("spacing_unit", "mm"))
    return path
