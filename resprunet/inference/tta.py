"""Test-time augmentation: the eight symmetries of the y-x plane and their inverses.

A denoiser trained with random flips and quarter turns (see
:func:`data_pipelines.patches.augment_slab`) gives a slightly different answer for each
rotated or mirrored copy of its input; the mean of the eight answers, each turned back, is
usually a little better than any one of them (CAREamics predicts this way by default).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


def yx_symmetries() -> list[tuple[Transform, Transform]]:
    """(forward, inverse) pairs for the 8 elements of the dihedral group of the y-x plane.

    Both act on (z, y, x, c) arrays (axes 1 and 2) and return views; ``inverse(forward(a))``
    is ``a``. The first pair is the identity. Quarter turns swap the y and x sizes.
    """

    def pair(turns: int, mirror: bool) -> tuple[Transform, Transform]:
        def forward(a: np.ndarray) -> np.ndarray:
            return np.rot90(a[:, :, ::-1] if mirror else a, turns, axes=(1, 2))

        def inverse(a: np.ndarray) -> np.ndarray:
            back = np.rot90(a, -turns, axes=(1, 2))
            return back[:, :, ::-1] if mirror else back

        return forward, inverse

    return [pair(turns, mirror) for mirror in (False, True) for turns in range(4)]
