"""Keras callbacks of a training run: TensorBoard (scalars, histograms, profiler, image panel),
best-PSNR checkpoint, early stopping, CSV log and backup/restore for resuming a killed run."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .config import TrainConfig
from .runs import read_history

PANEL_GAP = 2  # pixels between panel tiles


def _display(image: np.ndarray) -> np.ndarray:
    """(h, w, c) -> (h, w, 1 or 3) in [0, 1] for ``tf.summary.image``."""
    if image.shape[-1] not in (1, 3):
        image = image[..., :1]
    return np.clip(image, 0.0, 1.0)


def _views(sample: np.ndarray) -> list[np.ndarray]:
    """The 2D views of one sample: itself (2D), or its middle axial, coronal, sagittal slices."""
    if sample.ndim == 3:
        return [sample]
    z, y, x = sample.shape[:3]
    return [sample[z // 2], sample[:, y // 2], sample[:, :, x // 2]]


def _pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)))


def panel_image(columns: list[np.ndarray]) -> np.ndarray:
    """Lay out one sample's images side by side (e.g. noisy | prior | denoised | clean).

    Parameters
    ----------
    columns : list of np.ndarray
        Same-shaped images, (y, x, c) for 2D or (z, y, x, c) for 3D, normalised to [0, 1].

    Returns
    -------
    np.ndarray, shape (height, width, 1 or 3)
        One row per view (2D: the image; 3D: the middle axial (y, x), coronal (z, x) and
        sagittal (z, y) slices), columns in the given order, zero-padded to a common size.
    """
    rows = []
    for views in zip(*(_views(np.asarray(c, dtype=np.float32)) for c in columns)):
        h = max(v.shape[0] for v in views)
        tiles = [_pad(_display(v), h, v.shape[1] + PANEL_GAP) for v in views]
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [_pad(r, r.shape[0] + PANEL_GAP, width) for r in rows]
    return np.concatenate(rows, axis=0)


class ImagePanel(keras.callbacks.Callback):
    """Write ``noisy | prior | denoised | clean`` of fixed validation samples to TensorBoard.

    Parameters
    ----------
    log_dir : str or Path
        TensorBoard folder; images go to ``<log_dir>/images`` under the tag ``"panel"``,
        one step per epoch.
    inputs : np.ndarray or dict
        Model input of a fixed batch: the noisy batch, or ``{"noisy": ..., "prior": ...}``.
    clean : np.ndarray
        The clean batch, (n, *spatial, c).
    """

    def __init__(self, log_dir: str | Path, inputs: Any, clean: np.ndarray) -> None:
        super().__init__()
        self.log_dir = str(Path(log_dir) / "images")
        self.inputs = inputs
        self.clean = np.asarray(clean)
        self._writer: Any = None

    def _columns(self, denoised: np.ndarray) -> list[np.ndarray]:
        if isinstance(self.inputs, dict):
            return [self.inputs["noisy"], self.inputs["prior"], denoised, self.clean]
        return [self.inputs, denoised, self.clean]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        denoised = keras.ops.convert_to_numpy(self.model(self.inputs, training=False))
        columns = self._columns(denoised.astype(np.float32))
        images = np.stack([panel_image([c[i] for c in columns]) for i in range(len(self.clean))])
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(
                "panel", images, step=epoch, max_outputs=len(images),
                description="noisy | prior | denoised | clean (3D: axial, coronal, sagittal rows)",
            )
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class LearningRateLog(keras.callbacks.Callback):
    """Add the optimizer's current learning rate to the epoch logs (so the CSV log has it)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            logs["learning_rate"] = float(rate)


def best_logged(csv_path: Path, key: str) -> float | None:
    """Largest finite value of column ``key`` in a CSV log, or None (no file, column or value)."""
    values = [v for v in read_history(csv_path).get(key, []) if math.isfinite(v)]
    return max(values) if values else None


def make_callbacks(config: TrainConfig, run_dir: Path, panel: tuple[Any, np.ndarray] | None) -> list:
    """The callbacks of a ``model.fit`` run, in the order they must run at each epoch end.

    Parameters
    ----------
    config : TrainConfig
        Uses ``callbacks``, ``early_stopping``.
    run_dir : Path
        Run directory: ``metrics.csv``, ``tb/``, ``checkpoints/best.keras``, ``backup/``.
    panel : (inputs, clean) or None
        Fixed validation batch of the image panel (None: no panel).

    Returns
    -------
    list of keras.callbacks.Callback
        Learning-rate log, CSV log (appending, so a resumed run continues it), TensorBoard
        (scalars, weight histograms every ``histogram_freq`` epochs, profiler over
        ``profile_batch``), image panel, best-``val_psnr`` checkpoint, early stopping, and
        last ``BackupAndRestore`` (so an epoch's logs are complete before its backup marks
        it done).
    """
    cb = config.callbacks
    csv_path = run_dir / "metrics.csv"
    best_so_far = best_logged(csv_path, "val_psnr")  # a resumed run keeps its best checkpoint
    callbacks: list = [
        LearningRateLog(),
        keras.callbacks.CSVLogger(str(csv_path), append=True),
        keras.callbacks.TensorBoard(
            log_dir=str(run_dir / "tb"),
            histogram_freq=cb.histogram_freq,
            profile_batch=tuple(cb.profile_batch) if cb.profile_batch else 0,
        ),
    ]
    if panel is not None:
        callbacks.append(ImagePanel(run_dir / "tb", *panel))
    callbacks.append(
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.keras"),
            monitor="val_psnr",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        )
    )
    es = config.early_stopping
    if es.patience > 0:
        mode = "min" if es.monitor.endswith("loss") else "max"
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor, patience=es.patience, min_delta=es.min_delta, mode=mode,
                restore_best_weights=True,
            )
        )
    callbacks.append(keras.callbacks.BackupAndRestore(str(run_dir / "backup")))
    return callbacks
