"""Stop a training run after a time budget (the notebook's "training minutes")."""
from __future__ import annotations

import time

import keras

__all__ = ["TimeBudget"]


class TimeBudget(keras.callbacks.Callback):
    """End training after the first epoch that finishes past ``minutes`` of wall time.

    The epoch in progress always completes (its checkpoint and logs are written); the learning
    rate schedule is not shortened, so a run stopped early ends before the schedule's low rates.

    Parameters
    ----------
    minutes : float
        Budget in minutes of wall time, counted from the start of ``fit``; >= 0 (0: stop after
        the first epoch).
    """

    def __init__(self, minutes: float) -> None:
        super().__init__()
        if not minutes >= 0:
            raise ValueError(f"the training time budget must be >= 0 minutes, got {minutes}")
        self.minutes = float(minutes)
        self.stopped_epoch: int | None = None
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.monotonic()
        self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self._start >= 60.0 * self.minutes:
            self.model.stop_training = True
            self.stopped_epoch = epoch
