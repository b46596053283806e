"""Intensity normalisation to [0, 1] with an exact inverse.

Three kinds, all the affine map ``y = (x - low) / (high - low)``:

* ``ct``: a fixed Hounsfield window, e.g. (-1000, 400) HU; needs no statistics.
* ``percentile``: ``low``/``high`` are percentiles of the image the normaliser is fitted on
  (CSBDeep's ``normalize(x, 1, 99.8)``).
* ``minmax``: ``low``/``high`` are the image minimum and maximum.

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

_KINDS = ("ct", "percentile", "minmax")


def as_array(x: np.ndarray | Volume) -> np.ndarray:
    """Return the array of a :class:`Volume`, or ``x`` itself as an ndarray."""
    return x.array if isinstance(x, Volume) else np.asarray(x)


@dataclass(frozen=True)
class Normalizer:
    """An affine intensity map to [0, 1], fitted per image where it needs statistics.

    Build it with :meth:`ct`, :meth:`percentile` or :meth:`minmax`, then :meth:`fit`
    (a no-op for ``ct``), then call it.

    Attributes
    ----------
    kind : str
        ``"ct"``, ``"percentile"`` or ``"minmax"``.
    params : tuple of float
        The window in source units (``ct``), the percentiles in % (``percentile``), or ``()``.
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
        """Return a copy fitted on ``x`` (any shape, any real dtype).

        Raises
        ------
        InvalidDataError
            When ``x`` is empty, holds NaN/Inf, or is constant over the statistics range.
        """
        if self.kind == "ct":
            return self
        arr = np.asarray(as_array(x), dtype=np.float64)
        if arr.size == 0:
            raise InvalidDataError(f"cannot fit a {self.kind} normaliser on an empty array of shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise InvalidDataError(
                f"cannot fit a {self.kind} normaliser: the array of shape {arr.shape} holds "
                f"{int((~np.isfinite(arr)).sum())} NaN/Inf values"
            )
        if self.kind == "percentile":
            low, high = np.percentile(arr, self.params)
        else:
            low, high = arr.min(), arr.max()
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
