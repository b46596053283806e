"""NumPy files: ``.npy`` (one array) and ``.npz`` (named arrays, ``key=`` picks one).

An ``.npz`` entry named ``spacing`` (three floats, (dz, dy, dx) in mm) is metadata, not an
image. Files of the original ResPr-UNet keep clean, noisy and prior test data under
``data_test``, ``data_test_noisy`` and ``data_test_prior``: :func:`read_npz_case` returns all
three and :func:`read_npz` without ``key`` returns the clean one.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VolumeReadError
from ..volume import Volume
from .arrays import as_volume_array, cast_to_dtype

__all__ = ["RESPRUNET_KEYS", "read_npz", "read_npz_case", "write_npz"]

RESPRUNET_KEYS = {"clean": "data_test", "noisy": "data_test_noisy", "prior": "data_test_prior"}
_SPACING_KEY = "spacing"
_READ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError)


def _load(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a .npy (under key ``"data"``) or .npz file, read eagerly."""
    try:
        if path.suffix.lower() == ".npy":
            return {"data": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except _READ_ERRORS as exc:
        raise VolumeReadError(f"{path}: not a readable NumPy file (expected a complete .npy/.npz): {exc}") from exc


def _volume(arrays: dict[str, np.ndarray], key: str, path: Path) -> Volume:
    spacing = arrays.get(_SPACING_KEY)
    data = arrays[key]
    meta: dict[str, Any] = {"format": "npz", "dtype": data.dtype.name, "key": key}
    return Volume(as_volume_array(data, f"{path}[{key}]"),
                  spacing=None if spacing is None else tuple(np.asarray(spacing, dtype=float).ravel()),
                  meta=meta, source=str(path))


def read_npz(path: Path, key: str | None = None) -> Volume:
    """Read one array of a ``.npy``/``.npz`` file as a :class:`Volume`.

    Parameters
    ----------
    path : pathlib.Path
        ``.npy`` or ``.npz`` file holding (y, x), (z, y, x) or (z, y, x, c) arrays.
    key : str or None
        Array name in an ``.npz``. Without it: the only image array, or ``data_test`` in a
        ResPr-UNet file.

    Returns
    -------
    Volume
        ``array`` float32; ``spacing`` from a ``spacing`` entry or None; ``meta`` with the
        stored ``dtype`` and ``key``.

    Raises
    ------
    VolumeReadError
        Corrupt file, unknown ``key``, or several arrays and no ``key`` (the message lists them).
    """
    arrays = _load(path)
    names = [name for name in arrays if name != _SPACING_KEY]
    if key is None:
        if len(names) == 1:
            key = names[0]
        elif RESPRUNET_KEYS["clean"] in names:
            key = RESPRUNET_KEYS["clean"]
        else:
            raise VolumeReadError(f"{path}: holds arrays {names}; choose one with --key NAME (key=NAME in Python)")
    if key not in names:
        raise VolumeReadError(f"{path}: no array {key!r}; the file holds {names}")
    return _volume(arrays, key, path)


def read_npz_case(path: str | Path) -> dict[str, Volume]:
    """Read a ResPr-UNet ``.npz`` test case: clean, noisy and (optional) prior arrays.

    Parameters
    ----------
    path : str or pathlib.Path
        ``.npz`` with ``data_test`` and ``data_test_noisy`` (and maybe ``data_test_prior``).

    Returns
    -------
    dict
        ``{"clean": Volume, "noisy": Volume[, "prior": Volume]}``, arrays of equal shape.

    Raises
    ------
    VolumeReadError
        A required key is missing (the message lists the file's keys) or the file is corrupt.
    """
    path = Path(path)
    arrays = _load(path)
    missing = [RESPRUNET_KEYS[role] for role in ("clean", "noisy") if RESPRUNET_KEYS[role] not in arrays]
    if missing:
        raise VolumeReadError(
            f"{path}: missing {missing}; a ResPr-UNet case holds {list(RESPRUNET_KEYS.values())}, "
            f"this file holds {sorted(arrays)}"
        )
    return {role: _volume(arrays, key, path) for role, key in RESPRUNET_KEYS.items() if key in arrays}


def write_npz(
    array: np.ndarray,
    path: Path,
    *,
    dtype: str,
    spacing: tuple[float, ...] | None = None,
    key: str = "data",
) -> None:
    """Write an array to ``.npy`` or compressed ``.npz`` (exact values in ``dtype``).

    Parameters
    ----------
    array : np.ndarray
        (z, y, x) or (z, y, x, c).
    path : pathlib.Path
        ``.npy`` or ``.npz`` output file.
    dtype : str
        Stored dtype; integer outputs are rounded and clipped.
    spacing : tuple of float or None
        (dz, dy, dx), stored as a ``spacing`` entry of an ``.npz`` (``.npy`` has no room).
    key : str
        Array name in the ``.npz``.
    """
    data = cast_to_dtype(array, dtype, str(path))
    with open(path, "wb") as handle:
        if path.suffix.lower() == ".npy":
            np.save(handle, data)
            return
        extra = {} if spacing is None else {_SPACING_KEY: np.asarray(spacing, dtype=np.float64)}
        np.savez_compressed(handle, **{key: data}, **extra)
