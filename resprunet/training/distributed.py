"""Multi-worker training with a custom step (Keras 3 ``model.fit`` fails under
``MultiWorkerMirroredStrategy``: keras-team/keras#20585).

Every worker runs the same program with its own ``TF_CONFIG``. The step runs under
``strategy.run``: each replica computes its loss on its own batch scaled by
``1 / num_replicas_in_sync``, and ``optimizer.apply`` inside the replica context all-reduces
(sums) the gradients, so every worker applies the same mean gradient and the weights stay
identical. The reported loss is ``strategy.reduce(SUM, ...)``, the mean over all replicas.
BatchNorm moving statistics (not trained by gradients) are averaged over the workers after
every epoch.
Worker 0 (the chief) writes the run's outputs; every worker writes ``weights.npz``.
The custom step is not compiled with XLA, whatever ``jit_compile`` says; precision
``"auto"`` resolves as in :func:`~resprunet.training.train`.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..runtime import precision_policy
from .build import build_model, start_runtime
from .config import TrainConfig
from .data import build_training_data
from .losses import get_loss
from .metrics import psnr, ssim
from .optimizers import make_optimizer
from .runs import TrainResult, finish, read_history

log = logging.getLogger(__name__)


def worker_index() -> int:
    """This worker's index in ``TF_CONFIG`` (0 when unset)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return int(task.get("index", 0))


def _make_step(strategy: Any, model: keras.Model, optimizer: Any, loss_fn: Any) -> Any:
    """The distributed training step: ``step(iterator) -> mean loss over all replicas``."""
    replicas = strategy.num_replicas_in_sync

    def replica_step(inputs: Any, clean: Any) -> Any:
        with tf.GradientTape() as tape:
            pred = model(inputs, training=True)
            loss = loss_fn(clean, pred) / replicas
            scaled = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)  # all-reduces in replica context
        return loss

    @tf.function
    def step(iterator: Any) -> Any:
        inputs, clean = next(iterator)
        per_replica = strategy.run(replica_step, args=(inputs, clean))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step


def _make_sync(strategy: Any, model: keras.Model) -> Any:
    """``sync()``: replace every worker's non-trainable float variables (BatchNorm moving
    statistics, updated from each worker's own batches) by their mean over the workers.

    The moving averages are linear in the batch statistics, so averaging them once (e.g. per
    epoch) equals averaging the statistics at every step; afterwards all workers hold the
    same model.
    """
    variables = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]

    @tf.function
    def sync() -> None:
        local = strategy.run(lambda: [tf.identity(v.value) for v in variables])
        for variable, values in zip(variables, local):
            variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None))

    return sync if variables else (lambda: None)


def _validate(model: keras.Model, dataset: Any) -> dict[str, float]:
    """Mean PSNR/SSIM of the model on the (local, fixed) validation batches."""
    psnrs, ssims = [], []
    for inputs, clean in dataset:
        pred = model(inputs, training=False)
        psnrs.append(keras.ops.convert_to_numpy(psnr(clean, pred)))
        ssims.append(keras.ops.convert_to_numpy(ssim(clean, pred)))
    return {"val_psnr": float(np.mean(np.concatenate(psnrs))),
            "val_ssim": float(np.mean(np.concatenate(ssims)))}


def save_weights_npz(model: keras.Model, path: Path) -> None:
    """All model weights (trainable and not) as ``w0000, w0001, ...`` arrays in an ``.npz``."""
    arrays = {f"w{i:04d}": keras.ops.convert_to_numpy(w) for i, w in enumerate(model.weights)}
    np.savez(path, **arrays)


def train_multiworker(config: TrainConfig, run_dir: Path) -> Any:
    """Train with ``MultiWorkerMirroredStrategy`` and the custom step; see the module notes.

    Parameters
    ----------
    config : TrainConfig
        ``data.batch_size`` is the global batch, split evenly over the replicas (one per
        worker); each worker's training stream is seeded with ``seed + 1000 * worker index``.
    run_dir : Path
        This worker's run directory: ``metrics.csv`` (epoch, loss, val_psnr, val_ssim),
        ``weights.npz``; the chief also writes ``model.keras``, ``tb/`` scalars and
        ``final_metrics.json``.

    Returns
    -------
    TrainResult
    """
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TF op
    replicas = strategy.num_replicas_in_sync
    if config.data.batch_size % replicas:
        raise ValueError(
            f"config data.batch_size={config.data.batch_size} must be a multiple of the "
            f"{replicas} replicas"
        )
    chief = worker_index() == 0
    if config.jit_compile is True:
        log.warning("jit_compile=True is ignored with strategy multiworker: its custom step runs without XLA")
    precision = start_runtime(config, run_dir, jit_compile=False)
    with precision_policy(precision):
        keras.utils.set_random_seed(config.seed)  # same initial weights on every worker
        data = build_training_data(
            config.data, config.seed, config.callbacks.panel_samples,
            batch_size=config.data.batch_size // replicas,
            stream_seed=config.seed + 1000 * worker_index(),
            noise_level=bool(config.model.options.get("noise_map")),
            context=int(config.model.options.get("context", 0)),
            channels=int(config.model.options.get("channels", 1)),
        )
        train_ds = strategy.distribute_datasets_from_function(lambda context: data.train)
        steps = -(-config.data.patches_per_epoch // config.data.batch_size)
        with strategy.scope():
            model = build_model(config)
            optimizer = make_optimizer(config.optimizer, config.epochs * steps)
            if precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
        step = _make_step(strategy, model, optimizer, get_loss(config.loss))
        sync = _make_sync(strategy, model)
        writer = tf.summary.create_file_writer(str(run_dir / "tb" / "train")) if chief else None
        start = time.perf_counter()
        with (run_dir / "metrics.csv").open("w", newline="") as f:
            log = csv.writer(f)
            log.writerow(["epoch", "loss", "val_psnr", "val_ssim"])
            for epoch in range(config.epochs):
                iterator = iter(train_ds)  # a fresh pass: new crops and noise
                losses = [float(step(iterator)) for _ in range(steps)]
                sync()
                row = {"loss": float(np.mean(losses)), **_validate(model, data.val)}
                log.writerow([epoch, row["loss"], row["val_psnr"], row["val_ssim"]])
                f.flush()
                print(f"worker {worker_index()} epoch {epoch + 1}/{config.epochs}: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
                if writer is not None:
                    with writer.as_default():
                        for key, value in row.items():
                            tf.summary.scalar(f"epoch_{key}", value, step=epoch)
        seconds = time.perf_counter() - start
        save_weights_npz(model, run_dir / "weights.npz")
        if chief:
            return finish(model, config, run_dir, data, seconds)
        return TrainResult(run_dir, read_history(run_dir / "metrics.csv"), {"train_seconds": seconds})
