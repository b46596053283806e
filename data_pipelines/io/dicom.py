"""DICOM via pydicom: single files, multi-frame files and series folders.

Reading
    A series folder is sorted by the position of each slice along the slice normal
    (``ImageOrientationPatient`` row x column, dotted with ``ImagePositionPatient``), never by
    file name or ``InstanceNumber`` (used only when a series has no position tags). Rescale
    slope/intercept (top level or, for enhanced multi-frame files, the functional groups) are
    applied, so CT is in HU. Spacing is (slice step from the positions, row spacing, column
    spacing) in mm.

Writing
    Always a NEW series: the source tags are copied, with a new ``SeriesInstanceUID`` and new
    ``SOPInstanceUID`` per file, uncompressed explicit-VR little-endian pixels, and one
    rescale slope/intercept for the whole series, kept from the source when the values fit the
    stored integer dtype and recomputed to span the dtype otherwise.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from ..errors import ShapeMismatchError, VolumeReadError, VolumeWriteError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype, count_nonfinite

__all__ = ["choose_rescale", "dicom_affine", "is_dicom_file", "read_dicom", "write_dicom"]

_WRITABLE_DTYPES = ("uint8", "int16", "uint16")
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# tags whose VR depends on PixelRepresentation; stale after a rescale, so dropped on write
_STALE_TAGS = ("SmallestImagePixelValue", "LargestImagePixelValue",
               "SmallestPixelValueInSeries", "LargestPixelValueInSeries")


@dataclass
class _Slice:
    """One 2D frame with the tags needed to place and rescale it."""

    pixels: np.ndarray  # (y, x) or (y, x, samples), stored values
    slope: float
    intercept: float
    position: np.ndarray | None  # (3,) mm
    orientation: np.ndarray | None  # (6,) direction cosines
    pixel_spacing: tuple[float, float] | None  # (row, column) mm
    instance: int
    path: Path


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a file with a ``.dcm`` suffix or the DICOM ``DICM`` magic."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    with open(path, "rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def _functional_item(ds: Dataset, sequence: str, frame: int) -> Dataset | None:
    """Item of functional-group ``sequence`` for ``frame`` (per-frame first, then shared)."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items) and sequence in items[index]:
            inner = getattr(items[index], sequence)
            if len(inner):
                return inner[0]
    return None


def _tag(ds: Dataset, name: str, sequence: str, frame: int) -> Any:
    """Tag ``name`` at the top level, else in functional-group ``sequence`` of ``frame``."""
    if name in ds:
        return ds.get(name)
    item = _functional_item(ds, sequence, frame)
    return None if item is None else item.get(name)


