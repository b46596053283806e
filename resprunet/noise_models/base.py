"""The common interface of noise models: per-pixel log p(observation | signal).

A noise model describes how a camera or scanner turns a clean signal ``s`` into an observed
value ``x``. DivNoising uses it as the likelihood of its VAE (the reconstruction term), so
:meth:`NoiseModel.log_likelihood` is written with :mod:`keras.ops` only: it runs on tensors of
any Keras backend, inside a ``tf.function`` or a custom ``train_step``, and is differentiable in
the signal. Given numpy arrays (or Python numbers) it returns a numpy array.

Units: observation and signal are in the same units (normalised [0, 1] in this package, but
nothing here assumes it); log-likelihoods are natural logarithms of a density per unit of the
observation.
"""
from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from keras import ops

from data_pipelines.io.atomic import atomic_path

__all__ = ["FILE_FORMAT", "NoiseModel", "gaussian_log_density"]

FILE_FORMAT = "resprunet.noise_model"
FILE_VERSION = 1
LOG_2PI = math.log(2.0 * math.pi)
_NUMPY_LIKE = (np.ndarray, np.generic, int, float, list, tuple)


def gaussian_log_density(observation: Any, mean: Any, variance: Any) -> Any:
    """log N(observation; mean, variance) with :mod:`keras.ops` (broadcasting, float32)."""
    return -0.5 * (LOG_2PI + ops.log(variance) + ops.square(observation - mean) / variance)


class NoiseModel(ABC):
    """Base class: ``log_likelihood``, ``sample``, ``variance`` and (de)serialisation.

    Subclasses set ``kind`` (the name written in files) and implement
    :meth:`_log_likelihood`, :meth:`sample`, :meth:`variance` and :meth:`_parameters`;
    they are registered by ``kind`` for :meth:`from_dict` and :meth:`load`.
    """

    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type["NoiseModel"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            NoiseModel._registry[cls.kind] = cls

    # to implement ----------------------------------------------------------------------
    @abstractmethod
    def _log_likelihood(self, observation: Any, signal: Any) -> Any:
        """Per-pixel log-likelihood of float32 backend tensors, with :mod:`keras.ops` only."""

    @abstractmethod
    def sample(self, signal: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        """Simulate observations of ``signal``.

        Parameters
        ----------
        signal : np.ndarray
            Clean signal, any shape, in the model's units.
        rng : numpy.random.Generator or int
            Random source (an int is a seed).

        Returns
        -------
        np.ndarray
            float32, the shape of ``signal``.
        """

    @abstractmethod
    def variance(self, signal: np.ndarray | float) -> np.ndarray:
        """Variance of the observation given the signal, (units of the signal)^2, numpy float64."""

    @abstractmethod
    def _parameters(self) -> dict[str, Any]:
        """JSON-serialisable keyword arguments that rebuild the model."""

    # public ----------------------------------------------------------------------------
    def log_likelihood(self, observation: Any, signal: Any) -> Any:
        """Per-pixel log p(observation | signal), natural log of a density.

        Parameters
        ----------
        observation, signal : array-like or tensor
            Broadcastable shapes, e.g. both (batch, y, x, 1); same units. Computed in float32.

        Returns
        -------
        np.ndarray or tensor
            The broadcast shape, float32: a numpy array when both inputs are numpy arrays or
            numbers, else a tensor of the Keras backend (differentiable in ``signal``).
        """
        as_numpy = isinstance(observation, _NUMPY_LIKE) and isinstance(signal, _NUMPY_LIKE)
        result = self._log_likelihood(_float32_tensor(observation), _float32_tensor(signal))
        return ops.convert_to_numpy(result) if as_numpy else result

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description: ``{"kind": ..., **parameters}``."""
        return {"kind": self.kind, **self._parameters()}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "NoiseModel":
        """Rebuild a model written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            Unknown or missing ``kind``, or parameters the model does not take.
        """
        params = dict(d)
        kind = params.pop("kind", None)
        if kind not in NoiseModel._registry:
            raise ValueError(f"unknown noise model kind {kind!r}; expected one of {sorted(NoiseModel._registry)}")
        cls = NoiseModel._registry[kind]
        try:
            return cls(**params)
        except TypeError as exc:
            raise ValueError(f"noise model {kind!r}: bad parameters {sorted(params)} ({exc})") from exc

    def save(self, path: str | os.PathLike, force: bool = False) -> Path:
        """Write the model as a small JSON file, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            Output file, conventionally ``noise_model.json`` next to a ``model.keras``.
        force : bool
            Replace an existing file.

        Returns
        -------
        pathlib.Path

        Raises
        ------
        data_pipelines.OutputExistsError
            ``path`` exists and ``force`` is False.
        """
        document = {"format": FILE_FORMAT, "version": FILE_VERSION, **self.to_dict()}
        with atomic_path(path, force=force) as tmp:
            tmp.write_text(json.dumps(document, indent=1) + "\n")
        return Path(path)

    @staticmethod
    def load(path: str | os.PathLike) -> "NoiseModel":
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            The file is not a noise-model JSON file of a version this code reads.
        """
        path = Path(path)
        try:
            document = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a noise model file (not JSON: {exc})") from exc
        if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
            raise ValueError(f"{path}: not a noise model file (no \"format\": \"{FILE_FORMAT}\")")
        if document.get("version") != FILE_VERSION:
            raise ValueError(f"{path}: noise model file version {document.get('version')!r}; "
                             f"this code reads version {FILE_VERSION}")
        params = {k: v for k, v in document.items() if k not in ("format", "version")}
        return NoiseModel.from_dict(params)


def _float32_tensor(x: Any) -> Any:
    if isinstance(x, _NUMPY_LIKE):
        return ops.convert_to_tensor(np.asarray(x, dtype=np.float32))
    return ops.cast(x, "float32")
