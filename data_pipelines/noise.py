"""Synthetic noise models, in numpy and in TensorFlow (stateless, seeded per sample).

Units: images are normalised to [0, 1] first; a Gaussian ``sigma`` is a fraction of that
range ("5 % noise" is ``sigma = 0.05``; for a CT window of (-1000, 400) HU that is 70 HU).
Poisson noise scales intensity 1.0 to ``photons`` expected counts.

Each call corrupts ONE sample: a blind sigma range draws one sigma per call. The numpy
path takes a seed or a :class:`numpy.random.Generator`; the TensorFlow path
(:meth:`NoiseModel.apply_tf`) takes a shape-[2] integer seed and uses stateless ops, so a
tf.data pipeline seeded per element is reproducible and gives a fresh map per element.
Nothing is clipped; nothing is rounded unless ``quantize=True``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

Param = float | tuple[float, float]


def _check_param(name: str, value: Param, minimum: float, strict: bool) -> Param:
    """Validate a fixed value or a (low, high) range; return it as float or tuple."""
    values = (value,) if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    if len(values) not in (1, 2) or any(
        (v <= minimum if strict else v < minimum) or not np.isfinite(v) for v in values
    ):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be a number {bound} {minimum} or a (low, high) pair of them, got {value!r}")
    if len(values) == 2:
        if values[0] > values[1]:
            raise ValueError(f"{name} range must be (low, high) with low <= high, got {value!r}")
        return (float(values[0]), float(values[1]))
    return float(values[0])


def _draw_np(value: Param, rng: np.random.Generator) -> float:
    """A fixed value, or one uniform draw from a (low, high) range."""
    return rng.uniform(*value) if isinstance(value, tuple) else value


def _draw_tf(value: Param, seed: "tf.Tensor") -> "tf.Tensor":
    import tensorflow as tf

    if isinstance(value, tuple):
        return tf.random.stateless_uniform([], seed, minval=value[0], maxval=value[1], dtype=tf.float32)
    return tf.constant(value, tf.float32)


def _fmt(value: Param) -> str:
    return f"drawn uniformly per sample in [{value[0]:g}, {value[1]:g}]" if isinstance(value, tuple) else f"= {value:g}"


@dataclass(frozen=True)
class NoiseModel:
    """Base class: ``model(x, rng)`` in numpy, ``model.apply_tf(x, seed)`` in TensorFlow."""

    quantize: bool = field(default=False, kw_only=True)
    kind: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type["NoiseModel"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        NoiseModel._registry[cls.kind] = cls

    # to implement (the subclass rounds when ``quantize``) ------------------------------
    def _sample_np(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _sample_tf(self, x: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        raise NotImplementedError

    def describe(self) -> str:
        """One line with the noise level and its unit."""
        raise NotImplementedError

    # public ----------------------------------------------------------------------------
    def __call__(self, x: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        """Corrupt one sample.

        Parameters
        ----------
        x : np.ndarray
            Clean image, any shape, normalised to [0, 1].
        rng : numpy.random.Generator or int
            Random source (an int is a seed).

        Returns
        -------
        np.ndarray
            float32, same shape; neither clipped nor rounded unless ``quantize``.
        """
        rng = np.random.default_rng(rng)
        return self._sample_np(np.asarray(x, dtype=np.float32), rng).astype(np.float32, copy=False)

    def apply_tf(self, x: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        """TensorFlow version of :meth:`__call__` with stateless random ops.

        Parameters
        ----------
        x : tf.Tensor
            float32 clean image, any shape, normalised to [0, 1].
        seed : tf.Tensor
            Shape [2], int32 or int64; the same seed gives the same noise map.

        Returns
        -------
        tf.Tensor
            float32, same shape as ``x``.
        """
        import tensorflow as tf

        return tf.cast(self._sample_tf(tf.cast(x, tf.float32), seed), tf.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python description (ranges as lists) for configs and model cards."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"kind": self.kind, **d}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "NoiseModel":
        """Rebuild a model written by :meth:`to_dict`."""
        params = dict(d)
        kind = params.pop("kind")
        if kind not in NoiseModel._registry:
            raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(NoiseModel._registry)}")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        return NoiseModel._registry[kind](**params)


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise.

    Parameters
    ----------
    sigma : float or (float, float)
        Standard deviation as a fraction of the normalised range [0, 1]; a (low, high)
        pair makes it blind: one sigma drawn uniformly per sample.
    quantize : bool
        Round the result to multiples of ``1 / levels`` (as if stored as integers).
    levels : int
        Grey levels of the quantised data (255 for 8-bit images).
    """

    sigma: Param = 0.05
    levels: int = field(default=255, kw_only=True)
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _check_param("sigma", self.sigma, 0.0, strict=False))

    def _sample_np(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        y = rng.standard_normal(x.shape, dtype=np.float32)  # float32 ziggurat: the fast path
        y *= np.float32(_draw_np(self.sigma, rng))
        y += x
        return np.round(y * self.levels) / self.levels if self.quantize else y

    def _sample_tf(self, x: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(seed, 2)
        sigma = _draw_tf(self.sigma, seeds[0])
        y = x + sigma * tf.random.stateless_normal(tf.shape(x), seeds[1], dtype=tf.float32)
        return tf.round(y * self.levels) / self.levels if self.quantize else y

    def describe(self) -> str:
        return f"Gaussian noise, sigma {_fmt(self.sigma)} of the normalised range [0, 1]"

    def realise(self, rng: np.random.Generator) -> "GaussianNoise":
        """This noise with its sigma fixed: one uniform draw from a (low, high) range, else
        itself (for serving the noise level of each sample, ``make_dataset(noise_level=True)``)."""
        return replace(self, sigma=float(_draw_np(self.sigma, rng)))


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Shot noise: ``y = Poisson(photons * max(x, 0)) / photons``.

    Parameters
    ----------
    photons : float or (float, float)
        Expected photon count at intensity 1.0 (a range draws one per sample). The noise
        standard deviation at intensity ``x`` is ``sqrt(x / photons)`` (normalised units).
    quantize : bool
        Round the counts to integers (Poisson counts already are; this matters for
        :class:`PoissonGaussianNoise`, whose read noise is added in counts).
    """

    photons: Param = 100.0
    kind: ClassVar[str] = "poisson"

    def __post_init__(self) -> None:
        object.__setattr__(self, "photons", _check_param("photons", self.photons, 0.0, strict=True))

    def _counts_np(self, x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(np.maximum(x, 0.0).astype(np.float64) * photons).astype(np.float64)

    def _counts_tf(self, x: "tf.Tensor", photons: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        import tensorflow as tf

        return tf.random.stateless_poisson(tf.shape(x), seed, tf.maximum(x, 0.0) * photons, dtype=tf.float32)

    def _sample_np(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        photons = _draw_np(self.photons, rng)
        counts = self._counts_np(x, photons, rng)
        return (np.round(counts) if self.quantize else counts) / photons

    def _sample_tf(self, x: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(seed, 2)
        photons = _draw_tf(self.photons, seeds[0])
        counts = self._counts_tf(x, photons, seeds[1])
        return (tf.round(counts) if self.quantize else counts) / photons

    def describe(self) -> str:
        return f"Poisson noise, photons {_fmt(self.photons)} at intensity 1 of the normalised range [0, 1]"


@dataclass(frozen=True)
class PoissonGaussianNoise(PoissonNoise):
    """Poisson shot noise plus additive Gaussian read noise.

    ``y = (Poisson(photons * max(x, 0)) + photons * sigma * N(0, 1)) / photons``.

    Parameters
    ----------
    photons : float or (float, float)
        Expected photon count at intensity 1.0 (see :class:`PoissonNoise`).
    sigma : float or (float, float)
        Gaussian standard deviation as a fraction of the normalised range [0, 1].
    quantize : bool
        Round the noisy counts to integers (as a camera's ADC would).
    """

    sigma: Param = 0.01
    kind: ClassVar[str] = "poisson_gaussian"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sigma", _check_param("sigma", self.sigma, 0.0, strict=False))

    def _counts_np(self, x: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
        sigma = _draw_np(self.sigma, rng)
        return super()._counts_np(x, photons, rng) + photons * sigma * rng.standard_normal(x.shape)

    def _counts_tf(self, x: "tf.Tensor", photons: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(seed, 3)
        sigma = _draw_tf(self.sigma, seeds[0])
        shot = super()._counts_tf(x, photons, seeds[1])
        return shot + photons * sigma * tf.random.stateless_normal(tf.shape(x), seeds[2], dtype=tf.float32)

    def describe(self) -> str:
        return (
            f"Poisson-Gaussian noise, photons {_fmt(self.photons)} at intensity 1, "
            f"Gaussian sigma {_fmt(self.sigma)} of the normalised range [0, 1]"
        )
