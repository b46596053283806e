"""tf.data pipelines that serve (noisy[, prior], clean) patches of 2D slices or 3D blocks.

Order of work (science note 1 of the design; the original code cached after adding noise
and shuffled after batching, which froze the noise and only reordered fixed batches):

1. once: read, check, normalise and pad each volume; keep them in memory, or, beyond
   ``memory_budget``, in memory-mapped ``.npy`` files (:mod:`data_pipelines.store`). A lazy
   (Zarr) volume is never read whole: it stays on disk, and each patch reads only its own
   region, which is cast, normalised and padded as the in-memory volume was
   (:mod:`data_pipelines.lazy`); normaliser statistics come from a bounded block sample;
2. per element, every epoch: a random crop (foreground-aware if asked), the same random
   flips/rot90 for noisy, prior and clean, fresh noise, the prior computed from the NOISY
   data as at inference time. Crop, flips and noise are drawn on the host from a numpy
   Generator seeded by (seed, epoch, element index) (numpy's float32 normal sampler costs
   about half the CPU time of TensorFlow's stateless one; ``NoiseModel.apply_tf`` stays
   for on-device use); the prior is computed in TensorFlow;
3. shuffle, batch, prefetch; the element map runs in parallel and keeps its order, so a
   seeded run is reproducible while every epoch differs.

With ``blindspot`` (Noise2Void-type training, :mod:`data_pipelines.blindspot`) the volumes
are the noisy data themselves: no noise is added, and step 2 ends by masking the patch
with a fresh, stateless mask seeded by the element's per-epoch key and index.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf

from .blindspot import BlindSpot
from .errors import InvalidDataError, ShapeMismatchError
from .lazy import LazyPart, LazyPrepared, statistics_blocks
from .noise import GaussianNoise, NoiseModel
from .normalize import Normalizer
from .patches import (augment_slab, check_gamma_range, choose_corner, count_patches, foreground_fraction, pad_to_shape,
                      pad_widths, random_gamma)
from .priors import neighbour_slice_prior_tf, neighbour_weights
from .store import VolumeStore, content_key, spill
from .volume import Volume, is_lazy_array

VolumeLike = Volume | np.ndarray | str | os.PathLike

#: The default synthetic noise (dropped when real ``noisy`` volumes are given).
DEFAULT_NOISE = GaussianNoise(0.05)
#: Crop draws before a background patch is accepted anyway (``foreground``).
FOREGROUND_TRIES = 32
_SEED_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class _Spec:
    """What each prepared volume holds and how patches are cut from it."""

    crop: tuple[int, int, int]  # (pz, py, px); pz = 1 for 2D slices
    ndim: int  # 2 or 3: dimensionality of the patches served
    frames: int  # clean channels: 1, the colour channels, or the frames for the temporal prior
    real_noisy: bool
    prior: str | None  # None, "neighbour", "temporal", "external"
    prior_options: dict[str, Any]  # size, decay, include_self of the neighbour prior
    noise_level: bool = False  # also serve each patch's noise sigma as a map, input "sigma"
    context: int = 0  # 2D: noisy slices on each side served as channels, input "context"
    colour: bool = False  # the last axis holds image channels (RGB): all served together
    blindspot: BlindSpot | None = None  # the volumes are noisy data, served masked

    @property
    def margin(self) -> int:
        """Slices read above and below each crop (the neighbour prior's half window, the
        context slices)."""
        prior = int(self.prior_options["size"]) // 2 if self.prior == "neighbour" else 0
        return max(prior, self.context)

    @property
    def min_depth(self) -> int:
        """Fewest slices a volume needs: 2 for a neighbour prior without the slice itself."""
        return 2 if self.prior == "neighbour" and not self.prior_options["include_self"] else 1

    @property
    def channels(self) -> int:
        return self.frames * (2 if self.real_noisy else 1) + (1 if self.prior == "external" else 0)


def _load(item: VolumeLike, name: str) -> tuple[Any, str]:
    """Array of a Volume, array or path, and the name used in error messages; a lazy chunked
    array (Zarr) stays lazy."""
    if isinstance(item, (str, os.PathLike)):
        from .io import read_volume

        return read_volume(item).array, f"{name} ({os.fspath(item)})"
    if isinstance(item, Volume):
        return item.array, f"{name} ({item.source})" if item.source else name
    return (item if is_lazy_array(item) else np.asarray(item)), name


def _layout(array: Any, name: str, spec: _Spec, patch_shape: tuple[int, ...]) -> tuple[bool, bool]:
    """Check the shape and dtype of an input array (in memory or lazy, nothing is read) and say
    how it becomes (z, y, x, frames): ``(prepend a z axis, append a channel axis)``."""
    shape, dtype = tuple(int(n) for n in array.shape), np.dtype(array.dtype)
    if 0 in shape:
        raise InvalidDataError(f"{name} is empty (shape {shape})")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InvalidDataError(f"{name} has dtype {dtype}; expected real numbers")
    if spec.colour:
        prepend = len(shape) == 3 and spec.ndim == 2 and shape[-1] == spec.frames  # one (y, x, c) image
        if len(shape) + prepend != 4 or shape[-1] != spec.frames:
            raise InvalidDataError(
                f"{name} has shape {shape}; channels={spec.frames} expects (z, y, x, {spec.frames}) "
                f"(or one (y, x, {spec.frames}) image with 2D patches)"
            )
        return prepend, False
    if spec.prior == "temporal":
        if len(shape) != 4 or shape[-1] < 2:
            raise InvalidDataError(
                f"{name} has shape {shape}; prior='temporal' expects (z, y, x, t) with t >= 2 frames"
            )
        return False, False
    prepend = len(shape) == 2 and spec.ndim == 2
    if len(shape) == 4 and shape[-1] == 1:
        return False, False
    if len(shape) + prepend != 3:
        kind = "a 2D (y, x) image" if len(shape) == 2 else f"{len(shape)}D data"
        raise InvalidDataError(
            f"{name} has shape {shape} ({kind}) but patch_shape {patch_shape} needs a "
            "(z, y, x) volume (or (z, y, x, 1)); multi-frame data needs prior='temporal'"
        )
    return prepend, True


def _canonical(array: np.ndarray, name: str, layout: tuple[bool, bool]) -> np.ndarray:
    """An in-memory input array, checked for NaN/Inf, as float32 (z, y, x, frames) (see :func:`_layout`)."""
    finite = np.isfinite(array)
    if not finite.all():
        raise InvalidDataError(
            f"{name} holds {int(array.size - finite.sum())} NaN/Inf voxels (shape {array.shape}); "
            "expected finite values"
        )
    array = array.astype(np.float32, copy=False)
    array = array[None] if layout[0] else array
    return array[..., None] if layout[1] else array


def _inputs(
    index: int, clean_item: VolumeLike, noisy_item: VolumeLike | None, prior_item: VolumeLike | None
) -> list[tuple[Any, str]]:
    """(array, name) of the clean volume, then of its real noisy volume and external prior if
    given, checked to have the clean volume's shape (nothing of a lazy array is read)."""
    inputs = [_load(clean_item, f"volume {index}")]
    for item, label in ((noisy_item, "noisy volume"), (prior_item, "prior")):
        if item is None:
            continue
        array, name = _load(item, f"{label} {index}")
        if tuple(array.shape) != tuple(inputs[0][0].shape):
            raise ShapeMismatchError(
                f"{name} has shape {tuple(array.shape)} but {inputs[0][1]} has shape "
                f"{tuple(inputs[0][0].shape)}; expected equal shapes"
            )
        inputs.append((array, name))
    return inputs


