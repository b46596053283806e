"""The raw test input of an exported model: a crop of its card's held-out case.

A zoo card's ``evaluation`` recipe rebuilds the noisy held-out volume in source units
(:func:`resprunet.zoo.heldout_case`); the test input is a crop of its scored region, each
spatial size a multiple of the model's divisor. A card without a recipe (a training run's
folder) gets a seeded synthetic volume: smooth random structure plus Gaussian noise of sigma
0.05 in normalised units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ExportError

#: Largest test size along each spatial axis (voxels), by model dimensionality.
MAX_TEST_SIZE = {2: 256, 3: 64}
#: Noise sigma (normalised units) of the synthetic case, and of a sigma map without a card value.
DEFAULT_SIGMA = 0.05


@dataclass(frozen=True)
class TestCase:
    """Raw model inputs for the package's test tensors.

    Attributes
    ----------
    inputs : dict of str to np.ndarray
        float32 (1, [z,] y, x, c) per model input in the units the package's preprocessing
        expects: source units for ``"noisy"`` and ``"prior"``, normalised units for ``"sigma"``.
    source : str
        Where the data came from, for the documentation.
    """

    inputs: dict[str, np.ndarray]
    source: str


def _synthetic(normalizer: Any, channels: int, ndim: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    """A seeded (z, y, x, c) volume in source units and its central crop."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    shape = (16 if ndim == 3 else 9, 128, 128, channels)
    clean = ndimage.gaussian_filter(rng.random(shape), sigma=(2, 6, 6, 0))
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = (clean + rng.normal(0.0, DEFAULT_SIGMA, shape)).astype(np.float32)
    if normalizer.fitted:
        noisy = normalizer.inverse(noisy)
    z = slice(0, shape[0]) if ndim == 3 else slice(shape[0] // 2, shape[0] // 2 + 1)
    return noisy, (z, slice(0, 128), slice(0, 128))


def _card_sigma(card: dict[str, Any]) -> float:
    """The noise sigma of the card's held-out case (else the middle of its training range)."""
    noise = (card.get("evaluation") or {}).get("noise") or card.get("noise") or {}
    sigma = noise.get("sigma", DEFAULT_SIGMA)
    return float(np.mean(sigma)) if isinstance(sigma, (list, tuple)) else float(sigma)


def test_case(model: Any, card: dict[str, Any]) -> TestCase:
    """Build the raw test inputs of ``model`` from its card.

    Parameters
    ----------
    model : keras.Model
        A denoising model (inputs ``"noisy"`` and optionally ``"prior"``, ``"sigma"``).
    card : dict
        Its model card (or a run's minimal card).

    Returns
    -------
    TestCase

    Raises
    ------
    ExportError
        A prior other than the neighbour-slice prior (nothing to build it from), or a
        held-out region smaller than the model's divisor.
    """
    import data_pipelines as dp

    from .. import zoo
    from ..models import describe

    info = describe(model)
    normalizer = zoo.normalizer(card)
    if isinstance(card.get("evaluation"), dict):
        case = zoo.heldout_case(card)
        volume, crop = case.noisy_source, case.crop
        source = f"held-out case of the card ({card['evaluation']['source']}, noise {card['evaluation']['noise']})"
    else:
        volume, crop = _synthetic(normalizer, info.channels, info.ndim)
        source = f"synthetic: smoothed uniform noise plus Gaussian noise of sigma {DEFAULT_SIGMA} (seed 0)"
    volume = volume if volume.ndim == 4 else volume[..., np.newaxis]
    prior = None
    if info.needs_prior:
        kind = (card.get("prior") or {}).get("kind")
        if kind != "neighbour":
            raise ExportError(f"model {card.get('name', model.name)!r} takes a {kind!r} prior; the export "
                              "builds test inputs only for the neighbour-slice prior")
        prior = dp.neighbour_slice_prior(volume, **zoo.prior_options(card))  # along z, each channel alike
    limit = MAX_TEST_SIZE[info.ndim]
    spatial = crop if info.ndim == 3 else crop[1:]
    first = () if info.ndim == 3 else (crop[0].start,)
    region = []
    for axis, s in enumerate(spatial):
        size = min(s.stop - s.start, limit) // info.divisor * info.divisor
        if size == 0:
            raise ExportError(f"the test region {s} along axis {axis} is smaller than the model's divisor {info.divisor}")
        region.append(slice(s.start, s.start + size))
    index = first + tuple(region)
    inputs = {"noisy": volume[index][np.newaxis].astype(np.float32)}
    if prior is not None:
        inputs["prior"] = prior[index][np.newaxis].astype(np.float32)
    if info.needs_sigma:
        inputs["sigma"] = np.full(inputs["noisy"].shape[:-1] + (1,), _card_sigma(card), np.float32)
    return TestCase(inputs, source)
