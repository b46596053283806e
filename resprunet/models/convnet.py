"""The original simple ConvNet: two 3x3 conv + ReLU layers and a 1x1 output layer."""
from __future__ import annotations

import keras

from .blocks import check_ndim, check_positive, conv, image_input, output_head


def convnet(
    ndim: int = 2,
    *,
    channels: int = 1,
    filters: int = 64,
    final_activation: str | None = "relu",
) -> keras.Model:
    """Build the simple 3-layer ConvNet of the original ResPr-UNet code.

    Layers: 3x3 conv ``filters`` + ReLU, 3x3 conv ``filters`` + ReLU, 1x1 conv to
    ``channels``. With 64 filters in 2D it has 37,633 parameters. The original code's output
    layer is linear (``preset="seed"`` sets ``final_activation=None``); the project default
    clips the output at 0 with a ReLU (denoised intensities in [0, 1] are not negative).

    Parameters
    ----------
    ndim : int
        2 for images ``(batch, y, x, channels)``, 3 for volumes ``(batch, z, y, x, channels)``.
    channels : int
        Input and output channels.
    filters : int
        Channels of the two hidden layers.
    final_activation : {None, "sigmoid", "relu"}
        Activation of the output layer.

    Returns
    -------
    keras.Model
        Named ``"convnet"``, one input ``"noisy"``, float32 output of the input's shape
        (no downsampling: any spatial size works).
    """
    check_ndim(ndim)
    check_positive("filters", filters)
    noisy = image_input(ndim, channels, "noisy")
    x = conv(ndim, filters, 3, activation="relu")(noisy)
    x = conv(ndim, filters, 3, activation="relu")(x)
    out = output_head(x, ndim, channels, final_activation=final_activation)
    return keras.Model(noisy, out, name="convnet")
