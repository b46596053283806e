"""Posterior sampling of a saved DivNoising model: samples, MMSE and per-pixel variance.

A DivNoising model (:func:`~resprunet.divnoising.model.inference_model`, inputs ``{"noisy",
"eps"}``) is split at its named layers into the encoder (``noisy -> mu, logvar``) and the
decoder (``z -> signal``), so each image is encoded once and only the decoder runs per sample:
``z = mu + exp(0.5 * logvar) * eps`` with ``eps`` ~ N(0, 1) drawn by numpy at the latent
resolution (the same distribution the full model makes from image-resolution ``eps``).

- :func:`sample_posterior`: ``n`` decoded samples of an image;
- :func:`posterior_moments`: their mean (the MMSE estimate) and unbiased variance
  (``ddof=1``), accumulated without keeping the samples;
- :class:`PosteriorMean`: a model-like object whose ``predict_on_batch`` returns the MMSE of
  each tile, so :func:`resprunet.inference.denoise_array` (tiling, the normalisation
  contract) denoises with it like with any model.

All arrays are in the model's normalised units. The MMSE is a Monte-Carlo mean: its error
falls as ``sqrt(variance / n)`` (DivNoising's paper averages 1000 samples; this package's
default, :data:`DEFAULT_SAMPLES`, is 100).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

__all__ = ["DEFAULT_SAMPLES", "Posterior", "PosteriorMean", "check_samples", "posterior_moments",
           "sample_posterior"]

#: Posterior samples averaged for an MMSE estimate when none is given.
DEFAULT_SAMPLES = 100


def check_samples(samples: Any) -> int:
    """``samples`` as an int >= 1.

    Raises
    ------
    ValueError
        Zero, negative or not a whole number.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"DivNoising needs samples >= 1 posterior samples per image, got {samples!r}")
    return int(samples)


