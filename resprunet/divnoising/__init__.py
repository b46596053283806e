"""DivNoising (Prakash et al., ICLR 2021) in Keras 3: a VAE whose reconstruction term is a noise
model's likelihood of the noisy image, so it trains on noisy data alone, and whose posterior
samples give an MMSE estimate, a MAP-like estimate and a per-pixel uncertainty.

>>> from resprunet import divnoising, noise_models                     # doctest: +SKIP
>>> vae = divnoising.build_divnoising(2, filters=32, depth=2, latent_channels=32)
>>> trainer = divnoising.DivNoisingTrainer(vae, noise_models.GaussianNoiseModel(0.1))
>>> trainer.compile(optimizer="adam"); trainer.fit(noisy_patches, epochs=10)
>>> divnoising.save_divnoising(trainer.inference_model(), trainer.noise_model, "run/model.keras")
>>> model, noise_model = divnoising.load_divnoising("run/model.keras")  # safe mode, no custom code
>>> samples = divnoising.sample_posterior(model, image, 100)            # (100, y, x)
>>> mmse, var = samples.mean(0), samples.var(0, ddof=1)                 # or posterior_moments(...)
>>> mode = divnoising.map_estimate(samples)

Modules: :mod:`.model` (the functional VAE), :mod:`.losses` (negative ELBO per pixel),
:mod:`.trainer` (``fit``), :mod:`.posterior` (sampling, MMSE, variance, tiled MMSE),
:mod:`.mode` (per-pixel mode), :mod:`.denoise` (source units, normalisation contract),
:mod:`.artifact` (save/load), :mod:`.noise` (the noise model of a training config),
:mod:`.run` (the ``method: divnoising`` training run).
"""
from __future__ import annotations

from .artifact import NOISE_MODEL_FILE, load_divnoising, save_divnoising
from .denoise import denoise_divnoising
from .losses import elbo_terms, kl_divergence
from .mode import map_estimate, silverman_bandwidth
from .model import DEFAULT_OPTIONS, build_divnoising, check_options, inference_model, is_divnoising
from .noise import check_noise_spec, resolve_noise_model
from .posterior import DEFAULT_SAMPLES, Posterior, PosteriorMean, check_samples, posterior_moments, sample_posterior
from .trainer import BestInferenceModel, DivNoisingTrainer

__all__ = [
    "BestInferenceModel", "DEFAULT_OPTIONS", "DEFAULT_SAMPLES", "DivNoisingTrainer", "NOISE_MODEL_FILE",
    "Posterior", "PosteriorMean", "build_divnoising", "check_noise_spec", "check_options", "check_samples",
    "denoise_divnoising", "elbo_terms", "inference_model", "is_divnoising", "kl_divergence",
    "load_divnoising", "map_estimate", "posterior_moments", "resolve_noise_model", "sample_posterior",
    "save_divnoising", "silverman_bandwidth",
]
