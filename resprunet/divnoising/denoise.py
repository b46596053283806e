"""Denoise an array in source units with a DivNoising model: the MMSE of posterior samples,
and optionally the per-pixel posterior variance.

The MMSE goes through :func:`resprunet.inference.denoise_array` with a
:class:`~resprunet.divnoising.posterior.PosteriorMean` in place of the model, so it follows the
package's normalisation contract (normaliser fitted on the noisy input, isolated extremes kept
out of the model and restored, output clipped to the input's range) and its tiling. The
variance of the same samples is blended over the same tiles (a second pass over the grid that
replays the variances recorded in the first, without running the model again) and converted
to source units squared: the normalisation is affine, ``x = low + (high - low) * y``, so
``var_source = (high - low)^2 * var_normalised``.

Tiles: by default each 2D slice (a 3D model: the whole volume) is one tile, padded by
reflection to what the model's divisor and receptive field need; memory grows with the image
(2D slices up to about 1024 x 1024 are fine on a workstation). Give ``tile_shape`` for larger
ones: tiles overlap by at least the receptive field and are blended with Gaussian weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .posterior import DEFAULT_SAMPLES, PosteriorMean, check_samples

__all__ = ["denoise_divnoising"]


class _Replay:
    """Stands in for the model in a second pass over the same tiles: returns the variances a
    :class:`PosteriorMean` recorded, in the order it saw the tiles."""

    def __init__(self, recorded: PosteriorMean) -> None:
        self.recorded = recorded
        self.queue = list(recorded.variances)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.recorded, name)

    def predict_on_batch(self, inputs: Any) -> np.ndarray:
        count = len(inputs["noisy"] if isinstance(inputs, dict) else inputs)
        taken, self.queue = self.queue[:count], self.queue[count:]
        return np.stack(taken)


def denoise_divnoising(model: Any, array: np.ndarray, normalizer: Any, *, samples: int = DEFAULT_SAMPLES,
                       seed: int = 0, variance: bool = False, tile_shape: tuple[int, ...] | None = None,
                       overlap: float = 0.25, batch_size: int = 8,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """MMSE estimate (and posterior variance) of an array in source units.

    Parameters
    ----------
    model : keras.Model
        A DivNoising inference model (inputs ``{"noisy", "eps"}``).
    array : np.ndarray
        (z, y, x) or (z, y, x, c) in source units (a 2D image: (1, y, x)); a 2D model
        denoises each slice.
    normalizer : data_pipelines.Normalizer
        The model's normalisation (its card); fitted on ``array`` unless already fitted.
    samples : int
        Posterior samples per image (>= 1; >= 2 for a variance).
    seed : int
        Seed of the latent noise.
    variance : bool
        Also return the per-pixel variance of the samples (unbiased).
    tile_shape : tuple of int, optional
        (y, x) tiles for a 2D model, (z, y, x) for 3D; default: whole slices (whole volume).
    overlap, progress
        As for :func:`resprunet.inference.predict_volume`.
    batch_size : int
        Images per decoder call (samples of a tile are decoded in chunks of this size).

    Returns
    -------
    mmse : np.ndarray
        float32, the shape of ``array``, source units.
    variance : np.ndarray or None
        float32, the shape of ``array``, source units squared; None unless ``variance``.

    Raises
    ------
    ValueError
        ``samples`` < 1, or a variance asked of fewer than 2 samples.
    """
    from ..inference import denoise_array, predict_volume
    from ..models import describe

    samples = check_samples(samples)
    if variance and samples < 2:
        raise ValueError(f"a posterior variance needs samples >= 2, got {samples}")
    norm = normalizer if normalizer.fitted else normalizer.fit(array)
    if tile_shape is None:
        tile_shape = tuple(array.shape[1:3] if describe(model).ndim == 2 else array.shape[:3])
    mean_model = PosteriorMean(model, samples, seed, batch_size, keep_variance=variance)
    options = {"tile_shape": tile_shape, "overlap": overlap, "batch_size": 1, "progress": progress}
    mmse = denoise_array(mean_model, array, norm, prior="none", **options)
    if not variance:
        return mmse, None
    blended = predict_volume(_Replay(mean_model), np.zeros(array.shape, np.float32), **options)
    return mmse, (np.maximum(blended, 0.0) * (norm.high - norm.low) ** 2).astype(np.float32)
