"""The raw test input of an exported model: a crop of its card's held-out case.

A zoo card's ``evaluation`` recipe rebuilds the noisy held-out volume in source units
(:func:`resprunet.zoo.heldout_case`); the test input is a crop of it at its scored region, of a
size the package accepts without padding (:func:`test_case`). A card without a recipe (a training run's
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


def test_size(crop: int, least: int, step: int, limit: int) -> int:
    """Voxels of the test input along one axis: the crop's length capped at ``limit``, as a
    valid package size ``least + k step`` (never below ``least``)."""
    return least + max(0, min(crop, limit) - least) // step * step


def test_case(model: Any, card: dict[str, Any], min_size: int) -> TestCase:
    """Build the raw test inputs of ``model`` from its card.

    Each spatial size is a size the package accepts as it is (``min_size + k divisor``, so a
    consumer need not pad it): the held-out crop, capped at :data:`MAX_TEST_SIZE`, moved inside
    the volume where it is too small, and the volume reflected at its far edge where the volume
    itself is smaller than ``min_size``.

    Parameters
    ----------
    model : keras.Model
        A denoising model (inputs ``"noisy"`` and optionally ``"prior"``, ``"sigma"``).
    card : dict
        Its model card (or a run's minimal card).
    min_size : int
        The package's least spatial size (voxels): twice the halo plus the divisor.

    Returns
    -------
    TestCase

    Raises
    ------
    ExportError
        A prior other than the neighbour-slice prior (nothing to build it from).
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
    arrays = {"noisy": volume} if prior is None else {"noisy": volume, "prior": prior}
    first = 0 if info.ndim == 3 else 1  # 2D models: one z slice, the crop's first
    index: list[slice] = [] if info.ndim == 3 else [slice(crop[0].start, crop[0].start + 1)]
    pads: list[tuple[int, int]] = [(0, 0)] * first
    for axis, s in enumerate(crop[first:], start=first):
        size = test_size(s.stop - s.start, min_size, info.divisor, MAX_TEST_SIZE[info.ndim])
        length = volume.shape[axis]
        start = max(0, min(s.start, length - size))
        index.append(slice(start, start + size))
        pads.append((0, max(0, size - length)))
    if any(after for _, after in pads):
        source += f"; reflected at the far edges to the package's least tile ({min_size} voxels)"
    pads.append((0, 0))
    cuts = {name: np.pad(a, pads, mode="reflect")[tuple(index)] for name, a in arrays.items()}
    # (1, [z,] y, x, c): a 2D model's single z slice becomes the batch axis
    inputs = {name: (cut if info.ndim == 2 else cut[np.newaxis]).astype(np.float32) for name, cut in cuts.items()}
    if info.needs_sigma:
        inputs["sigma"] = np.full(inputs["noisy"].shape[:-1] + (1,), _card_sigma(card), np.float32)
    return TestCase(inputs, source)
