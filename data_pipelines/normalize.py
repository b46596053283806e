"""Intensity normalisation to [0, 1] with an exact inverse: the one normalisation contract.

Three kinds, all the affine map ``y = (x - low) / (high - low)``:

* ``ct``: a fixed Hounsfield window, e.g. (-1000, 400) HU; needs no statistics.
* ``percentile``: ``low``/``high`` are percentiles of the image the normaliser is fitted on
  (CSBDeep's ``normalize(x, 1, 99.8)``).
* ``minmax``: ``low``/``high`` are the image minimum and maximum.

**The contract** (training, validation, final evaluation, zoo cards, ``denoise_array`` and
the command line all follow it):

1. A normaliser that needs statistics is fitted on the NOISY image, the only one a user
   has. Training with synthetic noise fits it on one seeded noisy realisation of each
   volume; training on real pairs fits it on the noisy volume; both maps are applied to the
   clean target too.
2. The statistics are robust to noise and to isolated extremes (:func:`statistics_sample`):
   values are winsorised at the 0.1 / 99.9 percentiles (hot pixels up to 0.1 % cannot move the
   range), then averaged over a box of :data:`SMOOTHING` voxels along every axis long enough
   (noise shrinks by about ``SMOOTHING ** (d / 2)``), and the percentiles (or the minimum and
   maximum) are taken of that. On the MNI sample at sigma 0.1 the map fitted on the noisy
   volume differs from the one fitted on the clean volume by a scale of ~0.98 and an
   offset of ~0.02 (without smoothing: 0.73 and 0.16).
3. At inference, isolated extremes (:func:`isolated_extremes`: voxels more than
   :data:`EXTREME_MARGIN` normalised units outside [0, 1] that differ from the median of
   their neighbours by as much) are replaced by that median before the model sees them and
   restored unchanged afterwards, so a hot pixel stays one hot pixel; the output is clipped
   to the input's range.

Arithmetic is done in float64 (uint16 microscopy data and large HU values lose nothing),
the result is float32. Without clipping, :meth:`Normalizer.inverse` undoes
:meth:`Normalizer.__call__` to float32 precision.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .errors import InvalidDataError
from .volume import Volume

_KINDS = ("ct", "fixed", "percentile", "minmax")
_PRESET = ("ct", "fixed")  # windows known in advance: fitting is a no-op
#: Box size (voxels per axis) of the mean taken before the statistics of a fit.
SMOOTHING = 5
#: Percentiles (%) at which values are winsorised before smoothing (isolated extremes).
WINSOR = (0.1, 99.9)
#: Fewest voxels for winsorising (below, the 0.1 % tails hold less than ten voxels).
WINSOR_MIN_VOXELS = 10_000
#: Largest number of voxels the statistics of a fit are computed on (z slabs are sampled).
MAX_STATISTICS_VOXELS = 1 << 24
#: Normalised units outside [0, 1], and away from the neighbourhood median, of an isolated extreme.
EXTREME_MARGIN = 1.0


def as_array(x: np.ndarray | Volume) -> np.ndarray:
    """Return the array of a :class:`Volume`, or ``x`` itself as an ndarray."""
    return x.array if isinstance(x, Volume) else np.asarray(x)


@dataclass(frozen=True)
class Normalizer:
    """An affine intensity map to [0, 1], fitted per image where it needs statistics.

    Build it with :meth:`ct`, :meth:`fixed`, :meth:`percentile` or :meth:`minmax`, then
    :meth:`fit` (a no-op for ``ct`` and ``fixed``), then call it.

    Attributes
    ----------
    kind : str
        ``"ct"``, ``"fixed"``, ``"percentile"`` or ``"minmax"``.
    params : tuple of float
        The window in source units (``ct``, ``fixed``), the percentiles in % (``percentile``), or ``()``.
    low, high : float or None
        Source values mapped to 0 and 1; None until fitted.
    clip : bool
        Clip the output to [0, 1]. Clipping breaks the exactness of :meth:`inverse` for
        voxels outside [low, high]; off by default.
    """

    kind: str
    params: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    clip: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Normalizer kind must be one of {_KINDS}, got {self.kind!r}")

    # construction -------------------------------------------------------------------
    @classmethod
    def ct(cls, window: tuple[float, float] = (-1000.0, 400.0), clip: bool = False) -> "Normalizer":
        """A CT window: ``window[0]`` HU -> 0 and ``window[1]`` HU -> 1 (already fitted)."""
        low, high = float(window[0]), float(window[1])
        if not high > low:
            raise ValueError(f"CT window must be (low, high) with high > low, got {window}")
        return cls("ct", (low, high), low, high, clip)

    @classmethod
    def fixed(cls, low: float, high: float, clip: bool = False) -> "Normalizer":
        """A window known in advance, for data in fixed units: ``low`` -> 0 and ``high`` -> 1
        (already fitted), e.g. ``fixed(0, 255)`` for 8-bit images, whose noise levels are
        quoted in 1/255."""
        low, high = float(low), float(high)
        if not high > low:
            raise ValueError(f"fixed window must be (low, high) with high > low, got ({low}, {high})")
        return cls("fixed", (low, high), low, high, clip)

    @classmethod
    def percentile(cls, low: float = 1.0, high: float = 99.8, clip: bool = False) -> "Normalizer":
        """Percentiles (in %, 0..100) of the fitted image -> 0 and 1."""
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got ({low}, {high})")
        return cls("percentile", (float(low), float(high)), clip=clip)

    @classmethod
    def minmax(cls, clip: bool = False) -> "Normalizer":
        """Minimum and maximum of the fitted image -> 0 and 1."""
        return cls("minmax", (), clip=clip)

    # fitting and applying ------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """True when ``low`` and ``high`` are known."""
        return self.low is not None and self.high is not None

    def fit(self, x: np.ndarray | Volume) -> "Normalizer":
        """Return a copy fitted on ``x`` (any shape, any real dtype): the NOISY image.

        The statistics are those of :func:`statistics_sample` (winsorised, box-smoothed),
        so they barely move with the noise level and not at all with a few hot pixels.

        Raises
        ------
        InvalidDataError
            When ``x`` is empty, holds NaN/Inf, or is constant over the statistics range.
        """
        if self.kind in _PRESET:
            return self
        arr = np.asarray(as_array(x), dtype=np.float64)
        if arr.size == 0:
            raise InvalidDataError(f"cannot fit a {self.kind} normaliser on an empty array of shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InvalidDataError(
                f"cannot fit a {self.kind} normaliser: the array of shape {arr.shape} holds "
                f"{int((~np.isfinite(arr)).sum())} NaN/Inf values"
            )
        sample = statistics_sample(arr)
        if self.kind == "percentile":
            low, high = np.percentile(sample, self.params)
        else:
            low, high = sample.min(), sample.max()
        if not high > low:
            raise InvalidDataError(
                f"cannot fit a {self.kind} normaliser: the image of shape {arr.shape} is constant "
                f"over that range (low = high = {float(low)}); expected some contrast"
            )
        return replace(self, low=float(low), high=float(high))

    def _bounds(self) -> tuple[float, float]:
        if not self.fitted:
            raise InvalidDataError(
                f"this {self.kind} normaliser is not fitted: call norm = norm.fit(image) first"
            )
        return float(self.low), float(self.high)  # type: ignore[arg-type]

    def __call__(self, x: np.ndarray | Volume) -> np.ndarray:
        """Map source values to [0, 1].

        Parameters
        ----------
        x : np.ndarray or Volume
            Any shape, any real dtype (uint16 is handled in float64).

        Returns
        -------
        np.ndarray
            float32, same shape; in [0, 1] for values within [low, high] (clipped there
            only if ``clip``).
        """
        low, high = self._bounds()
        y = (np.asarray(as_array(x), dtype=np.float64) - low) / (high - low)
        if self.clip:
            y = np.clip(y, 0.0, 1.0)
        return y.astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Map normalised values back to source units (float32, same shape).

        Exact (to float32 precision) for outputs of an unclipped normaliser.
        """
        low, high = self._bounds()
        return (np.asarray(y, dtype=np.float64) * (high - low) + low).astype(np.float32)

    # serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python description (kind, params, fitted low/high, clip) for configs and cards."""
        d = asdict(self)
        d["params"] = list(self.params)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        """Rebuild a normaliser written by :meth:`to_dict`."""
        return cls(
            kind=d["kind"],
            params=tuple(float(p) for p in d.get("params", ())),
            low=None if d.get("low") is None else float(d["low"]),
            high=None if d.get("high") is None else float(d["high"]),
            clip=bool(d.get("clip", False)),
        )


