"""Describe a built or reloaded model from its inputs and layer graph (``describe``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

_CONV = (layers.Conv2D, layers.Conv3D)
_CONV_TRANSPOSE = (layers.Conv2DTranspose, layers.Conv3DTranspose)
_POOL = (
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
)
_UPSAMPLE = (layers.UpSampling2D, layers.UpSampling3D)


@dataclass(frozen=True)
class ModelInfo:
    """What callers need to know about a denoising model.

    Attributes
    ----------
    name : str
        Architecture name (the model's name: "unet", "respr_unet", ...).
    ndim : int
        Spatial dimensions, 2 or 3.
    channels : int
        Channels of the ``"noisy"`` input (and of the output).
    needs_prior : bool
        True when the model has a ``"prior"`` input (call it with ``{"noisy": x, "prior": p}``).
    needs_sigma : bool
        True when the model is conditioned on the noise level: an input ``"sigma"``, a map of
        the noise standard deviation in normalised units.
    context : int
        Neighbouring slices on each side a 2D ("2.5D") model takes in its ``"context"``
        input (z-1, z+1, z-2, z+2, ... as channels); 0 without that input.
    divisor : int
        Every spatial size of the input must be a multiple of this.
    receptive_field : int
        Voxels along one axis that influence one output voxel (use it to choose tile overlap).
    """

    name: str
    ndim: int
    channels: int
    needs_prior: bool
    divisor: int
    receptive_field: int
    needs_sigma: bool = False
    context: int = 0


def describe(model: keras.Model) -> ModelInfo:
    """Describe ``model`` from its inputs and its layer graph.

    Works on a freshly built model and on one loaded from a ``.keras`` file, as it reads only
    what is saved: the input layers and the layers' configurations.

    Parameters
    ----------
    model : keras.Model
        A functional model with an image input named ``"noisy"`` (and optionally ``"prior"``).

    Returns
    -------
    ModelInfo
    """
    inputs = {tensor.name: tensor for tensor in model.inputs}
    if "noisy" not in inputs:
        raise ValueError(
            f"model {model.name!r} has inputs {sorted(inputs)}; expected one named 'noisy'"
        )
    shape = inputs["noisy"].shape
    divisor, receptive_field = _graph_geometry(model)
    return ModelInfo(
        name=model.name,
        ndim=len(shape) - 2,
        channels=int(shape[-1]),
        needs_prior="prior" in inputs,
        divisor=divisor,
        receptive_field=receptive_field,
        needs_sigma="sigma" in inputs,
        context=int(inputs["context"].shape[-1]) // (2 * int(shape[-1])) if "context" in inputs else 0,
    )


def _graph_geometry(model: keras.Model) -> tuple[int, int]:
    """Return ``(divisor, receptive_field)`` along the first spatial axis of ``model``.

    Follows the functional graph through public attributes only: ``model.layers`` (in
    topological order) and each layer's ``input`` and ``output`` tensors. Each tensor carries
    ``(rf, jump)``: the receptive field in input voxels and the input-voxel distance between
    neighbouring voxels of the tensor. The divisor is the largest ``jump`` met on the way.

    Raises
    ------
    ValueError
        A layer is called more than once (shared layers have no single ``output``).
    """
    geometry: dict[int, tuple[float, float]] = {id(t): (1.0, 1.0) for t in model.inputs}
    jumps: list[float] = [1.0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            parents = [geometry.get(id(t), (1.0, 1.0)) for t in keras.tree.flatten(layer.input)]
            output = layer.output
        except (AttributeError, ValueError) as exc:
            raise ValueError(
                f"layer {layer.name!r} of model {model.name!r} is called more than once; "
                "describe() needs every layer called once"
            ) from exc
        rf = max((p[0] for p in parents), default=1.0)
        jump = max((p[1] for p in parents), default=1.0)
        step = _layer_step(layer, rf, jump)
        for tensor in keras.tree.flatten(output):
            geometry[id(tensor)] = step
        jumps.append(step[1])
    rf = max(geometry[id(tensor)][0] for tensor in model.outputs)
    return int(round(max(jumps))), int(math.ceil(rf))


def _layer_step(layer: keras.layers.Layer, rf: float, jump: float) -> tuple[float, float]:
    """Propagate ``(rf, jump)`` through one layer (first spatial axis)."""
    if isinstance(layer, _CONV_TRANSPOSE):
        stride = layer.strides[0]
        span = math.ceil(layer.kernel_size[0] / stride) - 1
        return rf + span * jump, jump / stride
    if isinstance(layer, _CONV):
        kernel, dilation, stride = layer.kernel_size[0], layer.dilation_rate[0], layer.strides[0]
        return rf + (kernel - 1) * dilation * jump, jump * stride
    if isinstance(layer, _POOL):
        return rf + (layer.pool_size[0] - 1) * jump, jump * layer.strides[0]
    if isinstance(layer, _UPSAMPLE):
        return rf, jump / layer.size[0]
    return rf, jump