class Posterior:
    """The encoder and decoder halves of a DivNoising model.

    Parameters
    ----------
    model : keras.Model
        A DivNoising inference model (built, or loaded from ``model.keras``).
    """

    def __init__(self, model: keras.Model) -> None:
        from ..models import describe

        inputs = {t.name: t for t in model.inputs}
        if set(inputs) != {"noisy", "eps"}:
            raise ValueError(f"model {model.name!r} has inputs {sorted(inputs)}; a DivNoising model has 'noisy' and 'eps'")
        self.encoder = keras.Model(inputs["noisy"], [model.get_layer("mu").output, model.get_layer("logvar").output])
        self.decoder = keras.Model(model.get_layer("z").output, model.outputs[0])
        info = describe(model)
        self.ndim, self.channels, self.divisor = info.ndim, info.channels, info.divisor

    def encode(self, noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mu`` and the standard deviation ``exp(0.5 logvar)`` of q(z | noisy), float32.

        ``noisy`` is (batch, *spatial, c), every spatial size a multiple of :attr:`divisor`.
        """
        mu, logvar = (keras.ops.convert_to_numpy(t) for t in self.encoder(np.asarray(noisy, np.float32), training=False))
        return np.asarray(mu, np.float32), np.exp(0.5 * np.asarray(logvar, np.float32))

    def decode(self, mu: np.ndarray, std: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` decoded samples of each image: (count, batch, *spatial, c), float32."""
        eps = rng.standard_normal((count, *mu.shape), dtype=np.float32)
        z = (mu[np.newaxis] + std[np.newaxis] * eps).reshape((-1, *mu.shape[1:]))
        signal = keras.ops.convert_to_numpy(self.decoder(z, training=False)).astype(np.float32)
        return signal.reshape((count, mu.shape[0], *signal.shape[1:]))

    def chunks(self, noisy: np.ndarray, samples: int, rng: np.random.Generator,
               batch_size: int) -> Any:
        """Yield decoded samples of ``noisy`` (batch, *spatial, c) in chunks of (k, batch, ...),
        ``k * batch <= max(batch, batch_size)`` images per decoder call, ``samples`` in all."""
        mu, std = self.encode(noisy)
        per_call = max(1, batch_size // len(noisy))
        done = 0
        while done < samples:
            count = min(per_call, samples - done)
            yield self.decode(mu, std, count, rng)
            done += count


def _padded(posterior: Posterior, image: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """(1, *spatial, c) reflect-padded to multiples of the divisor, and the crop back."""
    x = np.asarray(image, np.float32)
    if x.ndim == posterior.ndim:  # no channel axis
        x = x[..., np.newaxis]
    if x.ndim != posterior.ndim + 1 or x.shape[-1] != posterior.channels:
        raise ValueError(f"image of shape {np.shape(image)}: a {posterior.ndim}D DivNoising model of "
                         f"{posterior.channels} channel(s) expects (*spatial) or (*spatial, {posterior.channels})")
    spatial = x.shape[:-1]
    target = [-(-s // posterior.divisor) * posterior.divisor for s in spatial]
    pad = [(0, t - s) for s, t in zip(spatial, target)] + [(0, 0)]
    return np.pad(x, pad, mode="reflect")[np.newaxis], tuple(slice(0, s) for s in spatial)


def sample_posterior(model: keras.Model, image: np.ndarray, samples: int, *, seed: int = 0,
                     batch_size: int = 8) -> np.ndarray:
    """Decoded posterior samples of one image.

    Parameters
    ----------
    model : keras.Model
        A DivNoising inference model.
    image : np.ndarray
        Normalised noisy image: (y, x) or (y, x, c) for a 2D model ((z, y, x[, c]) for 3D);
        any size (reflect-padded to a multiple of the model's divisor, cropped back).
    samples : int
        Number of samples, >= 1.
    seed : int
        Seed of the latent noise (the same seed gives the same samples).
    batch_size : int
        Images per decoder call.

    Returns
    -------
    np.ndarray
        (samples, *image.shape), float32, normalised units.
    """
    samples = check_samples(samples)
    posterior = Posterior(model)
    x, crop = _padded(posterior, image)
    rng = np.random.default_rng(seed)
    out = np.concatenate([chunk[:, 0] for chunk in posterior.chunks(x, samples, rng, batch_size)])
    return out[(slice(None), *crop)].reshape((samples, *np.shape(image)))


def posterior_moments(model: keras.Model, image: np.ndarray, samples: int, *, seed: int = 0,
                      batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """MMSE estimate and per-pixel posterior variance of one image, from ``samples`` samples.

    Parameters are those of :func:`sample_posterior` (``samples >= 2`` for a variance).

    Returns
    -------
    mmse, variance : np.ndarray
        The shape of ``image``, float32: the mean of the samples, and their unbiased variance
        (``ddof=1``, normalised units squared; zeros when ``samples`` is 1).
    """
    samples = check_samples(samples)
    posterior = Posterior(model)
    x, crop = _padded(posterior, image)
    mean, variance = _moments(posterior.chunks(x, samples, np.random.default_rng(seed), batch_size), samples)
    return tuple(v[0][crop].reshape(np.shape(image)).astype(np.float32) for v in (mean, variance))  # type: ignore[return-value]


def _moments(chunks: Any, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased variance over the first axis of the concatenated chunks (float64 sums)."""
    total = squares = None
    for chunk in chunks:
        c = chunk.astype(np.float64)
        total = c.sum(axis=0) if total is None else total + c.sum(axis=0)
        squares = (c**2).sum(axis=0) if squares is None else squares + (c**2).sum(axis=0)
    mean = total / samples
    variance = np.maximum(squares - samples * mean**2, 0.0) / max(samples - 1, 1)
    return mean, variance


class PosteriorMean:
    """A DivNoising model seen as a plain denoiser: ``predict_on_batch`` gives each image's MMSE.

    Every other attribute (``inputs``, ``outputs``, ``layers``, ``name``) is the wrapped
    model's, so :func:`resprunet.models.describe` and :func:`resprunet.inference.predict_volume`
    treat it like the model itself (tiles, their divisor and receptive field, memory planning).

    Parameters
    ----------
    model : keras.Model
        A DivNoising inference model.
    samples : int
        Posterior samples per image (>= 1).
    seed : int
        Seed of the latent noise; calls draw successive values of one generator.
    batch_size : int
        Images per decoder call.
    keep_variance : bool
        Keep the posterior variance of every image passed (:attr:`variances`, in call order).
    """

    def __init__(self, model: keras.Model, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                 batch_size: int = 8, keep_variance: bool = False) -> None:
        self.model = model
        self.samples = check_samples(samples)
        self.posterior = Posterior(model)
        self.rng = np.random.default_rng(seed)
        self.batch_size = int(batch_size)
        self.keep_variance = keep_variance
        self.variances: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict_on_batch(self, inputs: Any) -> np.ndarray:
        """MMSE of each image of ``inputs`` (batch, *spatial, c) (or ``{"noisy": ...}``), float32."""
        noisy = inputs["noisy"] if isinstance(inputs, dict) else inputs
        mean, variance = _moments(self.posterior.chunks(np.asarray(noisy, np.float32), self.samples, self.rng,
                                                        self.batch_size), self.samples)
        if self.keep_variance:
            self.variances.extend(variance.astype(np.float32))
        return mean.astype(np.float32)
