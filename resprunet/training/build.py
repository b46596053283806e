"""Model, optimiser, precision and XLA set-up shared by ``model.fit`` and the multi-worker loop."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import keras

from .. import models
from ..runtime import resolve_jit_compile, resolve_precision, runtime_summary
from .config import ConfigError, TrainConfig
from .losses import get_loss
from .metrics import PSNR, SSIM
from .optimizers import make_optimizer

log = logging.getLogger(__name__)

#: File in the run directory that gets one line per training start: UTC time and runtime summary.
RUNTIME_LOG = "runtime.log"



def start_runtime(config: TrainConfig, run_dir: Path, jit_compile: bool | None = None) -> str:
    """Resolve the run's precision, log the runtime summary and record it in the run directory.

    Parameters
    ----------
    config : TrainConfig
        Uses ``precision`` and ``jit_compile`` (see :func:`~resprunet.runtime.resolve_precision`
        and :func:`~resprunet.runtime.resolve_jit_compile`).
    run_dir : Path
        The line ``<UTC time> <summary>`` is appended to ``<run_dir>/runtime.log`` (a resumed
        run adds a line per start).
    jit_compile : bool, optional
        Whether XLA is actually used, when the caller decides it otherwise (the multi-worker
        loop); default: ``resolve_jit_compile(config.jit_compile)``.

    Returns
    -------
    str
        The Keras dtype policy to train with (``"float32"``, ``"mixed_bfloat16"`` or
        ``"mixed_float16"``).
    """
    precision = resolve_precision(config.precision)
    if jit_compile is None:
        jit_compile = resolve_jit_compile(config.jit_compile)
    summary = runtime_summary(precision, jit_compile)
    log.info("runtime: %s", summary)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with (Path(run_dir) / RUNTIME_LOG).open("a") as f:
        f.write(f"{stamp} {summary}\n")
    return precision


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
    """Adam with the schedule over all steps, the configured loss, PSNR and SSIM metrics.

    XLA compilation follows ``config.jit_compile`` through
    :func:`~resprunet.runtime.resolve_jit_compile` (``"auto"``: off on a CPU, where XLA
    bypasses oneDNN and is 8-20x slower; on on a GPU).
    """
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.epochs * steps_per_epoch),
        loss=get_loss(config.loss),
        metrics=[PSNR(), SSIM()],
        jit_compile=resolve_jit_compile(config.jit_compile),
    )
