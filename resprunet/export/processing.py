"""A card's normaliser as BioImage Model Zoo pre/post-processing, and those steps in numpy.

resprunet maps an image to [0, 1] with one affine map, ``y = (x - low) / (high - low)``
(:class:`data_pipelines.Normalizer`). The spec expresses it as:

* ``ct`` and ``fixed`` (a window known in advance): ``scale_linear`` with
  ``gain = 1 / (high - low)`` and ``offset = -low / (high - low)``; the output's
  ``scale_linear`` with ``gain = high - low``, ``offset = low`` inverts it exactly (the output
  is in source units, e.g. HU).
* ``percentile`` and ``minmax``: ``scale_range`` with the same percentiles (0 and 100 for
  minmax), per image over all spatial axes and channels. The spec cannot invert a map whose
  bounds are statistics of the input, so the output stays in normalised units. The spec takes
  plain percentiles of the image, where resprunet takes them of a winsorised, box-smoothed
  sample (:func:`data_pipelines.normalize.statistics_sample`), which noise moves less.

Other inputs in the image's units (the ``"prior"``) are scaled with the bounds of ``"noisy"``
(``reference_tensor``); the ``"sigma"`` map is already in normalised units.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: ``eps`` of the spec's ``scale_range`` (its default): ``(x - lo) / (hi - lo + eps)``.
SCALE_RANGE_EPS = 1e-6


def preprocessing(normalizer: Any, axes: list[str], reference: str | None = None) -> list[dict[str, Any]]:
    """The spec's preprocessing steps of a :class:`data_pipelines.Normalizer`.

    Parameters
    ----------
    normalizer : data_pipelines.Normalizer
        The card's normaliser (``ct``/``fixed`` fitted by construction; others unfitted).
    axes : list of str
        Axis ids the statistics are taken over (spatial and channel; not the batch).
    reference : str, optional
        Tensor id whose statistics scale this tensor (``"noisy"`` for the prior).

    Returns
    -------
    list of dict
        ``scale_linear`` or ``scale_range`` (then ``clip`` to [0, 1] if the normaliser clips).
    """
    if normalizer.kind in ("ct", "fixed"):
        low, high = float(normalizer.low), float(normalizer.high)
        steps = [{"id": "scale_linear", "kwargs": {"gain": 1.0 / (high - low), "offset": -low / (high - low)}}]
    else:
        lo, hi = normalizer.params if normalizer.kind == "percentile" else (0.0, 100.0)
        kwargs: dict[str, Any] = {"axes": list(axes), "min_percentile": float(lo), "max_percentile": float(hi)}
        if reference is not None:
            kwargs["reference_tensor"] = reference
        steps = [{"id": "scale_range", "kwargs": kwargs}]
    if normalizer.clip:
        steps.append({"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}})
    return steps


def postprocessing(normalizer: Any) -> list[dict[str, Any]]:
    """The spec's postprocessing that maps the output back to source units: the inverse
    ``scale_linear`` for ``ct``/``fixed``; none (normalised units) for the others."""
    if normalizer.kind in ("ct", "fixed"):
        low, high = float(normalizer.low), float(normalizer.high)
        return [{"id": "scale_linear", "kwargs": {"gain": high - low, "offset": low}}]
    return []


def apply(steps: list[dict[str, Any]], x: np.ndarray, axis_ids: list[str],
          tensors: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Apply the steps of :func:`preprocessing`/:func:`postprocessing` as the spec defines them.

    Parameters
    ----------
    steps : list of dict
        ``scale_linear``, ``scale_range`` or ``clip`` steps.
    x : np.ndarray
        The tensor, axes ``axis_ids`` (e.g. ``["batch", "y", "x", "channel"]``).
    axis_ids : list of str
        Axis ids of ``x`` (and of every tensor in ``tensors``).
    tensors : dict of str to np.ndarray, optional
        Unprocessed tensors by id, for a ``reference_tensor``.

    Returns
    -------
    np.ndarray
        float32, the shape of ``x``.
    """
    y = np.asarray(x, np.float64)
    for step in steps:
        kw = step["kwargs"]
        if step["id"] == "scale_linear":
            y = y * kw["gain"] + kw["offset"]
        elif step["id"] == "scale_range":
            source = np.asarray((tensors or {})[kw["reference_tensor"]] if "reference_tensor" in kw else y, np.float64)
            reduce = tuple(axis_ids.index(a) for a in kw["axes"])
            lo = np.percentile(source, kw["min_percentile"], axis=reduce, keepdims=True)
            hi = np.percentile(source, kw["max_percentile"], axis=reduce, keepdims=True)
            y = (y - lo) / (hi - lo + kw.get("eps", SCALE_RANGE_EPS))
        elif step["id"] == "clip":
            y = np.clip(y, kw["min"], kw["max"])
        else:
            raise ValueError(f"processing step {step['id']!r}: expected scale_linear, scale_range or clip")
    return y.astype(np.float32)
