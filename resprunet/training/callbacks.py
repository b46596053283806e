"""Keras callbacks of a training run: TensorBoard (scalars, histograms, profiler, image panel),
best-PSNR checkpoint, early stopping, CSV log, throughput log and backup/restore for resuming
a killed run."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from .config import NOISY_ONLY_METHODS, TrainConfig
from .runs import read_history

PANEL_GAP = 2  # pixels between panel tiles

log = logging.getLogger(__name__)


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


LABEL_HEIGHT = 14  # pixels of the strip holding the column labels
LABEL_SLOT = 64  # a panel is enlarged (integer factor, at most 4) until each column is this wide
ROW_LABEL_WIDTH = 16  # pixels of the margin holding a 3D panel's view names (xy, xz, yz)
VIEW_NAMES = ("xy", "xz", "yz")


def _text_mask(text_at: list[tuple[int, int, str]], height: int, width: int) -> np.ndarray:
    """(height, width) float mask in [0, 1] of white text, each string centred on (row, col)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for row, col, text in text_at:
        draw.text((col, row), text, fill=255, font=font, anchor="mm")
    return np.asarray(canvas, dtype=np.float32) / 255.0


def labelled_panel(columns: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """:func:`panel_image` with its column labels written above it (and, for 3D samples, the
    view names xy, xz, yz to the left of their rows), enlarged so the labels fit.

    Parameters
    ----------
    columns : list of np.ndarray
        As for :func:`panel_image`.
    labels : list of str
        One short label per column (e.g. "noisy", "denoised").

    Returns
    -------
    np.ndarray, shape (height, width, 1 or 3)
        In [0, 1]: a ``LABEL_HEIGHT`` strip of labels over the panel, which is enlarged by
        the integer factor (1 to 4) that makes each column at least ``LABEL_SLOT`` pixels
        wide (nearest neighbour); 3D samples get a ``ROW_LABEL_WIDTH`` margin on the left.
    """
    if len(labels) != len(columns):
        raise ValueError(f"{len(labels)} labels for {len(columns)} columns")
    panel = panel_image(columns)
    views = _views(np.asarray(columns[0]))
    slot = views[0].shape[1] + PANEL_GAP  # a column's width in the first row
    scale = int(min(4, max(1, -(-LABEL_SLOT // slot))))
    panel = np.repeat(np.repeat(panel, scale, axis=0), scale, axis=1)
    left = ROW_LABEL_WIDTH if len(views) > 1 else 0
    height, width = panel.shape[0] + LABEL_HEIGHT, panel.shape[1] + left
    text = [(LABEL_HEIGHT // 2, left + int((k + 0.5) * slot * scale), label) for k, label in enumerate(labels)]
    if left:
        tops = np.cumsum([0] + [v.shape[0] + PANEL_GAP for v in views])
        text += [(LABEL_HEIGHT + int((top + v.shape[0] / 2) * scale), left // 2, name)
                 for top, v, name in zip(tops, views, VIEW_NAMES)]
    out = np.zeros((height, width, panel.shape[-1]), np.float32)
    out[LABEL_HEIGHT:, left:] = panel
    return np.maximum(out, _text_mask(text, height, width)[..., None])


class ImagePanel(keras.callbacks.Callback):
    """Write labelled ``noisy | [prior |] denoised | clean`` panels of fixed validation samples
    to TensorBoard (the prior column only for a model with a prior input, the clean column
    only when there is a clean image: not in blind-spot training).

    Parameters
    ----------
    log_dir : str or Path
        TensorBoard folder; images go to ``<log_dir>/images`` under the tag ``"panel"``,
        one step per epoch.
    inputs : np.ndarray or dict
        Model input of a fixed batch: the noisy batch, or ``{"noisy": ..., "prior": ...}``.
    clean : np.ndarray or None
        The clean batch, (n, *spatial, c); None when there is none.
    """

    def __init__(self, log_dir: str | Path, inputs: Any, clean: np.ndarray | None) -> None:
        super().__init__()
        self.log_dir = str(Path(log_dir) / "images")
        self.inputs = inputs
        self.clean = None if clean is None else np.asarray(clean)
        self._writer: Any = None

    def _columns(self, denoised: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
        """The panel's columns and their labels."""
        clean = ([], []) if self.clean is None else ([self.clean], ["clean"])
        if isinstance(self.inputs, dict):  # the prior, if any; never the noise-level map
            shown = [k for k in ("noisy", "prior") if k in self.inputs]
            return [*(self.inputs[k] for k in shown), denoised, *clean[0]], [*shown, "denoised", *clean[1]]
        return [self.inputs, denoised, *clean[0]], ["noisy", "denoised", *clean[1]]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        denoised = keras.ops.convert_to_numpy(self.model(self.inputs, training=False))
        columns, labels = self._columns(denoised.astype(np.float32))
        images = np.stack([labelled_panel([c[i] for c in columns], labels) for i in range(len(denoised))])
        rows = " (rows: the middle xy, xz and yz slices)" if denoised.ndim == 5 else ""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            tf.summary.image(
                "panel", images, step=epoch, max_outputs=len(images),
                description=" | ".join(labels) + rows + ", one image per validation sample",
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


def format_duration(seconds: float) -> str:
    """``"1 h 02 min"``, ``"3 min 05 s"`` or ``"42 s"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class ThroughputLogger(keras.callbacks.Callback):
    """Log training speed and the time left, one plain line at a time (fine in log files).

    Every ``every_seconds`` (and/or every ``every_steps`` steps) it logs, with :mod:`logging`
    at INFO level::

        step 120/512 (epoch 2/8): 9.8 samples/s, 0.41 s/step, ETA 2 min 41 s

    and at the end of training one summary line. Speeds are averages since the end of the
    run's first step (which includes tracing and graph compilation), including validation
    and other callbacks, so the ETA is the time the run will take at this pace (an upper
    bound when early stopping ends it sooner). A resumed run counts from its first epoch.

    Parameters
    ----------
    batch_size : int
        Samples per step (the global batch).
    steps_per_epoch, epochs : int, optional
        The run's length; default: what ``model.fit`` reports in ``self.params``.
    every_seconds : float or None
        Log when this long has passed since the last line (None: not by time).
    every_steps : int or None
        Log every this many steps (None: not by steps).
    logger : logging.Logger, optional
        Default: this module's logger (``resprunet.training.callbacks``).
    """

    def __init__(self, batch_size: int, steps_per_epoch: int | None = None, epochs: int | None = None,
                 every_seconds: float | None = 30.0, every_steps: int | None = None,
                 logger: logging.Logger | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps={every_steps} must be at least 1 or None")
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.every_seconds = every_seconds
        self.every_steps = every_steps
        self.logger = logger or log
        self._epoch = 0
        self._first_step: int | None = None  # global step and time at the end of the first step
        self._first_time = 0.0
        self._last_log = 0.0
        self._step = 0

    def _lengths(self) -> tuple[int | None, int | None]:
        steps = self.steps_per_epoch or self.params.get("steps")
        epochs = self.epochs or self.params.get("epochs")
        return steps, epochs

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._first_step = None
        self._step = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        steps, epochs = self._lengths()
        self._step = self._epoch * steps + batch + 1 if steps else self._step + 1
        now = time.perf_counter()
        if self._first_step is None:
            self._first_step, self._first_time, self._last_log = self._step, now, now
            return
        by_time = self.every_seconds is not None and now - self._last_log >= self.every_seconds
        by_steps = self.every_steps is not None and self._step % self.every_steps == 0
        if not (by_time or by_steps):
            return
        self._last_log = now
        done = self._step - self._first_step
        seconds_per_step = (now - self._first_time) / done
        total = steps * epochs if steps and epochs else None
        position = f"step {self._step}" + (f"/{total}" if total else "")
        if epochs:
            position += f" (epoch {self._epoch + 1}/{epochs})"
        eta = f", ETA {format_duration((total - self._step) * seconds_per_step)}" if total else ""
        self.logger.info("%s: %.1f samples/s, %.3g s/step%s", position,
                         self.batch_size / seconds_per_step, seconds_per_step, eta)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._first_step is None or self._step <= self._first_step:
            return
        seconds = time.perf_counter() - self._first_time
        done = self._step - self._first_step
        self.logger.info("trained %d steps: %.1f samples/s, %.3g s/step (after the first step)",
                         self._step, self.batch_size * done / seconds, seconds / done)


def best_logged(csv_path: Path, key: str, mode: str = "max") -> float | None:
    """Best (``mode`` "max": largest, "min": smallest) finite value of column ``key`` in a CSV
    log, or None (no file, column or value)."""
    values = [v for v in read_history(csv_path).get(key, []) if math.isfinite(v)]
    return (max if mode == "max" else min)(values) if values else None


def make_callbacks(config: TrainConfig, run_dir: Path, panel: tuple[Any, np.ndarray] | None) -> list:
    """The callbacks of a ``model.fit`` run, in the order they must run at each epoch end.

    Parameters
    ----------
    config : TrainConfig
        Uses ``callbacks``, ``early_stopping``, ``epochs``, ``data.batch_size`` and
        ``data.patches_per_epoch``.
    run_dir : Path
        Run directory: ``metrics.csv``, ``tb/``, ``checkpoints/best.keras``, ``backup/``.
    panel : (inputs, clean) or None
        Fixed validation batch of the image panel (None: no panel).

    Returns
    -------
    list of keras.callbacks.Callback
        Throughput log (samples/s and ETA every 30 s, :class:`ThroughputLogger`),
        learning-rate log, CSV log (appending, so a resumed run continues it), TensorBoard
        (scalars, weight histograms every ``histogram_freq`` epochs, profiler over
        ``profile_batch``), image panel, best-``val_psnr`` checkpoint (methods trained on
        noisy data: lowest ``val_loss``; DivNoising: its inference model and
        ``noise_model.json``), early stopping, and
        last ``BackupAndRestore`` (so an epoch's logs are complete before its backup marks
        it done).
    """
    cb = config.callbacks
    csv_path = run_dir / "metrics.csv"
    monitor, mode = ("val_loss", "min") if config.method in NOISY_ONLY_METHODS else ("val_psnr", "max")
    best_so_far = best_logged(csv_path, monitor, mode)  # a resumed run keeps its best checkpoint
    steps_per_epoch = -(-config.data.patches_per_epoch // config.data.batch_size)
    callbacks: list = [
        ThroughputLogger(config.data.batch_size, steps_per_epoch, config.epochs),
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
    if config.method == "divnoising":  # the inference model (and its noise model), not the trainer
        from ..divnoising import BestInferenceModel

        callbacks.append(BestInferenceModel(run_dir / "checkpoints" / "best.keras", monitor, best_so_far))
    else:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                str(run_dir / "checkpoints" / "best.keras"),
                monitor=monitor,
                mode=mode,
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
