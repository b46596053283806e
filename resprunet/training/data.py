"""Turn the ``data`` section of a :class:`TrainConfig` into volumes, normaliser, noise and
tf.data datasets (all through :mod:`data_pipelines`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import data_pipelines as dp
import numpy as np

from .config import ConfigError, DataConfig

NORMALIZERS = ("percentile", "ct", "fixed", "minmax")

log = logging.getLogger(__name__)


def load_volumes(names: list[str]) -> list[dp.Volume]:
    """Read each entry: an existing file or folder path, else an embedded sample name.

    Raises
    ------
    ConfigError
        When an entry is neither an existing path nor a sample name.
    """
    volumes = []
    for name in names:
        if Path(name).exists():
            volumes.append(dp.read_volume(name))
        elif name in dp.list_samples():
            volumes.append(dp.sample(name))
        else:
            raise ConfigError(
                f"data volume {name!r} is neither an existing file nor a sample name; "
                f"samples: {dp.list_samples()}"
            )
    return volumes


def by_subject(volume: dp.Volume) -> list[dp.Volume]:
    """Split a stack of 2D slices with ``meta["subject"]`` (one id per slice) into one volume
    per subject (so that a split never separates slices of one scan); other volumes as is."""
    subjects = volume.meta.get("subject")
    if subjects is None:
        return [volume]
    subjects = np.asarray(subjects)
    return [
        dp.Volume(volume.array[subjects == s], volume.spacing, {**volume.meta, "subject": int(s)},
                  f"{volume.source}#subject{int(s)}")
        for s in np.unique(subjects)
    ]


def make_normalizer(spec: dict[str, Any]) -> dp.Normalizer:
    """``{"method": "percentile", "low": 1, "high": 99.8}`` -> ``dp.Normalizer.percentile(1, 99.8)``.

    Raises
    ------
    ConfigError
        For an unknown method or arguments the constructor does not take.
    """
    args = dict(spec)
    method = args.pop("method", None)
    if method not in NORMALIZERS:
        raise ConfigError(f"config data.normalize.method={method!r} is not one of {NORMALIZERS}")
    try:
        return getattr(dp.Normalizer, method)(**args)
    except TypeError as err:
        raise ConfigError(f"config data.normalize={spec!r}: {err}") from err


def make_noise(spec: dict[str, Any], key: str = "data.noise") -> dp.NoiseModel:
    """``dp.NoiseModel.from_dict(spec)`` with the config key named in errors."""
    try:
        return dp.NoiseModel.from_dict(dict(spec))
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"config {key}={spec!r}: {err}") from err


@dataclass
class TrainingData:
    """Datasets and arrays of one run.

    Attributes
    ----------
    train, val : tf.data.Dataset
        ``(inputs, clean)`` batches; ``train`` repeats with fresh crops and noise,
        ``val`` is the same fixed patches every epoch.
    steps_per_epoch : int
        Batches per epoch, ``ceil(patches_per_epoch / batch_size)``.
    panel : (inputs, clean)
        The first ``panel_samples`` validation patches as numpy arrays (image panel); for
        blind-spot training the unmasked noisy patches and None.
    test_volumes : list of Volume
        The test volumes (raw units) for the final whole-volume evaluation; they play no
        part in training, checkpoint choice or early stopping.
    val_baseline : dict
        What the model must beat on the validation patches (:func:`validation_baseline`).
    """

    train: Any
    val: Any
    steps_per_epoch: int
    panel: tuple[Any, np.ndarray | None]
    test_volumes: list[dp.Volume]
    val_baseline: dict[str, float]


def validation_baseline(val: Any) -> dict[str, float]:
    """PSNR (dB, data range 1) of the noisy input, and of the prior when there is one, against
    the clean target on the validation patches, averaged per patch as the ``val_psnr`` metric
    is: the scores of a model that returns its input or its prior (as untrained residual
    models do).

    Parameters
    ----------
    val : tf.data.Dataset
        ``(inputs, clean)`` batches; ``inputs`` an array or ``{"noisy", "prior"}``.

    Returns
    -------
    dict
        ``noisy_psnr`` and, with a prior, ``prior_psnr``.
    """
    scores: dict[str, list[float]] = {}
    for inputs, clean in val:
        named = dict(inputs) if isinstance(inputs, dict) else {"noisy": inputs}
        target = np.asarray(clean, np.float64)
        for name, value in named.items():
            if name in ("sigma", "context"):  # a noise map and other slices: no estimates
                continue
            err = np.mean((np.asarray(value, np.float64) - target) ** 2, axis=tuple(range(1, target.ndim)))
            scores.setdefault(f"{name}_psnr", []).extend(10 * np.log10(1.0 / np.maximum(err, 1e-12)))
    return {key: round(float(np.mean(values)), 3) for key, values in scores.items()}


def blindspot_baseline(val: Any) -> dict[str, float]:
    """Masked MSE (normalised units squared) of a model that returns its masked input, on the
    blind-spot validation patches: what ``val_loss`` must beat.

    Parameters
    ----------
    val : tf.data.Dataset
        ``(masked, target)`` batches, ``target`` the noisy patch with the mask as last channel.

    Returns
    -------
    dict
        ``identity_masked_mse``, averaged per patch as ``val_loss`` is.
    """
    from .losses import masked_mse

    values = [np.asarray(masked_mse(target, masked)) for masked, target in val]
    return {"identity_masked_mse": round(float(np.mean(np.concatenate(values))), 6)}


@dataclass
class Split:
    """The volumes of a run in their three disjoint roles (whole volumes or subjects).

    Attributes
    ----------
    train : list of Volume
        Fit the weights.
    val : list of Volume
        Choose the checkpoint (``best.keras``) and drive early stopping.
    test : list of Volume
        Only reported, in ``final_metrics.json``; empty when the run has none.
    """

    train: list[dp.Volume]
    val: list[dp.Volume]
    test: list[dp.Volume]


def _hold_out(volumes: list[dp.Volume], fraction: float, key: str, seed: int) -> tuple[list[dp.Volume], list[dp.Volume]]:
    """``dp.split_volumes`` with the config key named in errors."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"config data.{key.split('_')[0]} is empty, so data.{key}={fraction} must be in (0, 1)")
    if len(volumes) < 2:
        raise ConfigError(
            f"config data.{key}={fraction} needs at least 2 training volumes (or subjects) to hold some out "
            f"by volume, got {len(volumes)}; list the volumes explicitly instead"
        )
    return dp.split_volumes(volumes, fraction, seed)


