"""Input checks shared by the variational and classical denoisers."""
from __future__ import annotations

import numpy as np

from data_pipelines.errors import ShapeMismatchError


def as_float_image(array: np.ndarray, name: str, ndims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Return ``array`` as float64, after checking its dimensionality and finiteness.

    Raises
    ------
    ValueError
        ``array`` is not ``ndims``-dimensional, is empty, or holds NaN/Inf.
    """
    a = np.asarray(array)
    if a.ndim not in ndims or a.size == 0:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be a non-empty {expected} array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds {np.count_nonzero(~np.isfinite(a))} NaN/Inf values; expected finite data")
    return a


def output_dtype(array: np.ndarray) -> np.dtype:
    """float32 for float32 (or narrower float) input, float64 otherwise."""
    dtype = np.asarray(array).dtype
    return np.dtype(np.float32) if dtype in (np.float16, np.float32) else np.dtype(np.float64)


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise :class:`data_pipelines.ShapeMismatchError` (a ValueError) when shapes differ."""
    if np.shape(a) != np.shape(b):
        raise ShapeMismatchError(f"{name_b} must have the shape of {name_a} {np.shape(a)}, got {np.shape(b)}")


def check_solver_args(weight: float, penalty: float, max_iter: int, tol: float) -> None:
    """Reject negative or non-finite weights, non-positive penalty, max_iter or tol."""
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"weight must be a finite number >= 0 (data units), got {weight!r}")
    if not np.isfinite(penalty) or penalty <= 0:
        raise ValueError(f"penalty must be a finite number > 0, got {penalty!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
