"""Adam with the configured learning-rate schedule."""
from __future__ import annotations

import keras

from .config import OptimizerConfig


def make_optimizer(config: OptimizerConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam whose learning rate decays over ``total_steps`` optimizer steps.

    Parameters
    ----------
    config : OptimizerConfig
        ``learning_rate`` (initial), ``schedule`` ("constant", "cosine" or "exponential")
        and ``final_fraction`` (learning rate at the last step / initial learning rate);
        ``clipnorm``: the largest global L2 norm of a step's gradients (None: no clipping).
    total_steps : int
        Steps of the whole run (epochs * steps per epoch).

    Returns
    -------
    keras.optimizers.Adam
    """
    lr = config.learning_rate
    steps = max(1, int(total_steps))
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps, alpha=config.final_fraction)
    elif config.schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=steps, decay_rate=config.final_fraction
        )
    return keras.optimizers.Adam(learning_rate=lr, global_clipnorm=config.clipnorm)
