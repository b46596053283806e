"""Training losses: MSE, MAE and the L1 + SSIM mix (``get_loss(name)``), and the masked MSE of
blind-spot training (:func:`masked_mse`)."""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

from .metrics import ssim


@keras.saving.register_keras_serializable(package="resprunet")
class L1SSIMLoss(keras.losses.Loss):
    """``alpha * (1 - SSIM) + (1 - alpha) * L1`` per sample (Zhao et al. 2017 use alpha 0.84).

    SSIM is 2D for (batch, y, x, c) and 3D for (batch, z, y, x, c) tensors, at ``data_range``
    (:func:`~resprunet.training.metrics.ssim`: y and x >= 11; a slab thinner than 11 slices is
    scored slice by slice).
    """

    def __init__(
        self, alpha: float = 0.84, data_range: float = 1.0, name: str = "l1_ssim", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"L1SSIMLoss alpha={alpha!r} must be in [0, 1]")
        self.alpha = alpha
        self.data_range = data_range

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        axes = tuple(range(1, len(y_true.shape)))
        l1 = ops.mean(ops.abs(y_true - y_pred), axis=axes) / self.data_range
        return self.alpha * (1.0 - ssim(y_true, y_pred, self.data_range)) + (1.0 - self.alpha) * l1

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "data_range": self.data_range}


@keras.saving.register_keras_serializable(package="resprunet")
def masked_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error over the masked voxels of each sample (blind-spot training).

    Parameters
    ----------
    y_true : tensor, shape (batch, *spatial, c + 1)
        The unmasked noisy patch (``c`` channels) with the mask (1 at masked voxels, else 0)
        as last channel, as served by ``data_pipelines.BlindSpot.training_pair``.
    y_pred : tensor, shape (batch, *spatial, c)
        The network's output for the masked patch.

    Returns
    -------
    tensor, shape (batch,)
        ``sum(mask * (y_pred - noisy)**2) / (c * sum(mask))`` per sample (0 for a sample
        without masked voxels); unmasked voxels do not enter it.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    target, mask = y_true[..., :-1], y_true[..., -1:]
    axes = tuple(range(1, len(y_pred.shape)))
    squared = ops.where(mask > 0, ops.square(y_pred - target), 0.0)
    count = ops.sum(mask, axis=axes) * ops.cast(ops.shape(target)[-1], "float32")
    return ops.sum(squared, axis=axes) / ops.maximum(count, 1.0)


def get_loss(name: str) -> keras.losses.Loss:
    """Return the loss named ``"mse"``, ``"mae"`` or ``"l1_ssim"``.

    Raises
    ------
    ValueError
        For any other name.
    """
    losses = {
        "mse": lambda: keras.losses.MeanSquaredError(name="mse"),
        "mae": lambda: keras.losses.MeanAbsoluteError(name="mae"),
        "l1_ssim": L1SSIMLoss,
    }
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(losses)}")
    return losses[name]()