def _box_mean(block: np.ndarray, size: int) -> np.ndarray:
    """Mean over a box of ``size`` voxels along every axis at least that long (reflected edges)."""
    from scipy import ndimage

    sizes = [size if n >= size else 1 for n in block.shape]
    return ndimage.uniform_filter(block, sizes, mode="reflect") if max(sizes) > 1 else block


def statistics_sample(x: np.ndarray, size: int = SMOOTHING, max_voxels: int = MAX_STATISTICS_VOXELS) -> np.ndarray:
    """The values a normaliser takes its statistics from: robust to noise and hot pixels.

    Parameters
    ----------
    x : np.ndarray
        Image (y, x), volume (z, y, x) or (z, y, x, c), any real dtype; a memory map is
        read slab by slab.
    size : int
        Box of the mean along each spatial axis of at least ``size`` voxels.
    max_voxels : int
        Above this many voxels, evenly spaced z slabs are used (each smoothed with its own
        ``size`` slices, so the sample does not depend on how the volume was cut).

    Returns
    -------
    np.ndarray
        float64 values, winsorised at the :data:`WINSOR` percentiles (arrays of at least
        :data:`WINSOR_MIN_VOXELS` voxels) and box-averaged.
    """
    arr = np.asarray(x)
    blocks: list[np.ndarray]
    if arr.size <= max_voxels or arr.ndim < 3:
        blocks = [np.asarray(arr, dtype=np.float64)]
    else:
        depth = min(size, arr.shape[0])
        per_slab = arr.size // arr.shape[0] * depth
        count = max(1, min(arr.shape[0] // depth, max_voxels // per_slab))
        starts = np.linspace(0, arr.shape[0] - depth, count).astype(int)
        blocks = [np.asarray(arr[z : z + depth], dtype=np.float64) for z in np.unique(starts)]
    values = blocks[0] if len(blocks) == 1 else np.concatenate([b.ravel() for b in blocks])
    low, high = np.percentile(values, WINSOR) if values.size >= WINSOR_MIN_VOXELS else (-np.inf, np.inf)
    out = []
    for block in blocks:
        clipped = np.clip(block, low, high)
        if block.ndim == 4:  # (z, y, x, c): smooth each channel over space only
            out.append(np.stack([_box_mean(clipped[..., c], size) for c in range(block.shape[-1])], -1).ravel())
        else:
            out.append(_box_mean(clipped, size).ravel())
    return out[0] if len(out) == 1 else np.concatenate(out)


def isolated_extremes(x: np.ndarray, margin: float = EXTREME_MARGIN) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Find isolated extremes (hot or dead pixels) of a normalised image and their replacements.

    A voxel is an isolated extreme when it lies more than ``margin`` outside [0, 1] and
    differs from the median of its neighbours (the 3 x 3 (x 3) box without itself) by more
    than ``margin``. Only voxels outside [-margin, 1 + margin] are examined, so this is cheap.

    Parameters
    ----------
    x : np.ndarray
        Normalised image (y, x) or volume (z, y, x), float.
    margin : float
        In normalised units (1.0 = the whole fitted range).

    Returns
    -------
    index : tuple of np.ndarray
        Indices of the isolated extremes (as ``np.nonzero`` gives them).
    median : np.ndarray
        The median of each one's neighbours, to give the model instead.
    """
    candidates = np.nonzero((x < -margin) | (x > 1.0 + margin))
    if candidates[0].size == 0:
        return candidates, np.empty(0, dtype=x.dtype)
    offsets = np.array(np.meshgrid(*[(-1, 0, 1)] * x.ndim, indexing="ij")).reshape(x.ndim, -1).T
    offsets = offsets[np.any(offsets != 0, axis=1)]
    padded = np.pad(x, 1, mode="edge")
    centre = np.stack(candidates, axis=1) + 1
    neighbours = np.stack([padded[tuple((centre + o).T)] for o in offsets], axis=1)
    median = np.median(neighbours, axis=1).astype(x.dtype)
    isolated = np.abs(x[candidates] - median) > margin
    return tuple(c[isolated] for c in candidates), median[isolated]
