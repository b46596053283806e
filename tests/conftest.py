"""Shared test settings: quiet TensorFlow, Keras on the TensorFlow backend.

``TF_ENABLE_ONEDNN_OPTS`` is left alone, so tests run with oneDNN on as users get it
(:mod:`data_pipelines.tf_env`).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
