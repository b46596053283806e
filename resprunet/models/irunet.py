"""IRUNet: inception/reduction multiscale encoder-decoder (2D, and 3D with ``ndim=3``)."""
from __future__ import annotations

import keras
from keras import layers

from .blocks import (
    KerasTensor,
    average_pool,
    check_ndim,
    check_positive,
    conv,
    image_input,
    output_head,
)

REDUCTIONS = 4
_HE = "he_uniform"  # initialiser of the ReLU convolutions, as in the original
# decoder stage (1-based) -> encoder level whose output is added after that stage
_DECODER_SKIPS = {2: 2, 3: 1}


def inception_block(x: KerasTensor, ndim: int, filters: int) -> KerasTensor:
    """IRUNet inception block (keeps resolution and width).

    Three 3x3 branches on ``x`` (``f``; ``2f``; ``f`` with dilation 2; ReLU, he_uniform),
    concatenated, 1x1 conv to ``f`` (linear), added to ``x``.

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (filters,)``.
    ndim : int
        Spatial dimensions, 2 or 3.
    filters : int
        ``f``.

    Returns
    -------
    KerasTensor
        Same shape as ``x``.
    """
    branches = [
        conv(ndim, width, 3, dilation_rate=dilation, activation="relu", kernel_initializer=_HE)(x)
        for width, dilation in ((filters, 1), (2 * filters, 1), (filters, 2))
    ]
    y = conv(ndim, filters, 1)(layers.Concatenate()(branches))
    return layers.Add()([x, y])


def reduction_block(x: KerasTensor, ndim: int, filters: int) -> KerasTensor:
    """IRUNet reduction block (halves the resolution).

    Shortcut: 2x2 stride-2 conv ``f`` (linear). Branches: 3x3 stride-2 conv ``f`` and ``2f``
    (ReLU, he_uniform) and 2x2 average pooling, concatenated, 1x1 conv to ``f``, added to the
    shortcut.

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (filters,)``, spatial sizes even.
    ndim : int
        Spatial dimensions, 2 or 3.
    filters : int
        ``f``.

    Returns
    -------
    KerasTensor
        ``(batch,) + spatial / 2 + (filters,)``.
    """
    shortcut = conv(ndim, filters, 2, strides=2)(x)
    branches = [
        conv(ndim, width, 3, strides=2, activation="relu", kernel_initializer=_HE)(x)
        for width in (filters, 2 * filters)
    ]
    branches.append(average_pool(ndim)(x))
    y = conv(ndim, filters, 1)(layers.Concatenate()(branches))
    return layers.Add()([shortcut, y])


def irunet(
    ndim: int = 2,
    *,
    channels: int = 1,
    filters: int = 16,
    final_activation: str | None = "sigmoid",
    noise_map: bool = False,
) -> keras.Model:
    """Build IRUNet (inception-residual U-Net) for 2D images or 3D volumes.

    Head 3x3 conv ``f`` (ReLU); encoder 4 x (reduction, inception), giving levels 1..4 at
    1/2..1/16 resolution; decoder 4 x (2x2 stride-2 transposed conv ``f`` with ReLU,
    inception), adding the encoder outputs of levels 2 and 1 after the 2nd and 3rd decoder
    stages; 1x1 conv to the input's channels with a sigmoid. With ``f=16`` and 3 channels
    (2D) it has 123,379 parameters. Spatial sizes must be multiples of 16.

    Parameters
    ----------
    ndim : int
        2 for images ``(batch, y, x, channels)``, 3 for volumes ``(batch, z, y, x, channels)``.
    channels : int
        Input and output channels.
    filters : int
        ``f``, the width of every block.
    final_activation : {None, "sigmoid", "relu"}
        Output activation (the original uses a sigmoid: outputs in [0, 1]).
    noise_map : bool
        Condition on the noise level (not in the original): a second input ``"sigma"`` (one
        channel, the noise standard deviation of each pixel in normalised units) is
        concatenated to ``"noisy"`` before the head convolution, as in the U-Net.

    Returns
    -------
    keras.Model
        Named ``"irunet"``, input ``"noisy"`` (and ``"sigma"`` of ``(None,) * ndim + (1,)``
        with ``noise_map``), float32 output of the shape of ``"noisy"``.
    """
    check_ndim(ndim)
    check_positive("filters", filters)
    noisy = image_input(ndim, channels, "noisy")
    inputs = [noisy, image_input(ndim, 1, "sigma")] if noise_map else [noisy]
    head_input = layers.Concatenate(name="inputs")(inputs) if noise_map else noisy
    x = conv(ndim, filters, 3, activation="relu", kernel_initializer=_HE)(head_input)
    levels = []
    for _ in range(REDUCTIONS):
        x = inception_block(reduction_block(x, ndim, filters), ndim, filters)
        levels.append(x)
    for stage in range(1, REDUCTIONS + 1):
        x = conv(ndim, filters, 2, strides=2, activation="relu", transpose=True)(x)
        x = inception_block(x, ndim, filters)
        if stage in _DECODER_SKIPS:
            x = layers.Add()([x, levels[_DECODER_SKIPS[stage] - 1]])
    out = output_head(x, ndim, channels, final_activation=final_activation)
    return keras.Model(inputs if noise_map else noisy, out, name="irunet")
