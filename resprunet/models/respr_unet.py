"""ResPr-UNet: a U-Net on (noisy, prior) whose output is added to the prior."""
from __future__ import annotations

import keras
from keras import layers

from .blocks import image_input, output_head
from .unet import check_unet_options, unet_features


def respr_unet(
    ndim: int = 2,
    *,
    channels: int = 1,
    filters: int = 32,
    depth: int = 3,
    batch_norm: bool = True,
    upsampling: str = "nearest",
    pooling: str = "max",
    final_activation: str | None = None,
) -> keras.Model:
    """Build a 2D or 3D ResPr-UNet: ``out = prior + unet(concat(noisy, prior))``.

    The U-Net trunk is that of :func:`~resprunet.models.unet.unet` (same options and project
    defaults: 4 resolution levels, batch normalisation); the prior replaces the noisy input in
    the global residual connection. The ``seed`` preset (the original's 3 resolution levels,
    32 filters, no batch norm) has 997,633 parameters in 3D.

    Parameters
    ----------
    ndim : int
        2 for images ``(batch, y, x, channels)``, 3 for volumes ``(batch, z, y, x, channels)``.
    channels : int
        Channels of each input and of the output.
    filters, depth, batch_norm, upsampling, pooling
        As for :func:`~resprunet.models.unet.unet`; spatial sizes must be multiples of ``2**depth``.
    final_activation : {None, "sigmoid", "relu"}
        Applied last (after adding the prior).

    Returns
    -------
    keras.Model
        Named ``"respr_unet"``, called with ``{"noisy": x, "prior": p}`` (both of shape
        ``(batch,) + spatial + (channels,)``), float32 output of the same shape.
    """
    check_unet_options(ndim, depth, filters, upsampling, pooling, final_activation)
    noisy = image_input(ndim, channels, "noisy")
    prior = image_input(ndim, channels, "prior")
    both = layers.Concatenate(name="noisy_prior")([noisy, prior])
    features = unet_features(
        both,
        ndim,
        depth=depth,
        filters=filters,
        batch_norm=batch_norm,
        upsampling=upsampling,
        pooling=pooling,
    )
    out = output_head(features, ndim, channels, skip=prior, final_activation=final_activation)
    return keras.Model({"noisy": noisy, "prior": prior}, out, name="respr_unet")
