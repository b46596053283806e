"""``train(config)``: one training run from a :class:`TrainConfig` to a run directory.

Run directory ``<run.root>/<run.name>/<UTC timestamp>/``::

    config.yaml          resolved configuration (reproduces the run)
    metrics.csv          one row per epoch (loss, psnr, ssim, val_*, learning_rate)
    tb/                  TensorBoard: train/ and validation/ scalars, histograms, images/, profile
    checkpoints/best.keras   best validation PSNR (noisy-data methods: lowest validation loss)
    noise_model.json     DivNoising: the noise model (also beside checkpoints/best.keras)
    backup/              BackupAndRestore state while running (removed when the run ends)
    model.keras          final model
    runtime.log          one line per start: hardware, oneDNN, XLA, precision, versions
    final_metrics.json   noisy vs denoised PSNR/SSIM on the test volume(s) (data.test), never used in training or model choice
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from ..runtime import precision_policy
from ..models import describe
from .build import build_model, compile_model, make_blindspot, start_runtime
from .callbacks import make_callbacks
from .config import TrainConfig
from .data import build_training_data
from .distributed import train_multiworker
from .runs import TrainResult, discard_on_failure, finish, prepare_run_dir


def train(config: TrainConfig, run_dir: str | Path | None = None, verbose: int | str = "auto",
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train a denoiser as configured, then evaluate it on the test volume(s).

    Parameters
    ----------
    config : TrainConfig
        The run's configuration (seeded: the run is reproducible from ``config.yaml``).
    run_dir : str or Path, optional
        Resume the run in this directory (its backup, CSV log and TensorBoard logs continue);
        None creates ``<run.root>/<run.name>/<UTC timestamp>/``.
    verbose : int or "auto"
        Keras ``fit`` verbosity (1: progress bar, 2: one line per epoch); "auto" gives the
        bar on a terminal and one line per epoch in logs.
    callbacks : sequence of keras.callbacks.Callback
        Called after the run's own callbacks (checkpoints, CSV log, TensorBoard), e.g. to
        record metrics on other data during training. Not with ``strategy: multiworker``.

    Returns
    -------
    TrainResult
        Run directory, per-epoch history and final metrics (also printed and written to
        ``final_metrics.json``).
    """
    if callbacks and config.strategy == "multiworker":
        raise ValueError("extra callbacks are not supported with strategy 'multiworker'")
    new_run = run_dir is None
    run_dir = prepare_run_dir(config, run_dir)
    if config.strategy == "multiworker":
        return train_multiworker(config, run_dir)  # creates its strategy before any TF op
    keras.utils.set_random_seed(config.seed)
    with discard_on_failure(run_dir, new_run):
        precision = start_runtime(config, run_dir)  # resolves "auto"; logs hardware and settings
    with precision_policy(precision):  # the global dtype policy while the model is built and trained
        with discard_on_failure(run_dir, new_run):  # invalid data or model: no run folder left
            if config.strategy == "mirrored":
                strategy = tf.distribute.MirroredStrategy()
            else:
                strategy = tf.distribute.get_strategy()
            if config.method == "divnoising":  # data first: the noise model may be fitted on it
                from ..divnoising.run import build_trainer

                data = build_training_data(config.data, config.seed, config.callbacks.panel_samples,
                                           channels=int(config.model.options.get("channels", 1)),
                                           noisy_only=True)
                model = build_trainer(config, data.train, run_dir)
            else:
                with strategy.scope():
                    model = build_model(config)
                info = describe(model)
                data = build_training_data(config.data, config.seed, config.callbacks.panel_samples,
                                           noise_level=info.needs_sigma, context=info.context,
                                           channels=info.channels, blindspot=make_blindspot(config))
            with strategy.scope():
                compile_model(model, config, data.steps_per_epoch)
        panel = data.panel if config.callbacks.image_panel else None
        start = time.perf_counter()
        model.fit(
            data.train,
            epochs=config.epochs,
            validation_data=data.val,
            shuffle=False,  # the dataset shuffles itself
            callbacks=[*make_callbacks(config, run_dir, panel), *callbacks],
            verbose=(1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose,
        )
        return finish(model, config, run_dir, data, time.perf_counter() - start)