def _fit(
    normalizer: Normalizer, sample: np.ndarray, noise: NoiseModel | None, seed: list[int], name: str
) -> tuple[Normalizer, tuple[float, float]]:
    """``normalizer`` fitted on ``sample`` and the map ``(offset, scale)`` to model units.

    ``sample`` is the clean volume (synthetic noise, blind-spot data) or the real noisy one,
    whole or :func:`~data_pipelines.lazy.statistics_blocks` of it. With synthetic noise and a
    normaliser that needs statistics, the model units are those of the normaliser fitted on one
    noisy realisation of the normalised ``sample`` (noise seeded by ``seed``).
    """
    try:
        fitted = normalizer.fit(sample)
        if noise is None or normalizer.fitted:
            return fitted, (0.0, 1.0)
        on_noisy = normalizer.fit(noise(fitted(sample), np.random.default_rng(seed)))
        return fitted, (float(on_noisy.low), float(on_noisy.high) - float(on_noisy.low))
    except InvalidDataError as err:
        raise InvalidDataError(f"{name}: {err}") from err


def _prepare(
    index: int,
    clean_item: VolumeLike,
    noisy_item: VolumeLike | None,
    prior_item: VolumeLike | None,
    spec: _Spec,
    patch_shape: tuple[int, ...],
    normalizer: Normalizer | None,
    pad: str | None,
    noise: NoiseModel | None,
    seed: int,
) -> tuple[np.ndarray | LazyPrepared, tuple[float, float]]:
    """Read, check, normalise and pad one volume into a (z, y, x, channels) float32 array.

    Follows the normalisation contract (:mod:`data_pipelines.normalize`): with real noisy
    pairs the normaliser is fitted on the noisy volume and applied to all parts; with
    synthetic noise the volume is stored in the units of the normaliser fitted on the clean
    volume (the units the noise sigma is given in), and the returned ``(offset, scale)`` is
    the map ``(v - offset) / scale`` from those units to the units of the same normaliser
    fitted on one seeded noisy realisation (``(0, 1)`` when the normaliser needs no
    statistics), which the sampler applies after the noise: the model sees what
    :func:`resprunet.inference.denoise_array` will give it.

    When any part is a lazy chunked array (Zarr), nothing is read whole: the result is a
    :class:`~data_pipelines.lazy.LazyPrepared` that prepares each region as it is read,
    the normaliser is fitted on :func:`~data_pipelines.lazy.statistics_blocks` (a bounded
    sample, so a normaliser that needs statistics gets slightly different ones than from the
    whole volume), and NaN/Inf voxels are refused in the blocks read, when they are read.
    """
    inputs = _inputs(index, clean_item, noisy_item, prior_item)
    name, shape = inputs[0][1], tuple(inputs[0][0].shape)
    layouts = [_layout(array, label, spec, patch_shape) for array, label in inputs]
    fit_on = 1 if noise is None and noisy_item is not None else 0
    fitted, to_model = None, (0.0, 1.0)
    prepared: np.ndarray | LazyPrepared
    if any(is_lazy_array(array) for array, _ in inputs):
        parts = [LazyPart(array, *layout) for (array, _), layout in zip(inputs, layouts)]
        if normalizer is not None:
            sample = statistics_blocks(parts[fit_on], inputs[fit_on][1])
            fitted, to_model = _fit(normalizer, sample, noise, [seed, index], name)
            parts = [replace(part, normalizer=fitted) for part in parts]
        prepared = LazyPrepared(parts, pad_widths(parts[0].shape, spec.crop, pad, name), pad, name)
    else:
        arrays = [_canonical(array, label, layout) for (array, label), layout in zip(inputs, layouts)]
        if normalizer is not None:
            fitted, to_model = _fit(normalizer, arrays[fit_on], noise, [seed, index], name)
            arrays = [fitted(a) for a in arrays]
        stacked = np.concatenate(arrays, axis=-1) if len(arrays) > 1 else arrays[0]
        prepared = pad_to_shape(stacked, spec.crop, pad, name=name)
    if prepared.shape[0] < spec.min_depth:
        raise InvalidDataError(
            f"{name} has {prepared.shape[0]} slice along z (shape {shape}); the neighbour prior "
            f"without include_self needs at least {spec.min_depth} slices"
        )
    return prepared, to_model