def split(config: DataConfig, seed: int) -> Split:
    """Training, validation and test volumes, disjoint by volume (and by subject for slice
    stacks with ``meta["subject"]``): ``test`` if given, else ``test_fraction`` of the
    training volumes (none when 0); then ``val`` if given, else ``val_fraction`` of the
    remaining training volumes. Seeded with ``seed``.

    Raises
    ------
    ConfigError
        A fraction outside (0, 1) where one is needed, too few volumes to split, or a volume
        named in two roles.
    """
    _check_roles(config)
    if config.prior == "file":
        return _split_with_prior_files(config)
    train = [part for vol in load_volumes(config.train) for part in by_subject(vol)]
    if config.test:
        test = load_volumes(config.test)
    elif config.test_fraction:
        train, test = _hold_out(train, config.test_fraction, "test_fraction", seed + 7)
    else:
        test = []
    if config.val:
        val = load_volumes(config.val)
    else:
        train, val = _hold_out(train, config.val_fraction, "val_fraction", seed)
    if config.spectral_kev:
        kev = tuple(float(e) for e in config.spectral_kev)
        train, val, test = ([spectral(v, kev) for v in vols] for vols in (train, val, test))
        if config.prior != "temporal":  # a model without the prior learns from single bins
            train, val = ([b for v in vols for b in frames(v)] for vols in (train, val))
    return Split(train, val, test)


def _check_roles(config: DataConfig) -> None:
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = sorted(set(getattr(config, a)) & set(getattr(config, b)))
        if shared:
            raise ConfigError(f"config data.{a} and data.{b} share {shared}; a volume may have one role only")


def hold_out_slices(volume: dp.Volume, fraction: float) -> tuple[dp.Volume, dp.Volume]:
    """Split one volume along z into a training slab and the last ``round(fraction * z)``
    slices (at least 1) for validation.

    For blind-spot training on a single noisy volume: validation only tracks the masked
    loss on slices not trained on (neighbouring slices at the cut share anatomy).

    Raises
    ------
    ConfigError
        A volume with fewer than 2 slices, or a fraction outside (0, 1).
    """
    depth = volume.shape[0]
    if depth < 2 or not 0.0 < fraction < 1.0:
        raise ConfigError(f"config data.val is empty: {volume.name} {volume.shape} needs >= 2 slices and "
                          f"data.val_fraction in (0, 1) (got {fraction}) to hold out validation slices")
    cut = depth - min(depth - 1, max(1, round(depth * fraction)))
    log.warning("data.val is empty and there is one training volume: slices %d-%d of %s validate", cut,
                depth - 1, volume.name)
    return (dp.Volume(volume.array[:cut], volume.spacing, volume.meta, f"{volume.source}#z:{cut}"),
            dp.Volume(volume.array[cut:], volume.spacing, volume.meta, f"{volume.source}#z{cut}:"))


