"""Keras model -> ONNX through tf2onnx (TensorFlow backend), checked for unsupported ops.

tf2onnx converts the model's traced TensorFlow graph; an op it cannot express stays in the
graph as an unknown node and tf2onnx only logs it. :func:`to_onnx` finds such nodes and raises
:class:`~resprunet.export.errors.ExportError` naming the Keras layer they came from (TensorFlow
names each op ``<model>/<layer>/<op>``).

Inputs keep the Keras input names (``"noisy"``, ``"prior"``, ``"sigma"``, ``"context"``), in the
order of ``model.inputs``; the single output is named :data:`OUTPUT_NAME`. Batch and spatial
sizes are dynamic (each spatial size must still be a multiple of the model's divisor).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError, require

__all__ = ["OPSET", "OUTPUT_NAME", "to_onnx", "save_onnx", "run_onnx"]

#: ONNX opset written (tf2onnx 1.17 supports up to 18; onnxruntime >= 1.14 runs 17).
OPSET = 17
#: Name of the ONNX output (the denoised image, in the model's normalised units).
OUTPUT_NAME = "denoised"


def _input_signature(model: Any) -> list[Any]:
    import tensorflow as tf

    return [tf.TensorSpec((None,) + tuple(t.shape[1:]), tf.float32, name=t.name) for t in model.inputs]


def _layer_of(node_name: str, layer_names: list[str]) -> str | None:
    """The Keras layer whose name scope holds TensorFlow op ``node_name`` (TF appends ``_1``,
    ``_2``... to reused scope names); None when no segment names a layer."""
    segments = node_name.split("/")
    for name in sorted(layer_names, key=len, reverse=True):
        pattern = re.compile(rf"{re.escape(name)}(_\d+)?")
        if any(pattern.fullmatch(s) for s in segments):
            return name
    return None


def _check_supported(proto: Any, model: Any) -> None:
    """Raise :class:`ExportError` for the first node that is no standard ONNX operator."""
    import onnx

    standard = ("", "ai.onnx")
    layers = [layer.name for layer in model.layers]
    for node in proto.graph.node:
        if node.domain in standard and not onnx.defs.has(node.op_type):
            layer = _layer_of(node.name, layers)
            where = f"layer {layer!r} ({type(model.get_layer(layer)).__name__})" if layer else f"op {node.name!r}"
            raise ExportError(
                f"{where} of model {model.name!r} cannot be exported to ONNX: TensorFlow op "
                f"{node.op_type!r} has no ONNX equivalent in tf2onnx (opset {OPSET})"
            )


def to_onnx(model: Any, opset: int = OPSET) -> Any:
    """Convert a Keras functional model to an ONNX model.

    Parameters
    ----------
    model : keras.Model
        Channels-last model; inputs (b, [z,] y, x, c) float32.
    opset : int
        ONNX opset version.

    Returns
    -------
    onnx.ModelProto
        Inputs named as the Keras inputs, one output named :data:`OUTPUT_NAME`, dynamic batch
        and spatial axes.

    Raises
    ------
    ExportError
        tf2onnx/onnx are missing, the model has several outputs, or a layer uses an op ONNX
        cannot express (the message names the layer).
    """
    require("tf2onnx")
    require("onnx")
    import onnx
    import tensorflow as tf
    import tf2onnx

    if len(model.outputs) != 1:
        raise ExportError(f"model {model.name!r} has {len(model.outputs)} outputs; the export expects one")
    signature = _input_signature(model)
    names = [spec.name for spec in signature]

    @tf.function(input_signature=signature)
    def serve(*tensors: Any) -> Any:  # inputs by name: a model built with a dict of inputs keeps its order
        return model(dict(zip(names, tensors)) if len(names) > 1 else tensors[0], training=False)

    converter_log = logging.getLogger("tf2onnx")  # its progress and its own unsupported-op lines
    level = converter_log.level
    converter_log.setLevel(logging.CRITICAL)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    except Exception as exc:  # noqa: BLE001 - any converter failure becomes one clear error
        raise ExportError(f"tf2onnx could not convert model {model.name!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        converter_log.setLevel(level)
    _check_supported(proto, model)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
    proto.graph.output[0].name = OUTPUT_NAME
    onnx.checker.check_model(proto)
    return proto


def save_onnx(model: Any, path: str | os.PathLike, force: bool = False, opset: int = OPSET) -> Path:
    """Convert ``model`` (:func:`to_onnx`) and write it to ``path`` atomically.

    Raises
    ------
    ExportError
        As :func:`to_onnx`.
    data_pipelines.OutputExistsError
        ``path`` exists and ``force`` is False.
    """
    from data_pipelines.io.atomic import atomic_path, check_writable

    check_writable(path, force)
    proto = to_onnx(model, opset)
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return Path(path)


def run_onnx(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run an ONNX model (a ``ModelProto``, bytes or a file path) in onnxruntime on CPU.

    Parameters
    ----------
    inputs : dict of str to np.ndarray
        float32 (b, [z,] y, x, c) arrays by input name.

    Returns
    -------
    np.ndarray
        The first output, float32 (b, [z,] y, x, c).
    """
    require("onnxruntime")
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(inputs[i.name], np.float32) for i in session.get_inputs()}
    return np.asarray(session.run(None, feeds)[0], np.float32)
