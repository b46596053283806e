"""Pure-numpy patch helpers used by :mod:`data_pipelines.datasets`.

Shapes are spatial (z, y, x) with an optional trailing channel axis. A "crop" is the
patch (pz, py, px); a 2D slice patch is a crop of depth 1. A "margin" adds slices above and
below the crop along z (for the neighbour-slice prior); margin slices beyond the volume
are zeros and marked invalid.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from .errors import PatchSizeError

log = logging.getLogger(__name__)

#: Normalised intensity above which a voxel counts as foreground (5 % of the range [0, 1]).
FOREGROUND_THRESHOLD = 0.05

PAD_MODES = ("reflect", "constant")


def pad_widths(
    shape: tuple[int, ...], min_shape: tuple[int, ...], pad: str | None = "reflect", name: str = "volume"
) -> list[tuple[int, int]] | None:
    """The centred padding that brings the leading axes of ``shape`` up to ``min_shape``, or refuse.

    Parameters
    ----------
    shape : tuple of int
        (z, y, x[, c]) of the volume.
    min_shape : tuple of int
        Smallest allowed size of each leading axis, e.g. the patch shape (pz, py, px).
    pad : {"reflect", "constant"} or None
        The padding mode that will be used (checked here); None raises instead of padding.
    name : str
        Names the volume in the error and in the INFO log line that reports the padding.

    Returns
    -------
    list of (int, int) or None
        (before, after) voxels per leading axis; None when no axis is short.

    Raises
    ------
    PatchSizeError
        When ``pad`` is None and an axis is smaller than ``min_shape``.
    """
    short = [max(0, m - s) for s, m in zip(shape, min_shape)]
    if not any(short):
        return None
    if pad is None:
        raise PatchSizeError(
            f"{name} has shape {tuple(shape[: len(min_shape)])}, smaller than the patch {tuple(min_shape)} "
            f"along axis {[i for i, s in enumerate(short) if s]}; expected every axis >= the patch, "
            "or pass pad='reflect' or pad='constant'"
        )
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES} or None, got {pad!r}")
    log.info("%s: shape %s is smaller than the patch %s; %s-padded to %s", name,
             tuple(shape[: len(min_shape)]), tuple(min_shape), pad,
             tuple(max(s, m) for s, m in zip(shape, min_shape)))
    return [(s // 2, s - s // 2) for s in short]


def pad_to_shape(
    array: np.ndarray, min_shape: tuple[int, ...], pad: str | None = "reflect", name: str = "volume"
) -> np.ndarray:
    """Pad the leading axes of ``array`` up to ``min_shape`` (centred, said in an INFO log
    line), or refuse; see :func:`pad_widths`.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x[, c]).
    min_shape : tuple of int
        Smallest allowed size of each leading axis, e.g. the patch shape (pz, py, px).
    pad : {"reflect", "constant"} or None
        ``"reflect"`` mirrors the edge voxels (numpy ``"reflect"``, repeated as needed);
        ``"constant"`` pads with zeros; None raises instead.
    name : str
        Names the volume in the error.

    Raises
    ------
    PatchSizeError
        When ``pad`` is None and an axis is smaller than ``min_shape``.
    """
    widths = pad_widths(tuple(array.shape), min_shape, pad, name)
    if widths is None:
        return array
    return np.pad(array, widths + [(0, 0)] * (array.ndim - len(widths)), mode=pad)


def random_corner(rng: np.random.Generator, shape: tuple[int, ...], crop: tuple[int, ...]) -> tuple[int, ...]:
    """Uniform random start index of a ``crop`` inside ``shape`` (leading axes only)."""
    return tuple(int(rng.integers(0, s - c + 1)) for s, c in zip(shape, crop))


def foreground_fraction(patch: np.ndarray, threshold: float = FOREGROUND_THRESHOLD) -> float:
    """Fraction of voxels of ``patch`` strictly above ``threshold`` (normalised units)."""
    return float(np.count_nonzero(patch > threshold)) / max(patch.size, 1)


def choose_corner(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    crop: tuple[int, ...],
    score: Callable[[tuple[int, ...]], float] | None = None,
    min_score: float = 0.0,
    tries: int = 10,
) -> tuple[int, ...]:
    """A random crop start, retried until ``score(corner) >= min_score``.

    After ``tries`` draws the best corner seen is accepted, so sampling never hangs on
    a volume that is mostly background.
    """
    best, best_score = random_corner(rng, shape, crop), -np.inf
    if score is None:
        return best
    for attempt in range(tries):
        corner = best if attempt == 0 else random_corner(rng, shape, crop)
        value = score(corner)
        if value >= min_score:
            return corner
        if value > best_score:
            best, best_score = corner, value
    return best


def crop_slab(
    array: np.ndarray, corner: tuple[int, int, int], crop: tuple[int, int, int], margin: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (pz + 2 * margin, py, px[, c]) from ``array`` with a z margin.

    Parameters
    ----------
    array : np.ndarray
        (z, y, x[, c]); may be a memory map (only the crop is read).
    corner : (int, int, int)
        Start of the crop without margin.
    crop : (int, int, int)
        (pz, py, px).
    margin : int
        Slices added above and below along z.

    Returns
    -------
    slab : np.ndarray
        (pz + 2 * margin, py, px[, c]); slices beyond the volume are zeros. A VIEW of
        ``array`` when the whole slab lies inside it (copy it before writing to it).
    valid : np.ndarray
        float32 (pz + 2 * margin,): 1 where the slice lies inside the volume.
    """
    z0, y0, x0 = corner
    pz, py, px = crop
    depth, top = pz + 2 * margin, z0 - margin
    lo, hi = max(0, top), min(array.shape[0], top + depth)
    valid = np.zeros(depth, np.float32)
    valid[lo - top : hi - top] = 1.0
    window = array[lo:hi, y0 : y0 + py, x0 : x0 + px]
    if hi - lo == depth:
        return window, valid
    slab = np.zeros((depth, py, px) + tuple(array.shape[3:]), np.float32)
    slab[lo - top : hi - top] = window
    return slab, valid


