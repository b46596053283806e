"""Model, optimiser, precision and XLA set-up shared by ``model.fit`` and the multi-worker loop."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import data_pipelines as dp
import keras

from .. import models
from ..models.registry import N2V2_OPTIONS
from ..runtime import resolve_jit_compile, resolve_precision, runtime_summary
from .config import BLINDSPOT_METHODS, ConfigError, TrainConfig
from .losses import get_loss, masked_mse
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


def model_options(config: TrainConfig) -> dict[str, Any]:
    """The builder options of the run's model: ``model.options``, for blind-spot methods with
    ``residual: false`` unless set (an identity path would pass the masked voxel through),
    and for ``n2v2`` the N2V2 architecture (:data:`~resprunet.models.registry.N2V2_OPTIONS`).

    Raises
    ------
    ConfigError
        When ``method: n2v2`` meets a model option that contradicts N2V2.
    """
    options = dict(config.model.options)
    if config.method in BLINDSPOT_METHODS:
        options.setdefault("residual", False)
    if config.method == "n2v2":
        clash = {k: options[k] for k, v in N2V2_OPTIONS.items() if k in options and options[k] != v}
        if clash:
            raise ConfigError(f"config method=n2v2 builds the N2V2 U-Net {N2V2_OPTIONS}; model options {clash} contradict it")
        options.update(N2V2_OPTIONS)
    return options


def make_blindspot(config: TrainConfig) -> dp.BlindSpot | None:
    """The masking of a blind-spot run (None for ``method: supervised``)."""
    if config.method not in BLINDSPOT_METHODS:
        return None
    bs = config.blindspot
    struct = config.method == "structn2v"
    return dp.BlindSpot(bs.fraction, bs.window, bs.struct_axis if struct else None, bs.struct_span if struct else 0,
                        bs.replacement)


def build_model(config: TrainConfig) -> keras.Model:
    """``models.build(name, ndim, **options)`` with :func:`model_options`, checking the prior
    input against the data.

    Raises
    ------
    ConfigError
        When the model needs a prior and ``data.prior`` is None, or the reverse.
    """
    model = models.build(config.model.name, config.model.ndim, **model_options(config))
    needs_prior = models.describe(model).needs_prior
    if needs_prior != (config.data.prior is not None):
        raise ConfigError(
            f"model {config.model.name!r} {'needs' if needs_prior else 'takes no'} prior input but "
            f"config data.prior={config.data.prior!r}; set data.prior="
            f"{'neighbour' if needs_prior else 'null'}"
        )
    return model


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """Adam with the schedule over all steps, the configured loss, PSNR and SSIM metrics;
    for blind-spot methods :func:`~resprunet.training.losses.masked_mse` and no metrics (the
    targets are noisy); for DivNoising the optimiser only (its trainer has its own loss).

    XLA compilation follows ``config.jit_compile`` through
    :func:`~resprunet.runtime.resolve_jit_compile` (``"auto"``: off on a CPU, where XLA
    bypasses oneDNN and is 8-20x slower; on on a GPU).
    """
    if config.method == "divnoising":  # the trainer's own train_step minimises the negative ELBO
        model.compile(optimizer=make_optimizer(config.optimizer, config.epochs * steps_per_epoch),
                      jit_compile=resolve_jit_compile(config.jit_compile))
        return
    blind = config.method in BLINDSPOT_METHODS
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.epochs * steps_per_epoch),
        loss=masked_mse if blind else get_loss(config.loss),
        metrics=[] if blind else [PSNR(), SSIM()],
        jit_compile=resolve_jit_compile(config.jit_compile),
    )
