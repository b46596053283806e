"""Blind-spot masking (Noise2Void, N2V2, structN2V) as a stage of a tf.data pipeline.

A blind-spot network learns to denoise from noisy data alone: in each training patch a
small fraction of pixels is hidden (each replaced by a random neighbour's value, or with
``replacement="median"`` by the median of its neighbours as N2V2 does (Hoeck et al., ECCV
workshops 2022), never its own value) and the loss compares the network's output with the
ORIGINAL noisy value at those pixels only. A network cannot copy a value it does not see,
and pixel-independent noise cannot be predicted from the neighbours, so the best prediction
is the clean signal (Krull et al., CVPR 2019).

Masked pixels are chosen by stratified sampling: the patch is cut into cubic cells of side
``g = floor(fraction ** (-1 / ndim))`` voxels, one uniformly drawn position per cell is kept
with probability ``fraction * g ** ndim <= 1`` (so every voxel is masked with probability
``fraction``, and no two masked voxels share a cell). structN2V (Broaddus et al., ISBI 2020)
also hides the ``struct_span`` voxels on each side of a masked voxel along ``struct_axis``
(for noise correlated along rows or columns) and draws the masked voxel's replacement from
off that line; the loss stays on the masked voxel.

Randomness is stateless (``tf.random.stateless_*``) and seeded per call, so a pipeline
seeded per element and epoch draws fresh masks every epoch and the same masks for a fixed
validation set.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

#: Largest masked fraction: beyond it the hidden pixels are too dense for their neighbours
#: to carry the signal (Noise2Void masks about 0.2 %).
MAX_FRACTION = 0.1
#: What a masked voxel is replaced by: a random neighbour (N2V) or the neighbours' median (N2V2).
REPLACEMENTS = ("random", "median")


@dataclass(frozen=True)
class BlindSpot:
    """Blind-spot masking of one patch.

    Parameters
    ----------
    fraction : float
        Expected fraction of masked voxels, in (0, 0.1] (Noise2Void: 0.002, about 0.2 %).
    window : int
        Odd side, in voxels, of the window around a masked voxel its replacement is drawn
        from (the voxel itself excluded; at the patch border only the part of the window
        inside the patch).
    struct_axis : int or None
        structN2V: the patch axis (-1 = x, -2 = y, -3 = z of a 3D patch) along which the
        noise is correlated; None: plain N2V.
    struct_span : int
        structN2V: voxels hidden on each side of a masked voxel along ``struct_axis``, each
        replaced by the value of a uniformly drawn voxel of the patch. 0 with plain N2V.
    replacement : {"random", "median"}
        What a masked voxel shows the network: the value of one uniformly drawn voxel of its
        window (Noise2Void), or the median of all voxels of its window inside the patch except
        itself (and, for structN2V, its line), per channel (N2V2; the mean of the two middle
        values for an even count).

    Raises
    ------
    ValueError
        A fraction outside (0, 0.1], an even or too small window, a negative span, a span
        without an axis, or an unknown replacement.
    """

    fraction: float = 0.002
    window: int = 5
    struct_axis: int | None = None
    struct_span: int = 0
    replacement: str = "random"

    def __post_init__(self) -> None:
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"blind-spot replacement={self.replacement!r} must be one of {REPLACEMENTS}")
        if not (isinstance(self.fraction, (int, float)) and 0.0 < self.fraction <= MAX_FRACTION):
            raise ValueError(f"blind-spot fraction={self.fraction!r} must be in (0, {MAX_FRACTION}]")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 3 \
                or self.window % 2 == 0:
            raise ValueError(f"blind-spot window={self.window!r} must be an odd integer >= 3")
        if isinstance(self.struct_span, bool) or not isinstance(self.struct_span, int) or self.struct_span < 0:
            raise ValueError(f"blind-spot struct_span={self.struct_span!r} must be an integer >= 0")
        if self.struct_span and self.struct_axis is None:
            raise ValueError(f"blind-spot struct_span={self.struct_span} needs a struct_axis (e.g. -1 for x)")

    def cell(self, ndim: int) -> int:
        """Side ``g`` (voxels) of the sampling cells of an ``ndim``-D patch: ``floor(fraction ** (-1/ndim))``."""
        return math.floor(self.fraction ** (-1.0 / ndim) + 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python description for configs and model cards."""
        return asdict(self)

    def mask_tf(self, x: "tf.Tensor", seed: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
        """Mask one patch.

        Parameters
        ----------
        x : tf.Tensor
            float32 patch ``spatial + (c,)``, 2D ``(y, x, c)`` or 3D ``(z, y, x, c)``, with a
            static shape; channels are masked together (same voxels, same replacement).
        seed : tf.Tensor
            Shape [2], int32 or int64; the same seed gives the same mask.

        Returns
        -------
        masked : tf.Tensor
            ``x`` with every masked voxel replaced by the value of a random other voxel of its
            window or their median (see ``replacement``; and, for structN2V, its line
            neighbours by random voxels of the patch).
        mask : tf.Tensor
            float32 ``spatial + (1,)``: 1 at the masked voxels (where the loss is taken), else 0.

        Raises
        ------
        ValueError
            A patch without a static spatial shape, a ``struct_axis`` outside it, or a patch
            too small to have a neighbour (outside the structN2V line) in the window.
        """
        import tensorflow as tf

        spatial = [int(s) for s in x.shape[:-1]]
        ndim = len(spatial)
        if ndim not in (2, 3) or None in spatial:
            raise ValueError(f"blind-spot masking needs a (y, x, c) or (z, y, x, c) patch of static shape, got {x.shape}")
        line = self._line_axis(ndim)
        others = [a for a in range(ndim) if a != line]
        if max(spatial) < 2 or (self.struct_axis is not None and max(spatial[a] for a in others) < 2):
            raise ValueError(f"blind-spot patch {tuple(spatial)} has no voxel to borrow a value from")
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
        centres = self._centres(spatial, seeds[0], seeds[1])  # (n, ndim) int32
        if self.replacement == "median":
            values = self._window_median(x, centres, spatial, line)
        else:
            values = tf.gather_nd(x, self._neighbours(centres, spatial, line, seeds[2]))
        masked = x
        if self.struct_span:
            masked = self._hide_lines(x, centres, spatial, line, seeds[3])
        masked = tf.tensor_scatter_nd_update(masked, centres, values)
        mask = tf.scatter_nd(centres, tf.ones([tf.shape(centres)[0], 1], tf.float32), spatial + [1])
        return masked, mask

    def training_pair(self, x: "tf.Tensor", seed: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
        """The ``(input, target)`` of blind-spot training for the noisy patch ``x``.

        Returns
        -------
        masked : tf.Tensor
            The masked patch (the network's input), ``spatial + (c,)``.
        target : tf.Tensor
            ``spatial + (c + 1,)``: the unmasked noisy patch with the mask as last channel
            (what :func:`resprunet.training.losses.masked_mse` reads).
        """
        import tensorflow as tf

        masked, mask = self.mask_tf(x, seed)
        return masked, tf.concat([tf.cast(x, tf.float32), mask], axis=-1)

    # helpers ------------------------------------------------------------------------------
    def _line_axis(self, ndim: int) -> int:
        """The structN2V axis as a non-negative index (the last axis for plain N2V)."""
        if self.struct_axis is None:
            return ndim - 1
        if not -ndim <= self.struct_axis < ndim:
            raise ValueError(f"blind-spot struct_axis={self.struct_axis} is outside a {ndim}D patch")
        return self.struct_axis % ndim

    def _centres(self, spatial: list[int], seed_offset: "tf.Tensor", seed_keep: "tf.Tensor") -> "tf.Tensor":
        """(n, ndim) int32 masked positions, one or none per cell of side :meth:`cell`."""
        import tensorflow as tf

        ndim = len(spatial)
        g = self.cell(ndim)
        cells = [-(-s // g) for s in spatial]
        offsets = tf.random.stateless_uniform(cells + [ndim], seed_offset, 0, g, dtype=tf.int32)
        grid = tf.stack(tf.meshgrid(*[tf.range(n) * g for n in cells], indexing="ij"), axis=-1)
        points = grid + offsets
        keep = tf.random.stateless_uniform(cells, seed_keep) < self.fraction * g**ndim
        keep &= tf.reduce_all(points < tf.constant(spatial, tf.int32), axis=-1)
        return tf.boolean_mask(points, keep)

    def _neighbours(self, centres: "tf.Tensor", spatial: list[int], line: int, seed: "tf.Tensor") -> "tf.Tensor":
        """(n, ndim) positions of a uniformly drawn voxel of each centre's window, inside the
        patch, other than the centre (structN2V: off the centre's line along ``line``).

        The window part inside the patch is a box with ``n_a`` positions along axis ``a``; the
        box is enumerated with ``line`` as the fastest axis, so the excluded positions (the
        centre, or its whole line) are one contiguous run of indices that the draw skips.
        """
        import tensorflow as tf

        r = self.window // 2
        ndim = len(spatial)
        order = [a for a in range(ndim) if a != line] + [line]
        size = tf.constant(spatial, tf.int32)
        low = tf.maximum(-r, -centres)  # (n, ndim) first offset inside the patch
        count = tf.minimum(r, size - 1 - centres) - low + 1  # positions per axis
        start, stride = tf.zeros_like(centres[:, 0]), tf.ones_like(centres[:, 0])
        for a in reversed(order):  # mixed-radix index of the centre (offset 0 on every axis)
            start += (-low[:, a]) * stride
            stride *= count[:, a]
        total = stride
        if self.struct_axis is None:
            skip = tf.ones_like(start)
        else:  # the whole line through the centre: digit 0-offsets on the other axes, any along line
            skip = count[:, line]
            start -= -low[:, line]
        u = tf.random.stateless_uniform(tf.shape(start), seed)
        index = tf.minimum(tf.cast(u * tf.cast(total - skip, tf.float32), tf.int32), total - skip - 1)
        index += tf.where(index >= start, skip, 0)
        offsets = [None] * ndim
        for a in reversed(order):
            offsets[a] = low[:, a] + index % count[:, a]
            index //= count[:, a]
        return centres + tf.stack(offsets, axis=-1)

    def _window_median(self, x: "tf.Tensor", centres: "tf.Tensor", spatial: list[int], line: int) -> "tf.Tensor":
        """(n, c) median, per channel, of the voxels of each centre's window inside the patch,
        the centre excluded (structN2V: its whole line along ``line``); even counts give the
        mean of the two middle values."""
        import tensorflow as tf

        r = self.window // 2
        ndim = len(spatial)
        offsets = [o for o in itertools.product(range(-r, r + 1), repeat=ndim)
                   if any(o) and (self.struct_axis is None or any(v for a, v in enumerate(o) if a != line))]
        points = centres[:, None, :] + tf.constant(offsets, tf.int32)[None]  # (n, k, ndim)
        size = tf.constant(spatial, tf.int32)
        inside = tf.reduce_all((points >= 0) & (points < size), axis=-1)  # (n, k)
        values = tf.gather_nd(x, tf.clip_by_value(points, 0, size - 1))  # (n, k, c)
        values = tf.where(inside[..., None], values, tf.constant(float("inf"), x.dtype))
        ordered = tf.sort(values, axis=1)  # outside voxels (+inf) last
        count = tf.reduce_sum(tf.cast(inside, tf.int32), axis=1)  # >= 1 (checked in mask_tf)
        low = tf.gather(ordered, (count - 1) // 2, axis=1, batch_dims=1)
        high = tf.gather(ordered, count // 2, axis=1, batch_dims=1)
        return (low + high) / 2

    def _hide_lines(
        self, x: "tf.Tensor", centres: "tf.Tensor", spatial: list[int], line: int, seed: "tf.Tensor"
    ) -> "tf.Tensor":
        """``x`` with the ``struct_span`` voxels on each side of every centre along ``line``
        replaced by values of uniformly drawn voxels of the patch."""
        import tensorflow as tf

        steps = [k for k in range(-self.struct_span, self.struct_span + 1) if k]
        unit = tf.one_hot(line, len(spatial), dtype=tf.int32)
        points = tf.reshape(centres[:, None, :] + tf.constant(steps, tf.int32)[None, :, None] * unit,
                            [-1, len(spatial)])
        inside = tf.reduce_all((points >= 0) & (points < tf.constant(spatial, tf.int32)), axis=-1)
        points = tf.boolean_mask(points, inside)
        size = tf.constant(spatial, tf.int32)
        u = tf.random.stateless_uniform(tf.shape(points), seed)
        picks = tf.minimum(tf.cast(u * tf.cast(size, tf.float32), tf.int32), size - 1)
        return tf.tensor_scatter_nd_update(x, points, tf.gather_nd(x, picks))
