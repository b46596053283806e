"""Tiled prediction of a volume (:func:`predict_volume`) and denoising in source units (:func:`denoise_array`)."""
from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np
from data_pipelines.errors import InvalidDataError, ShapeMismatchError
from tqdm.auto import tqdm

from .output import Sink, SlabAccumulator, output_target, release_pages
from .tiles import Shape3, TileGrid, gaussian_weights, halo_weights, per_axis, plan_tiles
from .tta import yx_symmetries

log = logging.getLogger(__name__)


class _OutOfMemory(Exception):
    """A tile batch of one still did not fit; the tile must shrink."""


def _is_oom(exc: BaseException) -> bool:
    """True for TensorFlow's ResourceExhaustedError, MemoryError, or an "out of memory" message."""
    import tensorflow as tf

    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    return "out of memory" in str(exc).lower()


def _pad_to(block: np.ndarray, shape: Shape3) -> np.ndarray:
    """Reflect-pad the end of the three spatial axes of ``block`` up to ``shape``."""
    pads = [(0, t - s) for s, t in zip(block.shape[:3], shape)]
    if not any(p for _, p in pads):
        return block
    return np.pad(block, pads + [(0, 0)] * (block.ndim - 3), mode="reflect")


def _model_batch(
    model: Any, tiles: np.ndarray, extras: dict[str, np.ndarray], ndim: int
) -> np.ndarray:
    """Run one batch (b, z, y, x, c) through the model, with its other inputs (``"prior"``,
    ``"context"``) cut alike; returns float32 (b, z, y, x, c')."""
    if ndim == 2:
        tiles = tiles[:, 0]
        extras = {name: e[:, 0] for name, e in extras.items()}
    inputs: Any = {"noisy": tiles, **extras} if extras else tiles
    out = np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
    return out[:, np.newaxis] if ndim == 2 else out


class _WithNoiseLevel:
    """A noise-conditioned model given its constant ``"sigma"`` map with every batch (the
    rest of the model's attributes pass through)."""

    def __init__(self, model: Any, sigma: float) -> None:
        self.model = model
        self.sigma = float(sigma)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict_on_batch(self, inputs: Any) -> Any:
        named = dict(inputs) if isinstance(inputs, dict) else {"noisy": inputs}
        named["sigma"] = np.full(named["noisy"].shape[:-1] + (1,), self.sigma, np.float32)
        return self.model.predict_on_batch(named)


def _predict_in_chunks(
    model: Any,
    tiles: np.ndarray,
    extras: dict[str, np.ndarray],
    ndim: int,
    batch_size: list[int],
) -> np.ndarray:
    """Predict ``tiles`` in chunks of ``batch_size[0]``, halving it on out-of-memory."""
    outputs = []
    i = 0
    while i < len(tiles):
        size = batch_size[0]
        chunk = slice(i, i + size)
        try:
            outputs.append(
                _model_batch(model, tiles[chunk], {k: e[chunk] for k, e in extras.items()}, ndim)
            )
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM
            if not _is_oom(exc):
                raise
            if size == 1:
                raise _OutOfMemory(str(exc)) from exc
            batch_size[0] = size // 2
            log.warning(
                "out of memory on a batch of %d tiles; retrying with batch_size=%d",
                size, batch_size[0],
            )
            continue
        i += size
    return np.concatenate(outputs)


