"""data_pipelines: read, normalise, corrupt and serve CT and microscopy volumes to Keras.

Importable on its own (it never imports :mod:`resprunet`). TensorFlow is imported only
when a tf.data builder is first used, so reading and writing files stays light.

>>> import data_pipelines as dp
>>> vol = dp.sample("mni152_t1")
>>> x = dp.Normalizer.percentile(1, 99.8).fit(vol.array)(vol.array)
"""
from __future__ import annotations

import importlib
from typing import Any

from .tf_env import enable_onednn

enable_onednn()  # TF_ENABLE_ONEDNN_OPTS=1 unless the user set it: before anything imports TensorFlow

from .errors import (  # noqa: E402
    DataPipelineError,
    InvalidDataError,
    OutputExistsError,
    PatchSizeError,
    ShapeMismatchError,
    UnsupportedFormatError,
    VolumeReadError,
    VolumeWriteError,
)
from .volume import Volume  # noqa: E402

# public name -> submodule that defines it (loaded on first use)
_LAZY = {
    "read_volume": "io",
    "write_volume": "io",
    "check_output": "io",
    "read_png_subjects": "io",
    "read_npz_case": "io",
    "Normalizer": "normalize",
    "isolated_extremes": "normalize",
    "NoiseModel": "noise",
    "GaussianNoise": "noise",
    "PoissonNoise": "noise",
    "PoissonGaussianNoise": "noise",
    "neighbour_slice_prior": "priors",
    "temporal_mean_prior": "priors",
    "external_prior": "priors",
    "BlindSpot": "blindspot",
    "make_dataset": "datasets",
    "split_volumes": "datasets",
    "sample": "samples",
    "list_samples": "samples",
}

__all__ = [
    "DataPipelineError",
    "InvalidDataError",
    "OutputExistsError",
    "PatchSizeError",
    "ShapeMismatchError",
    "UnsupportedFormatError",
    "Volume",
    "VolumeReadError",
    "VolumeWriteError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'data_pipelines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