def _read_file(path: Path) -> tuple[Dataset, np.ndarray | None]:
    """Read one DICOM file: the dataset without pixel data and (frames, y, x[, s]).

    The pixel array is None for a DICOM file without an image (e.g. a DICOMDIR).
    """
    try:
        ds = pydicom.dcmread(str(path))
        if not any(tag in ds for tag in _PIXEL_TAGS):
            return ds, None
        pixels = np.asarray(ds.pixel_array)
    except (InvalidDicomError, ValueError, EOFError, OSError, AttributeError, KeyError,
            NotImplementedError, RuntimeError, TypeError) as exc:
        raise VolumeReadError(
            f"{path}: not a readable DICOM image (expected a complete, decodable DICOM file): {exc}"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[np.newaxis]
    for tag in _PIXEL_TAGS:
        if tag in ds:
            delattr(ds, tag)
    return ds, pixels


def _slices(ds: Dataset, pixels: np.ndarray, path: Path) -> list[_Slice]:
    out = []
    for frame in range(pixels.shape[0]):
        slope = _tag(ds, "RescaleSlope", "PixelValueTransformationSequence", frame)
        intercept = _tag(ds, "RescaleIntercept", "PixelValueTransformationSequence", frame)
        position = _tag(ds, "ImagePositionPatient", "PlanePositionSequence", frame)
        orientation = _tag(ds, "ImageOrientationPatient", "PlaneOrientationSequence", frame)
        spacing = _tag(ds, "PixelSpacing", "PixelMeasuresSequence", frame)
        out.append(_Slice(
            pixels=pixels[frame],
            slope=1.0 if slope is None else float(slope),
            intercept=0.0 if intercept is None else float(intercept),
            position=None if position is None else np.asarray(position, dtype=np.float64),
            orientation=None if orientation is None else np.asarray(orientation, dtype=np.float64),
            pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
            instance=int(ds.get("InstanceNumber", 0) or 0),
            path=path,
        ))
    return out


def _order(slices: list[_Slice], where: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices sorting ``slices`` along the slice normal, and their sorted projections (mm)."""
    if len(slices) == 1 or any(s.position is None or s.orientation is None for s in slices):
        return np.argsort([s.instance for s in slices], kind="stable"), None
    orientation = slices[0].orientation
    if any(not np.allclose(s.orientation, orientation, atol=1e-4) for s in slices):
        raise VolumeReadError(
            f"{where}: slices have different ImageOrientationPatient; expected one orientation"
        )
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([float(np.dot(normal, s.position)) for s in slices])
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    if np.any(np.abs(steps) < 1e-4):
        dup = [str(slices[i].path.name) for i in order[1:][np.abs(steps) < 1e-4]]
        raise VolumeReadError(
            f"{where}: several slices share one position ({', '.join(dup[:5])}); "
            "expected one slice per position (several acquisitions or echoes in one series?)"
        )
    return order, along[order]


def _spacing(slices: list[_Slice], along: np.ndarray | None, ds: Dataset) -> tuple | None:
    """(dz, dy, dx) in mm, or None when the pixel spacing is unknown."""
    if slices[0].pixel_spacing is None:
        return None
    if along is not None:
        dz = float(np.median(np.diff(along)))
    else:
        step = ds.get("SpacingBetweenSlices") or _tag(
            ds, "SliceThickness", "PixelMeasuresSequence", 0)
        dz = float(step) if step else 1.0
    dy, dx = slices[0].pixel_spacing
    return (dz, dy, dx)


def _group_series(files: list[Path], folder: Path, series: str | None) -> list[tuple[Dataset, np.ndarray, Path]]:
    by_uid: dict[str, list[tuple[Dataset, np.ndarray, Path]]] = {}
    for path in files:
        ds, pixels = _read_file(path)
        if pixels is None:  # DICOMDIR, structured reports, ...: not slices
            continue
        by_uid.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((ds, pixels, path))
    if not by_uid:
        raise VolumeReadError(f"{folder}: no DICOM file in the folder holds an image")
    if series is not None:
        if series not in by_uid:
            raise VolumeReadError(
                f"{folder}: no series {series!r}; the folder holds {sorted(by_uid)}"
            )
        return by_uid[series]
    if len(by_uid) > 1:
        listing = "; ".join(f"{uid} ({len(items)} files)" for uid, items in sorted(by_uid.items()))
        raise VolumeReadError(
            f"{folder}: holds {len(by_uid)} DICOM series: {listing}; choose one with --series UID (series=UID in Python)"
        )
    return next(iter(by_uid.values()))


def read_dicom(path: Path, series: str | None = None) -> Volume:
    """Read a DICOM file (single or multi-frame) or a series folder as a :class:`Volume`.

    Parameters
    ----------
    path : pathlib.Path
        A ``.dcm`` file (or a file with the DICOM magic), or a folder of one series.
    series : str or None
        ``SeriesInstanceUID`` to read from a folder holding several series.

    Returns
    -------
    Volume
        ``array`` float32 (z, y, x) (or (z, y, x, s) for colour) after rescale, so CT is in
        HU; ``spacing`` (dz, dy, dx) in mm or None without ``PixelSpacing``; ``meta`` holds
        ``datasets`` (pydicom datasets without pixel data, one per slice in volume order, or
        one for a multi-frame file), ``frame_order``, ``rescale`` ((slope, intercept) per
        slice), ``multiframe``, ``series_uid``, ``slice_positions`` (mm along the slice
        normal, or None without position tags) and the stored ``dtype``.

    Raises
    ------
    VolumeReadError
        Corrupt or undecodable files, an empty folder, several series without ``series=``
        (the message lists every SeriesInstanceUID), slices that share a position or differ
        in orientation or size.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and is_dicom_file(p))
        if not files:
            raise VolumeReadError(f"{path}: folder holds no DICOM files (expected .dcm or DICM files)")
        items = _group_series(files, path, series)
    else:
        ds, pixels = _read_file(path)
        if pixels is None:
            raise VolumeReadError(f"{path}: DICOM file has no pixel data (expected an image)")
        if series is not None and str(ds.get("SeriesInstanceUID", "")) != series:
            raise VolumeReadError(f"{path}: belongs to series {ds.get('SeriesInstanceUID')}, not {series}")
        items = [(ds, pixels, path)]
    multiframe = len(items) == 1 and items[0][1].shape[0] > 1
    slices = [s for ds, pixels, p in items for s in _slices(ds, pixels, p)]
    shapes = {s.pixels.shape for s in slices}
    if len(shapes) > 1:
        raise VolumeReadError(f"{path}: slices differ in size {sorted(shapes)}; expected one size")
    order, along = _order(slices, path)
    slices = [slices[i] for i in order]
    stored = np.stack([s.pixels for s in slices])
    hu = np.stack([s.pixels.astype(np.float64) * s.slope + s.intercept for s in slices])
    datasets = [items[0][0]] if multiframe else [items[i][0] for i in order]
    meta: dict[str, Any] = {
        "format": "dicom",
        "dtype": stored.dtype.name,
        "datasets": datasets,
        "frame_order": [int(i) for i in order],
        "rescale": [(s.slope, s.intercept) for s in slices],
        "multiframe": multiframe,
        "series_uid": str(datasets[0].get("SeriesInstanceUID", "")),
        "slice_positions": None if along is None else along.tolist(),
    }
    return Volume(as_volume_array(hu, str(path)), spacing=_spacing(slices, along, datasets[0]),
                  meta=meta, source=str(path))


def dicom_affine(meta: dict[str, Any], spacing: tuple[float, ...] | None) -> np.ndarray | None:
    """NIfTI-style (RAS+) affine of a volume read from DICOM, or None without geometry.

    Maps NIfTI voxel indices (i, j, k) = (column, row, slice), i.e. the volume's (x, y, z),
    to RAS millimetres: DICOM's patient LPS position ``P0 + i dx row + j dy col + k dz n``
    with the x and y axes negated.

    Parameters
    ----------
    meta : dict
        Metadata from :func:`read_dicom`.
    spacing : tuple of float or None
        (dz, dy, dx) in mm.
    """
    first = meta["datasets"][0]
    frame = meta["frame_order"][0] if meta["multiframe"] else 0
    orientation = _tag(first, "ImageOrientationPatient", "PlaneOrientationSequence", frame)
    position = _tag(first, "ImagePositionPatient", "PlanePositionSequence", frame)
    if orientation is None or position is None or spacing is None:
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    dz, dy, dx = spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * dx, col * dy, np.cross(row, col) * dz
    lps[:3, 3] = np.asarray(position, float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _ds(value: float) -> float:
    """``value`` as DICOM DS text (<= 16 characters) parses back."""
    return float(DSfloat(value, auto_format=True))


def choose_rescale(values: np.ndarray, dtype: str, current: tuple[float, float] | None) -> tuple[float, float]:
    """Rescale (slope, intercept) so that ``(values - intercept) / slope`` fits ``dtype``.

    Parameters
    ----------
    values : np.ndarray
        Finite values in output units (HU for CT), any shape.
    dtype : str
        Stored integer dtype.
    current : tuple of float or None
        The source's (slope, intercept); kept when the values fit with it.

    Returns
    -------
    tuple of float
        (slope, intercept), both exactly representable as DICOM DS strings.
    """
    info = np.iinfo(dtype)
    lo, hi = float(values.min()), float(values.max())
    if current is not None:
        slope, intercept = current
        if slope > 0 and (lo - intercept) / slope >= info.min - 0.5 and (hi - intercept) / slope <= info.max + 0.5:
            return slope, intercept
    span = hi - lo
    slope = _ds(max(span / (info.max - info.min), 1e-6) * (1 + 1e-6)) if span > 0 else 1.0
    intercept = _ds(lo - slope * info.min)
    return slope, intercept


def _set_rescale(ds: Dataset, slope: float, intercept: float) -> None:
    """Write slope/intercept where the source kept them (top level or functional groups)."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    in_groups = shared is not None and "RescaleSlope" not in ds and (
        "PixelValueTransformationSequence" in shared[0]
        or any("PixelValueTransformationSequence" in item
               for item in ds.get("PerFrameFunctionalGroupsSequence", []))
    )
    if not in_groups:
        ds.RescaleSlope = DSfloat(slope, auto_format=True)
        ds.RescaleIntercept = DSfloat(intercept, auto_format=True)
        return
    for item in ds.get("PerFrameFunctionalGroupsSequence", []):
        if "PixelValueTransformationSequence" in item:
            del item.PixelValueTransformationSequence
    if "PixelValueTransformationSequence" not in shared[0]:
        shared[0].PixelValueTransformationSequence = [Dataset()]
    transform = shared[0].PixelValueTransformationSequence[0]
    transform.RescaleSlope = DSfloat(slope, auto_format=True)
    transform.RescaleIntercept = DSfloat(intercept, auto_format=True)
    transform.RescaleType = transform.get("RescaleType", "US")


def _new_instance(template: Dataset, pixels: np.ndarray, series_uid: str, number: int,
                  slope: float, intercept: float) -> Dataset:
    """A copy of ``template`` holding ``pixels`` (frames, y, x) with new instance UIDs."""
    ds = Dataset()
    ds.update(copy.deepcopy(template))
    ds.file_meta = FileMetaDataset(copy.deepcopy(template.file_meta)) if hasattr(template, "file_meta") else FileMetaDataset()
    for tag in _STALE_TAGS:
        if tag in ds:
            delattr(ds, tag)
    sop_uid = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = number
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    if pixels.shape[0] > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = pixels.shape[0]
    _set_rescale(ds, slope, intercept)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def _reordered_frames(template: Dataset, order: list[int]) -> Dataset:
    """Copy of a multi-frame dataset whose per-frame groups follow the volume's slice order."""
    ds = copy.deepcopy(template)
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if groups is not None and len(groups) == len(order):
        ds.PerFrameFunctionalGroupsSequence = [groups[i] for i in order]
    return ds


def write_dicom(array: np.ndarray, path: Path, *, dtype: str, meta: dict[str, Any], folder: bool) -> None:
    """Write a (z, y, x) array as a new DICOM series with the source's tags.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) values in output units (HU for CT); z must match the source's slices.
    path : pathlib.Path
        Output folder (``folder=True``: one file per slice, ``0001.dcm``, ...) or a ``.dcm``
        file (one slice, or all frames of a multi-frame source).
    dtype : str
        Stored integer dtype: one of ``uint8``, ``int16``, ``uint16``.
    meta : dict
        DICOM metadata from :func:`read_dicom` (``datasets``, ``rescale``, ...).
    folder : bool
        Write a folder of single-frame files rather than one file.

    Raises
    ------
    VolumeWriteError
        No DICOM metadata, a non-integer dtype, NaN/Inf values, colour data, or a layout
        the source cannot give (a multi-frame source to a folder, several slices to one file).
    ShapeMismatchError
        The array's (z, y, x) differs from the source's.
    """
    if meta.get("format") != "dicom":
        raise VolumeWriteError(
            f"{path}: writing DICOM needs the source's tags; pass like=<a volume read from DICOM>"
        )
    if dtype not in _WRITABLE_DTYPES:
        raise VolumeWriteError(f"{path}: DICOM stores {', '.join(_WRITABLE_DTYPES)}, not {dtype}")
    if array.ndim != 3:
        raise VolumeWriteError(f"{path}: DICOM output takes a grey (z, y, x) array, got shape {array.shape}")
    bad = count_nonfinite(array)
    if bad:
        raise VolumeWriteError(f"{path}: {bad} NaN/Inf voxels cannot be stored in DICOM {dtype}")
    datasets: list[Dataset] = meta["datasets"]
    template = datasets[0]
    expected = (len(meta["rescale"]), int(template.Rows), int(template.Columns))
    if array.shape != expected:
        raise ShapeMismatchError(f"{path}: array shape {array.shape} differs from the DICOM source's {expected}")
    rescales = set(meta["rescale"])
    slope, intercept = choose_rescale(array, dtype, rescales.pop() if len(rescales) == 1 else None)
    stored = cast_to_dtype((array.astype(np.float64) - intercept) / slope, dtype, str(path))
    series_uid = generate_uid()
    if meta.get("multiframe"):
        if folder:
            raise VolumeWriteError(f"{path}: the source is one multi-frame file; write to a .dcm file")
        ds = _new_instance(_reordered_frames(template, meta["frame_order"]), stored, series_uid, 1, slope, intercept)
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
        return
    if not folder:
        if stored.shape[0] != 1:
            raise VolumeWriteError(f"{path}: {stored.shape[0]} slices need a folder (a path without suffix)")
        pydicom.dcmwrite(str(path), _new_instance(template, stored, series_uid, 1, slope, intercept),
                         enforce_file_format=True)
        return
    for index, (source, plane) in enumerate(zip(datasets, stored)):
        ds = _new_instance(source, plane[np.newaxis], series_uid, index + 1, slope, intercept)
        pydicom.dcmwrite(str(path / f"{index + 1:04d}.dcm"), ds, enforce_file_format=True)
