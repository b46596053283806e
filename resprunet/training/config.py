"""Training configuration: nested dataclasses <-> YAML, with typed ``--set a.b=c`` overrides.

A configuration is reproducible: :func:`save_config` writes the resolved values (defaults
filled in, overrides applied) and :func:`load_config` reads them back to an equal object.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from data_pipelines.io.atomic import atomic_path

from ..runtime import PRECISIONS
from ..safe_yaml import YamlLimitError, load_yaml

LOSSES = ("mse", "mae", "l1_ssim")
JIT_COMPILE = ("auto", True, False)
STRATEGIES = ("default", "mirrored", "multiworker")
SCHEDULES = ("constant", "cosine", "exponential")
PRIORS = (None, "neighbour", "temporal", "file")
#: Training methods: supervised (clean targets, synthetic or paired noise), blind-spot
#: (noisy data alone: Noise2Void, N2V2, structN2V) or DivNoising (noisy data alone, a VAE).
METHODS = ("supervised", "n2v", "n2v2", "structn2v", "divnoising")
BLINDSPOT_METHODS = ("n2v", "n2v2", "structn2v")
#: Methods trained on noisy data alone (``data.simulate_noise``, no clean target, ``val_loss``).
NOISY_ONLY_METHODS = (*BLINDSPOT_METHODS, "divnoising")


class ConfigError(ValueError):
    """A configuration key or value is unknown or has the wrong type."""


@dataclass
class DataConfig:
    """What to train on and how to corrupt it.

    Attributes
    ----------
    train, val, test : list of str
        Sample names (see ``data_pipelines.list_samples()``) or file paths, in three disjoint
        roles: ``train`` fits the weights, ``val`` chooses the checkpoint and drives early
        stopping, ``test`` is only reported (``final_metrics.json``). When ``val`` (or
        ``test``) is empty, ``val_fraction`` (``test_fraction``) of the training volumes
        (whole volumes/subjects, never slices) is held out for it; with ``test`` empty and
        ``test_fraction`` 0 the run reports no test metrics.
    val_fraction, test_fraction : float
        Shares of the training volumes held out when ``val`` / ``test`` is empty.
    patch_shape : list of int
        Training patch ``(z, y, x)`` for 3D models or ``(y, x)`` for 2D models, in voxels.
    val_patch_shape : list of int or None
        Validation patch shape (None: ``patch_shape``), e.g. for a validation volume with
        fewer slices than the training patch.
    noise : dict
        ``data_pipelines.NoiseModel.from_dict`` spec; sigma in normalised units [0, 1]
        (``{"kind": "gaussian", "sigma": 0.1}`` is "10 % noise").
    eval_noise : dict or None
        Noise for the final whole-volume evaluation (None: ``noise``).
    prior : {None, "neighbour", "temporal", "file"}
        Second model input: ``"neighbour"``, the neighbour-slice prior of the noisy volume;
        ``"temporal"``, the mean over the frames of noisy (z, y, x, t) volumes (time frames,
        or the energy bins of ``spectral_kev``), the model denoising one frame at a time;
        ``"file"``, an image of the same object from elsewhere (a registered earlier or
        full-dose scan, in the volume's units), named per volume in ``prior_files``.
    prior_files : dict
        With ``prior: file``: ``{volume entry (as written in train/val/test): prior file or
        sample name}``, one for every volume of every role.
    prior_options : dict
        Keyword arguments of ``data_pipelines.neighbour_slice_prior`` (size, decay, include_self).
    spectral_kev : list of float or None
        Mean energies (keV, 40-100) of simulated spectral-CT bins: every volume (a CT in HU)
        becomes its bins' attenuation images in 1/cm (``data_pipelines.spectral``), (z, y,
        x, bins). With ``prior: temporal`` the prior is the energy-integrated image; without
        a prior the training and validation bins are separate volumes, and the test volumes
        are scored on every bin either way. Use a fixed window normalisation (e.g.
        ``{method: ct, window: [0.0, 1.0]}``, 1/cm) so that every bin has the same units.
    normalize : dict
        ``{"method": "percentile"|"ct"|"fixed"|"minmax", ...}``; the other keys are the arguments of
        the ``data_pipelines.Normalizer`` constructor of that name.
    batch_size : int
        Global batch size (split over replicas).
    patches_per_epoch : int
        Training patches per epoch; ``ceil(patches_per_epoch / batch_size)`` steps.
    val_patches : int
        Fixed validation patches (same crops and noise every epoch).
    foreground : float
        Passed to ``make_dataset(foreground=...)``: how strongly patches favour foreground.
    augment : bool
        Random flips (and rotations where isotropic) of training patches.
    gamma : [low, high] or None
        Contrast augmentation of training patches: a gamma curve with exponent drawn
        log-uniformly in [low, high] on each clean patch, keeping its minimum and maximum,
        before noise is added (``make_dataset(gamma=...)``). Supervised runs with synthetic
        noise only, not with ``prior: file``. None: off.
    simulate_noise : dict or None
        Blind-spot methods and DivNoising only. None: ``train``/``val`` are noisy volumes, used as they are
        (``noise`` is not used: no noise is ever added). A noise spec (as ``noise``): they are
        clean references, each corrupted ONCE with this noise (seeded, the same every epoch,
        like one noisy acquisition) before training, for measuring against a clean image.
        ``test`` volumes are clean references scored with ``eval_noise`` (default
        ``simulate_noise``) added, as in supervised runs.
    """

    train: list[str] = field(default_factory=lambda: ["mni152_t1"])
    val: list[str] = field(default_factory=lambda: ["t1_head"])
    test: list[str] = field(default_factory=lambda: ["epi"])
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    patch_shape: list[int] = field(default_factory=lambda: [16, 64, 64])
    val_patch_shape: list[int] | None = None
    noise: dict[str, Any] = field(default_factory=lambda: {"kind": "gaussian", "sigma": 0.1})
    eval_noise: dict[str, Any] | None = None
    prior: str | None = None
    prior_options: dict[str, Any] = field(default_factory=dict)
    prior_files: dict[str, str] = field(default_factory=dict)
    spectral_kev: list[float] | None = None
    normalize: dict[str, Any] = field(
        default_factory=lambda: {"method": "percentile", "low": 1.0, "high": 99.8}
    )
    batch_size: int = 4
    patches_per_epoch: int = 256
    val_patches: int = 16
    foreground: float = 0.0
    augment: bool = True
    gamma: list[float] | None = None
    simulate_noise: dict[str, Any] | None = None


@dataclass
class ModelConfig:
    """``resprunet.models.build(name, ndim, **options)``.

    In YAML and in ``--set``, keys other than ``name``/``ndim``/``options`` are model options:
    ``model.filters=16`` is the same as ``model.options.filters=16``.
    """

    name: str = "unet"
    ndim: int = 3
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """Adam with a learning-rate schedule over all training steps.

    Attributes
    ----------
    learning_rate : float
        Initial learning rate.
    schedule : {"constant", "cosine", "exponential"}
        Decay from ``learning_rate`` to ``learning_rate * final_fraction`` at the last step.
    final_fraction : float
        Final learning rate as a fraction of the initial one (cosine ``alpha``).
    clipnorm : float, optional
        Scale each step's gradients down so that their global L2 norm (over all weights) is at
        most this; None: no clipping. Limits the step one gradient spike can take (it did
        not stop a 3D U-Net's collapse at learning rate 2e-3, see the README).
    """

    learning_rate: float = 1e-3
    schedule: str = "cosine"
    final_fraction: float = 0.05
    clipnorm: float | None = None


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (0: off)."""

    patience: int = 0
    monitor: str = "val_psnr"
    min_delta: float = 0.0


@dataclass
class CallbackConfig:
    """TensorBoard extras.

    Attributes
    ----------
    histogram_freq : int
        Weight histograms every N epochs (0: none).
    image_panel : bool
        Write a noisy | prior | denoised | clean panel of fixed validation samples per epoch.
    panel_samples : int
        Number of validation samples in the panel.
    profile_batch : list of int or None
        ``[first, last]`` training batches (1-based, first epoch) to trace with the profiler.
    """

    histogram_freq: int = 0
    image_panel: bool = True
    panel_samples: int = 2
    profile_batch: list[int] | None = None


@dataclass
class BlindSpotConfig:
    """Masking of blind-spot training (``method`` n2v, n2v2, structn2v): ``data_pipelines.BlindSpot``.

    Attributes
    ----------
    fraction : float
        Expected fraction of masked voxels per patch, in (0, 0.1] (Noise2Void: 0.002).
    window : int
        Odd side (voxels) of the window a masked voxel's replacement is drawn from.
    struct_axis : int
        structn2v: patch axis of the correlated noise (-1 = x, -2 = y, -3 = z for 3D).
    struct_span : int
        structn2v: voxels hidden on each side of a masked voxel along ``struct_axis``.
    replacement : str
        What a masked voxel shows the network: ``"random"`` (a random neighbour, Noise2Void)
        or ``"median"`` (the median of its window without it, as N2V2 proposes).
    """

    fraction: float = 0.002
    window: int = 5
    struct_axis: int = -1
    struct_span: int = 2
    replacement: str = "random"


@dataclass
class DivNoisingConfig:
    """DivNoising (``method: divnoising``, with ``model.name: divnoising``): :mod:`resprunet.divnoising`.

    Attributes
    ----------
    noise_model : str, dict or None
        Required. A ``noise_model.json`` path, a noise-model dict (``{kind: gaussian, sigma:
        S}``, ``{kind: poisson_gaussian, photons: P, sigma: S}``, ``{kind: gaussian, sigma:
        estimate}``) or ``{kind: bootstrap, ...}`` (a Gaussian mixture fitted to the noisy
        training patches and their TV estimate); normalised units. See
        :mod:`resprunet.divnoising.noise`.
    kl_weight : float
        Weight of the KL term (>= 0); 1 (DivNoising) makes the loss the negative ELBO per pixel.
    samples : int
        Posterior samples per image of the MMSE in the final evaluation (>= 1).
    """

    noise_model: str | dict[str, Any] | None = None
    kl_weight: float = 1.0
    samples: int = 100


@dataclass
class RunConfig:
    """Run directory ``<root>/<name>/<UTC timestamp>/``."""

    root: str = "runs"
    name: str = "unet_3d"


@dataclass
class TrainConfig:
    """Everything a training run needs; see the section dataclasses for the fields.

    ``method``: ``"supervised"`` (default: clean targets with synthetic or paired noise), or
    blind-spot training from noisy data alone (``data.train``/``data.val`` noisy volumes,
    masked as ``blindspot`` says, loss ``mse`` on masked voxels only, no PSNR/SSIM during
    training, checkpoint on ``val_loss``): ``"n2v"`` (Noise2Void), ``"n2v2"`` (the U-Net
    becomes N2V2: blur pooling, no top skip, linear upsampling) or ``"structn2v"`` (line
    masks along ``blindspot.struct_axis``). ``"divnoising"``: a DivNoising VAE
    (``model.name: divnoising``, options ``filters``, ``depth``, ``latent_channels``) trained
    on noisy volumes like the blind-spot methods, with the noise model and KL weight of
    ``divnoising``; its loss is the negative ELBO (``loss`` is not used) and ``model.keras``
    gets ``noise_model.json`` beside it.
    """

    method: str = "supervised"
    blindspot: BlindSpotConfig = field(default_factory=BlindSpotConfig)
    divnoising: DivNoisingConfig = field(default_factory=DivNoisingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: str = "mse"
    epochs: int = 10
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    precision: str = "auto"
    jit_compile: bool | str = "auto"
    strategy: str = "default"
    callbacks: CallbackConfig = field(default_factory=CallbackConfig)
    seed: int = 0
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a nested dict; unknown keys and wrong types raise :class:`ConfigError`."""
        return _build(cls, values, "")


def _choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"config {key}={value!r} is not one of {choices}")


def validate(config: TrainConfig) -> None:
    """Check the values that have a fixed set of choices or a range.

    Raises
    ------
    ConfigError
        Naming the key, the value and what was expected.
    """
    _choice("method", config.method, METHODS)
    _choice("loss", config.loss, LOSSES)
    _choice("precision", config.precision, PRECISIONS)
    _choice("jit_compile", config.jit_compile, JIT_COMPILE)
    _choice("strategy", config.strategy, STRATEGIES)
    _choice("optimizer.schedule", config.optimizer.schedule, SCHEDULES)
    _choice("data.prior", config.data.prior, PRIORS)
    _choice("model.ndim", config.model.ndim, (2, 3))
    from ..models import available  # a model name is a registry key, never a path

    if config.method == "divnoising" or config.model.name == "divnoising":
        _validate_divnoising(config)
    else:
        _choice("model.name", config.model.name, available())
    for key in ("filters", "depth"):
        value = config.model.options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"config model.{key}={value!r} must be a whole number >= 1")
    positive = {
        "epochs": config.epochs,
        "data.batch_size": config.data.batch_size,
        "data.patches_per_epoch": config.data.patches_per_epoch,
        "data.val_patches": config.data.val_patches,
        "optimizer.learning_rate": config.optimizer.learning_rate,
    }
    if config.optimizer.clipnorm is not None:
        positive["optimizer.clipnorm"] = config.optimizer.clipnorm
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config {key}={value!r} must be > 0")
    if config.data.patches_per_epoch < config.data.batch_size:
        raise ConfigError(
            f"config data.patches_per_epoch={config.data.patches_per_epoch} must be >= "
            f"data.batch_size={config.data.batch_size}"
        )
    for key, shape in (("data.patch_shape", config.data.patch_shape),
                       ("data.val_patch_shape", config.data.val_patch_shape)):
        if shape is not None and len(shape) != config.model.ndim:
            raise ConfigError(
                f"config {key}={shape} has {len(shape)} axes, expected model.ndim="
                f"{config.model.ndim}"
            )
    if config.data.gamma is not None:
        _validate_gamma(config)
    if config.method in BLINDSPOT_METHODS:
        _validate_blindspot(config)
    if config.method in NOISY_ONLY_METHODS:
        _validate_noisy_only(config)
    elif config.data.simulate_noise is not None:
        raise ConfigError("config data.simulate_noise is for methods trained on noisy data (blind-spot, "
                          "DivNoising); supervised runs add data.noise")
    profile = config.callbacks.profile_batch
    if profile is not None and (len(profile) != 2 or not 1 <= profile[0] <= profile[1]):
        raise ConfigError(
            f"config callbacks.profile_batch={profile} must be [first, last] with 1 <= first <= last"
        )


def _validate_gamma(config: TrainConfig) -> None:
    """``data.gamma``: a valid range, in a run that adds synthetic noise to clean volumes."""
    from data_pipelines.patches import check_gamma_range

    try:
        check_gamma_range(config.data.gamma)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config data.{err}") from err
    if config.method in NOISY_ONLY_METHODS or config.data.prior == "file":
        raise ConfigError(f"config data.gamma changes clean volumes before synthetic noise: not with method="
                          f"{config.method} or prior: file")


def _validate_blindspot(config: TrainConfig) -> None:
    """The settings blind-spot training (``method`` n2v, n2v2, structn2v) cannot use."""
    from data_pipelines.blindspot import BlindSpot

    method, bs = config.method, config.blindspot
    try:
        BlindSpot(bs.fraction, bs.window, replacement=bs.replacement)
    except ValueError as err:
        raise ConfigError(f"config blindspot: {err}") from err
    if method == "structn2v" and (not -config.model.ndim <= bs.struct_axis < config.model.ndim
                                  or bs.struct_span < 1):
        raise ConfigError(f"config method=structn2v needs blindspot.struct_axis in [-{config.model.ndim}, "
                          f"{config.model.ndim}) and blindspot.struct_span >= 1, got {bs.struct_axis}, {bs.struct_span}")
    if config.loss != "mse":
        raise ConfigError(f"config method={method} needs loss=mse (taken on the masked voxels)")
    if method == "n2v2" and config.model.name != "unet":
        raise ConfigError(f"config method=n2v2 needs model.name=unet (N2V2 is a U-Net), got {config.model.name!r}")


def _validate_divnoising(config: TrainConfig) -> None:
    """``method: divnoising`` goes with ``model.name: divnoising``, valid VAE options, a noise
    model, ``divnoising.samples >= 1``, ``divnoising.kl_weight >= 0`` and patches the VAE's
    downsampling divides."""
    from ..divnoising import check_noise_spec, check_options, check_samples

    if (config.method == "divnoising") != (config.model.name == "divnoising"):
        raise ConfigError(f"config method=divnoising and model.name=divnoising go together, got method="
                          f"{config.method!r} with model.name={config.model.name!r}")
    dn = config.divnoising
    try:
        options = check_options(config.model.options)
        check_noise_spec(dn.noise_model)
        check_samples(dn.samples)
    except ValueError as err:
        raise ConfigError(f"config {err}") from err
    if not dn.kl_weight >= 0:
        raise ConfigError(f"config divnoising.kl_weight={dn.kl_weight!r} must be >= 0")
    block = 2 ** options["depth"]
    for key, shape in (("data.patch_shape", config.data.patch_shape),
                       ("data.val_patch_shape", config.data.val_patch_shape)):
        if shape is not None and any(s % block for s in shape):
            raise ConfigError(f"config {key}={shape}: every size must be a multiple of 2**model.depth = {block}")


def _validate_noisy_only(config: TrainConfig) -> None:
    """The settings a method trained on noisy data alone (blind-spot, DivNoising) cannot use."""
    method, data = config.method, config.data
    refused = {
        "data.prior": (data.prior is not None, "null"),
        "data.spectral_kev": (data.spectral_kev is not None, "null"),
        "data.test_fraction": (data.test_fraction != 0, "0 (test volumes are clean references, listed in data.test)"),
        "strategy": (config.strategy == "multiworker", "default or mirrored"),
    }
    if method == "divnoising":
        refused["strategy"] = (config.strategy != "default", "default")
    for key, (bad, expected) in refused.items():
        if bad:
            raise ConfigError(f"config method={method} needs {key}={expected}")
    if config.early_stopping.patience and not config.early_stopping.monitor.endswith("loss"):
        raise ConfigError(f"config method={method} has no clean target: early_stopping.monitor must be "
                          f"val_loss, got {config.early_stopping.monitor!r}")
    if data.test and data.eval_noise is None and data.simulate_noise is None:
        raise ConfigError(f"config method={method} scores data.test (clean references) with data.eval_noise "
                          "added: set data.eval_noise (or data.simulate_noise), or leave data.test empty")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` (an annotation), or raise :class:`ConfigError`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"config {key}={value!r}: expected {tp}")
    if tp is Any:
        return value
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config {key}={value!r} must be a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config {key}={value!r} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config {key}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config {key}={value!r} must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config {key}={value!r} must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config {key}={value!r} must be a string")
    raise ConfigError(f"config {key}: unsupported annotation {tp}")  # pragma: no cover


def _build(cls: type, values: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from the nested dict ``values`` with type checking."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(values, dict):
        raise ConfigError(f"config {where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = dict(values)
    if cls is ModelConfig:  # flat model options: model.filters == model.options.filters
        options = dict(values.pop("options", None) or {})
        options.update({k: values.pop(k) for k in list(values) if k not in names})
        values["options"] = options
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"config {where}: unknown key(s) {unknown}; expected one of {sorted(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        tp = hints[name]
        key = f"{prefix}{name}"
        kwargs[name] = _build(tp, value, key + ".") if _is_dataclass_type(tp) else _coerce(value, tp, key)
    return cls(**kwargs)


def apply_overrides(values: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``"a.b=c"`` overrides (values parsed as YAML) to a nested config dict.

    Keys must exist in :class:`TrainConfig` (model options excepted: any ``model.<option>``
    is accepted and, when the option is already set, must keep its type).

    Raises
    ------
    ConfigError
        For a malformed override, an unknown key or a value of the wrong type.
    """
    values = _deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        value = yaml.safe_load(raw) if raw.strip() else ""
        parts = key.split(".")
        if parts[0] == "model" and len(parts) == 2 and parts[1] not in ("name", "ndim", "options"):
            parts = ["model", "options", parts[1]]
        node = values
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: unknown key {'.'.join(parts[: depth + 1])!r}")
            node = node[part]
        last = parts[-1]
        in_options = parts[:2] == ["model", "options"]
        if not isinstance(node, dict) or (last not in node and not in_options):
            known = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(f"override {item!r}: unknown key {key!r}; expected one of {known}")
        if in_options and last in node and node[last] is not None and value is not None:
            _coerce(value, type(node[last]), key)
        node[last] = value
    return values


def _deepcopy(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _deepcopy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deepcopy(v) for v in values]
    return values


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply ``--set`` overrides.

    Parameters
    ----------
    path : str or Path or None
        YAML file with any subset of the :class:`TrainConfig` keys; None: all defaults.
    overrides : iterable of str
        ``"section.key=value"`` items; values are parsed as YAML (``[16, 64, 64]``, ``null``).

    Returns
    -------
    TrainConfig

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ConfigError
        For unknown keys, wrong types or invalid choices (the message names the key); an
        empty file, one not safe YAML, or one whose aliases expand beyond
        :data:`resprunet.safe_yaml.MAX_NODES` (checked before anything is merged).
    """
    values: dict[str, Any] = TrainConfig().to_dict()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            loaded = load_yaml(path)
        except YamlLimitError as exc:
            raise ConfigError(str(exc)) from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
        values = TrainConfig.from_dict(_merge(values, loaded)).to_dict()
    return TrainConfig.from_dict(apply_overrides(values, overrides))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Defaults updated by a config file: sections (data, model, ...) key by key, the other
    top-level values replaced."""
    sections = {f.name for f in dataclasses.fields(TrainConfig)
                if _is_dataclass_type(typing.get_type_hints(TrainConfig)[f.name])}
    merged = _deepcopy(base)
    for key, value in update.items():
        if key in sections and isinstance(value, dict):
            merged[key] = {**merged[key], **_deepcopy(value)}
        else:
            merged[key] = _deepcopy(value)
    return merged


def save_config(config: TrainConfig, path: str | Path, force: bool = False) -> Path:
    """Write the resolved config as YAML (atomically) and return the path.

    Raises
    ------
    data_pipelines.OutputExistsError
        When ``path`` exists and ``force`` is False.
    """
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return Path(path)
