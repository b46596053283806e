"""Model, optimiser and precision set-up shared by ``model.fit`` and the multi-worker loop."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import keras

from .. import models
from .config import ConfigError, TrainConfig
from .losses import get_loss
from .metrics import PSNR, SSIM
from .optimizers import make_optimizer


@contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Set the Keras dtype policy (``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``)
    for the block, restoring the previous one afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(config: TrainConfig) -> keras.Model:
    """``models.build(name, ndim, **options)``, checking the prior input against the data.

    Raises
    ------
    ConfigError
        When the model needs a prior and ``data.prior`` is None, or the reverse.
    """
    model = models.build(config.model.name, config.model.ndim, **config.model.options)
    needs_prior = models.describe(model).needs_prior
    if needs_prior != (config.data.prior is not None):
        raise ConfigError(
            f"model {config.model.name!r} {'needs' if needs_prior else 'takes no'} prior input but "
            f"config data.prior={config.data.prior!r}; set data.prior="
            f"{'neighbour' if needs_prior else 'null'}"
        )
    return model


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam with the schedule over all steps, the configured loss, PSNR and SSIM metrics."""
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.epochs * steps_per_epoch),
        loss=get_loss(config.loss),
        metrics=[PSNR(), SSIM()],
    )
