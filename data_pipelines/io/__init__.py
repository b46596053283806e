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
``*.ome.zarr``,        OME-Zarr    a folder; read lazily, ``level=`` picks a resolution
``*.zarr``                         level; written with a pyramid (optional ``zarr`` extra)
=====================  ==========  ===========================================

A folder is read as Zarr when its name ends in ``.zarr`` or it holds Zarr metadata
(``zarr.json``, ``.zgroup``, ``.zarray``), else as DICOM when it holds DICOM files, else as
PNG slices. When writing, a path without suffix is a folder: a DICOM series (one file per
slice) when the metadata comes from DICOM, else PNG slices; a ``.zarr``/``.ome.zarr`` path is
an OME-Zarr store (:mod:`.zarr`). Every write is atomic (see :mod:`.atomic`): a Zarr store is
written to a temporary sibling folder, then renamed.

Zarr inputs are lazy: the volume's ``array`` is the chunked Zarr array, not loaded (see
:mod:`.zarr` for what reads it all, e.g. ``Volume.load()``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedFormatError, VolumeReadError, VolumeWriteError
from ..volume import Volume, is_lazy_array
from .arrays import check_finite
from .atomic import atomic_path, check_writable
from .dicom import dicom_affine, is_dicom_file, read_dicom, write_dicom
from .hdf5 import read_hdf5, write_hdf5
from .nifti import read_nifti, write_nifti
from .npz import read_npz, read_npz_case, write_npz
from .png import read_png, read_png_subjects, write_png
from .tiff import read_tiff, write_tiff
from .zarr import ZarrMissingError, read_zarr, write_zarr

__all__ = [
    "SUFFIXES",
    "VolumeNotFoundError",
    "ZarrMissingError",
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
    ".ome.zarr": "zarr", ".zarr": "zarr",
}
#: Suffixes of two parts, checked before the last suffix alone.
_DOUBLE_SUFFIXES = (".nii.gz", ".ome.zarr")
#: Files that mark a folder as a Zarr store (format 3, format 2).
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
_SUPPORTED = ", ".join(SUFFIXES) + ", or a folder of DICOM or PNG slices"


class VolumeNotFoundError(VolumeReadError, FileNotFoundError):
    """The input path does not exist."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in _DOUBLE_SUFFIXES:
        if name.endswith(double):
            return double
    return path.suffix.lower()


def detect_format(path: str | os.PathLike) -> str:
    """Name of the reader for ``path``: ``nifti``, ``dicom``, ``tiff``, ``png``, ``npz``, ``hdf5`` or ``zarr``.

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
    if path.is_dir() and (SUFFIXES.get(_suffix(path)) == "zarr"
                          or any((path / marker).is_file() for marker in _ZARR_MARKERS)):
        return "zarr"
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
    level: int | None = None,
) -> Volume:
    """Read an image file or folder as a :class:`~data_pipelines.volume.Volume`.

    Parameters
    ----------
    path : str or os.PathLike
        NIfTI, DICOM file or series folder, TIFF, PNG file or slice folder, NPY/NPZ, HDF5,
        or a Zarr / OME-Zarr store.
    key : str or None
        Array name (NPZ), dataset path (HDF5) or array path in a plain Zarr group.
    series : str or None
        ``SeriesInstanceUID`` to pick from a DICOM folder holding several series.
    allow_nonfinite : bool
        Accept NaN/Inf voxels. By default they raise :class:`InvalidDataError`, since every
        later step (normalisation, noise, training) would spread them. Not checked for Zarr
        (that would read the whole store): :meth:`Volume.load` checks it.
    level : int or None
        Resolution level of an OME-Zarr store (0, full resolution, by default).

    Returns
    -------
    Volume
        ``array`` float32 (z, y, x) or (z, y, x, c) in the source's units (HU for CT); a 2D
        image is (1, y, x). For Zarr, a lazy chunked array in the stored dtype (not read;
        ``volume.load()`` reads it as float32), see :mod:`data_pipelines.io.zarr`. ``spacing`` (dz, dy, dx) in mm (or ``meta["spacing_unit"]``) or
        None. ``meta`` holds ``format``, the stored ``dtype`` and what the writer needs.

    Raises
    ------
    VolumeNotFoundError
        ``path`` does not exist.
    UnsupportedFormatError
        Unknown suffix.
    VolumeReadError
        Corrupt/truncated file, empty folder, ambiguous ``key``/``series``, a missing
        resolution ``level`` (the message lists those available), or an option that does
        not apply to the format.
    ZarrMissingError
        A Zarr store and the optional ``zarr`` packages are not installed.
    InvalidDataError
        NaN/Inf voxels (with ``allow_nonfinite=False``) or unusable dimensions.
    """
    path = Path(path)
    fmt = detect_format(path)
    if key is not None and fmt not in ("npz", "hdf5", "zarr"):
        raise VolumeReadError(f"{path}: key={key!r} applies to NPZ/HDF5 files and Zarr groups, not {fmt}")
    if level is not None and fmt != "zarr":
        raise VolumeReadError(f"{path}: level={level!r} applies to (OME-)Zarr stores, not {fmt}")
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
    elif fmt == "zarr":
        return read_zarr(path, level=level, key=key)  # lazy: no NaN/Inf scan (Volume.load makes it)
    else:
        volume = read_hdf5(path, key=key)
    check_finite(volume.array, str(path), allow_nonfinite)
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
    return SUFFIXES[suffix], SUFFIXES[suffix] == "zarr"  # a Zarr store is a folder


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
    levels: int | None = None,
) -> Path:
    """Write a volume (or an array with another volume's metadata) atomically.

    Parameters
    ----------
    volume_or_array : Volume or np.ndarray
        Data (z, y, x) or (z, y, x, c) in the source's units; a 2D (y, x) array is one slice.
    path : str or os.PathLike
        Output; the format comes from the suffix (see the module notes). A path without
        suffix is a folder: a DICOM series when the metadata is DICOM, else PNG slices.
        ``.zarr``/``.ome.zarr``: an OME-Zarr store with a multiscale pyramid
        (:func:`data_pipelines.io.zarr.write_zarr`), written chunk by chunk (a lazy input
        is not loaded whole).
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
    levels : int or None
        Zarr only: pyramid levels, level 0 included (default: down to a 64-voxel side, see
        :mod:`data_pipelines.io.pyramid`).

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
    elif is_lazy_array(volume_or_array):
        array, meta, spacing = volume_or_array, {}, None
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
    if levels is not None and fmt != "zarr":
        raise VolumeWriteError(f"{path}: levels={levels} applies to Zarr outputs, not {fmt}")
    if fmt != "zarr" and is_lazy_array(array):
        array = np.asarray(array)  # other formats are written from memory
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
        elif fmt == "zarr":
            write_zarr(array, tmp, dtype=out_dtype, spacing=spacing, unit=meta.get("spacing_unit", "mm"),
                       channel_axis=meta.get("channel_axis", "c"), levels=levels, name=meta.get("name") if same else None)
        else:
            write_hdf5(array, tmp, dtype=out_dtype, spacing=spacing, key=key or meta.get("key") or "data",
                       attrs=meta.get("attrs") if same else None, unit=meta.get("spacing_unit", "mm"))
    return path
