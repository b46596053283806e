"""A plain residual network at full resolution (no downsampling)."""
from __future__ import annotations

import keras
from keras import layers

from .blocks import (
    KerasTensor,
    check_ndim,
    check_positive,
    conv,
    conv_unit,
    image_input,
    output_head,
)


def residual_unit(x: KerasTensor, ndim: int, filters: int, batch_norm: bool = True) -> KerasTensor:
    """Residual unit: conv-BN-ReLU-conv-BN plus the skip, then ReLU (3x3 convolutions).

    The skip is the input itself, or a 1x1 convolution of it when its channel count differs
    from ``filters`` (projection shortcut).

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (c,)``.
    ndim : int
        Spatial dimensions, 2 or 3.
    filters : int
        Output channels.
    batch_norm : bool
        Batch normalisation after each convolution.

    Returns
    -------
    KerasTensor
        ``(batch,) + spatial + (filters,)``.
    """
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = conv(ndim, filters, 1)(x)
    y = conv_unit(x, ndim, filters, batch_norm=batch_norm)
    y = conv_unit(y, ndim, filters, batch_norm=batch_norm, activation=None)
    y = layers.Add()([shortcut, y])
    return layers.Activation("relu")(y)


def resnet(
    ndim: int = 2,
    *,
    channels: int = 1,
    filters: int = 32,
    blocks: int = 4,
    batch_norm: bool = True,
    residual: bool = True,
    final_activation: str | None = None,
) -> keras.Model:
    """Build a residual denoiser: ``blocks`` residual units of width ``filters``, then 1x1 conv.

    The first unit projects the input channels to ``filters`` with a 1x1 shortcut; the
    others use identity shortcuts. With ``residual`` the network's output is added to its
    input (global residual, ``out = noisy + net(noisy)``).

    Parameters
    ----------
    ndim : int
        2 for images ``(batch, y, x, channels)``, 3 for volumes ``(batch, z, y, x, channels)``.
    channels : int
        Input and output channels.
    filters : int
        Width of every residual unit.
    blocks : int
        Number of residual units (each has two 3x3 convolutions).
    batch_norm : bool
        Batch normalisation after each convolution of the units.
    residual : bool
        Global residual connection from the input to the output.
    final_activation : {None, "sigmoid", "relu"}
        Applied last (after the global residual sum).

    Returns
    -------
    keras.Model
        Named ``"resnet"``, one input ``"noisy"``, float32 output of the input's shape
        (no downsampling: any spatial size works).
    """
    check_ndim(ndim)
    check_positive("filters", filters)
    check_positive("blocks", blocks)
    noisy = image_input(ndim, channels, "noisy")
    x = noisy
    for _ in range(blocks):
        x = residual_unit(x, ndim, filters, batch_norm)
    out = output_head(
        x, ndim, channels, skip=noisy if residual else None, final_activation=final_activation
    )
    return keras.Model(noisy, out, name="resnet")