def simulate_acquisition(volume: dp.Volume, noise: dp.NoiseModel, normalizer: dp.Normalizer,
                         seed: list[int]) -> dp.Volume:
    """One fixed noisy realisation of a clean volume, in its source units: the noise is added
    in the units of ``normalizer`` fitted on the clean volume (the units sigma is given in)."""
    fitted = normalizer.fit(volume.array)
    noisy = fitted.inverse(noise(fitted(volume.array), np.random.default_rng(seed)))
    return dp.Volume(np.asarray(noisy, np.float32), volume.spacing, volume.meta, f"{volume.source}#noisy")


def split_noisy(config: DataConfig, seed: int) -> Split:
    """The volumes of a blind-spot run: ``train`` and ``val`` noisy (``simulate_noise``, if
    set, corrupts them once, seeded by ``seed``, the role and the index), ``test`` clean
    references. ``val`` if given, else ``val_fraction`` of the training volumes (whole
    volumes), or of the slices of a single training volume (:func:`hold_out_slices`).

    Raises
    ------
    ConfigError
        A volume in two roles, or too little data to hold out validation.
    """
    _check_roles(config)
    train = [part for vol in load_volumes(config.train) for part in by_subject(vol)]
    if config.val:
        val = load_volumes(config.val)
    elif len(train) == 1:
        part, held = hold_out_slices(train[0], config.val_fraction)
        train, val = [part], [held]
    else:
        train, val = _hold_out(train, config.val_fraction, "val_fraction", seed)
    if config.simulate_noise is not None:
        noise = make_noise(config.simulate_noise, "data.simulate_noise")
        train, val = ([simulate_acquisition(v, noise, make_normalizer(config.normalize), [seed, role, i])
                       for i, v in enumerate(vols)] for role, vols in enumerate((train, val)))
    return Split(train, val, load_volumes(config.test))


def _split_with_prior_files(config: DataConfig) -> Split:
    """The listed volumes in their roles, each carrying its prior file's array as
    ``meta["prior"]`` (source units; the same normalisation is applied to both)."""
    roles = {"train": config.train, "val": config.val, "test": config.test}
    missing = [entry for entries in roles.values() for entry in entries if entry not in config.prior_files]
    if missing:
        raise ConfigError(f"config data.prior=file needs data.prior_files for every volume; missing {missing}")
    if not config.val:
        raise ConfigError("config data.prior=file needs data.val listed (volumes are not held out by fraction)")
    loaded = {}
    for role, entries in roles.items():
        volumes = []
        for entry, volume in zip(entries, load_volumes(list(entries))):
            (prior,) = load_volumes([config.prior_files[entry]])
            if prior.shape != volume.shape:
                raise ConfigError(
                    f"data.prior_files[{entry!r}] has shape {prior.shape}; expected the volume's {volume.shape}"
                )
            volumes.append(dp.Volume(volume.array, volume.spacing, {**volume.meta, "prior": prior.array},
                                     volume.source))
        loaded[role] = volumes
    return Split(loaded["train"], loaded["val"], loaded["test"])


def dataset_prior(config: DataConfig, volumes: list[dp.Volume]) -> Any:
    """The ``prior`` argument of ``dp.make_dataset`` for these volumes: the kind, or with
    ``prior: file`` the volumes' prior arrays."""
    return [v.meta["prior"] for v in volumes] if config.prior == "file" else config.prior


def spectral(volume: dp.Volume, bins_kev: tuple[float, ...]) -> dp.Volume:
    """The simulated spectral-CT bins of a CT in HU (``data_pipelines.spectral``): (z, y, x,
    bins) attenuation in 1/cm, named after the CT."""
    from data_pipelines.spectral import spectral_bins

    if volume.array.ndim == 4:
        raise ConfigError(f"data.spectral_kev: {volume.name} already has frames {volume.shape}; "
                          "expected a CT in HU, (z, y, x)")
    meta = {**volume.meta, "spectral_kev": list(bins_kev), "units": "1/cm"}
    return dp.Volume(spectral_bins(volume.array, bins_kev), volume.spacing, meta, volume.source)


def frames(volume: dp.Volume) -> list[dp.Volume]:
    """The frames (last axis) of a (z, y, x, t) volume as separate (z, y, x) volumes."""
    return [dp.Volume(volume.array[..., t], volume.spacing, volume.meta, f"{volume.source or volume.name}#frame{t}")
            for t in range(volume.array.shape[-1])]


