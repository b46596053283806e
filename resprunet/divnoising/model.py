"""The DivNoising VAE as one flat Keras functional model (encoder, reparameterisation, decoder).

Inputs (channels-last, free spatial size, every spatial size a multiple of ``2 ** depth``):

- ``"noisy"``: (batch, *spatial, channels), the noisy image in normalised units;
- ``"eps"``: (batch, *spatial, latent_channels), standard normal noise at the IMAGE's
  resolution. The model averages it over blocks of ``2 ** depth`` voxels per axis and
  multiplies by ``2 ** (depth * ndim / 2)``: the mean of ``k`` independent N(0, 1) values
  times ``sqrt(k)`` is exactly N(0, 1), so the latent noise is iid standard normal at the
  latent resolution. Keeping every input at the image's resolution lets the package's tiling
  and memory planning (:mod:`resprunet.inference`) treat the model like any other.

Graph (``ndim`` 2 or 3; ``f = filters``)::

    noisy -> [conv3 relu, conv3 relu, maxpool2] x depth (f, 2f, 4f, ...) -> conv3 "mu", conv3 "logvar"
    z = mu + exp(0.5 * logvar) * eps_latent                    (layer "z")
    z -> [conv3 relu, conv3 relu, conv-transpose2] x depth (..., 2f, f) -> conv3 "signal"

The reparameterisation is built from standard layers (Rescaling, Activation("exponential"),
Multiply, Add) in float32 (as are ``mu``, ``logvar`` and ``signal`` under a mixed-precision
policy), so the saved inference model (:func:`inference_model`) opens with
``keras.saving.load_model`` in safe mode without custom objects. After Prakash et al.,
"Fully unsupervised diversity denoising with convolutional variational autoencoders" (ICLR
2021), whose encoder and decoder have the same shape.
"""
from __future__ import annotations

from typing import Any

import keras
from keras import layers

__all__ = ["DEFAULT_OPTIONS", "build_divnoising", "check_options", "inference_model", "is_divnoising"]

#: Builder defaults (DivNoising's: 32 filters, depth 2; fewer latent channels than its 64).
DEFAULT_OPTIONS: dict[str, int] = {"channels": 1, "filters": 32, "depth": 2, "latent_channels": 32}


def check_options(options: dict[str, Any]) -> dict[str, int]:
    """:data:`DEFAULT_OPTIONS` updated with ``options``, each a whole number >= 1.

    Raises
    ------
    ValueError
        An unknown option or a value that is not a whole number >= 1.
    """
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown DivNoising option(s) {unknown}; expected some of {sorted(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"DivNoising option {key}={value!r} must be a whole number >= 1")
    return merged


def _layer_kinds(ndim: int) -> tuple[type, type, type, type]:
    if ndim == 2:
        return layers.Conv2D, layers.MaxPooling2D, layers.Conv2DTranspose, layers.AveragePooling2D
    if ndim == 3:
        return layers.Conv3D, layers.MaxPooling3D, layers.Conv3DTranspose, layers.AveragePooling3D
    raise ValueError(f"ndim={ndim!r} must be 2 (images) or 3 (volumes)")


def build_divnoising(ndim: int = 2, **options: Any) -> keras.Model:
    """Build the DivNoising VAE.

    Parameters
    ----------
    ndim : int
        2 for images (batch, y, x, c), 3 for volumes (batch, z, y, x, c).
    **options
        ``channels`` (image channels, 1), ``filters`` (first level, doubled per level, 32),
        ``depth`` (downsamplings by 2, 2), ``latent_channels`` (32).

    Returns
    -------
    keras.Model
        Named ``"divnoising"``; inputs ``{"noisy", "eps"}``, outputs ``{"signal", "mu",
        "logvar"}``: the decoded signal (batch, *spatial, channels) and the latent posterior
        q(z | x) = N(mu, exp(logvar)), (batch, *spatial / 2**depth, latent_channels) each.

    Raises
    ------
    ValueError
        A bad option or ``ndim``.
    """
    opts = check_options(options)
    conv, pool, up, average = _layer_kinds(ndim)
    depth, filters, latent = opts["depth"], opts["filters"], opts["latent_channels"]
    noisy = keras.Input((None,) * ndim + (opts["channels"],), name="noisy")
    eps = keras.Input((None,) * ndim + (latent,), name="eps")
    x = noisy
    for level in range(depth):
        for k in range(2):
            x = conv(filters * 2**level, 3, padding="same", activation="relu", name=f"enc{level}_conv{k}")(x)
        x = pool(2, name=f"enc{level}_pool")(x)
    exact = "float32"  # the latent distribution and the output stay float32 under mixed precision
    mu = conv(latent, 3, padding="same", name="mu", dtype=exact)(x)
    logvar = conv(latent, 3, padding="same", name="logvar", dtype=exact)(x)
    block = 2**depth
    eps_latent = average(block, name="eps_block_mean", dtype=exact)(eps)
    eps_latent = layers.Rescaling(float(block) ** (ndim / 2), name="eps_latent", dtype=exact)(eps_latent)
    half = layers.Rescaling(0.5, name="half_logvar", dtype=exact)(logvar)
    std = layers.Activation("exponential", name="std", dtype=exact)(half)
    z = layers.Add(name="z", dtype=exact)([mu, layers.Multiply(name="scaled_eps", dtype=exact)([std, eps_latent])])
    y = z
    for level in reversed(range(depth)):
        for k in range(2):
            y = conv(filters * 2**level, 3, padding="same", activation="relu", name=f"dec{level}_conv{k}")(y)
        y = up(filters * 2**level, 2, strides=2, name=f"dec{level}_up")(y)
    signal = conv(opts["channels"], 3, padding="same", name="signal", dtype=exact)(y)
    return keras.Model({"noisy": noisy, "eps": eps}, {"signal": signal, "mu": mu, "logvar": logvar},
                       name="divnoising")


def inference_model(vae: keras.Model) -> keras.Model:
    """The saved form: inputs ``{"noisy", "eps"}``, the decoded signal as only output (the
    same layers and weights as ``vae``)."""
    signal = vae.get_layer("signal").output
    return keras.Model({t.name: t for t in vae.inputs}, signal, name="divnoising")


def is_divnoising(model: Any) -> bool:
    """Whether ``model`` is a DivNoising model of this package (inputs "noisy" and "eps")."""
    names = {t.name for t in getattr(model, "inputs", None) or ()}
    return names == {"noisy", "eps"}
