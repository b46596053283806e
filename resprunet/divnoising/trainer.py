"""Training of the DivNoising VAE: a :class:`keras.Model` used only for ``fit``.

:class:`DivNoisingTrainer` wraps the functional VAE of :func:`~resprunet.divnoising.model.build_divnoising`
and a noise model. ``train_step`` draws ``eps`` ~ N(0, 1), runs the VAE, and minimises
:func:`~resprunet.divnoising.losses.elbo_terms` (reconstruction + kl_weight * KL, nats per
pixel); ``test_step`` reports the same loss on validation data. The loss is written with
:mod:`keras.ops`; the gradient step uses ``tf.GradientTape`` (TensorFlow backend).

Calling the trainer (``trainer(noisy)``, e.g. for TensorBoard's image panel) decodes the latent
MEAN (``eps = 0``): a cheap preview, not the MMSE of :mod:`~resprunet.divnoising.posterior`.
What is saved is :func:`~resprunet.divnoising.model.inference_model` plus the noise model,
never this class.
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from .losses import elbo_terms
from .model import inference_model

__all__ = ["BestInferenceModel", "DivNoisingTrainer"]


class DivNoisingTrainer(keras.Model):
    """Fit a DivNoising VAE to noisy images with a fixed noise model.

    Parameters
    ----------
    vae : keras.Model
        From :func:`~resprunet.divnoising.model.build_divnoising`.
    noise_model : resprunet.noise_models.NoiseModel
        p(noisy | signal) in the data's normalised units; not trained.
    kl_weight : float
        Weight (beta) of the KL term; 1 gives the negative ELBO per pixel (DivNoising).
    seed : int
        Seed of the ``eps`` draws.

    Notes
    -----
    ``fit`` data: batches of noisy patches, ``x`` or ``(x, anything)`` (the second element is
    ignored: there is no clean target). Metrics: ``loss``, ``reconstruction`` and ``kl``
    (nats per pixel; ``kl`` unweighted), with ``val_`` versions on validation data.
    """

    def __init__(self, vae: keras.Model, noise_model: Any, kl_weight: float = 1.0, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vae = vae
        self.noise_model = noise_model
        self.kl_weight = float(kl_weight)
        self.latent_channels = int(vae.get_layer("mu").output.shape[-1])
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def _eps_shape(self, noisy: Any) -> tuple[Any, ...]:
        return (*ops.shape(noisy)[:-1], self.latent_channels)

    def call(self, inputs: Any, training: bool = False) -> Any:
        """The signal decoded from the latent mean (eps = 0), (batch, *spatial, channels)."""
        eps = ops.zeros(self._eps_shape(inputs))
        return self.vae({"noisy": inputs, "eps": eps}, training=training)["signal"]

    def _elbo(self, data: Any, training: bool) -> tuple[Any, Any, Any]:
        noisy = data[0] if isinstance(data, (tuple, list)) else data
        eps = keras.random.normal(self._eps_shape(noisy), seed=self.seed_generator)
        out = self.vae({"noisy": noisy, "eps": eps}, training=training)
        reconstruction, kl = elbo_terms(noisy, out["signal"], out["mu"], out["logvar"], self.noise_model)
        return reconstruction + self.kl_weight * kl, reconstruction, kl

    def _record(self, loss: Any, reconstruction: Any, kl: Any) -> dict[str, Any]:
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            loss, reconstruction, kl = self._elbo(data, training=True)
        weights = self.vae.trainable_weights
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        return self._record(loss, reconstruction, kl)

    def test_step(self, data: Any) -> dict[str, Any]:
        return self._record(*self._elbo(data, training=False))

    def inference_model(self) -> keras.Model:
        """The model to save: inputs ``{"noisy", "eps"}``, output the signal."""
        return inference_model(self.vae)


class BestInferenceModel(keras.callbacks.Callback):
    """Save the inference model of a :class:`DivNoisingTrainer` (and its noise model beside it)
    whenever ``monitor`` reaches a new minimum: the run's ``checkpoints/best.keras``.

    Parameters
    ----------
    path : str or Path
        The ``.keras`` file to write.
    monitor : str
        Epoch log key, e.g. ``"val_loss"`` (lower is better).
    initial_value_threshold : float, optional
        The best value so far (a resumed run): only a lower one is saved.
    """

    def __init__(self, path: Any, monitor: str = "val_loss", initial_value_threshold: float | None = None) -> None:
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = float("inf") if initial_value_threshold is None else float(initial_value_threshold)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from .artifact import save_divnoising

        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) < self.best:
            self.best = float(value)
            save_divnoising(self.model.inference_model(), self.model.noise_model, self.path, force=True)