class _PatchSampler:
    """Host side of an element: picks the volume and the crop, reads, augments and corrupts it."""

    def __init__(
        self, store: VolumeStore, spec: _Spec, noise: NoiseModel | None, foreground: float | None, augment: bool,
        to_model: Sequence[tuple[float, float]] | None = None, gamma: tuple[float, float] | None = None,
    ) -> None:
        self.store = store
        self.to_model = list(to_model or [(0.0, 1.0)] * len(store.arrays))
        self.spec = spec
        self.noise = noise
        self.foreground = foreground
        self.augment = augment
        self.gamma = gamma
        sizes = np.array([np.prod(s[:3], dtype=np.float64) for s in store.shapes])
        self.weights = sizes / sizes.sum()

    def __call__(
        self, index: np.int64, key: np.int64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.int64, np.float32]:
        """(slab, noisy, valid, frame, sigma) of element ``index``; ``key`` is its per-epoch
        random key; ``sigma`` the noise standard deviation in model units (0 unless
        ``spec.noise_level``)."""
        rng = np.random.default_rng([int(key) & _SEED_MASK, int(index)])
        volume = int(rng.choice(len(self.weights), p=self.weights))
        array = self.store.arrays[volume]
        crop, frames = self.spec.crop, self.spec.frames
        score = None
        if self.foreground is not None:

            def score(c: tuple[int, ...]) -> float:
                region = array[c[0] : c[0] + crop[0], c[1] : c[1] + crop[1], c[2] : c[2] + crop[2], :frames]
                return foreground_fraction(np.asarray(region))

        corner = choose_corner(rng, array.shape[:3], crop, score, self.foreground or 0.0, FOREGROUND_TRIES)
        slab, valid = self.store.read(volume, corner, crop, self.spec.margin)  # type: ignore[arg-type]
        if self.augment:
            slab, valid = augment_slab(rng, slab, valid, flip_z=self.spec.ndim == 3)
        if self.gamma is not None:  # the clean signal only: make_dataset refuses it with real noisy data
            slab = random_gamma(rng, slab, self.gamma)
        slab, valid = np.ascontiguousarray(slab, np.float32), np.ascontiguousarray(valid)
        sigma = 0.0
        if self.spec.real_noisy:
            noisy = np.ascontiguousarray(slab[..., frames : 2 * frames])
        elif self.noise is None:  # blind-spot training: the volume is the noisy data
            noisy = np.ascontiguousarray(slab[..., :frames])
        else:
            noise = self.noise.realise(rng) if self.spec.noise_level else self.noise  # type: ignore[union-attr]
            noisy = noise(slab[..., :frames], rng)  # type: ignore[misc]
            offset, scale = self.to_model[volume]
            if self.spec.noise_level:
                sigma = float(noise.sigma) / scale  # type: ignore[union-attr]
            if (offset, scale) != (0.0, 1.0):
                slab = ((slab - offset) / scale).astype(np.float32)
                noisy = ((noisy - offset) / scale).astype(np.float32)
        return slab, noisy, valid, np.int64(rng.integers(frames)), np.float32(sigma)


