"""Apply a grey-level denoiser to colour data, one channel at a time."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def per_channel(denoise: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap ``denoise`` so that it is applied to each channel of a (..., c) array on its own.

    Parameters
    ----------
    denoise : callable
        ``denoise(noisy, *args, **params)`` for grey images or volumes, e.g.
        :func:`resprunet.variational.tv_denoise`.

    Returns
    -------
    callable
        ``apply(noisy, *args, **params)``: ``noisy`` (..., c), the output of the same shape,
        channel ``i`` being ``denoise(noisy[..., i], *args, **params)``. Channels share no
        information (colour BM3D, :func:`resprunet.variational.bm3d_rgb_denoise`, does).
    """

    def apply(noisy: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        return np.stack([denoise(noisy[..., c], *args, **params) for c in range(noisy.shape[-1])], axis=-1)

    apply.__name__ = f"per_channel_{getattr(denoise, '__name__', 'denoise')}"
    return apply