def _run_grid(
    model: Any,
    x: np.ndarray,
    extras: dict[str, np.ndarray],
    grid: TileGrid,
    weights: np.ndarray,
    ndim: int,
    batch_size: list[int],
    sink: Sink,
    out_channels: int,
    progress: bool,
) -> None:
    """Predict every tile of ``grid``, blend with ``weights`` (the tile's shape) into ``sink``;
    ``extras`` are the model's other (z, y, x, c) inputs by name, cut like ``x``."""
    acc = SlabAccumulator(sink, x.shape[1:3], out_channels)
    starts = list(grid)
    z_len = x.shape[0]
    with tqdm(total=len(starts), desc="tiles", unit="tile", disable=not progress) as bar:
        b = 0
        while b < len(starts):
            batch = starts[b : b + batch_size[0]]
            tiles: list[np.ndarray] = []
            cut: dict[str, list[np.ndarray]] = {name: [] for name in extras}
            for z0, y0, x0 in batch:
                region = (slice(z0, z0 + grid.tile_shape[0]), slice(y0, y0 + grid.tile_shape[1]),
                          slice(x0, x0 + grid.tile_shape[2]))
                tiles.append(_pad_to(np.asarray(x[region], np.float32), grid.tile_shape))
                for name, extra in extras.items():
                    cut[name].append(_pad_to(np.asarray(extra[region], np.float32), grid.tile_shape))
            pred = _predict_in_chunks(
                model, np.stack(tiles), {k: np.stack(v) for k, v in cut.items()}, ndim, batch_size
            )
            for (z0, y0, x0), p in zip(batch, pred):
                dz, dy, dx = (min(t, n - s) for t, n, s in
                              zip(grid.tile_shape, x.shape[:3], (z0, y0, x0)))
                acc.add((z0, y0, x0), p[:dz, :dy, :dx], weights[:dz, :dy, :dx])
            b += len(batch)
            done = starts[b][0] if b < len(starts) else z_len
            acc.flush(done)
            for source in (x, *extras.values()):  # input rows below ``done`` are not read again
                release_pages(source, 0, done)
            bar.update(len(batch))


def context_slices(x: np.ndarray, context: int) -> np.ndarray:
    """The ``context`` slices above and below every slice of a (z, y, x, c) array as
    channels, (z, y, x, 2 context c), ordered z-1, z+1, z-2, z+2, ...; zeros beyond the
    volume (as :func:`data_pipelines.make_dataset` serves them in training)."""
    z = x.shape[0]
    padded = np.pad(np.asarray(x, np.float32), [(context, context)] + [(0, 0)] * (x.ndim - 1))
    parts = [padded[context + sign * k : context + sign * k + z]
             for k in range(1, context + 1) for sign in (-1, 1)]
    return np.concatenate(parts, axis=-1)


def _model_info(model: Any) -> Any:
    from resprunet import models

    return models.describe(model)


def _as_zyxc(x: np.ndarray, name: str, ndim: int, channels: int) -> np.ndarray:
    """View ``x`` as (z, y, x, c): (y, x) -> (1, y, x, 1); (z, y, x) -> (z, y, x, 1)."""
    if x.ndim == 2:
        if ndim == 3:
            raise InvalidDataError(
                f"{name} is a 2D image of shape {x.shape}; a 3D model needs a (z, y, x) volume"
            )
        x = x[np.newaxis]
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise InvalidDataError(
            f"{name} has shape {x.shape}; expected (y, x), (z, y, x) or (z, y, x, c)"
        )
    if x.shape[-1] != channels:
        raise InvalidDataError(
            f"{name} has {x.shape[-1]} channel(s) (shape {x.shape}); the model expects {channels}"
        )
    return x


def _model_axes(info: Any) -> tuple[Shape3, Shape3]:
    """(divisor, receptive field) of a model along (z, y, x): 1 along z for a 2D model."""
    spatial = 2 if int(info.ndim) == 2 else 3
    return (per_axis(info.divisor, "divisor", spatial),
            per_axis(info.receptive_field, "receptive_field", spatial))