def dataset_options(config: DataConfig) -> dict[str, Any]:
    """Keyword arguments of ``dp.make_dataset`` shared by training and validation."""
    return {
        "noise": make_noise(config.noise),
        "prior_options": dict(config.prior_options),
        "normalizer": make_normalizer(config.normalize),
        "foreground": config.foreground,
        "gamma": config.gamma,
    }


def build_training_data(
    config: DataConfig,
    seed: int,
    panel_samples: int = 2,
    batch_size: int | None = None,
    stream_seed: int | None = None,
    noise_level: bool = False,
    context: int = 0,
    channels: int = 1,
    blindspot: dp.BlindSpot | None = None,
    noisy_only: bool = False,
) -> TrainingData:
    """Load, split and serve the data of a run.

    Parameters
    ----------
    config : DataConfig
    seed : int
        Seeds the split, the training stream (unless ``stream_seed``) and the fixed
        validation patches (``seed + 1``).
    panel_samples : int
        Validation patches kept for the image panel.
    batch_size : int, optional
        Batch size of the training stream (default ``config.batch_size``; a multi-worker
        run passes the per-replica size).
    stream_seed : int, optional
        Seed of the training stream only (a multi-worker run gives each worker its own,
        while the split and the validation patches stay the same on every worker).
    noise_level : bool
        Serve each patch's noise sigma as the ``"sigma"`` input (a model built with
        ``noise_map``).
    context : int
        Serve that many neighbouring noisy slices on each side as the ``"context"`` input
        (a 2.5D model built with ``context``).
    channels : int
        Image channels of the model (3 for RGB): volumes are (z, y, x, channels).
    blindspot : data_pipelines.BlindSpot, optional
        Blind-spot training: noisy volumes (:func:`split_noisy`) served masked, no noise
        added; ``(masked, target)`` batches as ``dp.make_dataset(blindspot=...)`` gives.
    noisy_only : bool
        Noisy volumes as for ``blindspot`` (:func:`split_noisy`), served unmasked as
        ``(noisy, noisy)`` batches (each volume its own "real noisy" pair, normaliser fitted
        on it; DivNoising); the panel shows them, the baseline is empty.

    Returns
    -------
    TrainingData
    """
    noisy_data = noisy_only or blindspot is not None
    volumes = split_noisy(config, seed) if noisy_data else split(config, seed)
    train_vols, val_vols = volumes.train, volumes.val
    log.info("data: train on %s; validate on %s; test on %s", [v.name for v in train_vols],
             [v.name for v in val_vols], [v.name for v in volumes.test] or "nothing (no held-out metrics)")
    options = dataset_options(config)
    if noisy_data:
        options.update(noise=None, blindspot=blindspot)
    batch = batch_size or config.batch_size
    train = dp.make_dataset(
        train_vols, patch_shape=tuple(config.patch_shape), batch_size=batch,
        seed=seed if stream_seed is None else stream_seed,
        training=True, augment=config.augment, patches_per_epoch=config.patches_per_epoch,
        prior=dataset_prior(config, train_vols), noise_level=noise_level, context=context,
        channels=channels, noisy=train_vols if noisy_only else None,
        **options,
    )
    val = dp.make_dataset(
        val_vols, patch_shape=tuple(config.val_patch_shape or config.patch_shape),
        batch_size=config.batch_size, seed=seed + 1, training=False, augment=False,
        patches_per_epoch=config.val_patches, prior=dataset_prior(config, val_vols),
        noise_level=noise_level, context=context, channels=channels,
        noisy=val_vols if noisy_only else None, **options,
    )
    inputs, clean = next(iter(val.unbatch().batch(panel_samples).take(1)))
    steps = -(-config.patches_per_epoch // config.batch_size)
    if blindspot is not None:  # the panel shows the unmasked noisy patches; there is no clean one
        baseline = blindspot_baseline(val)
        log.info("validation baseline (what val_loss must beat): masked MSE %.4g of the identity",
                 baseline["identity_masked_mse"])
        return TrainingData(train, val, steps, (clean.numpy()[..., :-1], None), volumes.test, baseline)
    if noisy_only:  # inputs and targets are the same noisy patches: no baseline to report
        return TrainingData(train, val, steps, (inputs.numpy(), None), volumes.test, {})
    panel_inputs = (
        {k: v.numpy() for k, v in inputs.items()} if isinstance(inputs, dict) else inputs.numpy()
    )
    baseline = validation_baseline(val)
    log.info("validation baseline (what the model must beat): %s",
             ", ".join(f"{k.replace('_psnr', '')} {v:.2f} dB" for k, v in baseline.items()))
    return TrainingData(train, val, steps, (panel_inputs, clean.numpy()), volumes.test, baseline)
