"""HDF5 (.h5, .hdf5) via h5py: one dataset per volume, ``key=`` is the dataset path.

Spacing comes from the dataset's ``spacing`` attribute ((dz, dy, dx) in mm), else from
``element_size_um`` (the ilastik convention, micrometres, ``meta["spacing_unit"] = "um"``).
All attributes are kept in ``meta["attrs"]`` and written back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import VolumeReadError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype, check_declared_size

__all__ = ["list_datasets", "read_hdf5", "write_hdf5"]


def list_datasets(handle: h5py.File) -> list[str]:
    """Paths of every dataset in an open HDF5 file, in visiting order."""
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _external_links(handle: h5py.File) -> list[str]:
    """Paths of the links in the file that point into other files."""
    found: list[str] = []
    handle.visititems_links(lambda name, link: found.append(name) if isinstance(link, h5py.ExternalLink) else None)
    return found


def _check_dataset(path: Path, key: str, dataset: h5py.Dataset) -> None:
    """Refuse what is not image data stored in this file, before a voxel is read.

    External raw storage, virtual datasets (both read other files' bytes as voxels), dtypes
    that are not real numbers (strings, objects, compound, complex) and declared sizes the
    file cannot hold or memory cannot take (:func:`check_declared_size`) are refused.
    """
    source = f"{path}[{key}]"
    if dataset.external:
        files = sorted({str(entry[0]) for entry in dataset.external})
        raise VolumeReadError(f"{source}: the dataset's voxels are stored in other files {files}; "
                              "external storage is refused (it can expose any local file)")
    if dataset.is_virtual:
        raise VolumeReadError(f"{source}: a virtual dataset (mapped from other files) is refused; "
                              "copy the data into the file")
    dtype = dataset.dtype
    if dtype.names is not None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
                                       or np.issubdtype(dtype, np.bool_)):
        raise VolumeReadError(f"{source}: dtype {dtype} is not a real number type; expected integer or "
                              "floating-point image data")
    stored = int(dataset.id.get_storage_size())
    check_declared_size(source, dataset.shape, dtype.itemsize, stored or None,
                        compressed=dataset.chunks is not None)


def _spacing(attrs: dict[str, Any]) -> tuple[tuple[float, ...] | None, str | None]:
    for name, unit in (("spacing", "mm"), ("element_size_um", "um")):
        if name in attrs:
            values = np.asarray(attrs[name], dtype=float).ravel()
            return tuple(values[-3:]), str(attrs.get("spacing_unit", unit)) if name == "spacing" else unit
    return None, None


def read_hdf5(path: Path, key: str | None = None) -> Volume:
    """Read one dataset of an HDF5 file as a :class:`Volume`.

    Parameters
    ----------
    path : pathlib.Path
        ``.h5``/``.hdf5`` file.
    key : str or None
        Dataset path (e.g. ``"volumes/raw"``); without it, the file must hold one dataset.

    Returns
    -------
    Volume
        ``array`` float32; ``spacing`` from the attributes or None; ``meta`` with the stored
        ``dtype``, ``key`` and ``attrs``.

    Raises
    ------
    VolumeReadError
        Corrupt file, unknown ``key``, no dataset, or several and no ``key`` (listed); external
        links, external or virtual storage, a dtype that is not a real number, or a declared
        size the file cannot hold or memory cannot take.
    """
    try:
        with h5py.File(path, "r") as handle:
            links = _external_links(handle)
            if links:
                raise VolumeReadError(f"{path}: external links {links} point into other files; they are "
                                      "refused (copy the data into the file)")
            names = list_datasets(handle)
            if key is None:
                if len(names) != 1:
                    raise VolumeReadError(
                        f"{path}: holds datasets {names}; choose one with --key NAME (key=NAME in Python)" if names
                        else f"{path}: holds no dataset (expected an image dataset)"
                    )
                key = names[0]
            if key.strip("/") not in names:
                raise VolumeReadError(f"{path}: no dataset {key!r}; the file holds {names}")
            dataset = handle[key]
            _check_dataset(path, key.strip("/"), dataset)
            data = dataset[()]
            attrs = {name: value for name, value in dataset.attrs.items()}
    except VolumeReadError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise VolumeReadError(f"{path}: not a readable HDF5 file (expected a complete .h5/.hdf5): {exc}") from exc
    spacing, unit = _spacing(attrs)
    meta: dict[str, Any] = {"format": "hdf5", "dtype": data.dtype.name, "key": key.strip("/"), "attrs": attrs}
    if unit is not None:
        meta["spacing_unit"] = unit
    return Volume(as_volume_array(data, f"{path}[{key}]"), spacing=spacing, meta=meta, source=str(path))


def write_hdf5(
    array: np.ndarray,
    path: Path,
    *,
    dtype: str,
    spacing: tuple[float, ...] | None = None,
    key: str = "data",
    attrs: dict[str, Any] | None = None,
    unit: str = "mm",
) -> None:
    """Write an array as one gzip-compressed dataset of a new HDF5 file.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) or (z, y, x, c).
    path : pathlib.Path
        Output ``.h5``/``.hdf5`` file.
    dtype : str
        Stored dtype; integer outputs are rounded and clipped.
    spacing : tuple of float or None
        (dz, dy, dx), stored as the ``spacing`` attribute (and ``unit`` as ``spacing_unit``).
    key : str
        Dataset path.
    attrs : dict or None
        Attributes to copy onto the dataset (``spacing`` is overwritten by ``spacing``).
    unit : str
        Unit of ``spacing``.
    """
    data = cast_to_dtype(array, dtype, str(path))
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset(key, data=data, compression="gzip", compression_opts=4)
        for name, value in (attrs or {}).items():
            dataset.attrs[name] = value
        if spacing is not None:
            dataset.attrs["spacing"] = np.asarray(spacing, dtype=np.float64)
            dataset.attrs["spacing_unit"] = unit
