"""U-Net for 2D images and 3D volumes (one builder, ``ndim`` picks the dimensionality)."""
from __future__ import annotations

import keras
from keras import layers

from .blocks import (
    FINAL_ACTIVATIONS,
    KerasTensor,
    check_choice,
    check_ndim,
    check_positive,
    conv_unit,
    image_input,
    average_pool,
    max_pool,
    output_head,
    upsample,
)

UPSAMPLING = ("nearest", "linear", "transpose")
POOLING = ("max", "conv", "blur")


def check_unet_options(
    ndim: int, depth: int, filters: int, upsampling: str, pooling: str, final_activation: str | None
) -> None:
    """Validate the options shared by :func:`unet` and :func:`respr_unet`."""
    check_ndim(ndim)
    check_positive("depth", depth)
    check_positive("filters", filters)
    check_choice("upsampling", upsampling, UPSAMPLING)
    check_choice("pooling", pooling, POOLING)
    check_choice("final_activation", final_activation, FINAL_ACTIVATIONS)


def _smooth(x: KerasTensor, ndim: int) -> KerasTensor:
    """[1, 2, 1] / 4 low-pass along every axis, centred, keeping the size: one zero voxel added
    on each side, then two 2-voxel average poolings ("valid", each shifting by half a voxel).

    (Padding after the poolings would put a Pad right before the next Conv3D, a pair that
    TensorFlow 2.x's oneDNN graph remapper fuses wrongly on CPUs: the 3D output lost 2 voxels.)
    """
    mean = layers.AveragePooling2D if ndim == 2 else layers.AveragePooling3D
    pad = layers.ZeroPadding2D if ndim == 2 else layers.ZeroPadding3D
    return mean(2, strides=1)(mean(2, strides=1)(pad(1)(x)))


def blur_pool(x: KerasTensor, ndim: int) -> KerasTensor:
    """2x max-blur-pool (N2V2, Hoeck et al. 2022; Zhang 2019): max over each 2-voxel window at
    stride 1, a centred [1, 2, 1] / 4 low-pass along every axis (:func:`_smooth`), then the
    mean of each 2-voxel block (a [1, 1] / 2 filter at stride 2; aligned like plain 2x pooling).

    Only built-in pooling and padding layers, no weights; the voxels next to the border see
    zeros beyond it, as a "same" convolution does.

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (c,)``, even spatial sizes >= 2.

    Returns
    -------
    KerasTensor
        ``(batch,) + spatial / 2 + (c,)``.
    """
    maximum = layers.MaxPooling2D if ndim == 2 else layers.MaxPooling3D
    x = maximum(2, strides=1, padding="same")(x)
    return average_pool(ndim)(_smooth(x, ndim))


def linear_upsample(x: KerasTensor, ndim: int) -> KerasTensor:
    """2x (bi/tri)linear upsampling: nearest upsampling, then the centred [1, 2, 1] / 4
    low-pass (:func:`_smooth`), which gives each new voxel 3/4 of its own coarse voxel and
    1/4 of the next one along each axis (half-voxel centres). Unlike nearest upsampling it
    leaves no 2-voxel blocks whose parity a following ReLU network can turn into a
    checkerboard.

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (c,)``.

    Returns
    -------
    KerasTensor
        ``(batch,) + 2 * spatial + (c,)``.
    """
    return _smooth(upsample(ndim)(x), ndim)


def _up_stage(
    x: KerasTensor, ndim: int, width: int, out_width: int, batch_norm: bool, upsampling: str
) -> KerasTensor:
    """Leave a level of width ``width`` upwards, arriving with ``out_width`` channels."""
    if upsampling in ("nearest", "linear"):
        # The original ResPr-UNet order: the channel-reducing 3x3 conv runs at the coarse
        # resolution, then nearest upsampling (same weights as upsample-then-conv, less compute).
        x = conv_unit(x, ndim, out_width, batch_norm=batch_norm)
        return upsample(ndim)(x) if upsampling == "nearest" else linear_upsample(x, ndim)
    x = conv_unit(x, ndim, width, batch_norm=batch_norm)
    return conv_unit(
        x, ndim, out_width, kernel_size=2, strides=2, batch_norm=batch_norm, transpose=True
    )


