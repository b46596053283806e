"""resprunet: deep and classical denoising of 2D and 3D CT and microscopy images."""
from __future__ import annotations

from data_pipelines.tf_env import enable_onednn

enable_onednn()  # TF_ENABLE_ONEDNN_OPTS=1 unless the user set it: before anything imports TensorFlow

__version__ = "0.1.0"
