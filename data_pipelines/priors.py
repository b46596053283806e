"""Priors: extra inputs computed from the data (neighbour slices, frame mean) or read from a file.

The neighbour-slice prior of slice ``i`` is the weighted mean of the slices
``k`` in ``[i - size // 2, i + size // 2]``, weights ``exp(-decay * |k - i|)``, centred on
``i`` (the original ResPr-UNet code was off by one and centred it on ``i - 1``). Slices
outside the volume are left out and the weights renormalised over those that exist.
Leaving slice ``i`` itself out (the default) keeps the prior's noise independent of the
input's noise.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InvalidDataError, ShapeMismatchError
from .normalize import as_array
from .volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf


def neighbour_weights(size: int = 9, decay: float = 0.04, include_self: bool = False) -> dict[int, float]:
    """Unnormalised weights of the neighbour-slice prior, by slice offset ``k - i``.

    Parameters
    ----------
    size : int
        Window length in slices (odd; an even size uses ``size // 2`` on each side).
    decay : float
        Weight ``exp(-decay * |offset|)`` per slice of distance, >= 0.
    include_self : bool
        Whether offset 0 (the slice itself) is in the window.

    Returns
    -------
    dict of int to float
        Offset -> weight, offsets in ``[-size // 2, size // 2]``.
    """
    half = int(size) // 2
    if half < 1 and not include_self:
        raise ValueError(f"neighbour prior: size={size} holds no neighbour slice; expected size >= 3 or include_self")
    if decay < 0:
        raise ValueError(f"neighbour prior: decay must be >= 0, got {decay}")
    return {d: float(np.exp(-decay * abs(d))) for d in range(-half, half + 1) if d != 0 or include_self}


def neighbour_slice_prior(
    x: np.ndarray | Volume, size: int = 9, decay: float = 0.04, include_self: bool = False, axis: int = 0
) -> np.ndarray:
    """Weighted mean of the neighbouring slices along ``axis``, centred on each slice.

    Parameters
    ----------
    x : np.ndarray or Volume
        Image stack, e.g. (z, y, x) with ``axis=0``; any dimensionality.
    size, decay, include_self
        See :func:`neighbour_weights`.
    axis : int
        Slice axis.

    Returns
    -------
    np.ndarray
        float32, same shape as ``x``.

    Raises
    ------
    InvalidDataError
        When the stack has a single slice and ``include_self`` is False (no neighbours).
    """
    arr = np.moveaxis(np.asarray(as_array(x), dtype=np.float32), axis, 0)
    n = arr.shape[0]
    if n < 2 and not include_self:
        raise InvalidDataError(
            f"neighbour prior: the stack of shape {arr.shape} has {n} slice(s) along axis {axis}; "
            "expected at least 2 (or include_self=True)"
        )
    total = np.zeros(arr.shape, np.float64)
    weight = np.zeros((n,) + (1,) * (arr.ndim - 1), np.float64)
    for d, w in neighbour_weights(size, decay, include_self).items():
        lo, hi = max(0, -d), min(n, n - d)  # slices i whose neighbour i + d exists
        if hi > lo:
            total[lo:hi] += w * arr[lo + d : hi + d]
            weight[lo:hi] += w
    return np.moveaxis((total / weight).astype(np.float32), 0, axis)


def neighbour_slice_prior_tf(
    slab: "tf.Tensor", valid: "tf.Tensor", size: int = 9, decay: float = 0.04, include_self: bool = False
) -> "tf.Tensor":
    """TensorFlow neighbour-slice prior of the central slices of a slab (axis 0).

    Parameters
    ----------
    slab : tf.Tensor
        float32, (n + 2 * (size // 2), ...): ``n`` target slices with a margin of
        ``size // 2`` slices each side.
    valid : tf.Tensor
        float32, (n + 2 * (size // 2),): 1 for slices inside the volume, 0 for margin
        slices beyond its border (left out, weights renormalised, as in
        :func:`neighbour_slice_prior`).

    Returns
    -------
    tf.Tensor
        float32, (n, ...): the prior of the ``n`` central slices.
    """
    import tensorflow as tf

    half = int(size) // 2
    n = tf.shape(slab)[0] - 2 * half
    extra = [1] * (len(slab.shape) - 1)
    total = tf.zeros_like(slab[half : half + n])
    weight = tf.zeros(tf.concat([[n], extra], 0), tf.float32)
    for d, w in neighbour_weights(size, decay, include_self).items():
        mask = tf.reshape(valid[half + d : half + d + n], tf.concat([[n], extra], 0)) * w
        total += mask * slab[half + d : half + d + n]
        weight += mask
    return total / weight


def temporal_mean_prior(x: np.ndarray | Volume, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """Mean over frames (or channels), e.g. of a (z, y, x, t) series.

    Parameters
    ----------
    x : np.ndarray or Volume
        Array with a frame axis.
    axis : int
        Frame axis.
    keepdims : bool
        Keep the averaged axis with length 1. By default it is REMOVED, so a
        (z, y, x, t) series gives a (z, y, x) prior.

    Returns
    -------
    np.ndarray
        float32 mean (computed in float64).
    """
    arr = np.asarray(as_array(x))
    if arr.ndim == 0 or arr.shape[axis] == 0:
        raise InvalidDataError(f"temporal prior: no frames along axis {axis} of an array of shape {arr.shape}")
    return arr.mean(axis=axis, dtype=np.float64, keepdims=keepdims).astype(np.float32)


def external_prior(
    prior: np.ndarray | Volume, like: np.ndarray | Volume, source: str | None = None
) -> np.ndarray:
    """Check an externally supplied prior against its image; return it as float32.

    Parameters
    ----------
    prior : np.ndarray or Volume
        The prior (e.g. a previous scan, registered), same shape as ``like``.
    like : np.ndarray or Volume
        The image it belongs to.
    source : str, optional
        File the prior came from, named in the error (defaults to the Volume's source).

    Raises
    ------
    ShapeMismatchError
        When the shapes differ; the message names both shapes and the file.
    """
    if source is None and isinstance(prior, Volume):
        source = prior.source
    p, ref = as_array(prior), as_array(like)
    if p.shape != ref.shape:
        where = f" (from {source})" if source else ""
        raise ShapeMismatchError(
            f"prior{where} has shape {tuple(p.shape)} but the image it belongs to has shape "
            f"{tuple(ref.shape)}; expected equal shapes"
        )
    return np.asarray(p, dtype=np.float32)