def unet_features(
    x: KerasTensor,
    ndim: int,
    *,
    depth: int,
    filters: int,
    batch_norm: bool,
    upsampling: str,
    pooling: str,
    top_skip: bool = True,
) -> KerasTensor:
    """The U-Net trunk: encoder, bottom and decoder, returning ``filters`` feature channels.

    Level ``i`` (0 = full resolution) has ``filters * 2**i`` channels; there are ``depth``
    downsamplings, so ``depth + 1`` resolution levels and spatial sizes must be multiples of
    ``2**depth``. Encoder level: two 3x3 conv units, kept as skip, then 2x max pooling or a
    2x2 stride-2 conv unit, or a max-blur-pool (:func:`blur_pool`). Bottom and decoder
    levels: a 3x3 conv unit of the level's width,
    then the way up to the next finer level (``"nearest"``/``"linear"``: 3x3 conv unit to the
    finer width, then 2x nearest/linear upsampling; ``"transpose"``: 3x3 conv unit, then a 2x2 stride-2 transposed
    conv unit to the finer width), concatenated with the skip (except at the finest level
    when not ``top_skip``). The finest decoder level ends
    with two 3x3 conv units of ``filters`` channels. A conv unit is conv, optional batch norm, ReLU.

    Parameters
    ----------
    x : KerasTensor
        ``(batch,) + spatial + (c,)``, spatial sizes multiples of ``2**depth``.
    ndim : int
        Spatial dimensions, 2 or 3.
    depth, filters, batch_norm, upsampling, pooling, top_skip
        As for :func:`unet`.

    Returns
    -------
    KerasTensor
        ``(batch,) + spatial + (filters,)``.
    """
    widths = [filters * 2**level for level in range(depth + 1)]
    skips = []
    for level in range(depth):
        x = conv_unit(x, ndim, widths[level], batch_norm=batch_norm)
        x = conv_unit(x, ndim, widths[level], batch_norm=batch_norm)
        skips.append(x)
        if pooling == "max":
            x = max_pool(ndim)(x)
        elif pooling == "blur":
            x = blur_pool(x, ndim)
        else:
            x = conv_unit(x, ndim, widths[level], kernel_size=2, strides=2, batch_norm=batch_norm)
    for level in range(depth, 0, -1):
        x = conv_unit(x, ndim, widths[level], batch_norm=batch_norm)
        x = _up_stage(x, ndim, widths[level], widths[level - 1], batch_norm, upsampling)
        if level > 1 or top_skip:
            x = layers.Concatenate()([skips[level - 1], x])
    x = conv_unit(x, ndim, widths[0], batch_norm=batch_norm)
    return conv_unit(x, ndim, widths[0], batch_norm=batch_norm)


def unet(
    ndim: int = 2,
    *,
    channels: int = 1,
    filters: int = 32,
    depth: int = 3,
    batch_norm: bool = True,
    upsampling: str = "nearest",
    pooling: str = "max",
    residual: bool = True,
    final_activation: str | None = None,
    noise_map: bool = False,
    context: int = 0,
    top_skip: bool = True,
) -> keras.Model:
    """Build a 2D or 3D U-Net denoiser.

    Project defaults: 4 resolution levels (``depth=3``), batch normalisation, global residual
    (``out = noisy + net(noisy)``), 32 base filters. The ``seed`` preset (the original
    ResPr-UNet code's U-Net: 3 resolution levels = ``depth=2``, no batch norm, no residual,
    max pooling, nearest upsampling) has 332,641 parameters in 2D and 996,769 in 3D.
    N2V2 (Hoeck et al. 2022, against the checkerboard artefacts of blind-spot training) is
    ``pooling="blur", top_skip=False, residual=False`` with linear upsampling (preset "n2v2").

    Parameters
    ----------
    ndim : int
        2 for images ``(batch, y, x, channels)``, 3 for volumes ``(batch, z, y, x, channels)``.
    channels : int
        Input and output channels.
    filters : int
        Channels of the full-resolution level; doubled at every coarser level.
    depth : int
        Number of 2x downsamplings. Every spatial size must be a multiple of ``2**depth``.
    batch_norm : bool
        Batch normalisation after every convolution (before its ReLU).
    upsampling : {"nearest", "linear", "transpose"}
        Nearest or linear upsampling (:func:`linear_upsample`) with a 3x3 convolution, or a
        2x2 stride-2 transposed convolution.
    pooling : {"max", "conv", "blur"}
        2x max pooling, a learned 2x2 stride-2 convolution, or max-blur-pooling (max at
        stride 1, a fixed [1, 2, 1] low-pass, then stride 2: :func:`blur_pool`).
    residual : bool
        Add the input to the output (the network learns the noise).
    final_activation : {None, "sigmoid", "relu"}
        Applied last (after the residual sum).
    noise_map : bool
        Condition on the noise level: a second input ``"sigma"`` (one channel, the noise
        standard deviation of each voxel in normalised units; a constant map for white
        noise) is concatenated to ``"noisy"``, so one blind model adapts to every level.
    context : int
        2D only, "2.5D": a third input ``"context"`` holding the ``context`` noisy slices
        above and below each slice (``2 * context * channels`` channels, nearest first:
        z-1, z+1, z-2, z+2, ...; zeros beyond the volume) is concatenated to ``"noisy"``,
        so a 2D network sees the neighbouring slices of a thick-slice volume. 0: none.
    top_skip : bool
        Concatenate the full-resolution encoder features into the last decoder level (the
        U-Net's top skip connection); N2V2 drops it.

    Returns
    -------
    keras.Model
        Named ``"unet"``, input ``"noisy"`` of shape ``(None,) * ndim + (channels,)`` (and
        ``"sigma"`` of ``(None,) * ndim + (1,)`` with ``noise_map``, ``"context"`` with
        ``context``), float32 output of the shape of ``"noisy"``.
    """
    check_unet_options(ndim, depth, filters, upsampling, pooling, final_activation)
    if context and ndim != 2:
        raise ValueError(f"context (neighbouring slices as channels) is for 2D models; got ndim={ndim}")
    check_positive("context", context + 1)
    noisy = image_input(ndim, channels, "noisy")
    inputs = [noisy]
    if noise_map:
        inputs.append(image_input(ndim, 1, "sigma"))
    if context:
        inputs.append(image_input(ndim, 2 * context * channels, "context"))
    features = unet_features(
        layers.Concatenate(name="inputs")(inputs) if len(inputs) > 1 else noisy,
        ndim,
        depth=depth,
        filters=filters,
        batch_norm=batch_norm,
        upsampling=upsampling,
        pooling=pooling,
        top_skip=top_skip,
    )
    out = output_head(
        features,
        ndim,
        channels,
        skip=noisy if residual else None,
        final_activation=final_activation,
    )
    return keras.Model(inputs if len(inputs) > 1 else noisy, out, name="unet")