def plan_grid(
    model: Any,
    volume_shape: Shape3,
    tile_shape: tuple[int, ...] | None,
    *,
    overlap: float = 0.25,
    batch_size: int = 4,
    memory_budget: float | None = None,
    quiet: bool = False,
) -> tuple[TileGrid, int]:
    """The tile grid and batch size :func:`predict_volume` uses for a (z, y, x) volume.

    Parameters
    ----------
    model : keras.Model
        The model (its :func:`resprunet.models.describe` gives divisor and receptive field).
    volume_shape : tuple of int
        (z, y, x) in voxels (for a 2D model, z counts the slices).
    tile_shape, overlap, batch_size, memory_budget
        As in :func:`predict_volume`: an explicit ``tile_shape`` goes to
        :func:`~resprunet.inference.tiles.plan_tiles`; None plans from ``memory_budget``
        (bytes) with :func:`~resprunet.inference.tiles.plan_auto_tiles` and caps the batch at
        the tiles that fit it together.
    quiet : bool
        Log the default plan at DEBUG instead of INFO (a plan already logged once).

    Returns
    -------
    (TileGrid, int)
        The grid and the batch size (tiles per model call).
    """
    from .tiles import activation_bytes_per_voxel, plan_auto_tiles
    from .tiles import memory_budget as default_budget

    info = _model_info(model)
    ndim = int(info.ndim)
    divisor, rf = _model_axes(info)
    spatial = 2 if ndim == 2 else 3
    tile = None if tile_shape is None else per_axis(tuple(tile_shape)[-spatial:], "tile_shape", spatial)
    if tile is None:
        budget = default_budget() if memory_budget is None else float(memory_budget)
        try:
            per_voxel = activation_bytes_per_voxel(model)
        except Exception as exc:  # noqa: BLE001 - not a functional graph: no estimate
            log.warning("no activation-memory estimate for this model (%s); whole volume", exc)
            tile = (1, *volume_shape[1:3]) if ndim == 2 else tuple(volume_shape)  # type: ignore[assignment]
        else:
            planned = plan_auto_tiles(volume_shape, divisor=divisor, receptive_field=rf,
                                      bytes_per_voxel=per_voxel, budget_bytes=budget,
                                      slices=ndim == 2)
            fit = int(budget // (per_voxel * math.prod(planned.tile_shape)))
            batch = max(1, min(int(batch_size), fit))
            log.log(logging.DEBUG if quiet else logging.INFO,
                    "default tiling: %d tile(s) of %s (overlap %s), batch %d; about %.0f B/voxel "
                    "of activations, budget %.0f MB", planned.n_tiles, planned.tile_shape,
                    planned.overlap, batch, per_voxel, budget / 2**20)
            return planned, batch
    return plan_tiles(volume_shape, tile, divisor=divisor, receptive_field=rf, overlap=overlap), int(batch_size)


def predict_volume(
    model: Any,
    x: np.ndarray,
    prior: np.ndarray | None = None,
    *,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    blend: str = "gaussian",
    out: np.ndarray | str | os.PathLike | Any | None = None,
    progress: bool = True,
    memory_budget: float | None = None,
    sigma: float | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Denoise a 2D image or a volume with a Keras model, tile by tile.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`resprunet.models.build` (or loaded from the zoo). Its
        :func:`resprunet.models.describe` gives the dimensionality, channels, whether it
        needs a prior, the divisor each tile axis must be a multiple of, and the receptive
        field. A 2D model is applied slice by slice (tiles in y, x); a 3D model on 3D tiles.
    x : np.ndarray
        Normalised input (float32, typically in [0, 1]): (y, x) for a 2D image, (z, y, x)
        or (z, y, x, c). May be a ``np.memmap``; only one slab of tiles is read at a time.
    prior : np.ndarray, optional
        Same shape as ``x``; required when the model needs a prior (ResPr-UNet), which then
        receives ``{"noisy": tile, "prior": prior_tile}``.
    tile_shape : tuple of int, optional
        (z, y, x) tile in voxels ((y, x) for a 2D model); rounded up to the model's divisor,
        raised to the least the model's receptive field needs and clipped to the volume;
        the result equals the whole-volume prediction to float rounding. None (the
        default): planned from memory by
        :func:`resprunet.inference.tiles.plan_auto_tiles`: the whole volume (a 2D model:
        whole slices) when the model's estimated activations
        (:func:`~resprunet.inference.tiles.activation_bytes_per_voxel`) fit
        ``memory_budget``, else the largest tiles that fit, placed to process as few voxels
        as possible, each with a halo of half the receptive field (rounded up to the
        divisor) at its inner faces whose predictions are outweighed by a neighbour's, so
        that the result equals the whole-volume prediction to float rounding.
    overlap : float
        With an explicit ``tile_shape``: fraction of each tile shared with its neighbours
        (0.25 = 25 %), raised per axis to twice the halo (see
        :func:`~resprunet.inference.tiles.plan_tiles`, which logs any change it makes). Not
        used by the default tiling (its overlap is twice the halo).
    batch_size : int
        Tiles per model call; halved (then the tile halved) when TensorFlow runs out of
        memory, with a warning. With the default tiling, also capped at the number of tiles
        that fit ``memory_budget`` together.
    blend : {"gaussian", "constant"}
        Weights for blending overlapping tiles: Gaussian (sigma = tile / 8) or uniform.
    out : np.ndarray, np.memmap, str, os.PathLike or h5py.Dataset, optional
        Where to write the result, slab by slab along z. A ``.npy`` path is created as a
        memory-mapped array (written atomically). Its shape must be the output shape.
    progress : bool
        Show a progress bar over tiles.
    memory_budget : float, optional
        Bytes the default tiling may fill; None: :func:`~resprunet.inference.tiles.memory_budget`
        (25 % of the available RAM, at most 4 GiB). Not used with an explicit ``tile_shape``.
    sigma : float, optional
        Noise standard deviation of ``x`` (normalised units), given as a constant map to a
        model conditioned on the noise level (a ``"sigma"`` input); required for such a
        model, ignored otherwise.
    tta : bool
        Test-time augmentation: predict the 8 flipped and quarter-turned copies of ``x`` in
        the y-x plane (:func:`resprunet.inference.tta.yx_symmetries`), turn each back and
        average them. 8x the time, and one whole prediction is held in memory besides
        ``out``; for models trained with flips and quarter turns (the default augmentation).

    Returns
    -------
    np.ndarray
        float32 prediction with the shape of ``x`` (the model's output channels replace
        the input's; a channel axis of 1 is dropped when ``x`` had none). When ``out`` is
        given, that array (or the memory-mapped file reopened read-only, or the dataset).

    Raises
    ------
    InvalidDataError
        Wrong dimensionality or channels for the model, or bad tiling parameters.
    ShapeMismatchError
        ``prior`` is missing for a model that needs one, or its shape differs from ``x``.
    """
    info = _model_info(model)
    ndim = int(info.ndim)
    if blend not in ("gaussian", "constant"):
        raise InvalidDataError(f"blend must be 'gaussian' or 'constant', got {blend!r}")
    if batch_size < 1:
        raise InvalidDataError(f"batch_size must be >= 1, got {batch_size}")
    x_in = np.asarray(x) if not isinstance(x, np.ndarray) else x
    x4 = _as_zyxc(x_in, "x", ndim, int(info.channels))
    p4 = None
    if info.needs_prior:
        if prior is None:
            raise ShapeMismatchError(
                f"this model needs a prior of the same shape as x {x_in.shape}; none was given"
            )
        if tuple(np.shape(prior)) != tuple(x_in.shape):
            raise ShapeMismatchError(
                f"prior has shape {tuple(np.shape(prior))}; expected the shape of x {x_in.shape}"
            )
        p4 = _as_zyxc(np.asarray(prior) if not isinstance(prior, np.ndarray) else prior,
                      "prior", ndim, int(info.channels))
    elif prior is not None:
        log.warning("the model takes no prior; the prior given is ignored")
    if info.needs_sigma:
        if sigma is None or not np.isfinite(sigma) or sigma < 0:
            raise InvalidDataError(
                f"this model is conditioned on the noise level: give sigma >= 0 in normalised units, got {sigma}"
            )
        model = _WithNoiseLevel(model, sigma)

    out_channels = int(model.outputs[0].shape[-1])
    out_shape = tuple(x_in.shape[:-1]) if x_in.ndim == 4 else tuple(x_in.shape)
    out_shape = out_shape + ((out_channels,) if (x_in.ndim == 4 or out_channels > 1) else ())

    def predict_into(sink: Sink, volume: np.ndarray, volume_prior: np.ndarray | None,
                     quiet: bool = False) -> None:
        extras = {} if volume_prior is None else {"prior": volume_prior}
        if info.context:  # a 2.5D model: the neighbouring slices of every slice as channels
            extras["context"] = context_slices(volume, int(info.context))
        _predict_tiled(model, info, volume, extras, sink, tile_shape=tile_shape, overlap=overlap,
                       batch_size=batch_size, blend=blend, memory_budget=memory_budget,
                       out_channels=out_channels, progress=progress, quiet=quiet)

    with output_target(out, out_shape) as target:
        if not tta:
            predict_into(Sink(target), x4, p4)
        else:
            symmetries = yx_symmetries()
            for i, (forward, inverse) in enumerate(symmetries):
                turned = forward(x4)
                part = np.empty((*turned.shape[:3], out_channels), np.float32)
                # passes 0 and 1 cover both (y, x) orders; later plans repeat theirs
                predict_into(Sink(part), turned, None if p4 is None else forward(p4), quiet=i > 1)
                share = inverse(part).reshape(target.shape) / len(symmetries)
                target[...] = share if i == 0 else target[...] + share
        result = target
    if isinstance(out, (str, os.PathLike)):
        return np.load(out, mmap_mode="r")
    return result


def _predict_tiled(model: Any, info: Any, x4: np.ndarray, extras: dict[str, np.ndarray], sink: Sink, *,
                   tile_shape: tuple[int, ...] | None, overlap: float, batch_size: int, blend: str,
                   memory_budget: float | None, out_channels: int, progress: bool,
                   quiet: bool = False) -> None:
    """Predict the (z, y, x, c) array ``x4`` (with its other inputs ``extras``) tile by tile
    into ``sink``, planning the tiles as :func:`predict_volume` says and halving them when
    TensorFlow runs out of memory; ``info`` is the model's description, ``quiet`` logs the plan
    at DEBUG."""
    grid, planned_batch = plan_grid(model, tuple(x4.shape[:3]), tile_shape, overlap=overlap,
                                    batch_size=batch_size, memory_budget=memory_budget, quiet=quiet)
    batch = [planned_batch]
    divisor, rf = _model_axes(info)
    while True:
        weights = gaussian_weights(grid) if blend == "gaussian" else halo_weights(grid)
        try:
            _run_grid(model, x4, extras, grid, weights, int(info.ndim), batch, sink, out_channels,
                      progress)
            return
        except _OutOfMemory as exc:
            smaller = plan_tiles(x4.shape[:3], tuple(t // 2 for t in grid.tile_shape),
                                 divisor=divisor, receptive_field=rf, overlap=overlap)
            if smaller.tile_shape == grid.tile_shape:
                raise MemoryError(
                    f"out of memory on a single tile of shape {grid.tile_shape}, the smallest "
                    f"this model allows: {exc}"
                ) from exc
            log.warning("out of memory on one tile of shape %s; retrying with tiles of %s",
                        grid.tile_shape, smaller.tile_shape)
            grid = smaller


def denoise_array(
    model: Any,
    array: np.ndarray,
    normalizer: Any,
    *,
    prior: str | np.ndarray | None = "auto",
    prior_options: dict[str, Any] | None = None,
    tile_shape: tuple[int, ...] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    progress: bool = True,
    sigma: float | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Denoise an array in source units (HU, counts): normalise, predict, invert exactly.

    Parameters
    ----------
    model : keras.Model
        A denoising model (see :func:`predict_volume`).
    array : np.ndarray
        (z, y, x) or (z, y, x, c) in the source's units, as in ``Volume.array``; a 2D
        image is (1, y, x).
    normalizer : data_pipelines.Normalizer
        The model's normalisation (from its card), applied as the normalisation contract
        says (:mod:`data_pipelines.normalize`): one that needs statistics (percentile,
        min-max) is fitted on ``array`` (the noisy input, as in training); isolated
        extremes (hot or dead pixels) are given to the model as the median of their
        neighbours and restored unchanged in the output; the same fitted map is inverted
        on the output, which is clipped to the input's range [min, max].
    prior : "auto", "temporal", "none", None or np.ndarray
        For a model that needs a prior: ``"auto"`` builds the neighbour-slice prior from the
        normalised input (with ``prior_options``); ``"temporal"`` denoises each frame of a
        (z, y, x, t) ``array`` with the mean of all frames as its prior (time frames, or the
        bins of a spectral CT: the energy-integrated image), one normaliser fitted on all
        frames; an array (source units, shape of ``array``) is normalised with the same
        map. Ignored for a model without a prior input (an array given to such a model is
        an error).
    prior_options : dict, optional
        Keyword arguments of :func:`data_pipelines.neighbour_slice_prior` (size, decay,
        include_self), e.g. from the model card.
    tile_shape, overlap, batch_size, progress
        See :func:`predict_volume`.
    sigma : float, optional
        For a model conditioned on the noise level: the noise standard deviation in the
        model's normalised units; None estimates it from the normalised input
        (:func:`resprunet.variational.estimate_noise_sigma`, logged). Ignored by other models.
    tta : bool
        Average the predictions of the 8 flips and quarter turns of the y-x plane (see
        :func:`predict_volume`); 8x the time.

    Returns
    -------
    np.ndarray
        float32, shape of ``array``, in the source's units.

    Raises
    ------
    InvalidDataError
        A 3D model given a single 2D slice, or channels (frames) that do not match the model.
    ShapeMismatchError
        The prior is missing, unwanted, or of another shape than ``array``.
    """
    import data_pipelines as dp

    info = _model_info(model)
    if isinstance(prior, str) and prior == "temporal":
        return _denoise_frames(model, array, normalizer, info.needs_prior, tile_shape=tile_shape,
                               overlap=overlap, batch_size=batch_size, progress=progress, sigma=sigma,
                               tta=tta)
    if info.ndim == 3 and array.shape[0] < 2:
        raise InvalidDataError(
            f"the input is a single 2D slice (shape {array.shape}); this 3D model needs a "
            "(z, y, x) volume with z >= 2 (use a 2D model)"
        )
    channels = array.shape[-1] if array.ndim == 4 else 1
    if channels != info.channels:
        raise InvalidDataError(
            f"the input has {channels} channels or frames (shape {array.shape}); this model "
            f"expects {info.channels}: pick one channel or frame first"
        )
    norm = normalizer if normalizer.fitted else normalizer.fit(array)
    x = norm(array)
    x_channels = x if x.ndim == 4 else x[..., np.newaxis]  # a view: (z, y, x, c)
    extremes = [dp.isolated_extremes(x_channels[..., c]) for c in range(x_channels.shape[-1])]
    found = sum(values.size for _, values in extremes)
    if found:
        log.info("%d isolated extreme voxel(s) (hot or dead pixels) kept out of the model and restored", found)
        x_channels = x_channels.copy()
        for c, (where, values) in enumerate(extremes):
            x_channels[..., c][where] = values
        x = x_channels if x.ndim == 4 else x_channels[..., 0]
    p = None
    if isinstance(prior, np.ndarray):
        if not info.needs_prior:
            raise ShapeMismatchError("a prior was given, but this model takes no prior input")
        if prior.shape != array.shape:
            raise ShapeMismatchError(
                f"prior has shape {prior.shape}; expected the input's shape {array.shape}"
            )
        p = norm(prior)
    elif info.needs_prior:
        if prior != "auto":
            raise ShapeMismatchError(
                "this model needs a prior: use prior='auto' (neighbour slices) or give an array"
            )
        p = dp.neighbour_slice_prior(x, **(prior_options or {}))
    if info.needs_sigma and sigma is None:
        from ..variational import estimate_noise_sigma

        sigma = float(np.mean([estimate_noise_sigma(x_channels[..., c]) for c in range(x_channels.shape[-1])]))
        log.info("noise level estimated from the input: sigma %.4f (normalised units); "
                 "give it (--sigma) if known", sigma)
    y = predict_volume(model, x, p, tile_shape=tile_shape, overlap=overlap,
                       batch_size=batch_size, progress=progress, sigma=sigma, tta=tta)
    out = np.clip(norm.inverse(y), np.min(array), np.max(array))
    if found:
        out_channels = out if out.ndim == 4 else out[..., np.newaxis]  # views
        in_channels = np.asarray(array) if array.ndim == 4 else np.asarray(array)[..., np.newaxis]
        for c, (where, _) in enumerate(extremes):
            out_channels[..., c][where] = in_channels[..., c][where]
    return out


def _denoise_frames(model: Any, array: np.ndarray, normalizer: Any, needs_prior: bool,
                    **options: Any) -> np.ndarray:
    """:func:`denoise_array` with ``prior="temporal"``: each frame of a (z, y, x, t) array,
    beside the mean of all frames (in source units; the normaliser, fitted on all frames, is
    linear, so this is the mean of the normalised frames the model was trained with)."""
    if not needs_prior:
        raise ShapeMismatchError("prior='temporal' was given, but this model takes no prior input")
    if array.ndim != 4 or array.shape[-1] < 2:
        raise ShapeMismatchError(
            f"prior='temporal' needs (z, y, x, t) frames with t >= 2, got shape {array.shape}"
        )
    norm = normalizer if normalizer.fitted else normalizer.fit(array)
    mean = np.mean(array, axis=-1, dtype=np.float32)
    return np.stack([denoise_array(model, np.asarray(array[..., t]), norm, prior=mean, **options)
                     for t in range(array.shape[-1])], axis=-1)