def _element_fn(sampler: _PatchSampler) -> Any:
    """The tf.data map from (element index, random key) to ``(inputs, clean)``.

    The host gives the augmented crop and its noisy version (see :class:`_PatchSampler`);
    here the prior is computed from the noisy slab and the z margin cut.
    """
    spec = sampler.spec
    pz, py, px = spec.crop
    depth = pz + 2 * spec.margin
    f = spec.frames

    def core(t: tf.Tensor) -> tf.Tensor:
        """Cut the z margin; for 2D slices drop the z axis."""
        if spec.margin:
            t = t[spec.margin : spec.margin + pz]
        return t[0] if spec.ndim == 2 else t

    def element(index: tf.Tensor, key: tf.Tensor) -> tuple[Any, tf.Tensor]:
        slab, noisy, valid, frame, sigma = tf.numpy_function(
            sampler, [index, key], [tf.float32, tf.float32, tf.float32, tf.int64, tf.float32]
        )
        slab.set_shape((depth, py, px, spec.channels))
        noisy.set_shape((depth, py, px, f))
        valid.set_shape((depth,))
        frame.set_shape(())
        sigma.set_shape(())
        clean = slab[..., :f] if spec.channels > f else slab
        if spec.prior == "neighbour":
            prior = neighbour_slice_prior_tf(noisy, valid, **spec.prior_options)
            prior = prior[0] if spec.ndim == 2 else prior
        elif spec.prior == "temporal":
            prior = core(tf.reduce_mean(noisy, axis=-1, keepdims=True))
        elif spec.prior == "external":
            prior = core(slab[..., -1:])
        if spec.blindspot is not None:
            return spec.blindspot.training_pair(core(noisy), tf.stack([key, index]))
        if spec.prior == "temporal":  # input and target are one frame of the series
            noisy, clean = tf.gather(noisy, [frame], axis=-1), tf.gather(clean, [frame], axis=-1)
        inputs = {"noisy": core(noisy)}
        if spec.prior is not None:
            inputs["prior"] = prior
        if spec.noise_level:
            inputs["sigma"] = tf.fill(tf.concat([tf.shape(inputs["noisy"])[:-1], [1]], 0), sigma)
        if spec.context:  # z-1, z+1, z-2, z+2, ...: zeros beyond the volume (as at inference)
            m = spec.margin
            order = [m + sign * k for k in range(1, spec.context + 1) for sign in (-1, 1)]
            inputs["context"] = tf.concat(
                [noisy[i] * valid[i] for i in order], axis=-1)
        return (inputs if len(inputs) > 1 else inputs["noisy"]), core(clean)

    return element