def count_patches(shape: tuple[int, ...], crop: tuple[int, ...]) -> int:
    """Patches needed to cover a volume about once: ``ceil(prod(shape) / prod(crop))``."""
    return int(np.ceil(np.prod(shape, dtype=np.float64) / np.prod(crop, dtype=np.float64)))


def check_gamma_range(gamma: Sequence[float]) -> tuple[float, float]:
    """``(low, high)`` of a random-gamma range if ``0 < low <= high``, else ``ValueError``."""
    values = tuple(gamma)
    if (len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)
            or not 0 < values[0] <= values[1]):
        raise ValueError(f"gamma={list(values)!r} must be [low, high] with 0 < low <= high")
    return float(values[0]), float(values[1])


def random_gamma(rng: np.random.Generator, slab: np.ndarray, gamma: tuple[float, float]) -> np.ndarray:
    """A random contrast change of a clean (depth, py, px[, c]) slab by a gamma curve.

    ``g`` is drawn log-uniformly from ``gamma = (low, high)``; with ``lo``, ``hi`` the slab's
    minimum and maximum (over all channels), every voxel ``x`` becomes
    ``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** g``: the range is kept, mid tones are
    darkened (``g > 1``) or brightened (``g < 1``), as MONAI's ``RandAdjustContrast``
    does. Applied to the clean signal before noise is added, so the noise keeps its model.
    A flat slab is returned unchanged (``g`` is drawn all the same, so later draws do not
    depend on the content).

    Returns
    -------
    np.ndarray
        float32, the shape of ``slab``.
    """
    g = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))))
    lo, hi = float(np.min(slab)), float(np.max(slab))
    if hi <= lo:
        return np.asarray(slab, np.float32)
    unit = (np.asarray(slab, np.float32) - lo) / (hi - lo)
    return (lo + (hi - lo) * np.power(unit, g)).astype(np.float32)


def augment_slab(
    rng: np.random.Generator, slab: np.ndarray, valid: np.ndarray, flip_z: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips and rot90 of a (depth, py, px[, c]) slab, the same for all its channels.

    Each of z (if ``flip_z``), y and x is flipped with probability 1/2, then the y-x plane
    is turned by a random multiple of 90 degrees (of 180 degrees when py != px, so the
    shape is kept). ``valid`` (depth,) follows the z flip. Noise is i.i.d. per voxel and
    the neighbour prior is symmetric along z and works slice by slice, so augmenting the
    clean slab before corrupting it is the same as augmenting noisy, prior and clean alike.

    Returns
    -------
    (slab, valid) : views of the inputs (nothing is copied).
    """
    flips = rng.random(3) < 0.5
    if flip_z and flips[0]:
        slab, valid = slab[::-1], valid[::-1]
    if flips[1]:
        slab = slab[:, ::-1]
    if flips[2]:
        slab = slab[:, :, ::-1]
    square = slab.shape[1] == slab.shape[2]
    turns = int(rng.integers(4)) if square else 2 * int(rng.integers(2))
    return np.rot90(slab, turns, axes=(1, 2)), valid
