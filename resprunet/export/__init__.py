"""Exports of denoising models for other tools: ONNX and BioImage Model Zoo packages.

>>> from resprunet import zoo                                    # doctest: +SKIP
>>> from resprunet.export import export_bioimageio, save_onnx
>>> model, card = zoo.load("unet2d_ct")
>>> save_onnx(model, "unet2d_ct.onnx")                 # onnxruntime reproduces Keras within 1e-4
>>> export_bioimageio(model, card, "unet2d_ct.zip")    # rdf.yaml validated by bioimageio.spec

Both need the ``export`` extra (``pip install 'resprunet[export]'``: tf2onnx, onnx,
onnxruntime, bioimageio.spec).
"""
from __future__ import annotations

from .bioimageio import export_bioimageio
from .errors import ExportError
from .onnx import run_onnx, save_onnx, to_onnx

__all__ = ["ExportError", "export_bioimageio", "run_onnx", "save_onnx", "to_onnx"]