def _check_list(name: str, items: Sequence[VolumeLike] | None, n: int) -> list[VolumeLike | None]:
    if items is None:
        return [None] * n
    items = list(items)
    if len(items) != n:
        raise ShapeMismatchError(f"{name} holds {len(items)} volumes but volumes holds {n}; expected one per volume")
    return items


def _build_store(
    prepared: Iterable[np.ndarray | LazyPrepared],
    memory_budget: int | None,
    cache_dir: str | os.PathLike | None,
    settings: dict[str, Any],
) -> VolumeStore:
    """Keep prepared in-memory volumes in memory until ``memory_budget`` bytes, then spill them
    all to .npy memmaps; lazy (Zarr) volumes stay lazy and count for nothing."""
    arrays: list[np.ndarray | LazyPrepared] = []
    total, folder = 0, cache_dir
    for array in prepared:
        arrays.append(array)
        total += array.nbytes if isinstance(array, np.ndarray) else 0
        if memory_budget is not None and total > memory_budget:
            if folder is None:
                folder = tempfile.mkdtemp(prefix="data_pipelines-cache-")
            arrays = [a if not isinstance(a, np.ndarray) or isinstance(a, np.memmap)
                      else spill(a, content_key([a], settings), folder) for a in arrays]
    return VolumeStore(arrays)  # type: ignore[arg-type]


