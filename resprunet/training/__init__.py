"""Training: ``TrainConfig`` (dataclass <-> YAML), ``load_config`` (with ``--set`` overrides)
and ``train(config) -> TrainResult``.

>>> from resprunet.training import load_config, train
>>> result = train(load_config("experiments/configs/unet_3d.yaml", ["epochs=2"]))  # doctest: +SKIP
"""
from __future__ import annotations

from .config import ConfigError, TrainConfig, load_config, save_config
from .runs import TrainResult
from .train import train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "load_config", "save_config", "train"]