def make_dataset(
    volumes: Sequence[VolumeLike],
    *,
    patch_shape: tuple[int, ...] = (32, 64, 64),
    noise: NoiseModel | None = DEFAULT_NOISE,
    noisy: Sequence[VolumeLike] | None = None,
    prior: str | Sequence[VolumeLike] | None = None,
    prior_options: dict[str, Any] | None = None,
    normalizer: Normalizer | None = None,
    batch_size: int = 2,
    seed: int = 0,
    training: bool = True,
    augment: bool = True,
    patches_per_epoch: int | None = None,
    foreground: float | None = None,
    pad: str | None = "reflect",
    memory_budget: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    noise_level: bool = False,
    context: int = 0,
    channels: int = 1,
    blindspot: BlindSpot | None = None,
    gamma: Sequence[float] | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline of ``(inputs, clean)`` training or validation patches.

    Parameters
    ----------
    volumes : sequence of Volume, np.ndarray or path
        Clean volumes (z, y, x) (or (z, y, x, 1); (z, y, x, t) for ``prior="temporal"``;
        a (y, x) image is one slice, allowed only with a 2D ``patch_shape``). Already
        normalised to [0, 1] unless ``normalizer`` is given. Paths are read with
        :func:`data_pipelines.read_volume`. A lazy volume (Zarr / OME-Zarr, ``Volume.is_lazy``;
        also in ``noisy`` and external ``prior``) is sampled lazily: each element reads only
        its patch's region (plus the prior's z margin), never the whole volume, and the batches
        are those of the same volume in memory for the same seed, bit for bit, with one
        exception: a normaliser that needs statistics (``percentile``, ``minmax``) is fitted on
        :func:`data_pipelines.lazy.statistics_blocks` (at most
        :data:`~data_pipelines.lazy.LAZY_STATISTICS_VOXELS` voxels, blocks spread evenly over
        the volume), not on the whole volume (on the mni152_t1 sample with 5 % noise the window
        moved by 0.2 % of the range for ``percentile(1, 99.8)``, 0.5 % for ``minmax``). NaN/Inf voxels of a lazy volume are refused when a read
        meets them (in the statistics blocks at build time, else when a patch is drawn).
    patch_shape : (pz, py, px) or (py, px)
        3D patches, or 2D patches from slices sampled along axis 0 (z).
    noise : NoiseModel or None
        Synthetic noise, fresh for every element and epoch. Sigmas are in normalised units.
    noisy : sequence, optional
        Real noisy volumes paired with ``volumes`` (e.g. low-dose / full-dose); then no
        synthetic noise is added (leave ``noise`` at its default or pass None).
    prior : None, "neighbour", "temporal" or sequence
        ``"neighbour"``: :func:`~data_pipelines.neighbour_slice_prior` of the NOISY data along
        z, computed as at inference time (the crop is read with a margin of ``size // 2``
        slices, corrupted, the prior computed and the margin cut; slices beyond the volume
        are left out). ``"temporal"``: the mean of the noisy frames of a (z, y, x, t) series;
        input and target are one random frame. A sequence: external priors, one per volume,
        same shape (normalised with the volume's normaliser; no noise added to them).
    prior_options : dict, optional
        ``size`` (9), ``decay`` (0.04), ``include_self`` (False) of the neighbour prior, as
        for :func:`~data_pipelines.neighbour_slice_prior` (``axis``, if given, must be 0).
    normalizer : Normalizer, optional
        Fitted per volume as the normalisation contract says (:mod:`data_pipelines.normalize`):
        on the real noisy volume when ``noisy`` is given, else on one noisy realisation
        (seeded by ``seed`` and the volume's index) of the clean volume, whose noise is added
        in the units of the map fitted on the clean volume (so sigmas keep their meaning).
        The fitted map is applied to noisy input, clean target and external prior alike.
    batch_size : int
        Patches per batch.
    seed : int
        Seeds crops, noise, augmentation and shuffling; the same seed gives the same batches,
        and every epoch (iteration of the dataset) differs when ``training``.
    training : bool
        False gives a deterministic validation set: the same crops and noise every epoch,
        no augmentation, no shuffling.
    augment : bool
        Random flips (z for 3D patches, y, x) and rot90 in the y-x plane (half turns only
        for non-square patches), applied identically to noisy, prior and clean.
    patches_per_epoch : int, optional
        Elements per epoch; default enough patches to cover each volume about once,
        rounded up to a multiple of ``batch_size``.
    foreground : float, optional
        Minimum fraction of clean voxels above 0.05 (normalised units) in a patch; a patch
        below it is redrawn, up to 10 times, then the most-foreground draw is kept.
    pad : {"reflect", "constant"} or None
        What to do with a volume smaller than the patch along an axis (thin Z stacks): pad
        it once, centred, by mirroring (``"reflect"``, the default: no artificial edges)
        or with zeros (``"constant"``); None raises :class:`PatchSizeError` instead.
    memory_budget : int, optional
        Bytes. When the prepared volumes (float32) exceed it, they are written once to
        ``.npy`` files and patches are read lazily from memory maps. None: no limit.
        Lazy (Zarr) volumes are read from their store and count for nothing here.
    cache_dir : path, optional
        Folder for those files (default a new temporary folder). File names hash the
        volume content together with the normaliser and padding, so a changed setting
        never reuses a stale file.
    noise_level : bool
        Also serve the noise standard deviation of each patch, in the model's normalised
        units, as a constant map ``inputs["sigma"]`` of the noisy patch's shape (for models
        conditioned on the noise level). Needs synthetic Gaussian noise; with a (low, high)
        sigma range, each patch's sigma is drawn from it.
    context : int
        2D patches only ("2.5D"): also serve the ``context`` noisy slices above and below
        each patch slice as channels of ``inputs["context"]`` (z-1, z+1, z-2, z+2, ...;
        zeros beyond the volume), with the same noise draw as the patch.
    channels : int
        Image channels (3 for RGB): volumes are (z, y, x, channels) (one (y, x, channels)
        image with 2D patches), normalised together, corrupted independently per channel,
        and served whole as input and target. Not with ``prior="temporal"``.
    blindspot : BlindSpot, optional
        Blind-spot (Noise2Void) training: ``volumes`` are NOISY volumes (normalised on
        themselves by ``normalizer``), no noise is added (``noise`` must be None or left at
        its default), and each patch is served masked by
        :meth:`~data_pipelines.blindspot.BlindSpot.training_pair` with a fresh mask per
        element and epoch (a fixed one per element when not ``training``). Not with
        ``noisy``, a prior, ``noise_level`` or ``context``.
    gamma : (low, high), optional
        Contrast augmentation of training patches (not validation): each clean patch goes
        through a gamma curve with ``g`` log-uniform in ``[low, high]`` that keeps its minimum
        and maximum (:func:`~data_pipelines.patches.random_gamma`), before noise is added and
        the prior computed, so a model trained on one contrast (a T1 template) sees others.
        Synthetic noise only: not with ``noisy``, ``blindspot`` or an external ``prior``.

    Returns
    -------
    tf.data.Dataset
        Batches ``(inputs, clean)``: ``clean`` float32 (B, pz, py, px, channels) for 3D
        patches or (B, py, px, channels) for 2D; ``inputs`` the noisy tensor of the same
        shape, or a dict
        ``{"noisy": ..., "prior": ..., "sigma": ...}`` when a prior or the noise level is asked.
        With ``blindspot``: ``(masked, target)``, ``masked`` the masked noisy patch and
        ``target`` the unmasked noisy patch with the mask as an extra last channel
        (B, ..., channels + 1).

    Raises
    ------
    InvalidDataError
        Empty volume list, NaN/Inf voxels, a 2D image where a 3D volume is needed.
    ShapeMismatchError
        A noisy volume or external prior whose shape differs from its volume.
    PatchSizeError
        A volume smaller than the patch when ``pad`` is None.
    """
    volumes = list(volumes)
    if not volumes:
        raise InvalidDataError("make_dataset got an empty list of volumes; expected at least one")
    patch_shape = tuple(int(p) for p in patch_shape)
    if len(patch_shape) not in (2, 3) or min(patch_shape) < 1:
        raise ValueError(f"patch_shape must be (pz, py, px) or (py, px) of positive sizes, got {patch_shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if foreground is not None and not 0.0 <= foreground <= 1.0:
        raise ValueError(f"foreground must be a fraction in [0, 1], got {foreground}")
    if blindspot is not None:
        if noise is not None and noise is not DEFAULT_NOISE:
            raise ValueError("blindspot training uses the volumes' own noise: pass noise=None")
        if noisy is not None or prior is not None or noise_level or context:
            raise ValueError("blindspot training takes noisy volumes only: no noisy pairs, prior, "
                             "noise_level or context")
        noise = None
    elif noisy is not None:
        if noise is not None and noise is not DEFAULT_NOISE:
            raise ValueError("real noisy volumes were given: pass noise=None (no synthetic noise is added)")
        noise = None
    elif noise is None:
        raise ValueError("no noise: give a NoiseModel as noise, or real noisy volumes as noisy")
    if context and len(patch_shape) != 2:
        raise ValueError(f"context (neighbouring slices as channels) needs 2D patches, got {patch_shape}")
    if context and prior is not None:
        raise ValueError("context (neighbouring slices as channels) cannot be combined with a prior")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    gamma_range = None if gamma is None else check_gamma_range(gamma)
    if gamma_range is not None and (noise is None or (prior is not None and not isinstance(prior, str))):
        raise ValueError("gamma changes the contrast of clean volumes before synthetic noise is added: not with "
                         "noisy volumes (real pairs, blind-spot) or an external prior, which it would not match")
    if channels > 1 and prior == "temporal":
        raise ValueError("channels > 1 (colour images) cannot be combined with prior='temporal' (frames)")
    if noise_level and not isinstance(noise, GaussianNoise):
        raise ValueError("noise_level=True needs synthetic Gaussian noise (a GaussianNoise), "
                         f"got {noise!r}")
    if isinstance(prior, str) and prior not in ("neighbour", "temporal"):
        raise ValueError(f"prior must be None, 'neighbour', 'temporal' or a list of arrays, got {prior!r}")
    options = {"size": 9, "decay": 0.04, "include_self": False, **(prior_options or {})}
    if options.pop("axis", 0) not in (0, -3):
        raise ValueError(f"prior_options axis must be 0: the neighbour prior is taken along z, got {prior_options}")
    unknown = set(options) - {"size", "decay", "include_self"}
    if unknown:
        raise ValueError(f"unknown prior_options {sorted(unknown)}; expected size, decay, include_self (and axis=0)")
    neighbour_weights(**options)  # validates the values
    kind = None if prior is None else prior if isinstance(prior, str) else "external"
    spec = _Spec(
        crop=patch_shape if len(patch_shape) == 3 else (1, *patch_shape),  # type: ignore[arg-type]
        ndim=len(patch_shape),
        frames=int(channels),  # set from the data below for the temporal prior
        real_noisy=noisy is not None,
        prior=kind,
        prior_options=options,
        noise_level=noise_level,
        context=int(context),
        colour=channels > 1,
        blindspot=blindspot,
    )
    noisy_items = _check_list("noisy", noisy, len(volumes))
    prior_items = _check_list("prior", None if kind != "external" else prior, len(volumes))  # type: ignore[arg-type]
    to_model: list[tuple[float, float]] = []

    def prepared() -> Iterable[np.ndarray | LazyPrepared]:
        for i, (v, n, p) in enumerate(zip(volumes, noisy_items, prior_items)):
            array, affine = _prepare(i, v, n, p, spec, patch_shape, normalizer, pad, noise, seed)
            to_model.append(affine)
            yield array

    settings = {"normalizer": None if normalizer is None else normalizer.to_dict(), "pad": pad, "crop": spec.crop}
    store = _build_store(prepared(), memory_budget, cache_dir, settings)
    if kind == "temporal":
        frames = {s[-1] // (2 if spec.real_noisy else 1) for s in store.shapes}
        if len(frames) != 1:
            raise ShapeMismatchError(
                f"prior='temporal' needs the same number of frames in every volume, got {sorted(frames)}"
            )
        spec = replace(spec, frames=frames.pop())

    if patches_per_epoch is None:
        patches_per_epoch = sum(count_patches(s[:3], spec.crop) for s in store.shapes)
    n = int(np.ceil(max(int(patches_per_epoch), 1) / batch_size)) * batch_size
    sampler = _PatchSampler(store, spec, noise, foreground, augment and training, to_model,
                            gamma_range if training else None)
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=training).take(n).enumerate()
    ds = ds.map(_element_fn(sampler), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        ds = ds.shuffle(min(n, max(4 * batch_size, 16)), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def split_volumes(
    volumes: Sequence[VolumeLike], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[VolumeLike], list[VolumeLike]]:
    """Split a list of volumes (subjects) into training and validation, never slices.

    Parameters
    ----------
    volumes : sequence
        Volumes, arrays or paths; each one goes wholly to one side.
    val_fraction : float
        Share of volumes for validation, in (0, 1); rounded, at least one volume on each side.
    seed : int
        Seeds the random assignment.

    Returns
    -------
    (train, val) : two lists, each in the input order.

    Raises
    ------
    InvalidDataError
        With fewer than 2 volumes (a split by volume is impossible).
    """
    items = list(volumes)
    if len(items) < 2:
        raise InvalidDataError(
            f"split_volumes needs at least 2 volumes to split by volume, got {len(items)}; "
            "splitting one volume by slice would leak neighbouring slices into validation"
        )
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = min(len(items) - 1, max(1, int(round(len(items) * val_fraction))))
    val_index = set(np.random.default_rng(seed).permutation(len(items))[:n_val].tolist())
    train = [v for i, v in enumerate(items) if i not in val_index]
    val = [v for i, v in enumerate(items) if i in val_index]
    return train, val
