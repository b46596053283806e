"""Trained models shipped in ``models_zoo/``, each with a model card.

Every model lives in ``<zoo root>/<name>/`` as ``model.keras`` plus ``card.yaml``: the
architecture, training data and its licence, the noise model and level (with units), the
normalisation (a :class:`data_pipelines.Normalizer` dict), training epochs and time, and
metrics on held-out data with the exact recipe to reproduce them. The zoo root is the
repository's ``models_zoo/`` folder; the ``RESPRUNET_ZOO`` environment variable overrides it.

>>> from resprunet import zoo                    # doctest: +SKIP
>>> zoo.list()
['blind_unet2d_ct', 'microscopy_unet2d_pg', 'respr_unet3d_mri', 'unet2d_ct', 'unet3d_mri']
>>> model, card = zoo.load("unet2d_ct")
"""
from __future__ import annotations

import builtins
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .safe_yaml import YamlLimitError, load_yaml

__all__ = [
    "ZooError", "root", "list", "path", "card", "run_card", "load", "load_path", "normalizer", "prior_argument",
    "prior_options", "HeldOut", "heldout_case",
    "evaluate", "scores",
]

MODEL_FILE = "model.keras"
CARD_FILE = "card.yaml"


class ZooError(LookupError):
    """A zoo model name is unknown, or a model file or card is missing or unreadable."""


def root() -> Path:
    """The zoo folder: ``$RESPRUNET_ZOO`` if set, else ``models_zoo/`` next to the package."""
    env = os.environ.get("RESPRUNET_ZOO")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models_zoo"


def list() -> builtins.list[str]:  # noqa: A001 - the public name the design asks for
    """Names of the zoo models (folders holding ``model.keras`` and ``card.yaml``), sorted."""
    base = root()
    if not base.is_dir():
        return []
    return sorted(
        p.name for p in base.iterdir()
        if (p / MODEL_FILE).is_file() and (p / CARD_FILE).is_file()
    )


def path(name: str) -> Path:
    """Folder of zoo model ``name``.

    Raises
    ------
    ZooError
        No such model (the message lists the available ones).
    """
    folder = root() / name
    if not name or "/" in name or not (folder / MODEL_FILE).is_file() or not (folder / CARD_FILE).is_file():
        raise ZooError(f"unknown zoo model {name!r}; available: {', '.join(list()) or 'none'} (zoo: {root()})")
    return folder


def _read_card(card_path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(card_path)
    except (OSError, YamlLimitError) as exc:
        raise ZooError(f"cannot read the model card: {exc}") from exc
    if not isinstance(data, dict):
        raise ZooError(f"{card_path}: a model card must be a mapping, got {type(data).__name__}")
    return data


def run_card(folder: Path) -> dict[str, Any] | None:
    """A minimal card from a training run's ``config.yaml``: normalisation, prior and noise
    (blind-spot runs add no noise: their data's noise is ``data.simulate_noise``, or unknown
    for real noisy data). None when ``folder`` holds no ``config.yaml``."""
    from .training.data import make_normalizer

    config_path = folder / "config.yaml"
    if not config_path.is_file():
        return None
    run_config = _read_card(config_path)
    data = run_config.get("data") or {}
    norm = make_normalizer(data.get("normalize") or {"method": "percentile", "low": 1.0, "high": 99.8})
    prior = data.get("prior")
    supervised = run_config.get("method", "supervised") == "supervised"
    return {
        "name": str(folder),
        "normalization": norm.to_dict(),
        "prior": {"kind": prior, **(data.get("prior_options") or {})} if prior else None,
        "noise": data.get("noise") if supervised else data.get("simulate_noise"),
    }


def card(name: str) -> dict[str, Any]:
    """The model card of zoo model ``name`` (``card.yaml`` as a dict)."""
    return _read_card(path(name) / CARD_FILE)


def load_path(model_path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """Load a ``.keras`` file (or a folder holding ``model.keras``) and the card next to it.

    The card is ``card.yaml`` in the model's folder, else, for a training run's folder, the
    minimal card of its ``config.yaml`` (:func:`run_card`); None when there is neither.

    Raises
    ------
    ZooError
        The file does not exist, is not a ``.keras`` archive, does not load, or is not a
        denoising model (no image input named ``"noisy"``).
    """
    import keras

    from .models import describe

    model_path = Path(model_path)
    if model_path.is_dir():
        model_path = model_path / MODEL_FILE
    if not model_path.is_file():
        raise ZooError(f"{model_path}: no such model file (expected a .keras file or a zoo model name)")
    if not zipfile.is_zipfile(model_path):
        raise ZooError(f"{model_path}: not a Keras .keras file (a .keras model is a zip archive)")
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loading failure becomes one clear error
        raise ZooError(f"{model_path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from exc
    try:
        describe(model)
    except ValueError as exc:
        raise ZooError(f"{model_path}: not a denoising model of this package: {exc}") from exc
    card_path = model_path.parent / CARD_FILE
    return model, (_read_card(card_path) if card_path.is_file() else run_card(model_path.parent))


def load(name: str) -> tuple[Any, dict[str, Any]]:
    """Load zoo model ``name``.

    Returns
    -------
    (keras.Model, dict)
        The model (uncompiled, ready for :func:`resprunet.inference.predict_volume`) and
        its card.
    """
    model, model_card = load_path(path(name) / MODEL_FILE)
    assert model_card is not None  # path() checked that the card exists
    return model, model_card


def normalizer(model_card: dict[str, Any]) -> Any:
    """The :class:`data_pipelines.Normalizer` of a card (unfitted for per-image statistics).

    Raises
    ------
    ZooError
        The card has no ``normalization`` entry, or one that is not a valid normaliser (e.g.
        an unknown kind).
    """
    from data_pipelines import Normalizer

    spec = model_card.get("normalization")
    if not isinstance(spec, dict):
        raise ZooError(f"model card {model_card.get('name', '?')!r} has no 'normalization' mapping")
    try:
        return Normalizer.from_dict(spec)
    except (KeyError, TypeError, ValueError) as exc:
        name = model_card.get("name", "?")
        raise ZooError(f"model card {name!r}: normalization {spec!r} is not valid: {exc}") from exc


def _source_volume(source: dict[str, Any]) -> Any:
    """The clean source of a held-out recipe: ``{"sample": name}`` (an embedded
    :func:`data_pipelines.sample`) or ``{"skimage": name}`` (an image bundled with
    scikit-image, e.g. ``cell``), as a :class:`data_pipelines.Volume` (z, y, x)."""
    import data_pipelines as dp

    if "sample" in source:
        return dp.sample(source["sample"])
    if "skimage" in source:
        import numpy as np
        from skimage import data as skdata

        image = np.asarray(getattr(skdata, source["skimage"])(), np.float32)
        return dp.Volume(image[np.newaxis], source=f"skimage.data.{source['skimage']}")
    raise ZooError(f"held-out source {source!r}: expected {{'sample': name}} or {{'skimage': name}}")


@dataclass(frozen=True)
class HeldOut:
    """A card's held-out case (see :func:`heldout_case`).

    Attributes
    ----------
    clean, noisy : np.ndarray
        float32 (z, y, x) crops in reference units (data range 1).
    prior : np.ndarray or None
        The neighbour-slice prior of the noisy volume with the card's options, cropped; None
        for a model without a prior input.
    reference : data_pipelines.Normalizer
        The card's normaliser fitted on the whole clean source: the units of the noise sigma
        and of every score.
    noisy_source : np.ndarray
        The whole noisy source volume in source units: the file a user would denoise.
    crop : tuple of slice
        The (z, y, x) crop of the scores.
    """

    clean: Any
    noisy: Any
    prior: Any
    reference: Any
    noisy_source: Any
    crop: tuple[slice, ...]


def heldout_case(model_card: dict[str, Any]) -> HeldOut:
    """Rebuild a card's held-out test case exactly as its ``evaluation`` recipe says.

    The whole clean source (``evaluation.source``) is mapped to reference units by the card's
    normaliser fitted on it, corrupted with ``evaluation.noise`` seeded by
    ``evaluation.noise_seed``, and cropped to ``evaluation.crop`` ((z, y, x) half-open voxel
    ranges) for scoring.
    """
    import numpy as np

    import data_pipelines as dp

    recipe = model_card.get("evaluation")
    if not isinstance(recipe, dict):
        raise ZooError(f"model card {model_card.get('name', '?')!r} has no 'evaluation' recipe")
    volume = _source_volume(recipe["source"])
    reference = normalizer(model_card).fit(volume.array)
    crop = tuple(slice(int(lo), int(hi)) for lo, hi in recipe["crop"])
    clean = reference(volume.array)
    noisy = dp.NoiseModel.from_dict(recipe["noise"])(clean, np.random.default_rng(int(recipe["noise_seed"])))
    noisy = noisy.astype(np.float32)
    prior = None
    if model_card.get("prior"):
        prior = dp.neighbour_slice_prior(noisy, **prior_options(model_card))[crop]
    return HeldOut(clean[crop], noisy[crop], prior, reference, reference.inverse(noisy), crop)


def prior_argument(model_card: dict[str, Any], requested: str = "auto") -> str:
    """The ``prior`` argument of :func:`resprunet.inference.denoise_array` for a card's model
    when the user asked for ``requested`` ("auto" or "none"): "temporal" for a model trained
    with the mean of frames (or spectral bins) as its prior, else ``requested``.

    Raises
    ------
    ZooError
        "auto" for a model trained with prior files: there is nothing to build the prior from.
    """
    kind = (model_card.get("prior") or {}).get("kind")
    if requested == "auto" and kind == "file":
        raise ZooError(f"model {model_card.get('name', '?')!r} was trained with a prior file (another "
                       "scan of the same object): give it with --prior FILE")
    return "temporal" if requested == "auto" and kind == "temporal" else requested


def prior_options(model_card: dict[str, Any]) -> dict[str, Any]:
    """The neighbour-slice prior options (size, decay, include_self) of a card; {} without a prior."""
    prior_card = model_card.get("prior") or {}
    return {k: prior_card[k] for k in ("size", "decay", "include_self") if k in prior_card}


def scores(clean: Any, estimate: Any) -> dict[str, float]:
    """PSNR and SSIM of ``estimate`` against ``clean`` as zoo cards report them.

    Parameters
    ----------
    clean, estimate : np.ndarray
        (z, y, x) in normalised units (data range 1); z = 1 for a 2D image; (z, y, x, c)
        for colour images.

    Returns
    -------
    dict
        ``{"psnr": dB (3 decimals), "ssim": 2D SSIM for one slice, 3D SSIM for a volume}``
        (colour: PSNR over all channels, SSIM the mean over channels, as scikit-image's
        ``channel_axis`` gives it).
    """
    import numpy as np

    from .assess.metrics import psnr, ssim_2d, ssim_3d

    def structural(x: Any, y: Any) -> float:
        return float(ssim_2d(x[0], y[0], data_range=1.0) if x.shape[0] == 1 else ssim_3d(x, y, data_range=1.0))

    if clean.ndim == 4:
        s = float(np.mean([structural(clean[..., c], estimate[..., c]) for c in range(clean.shape[-1])]))
    else:
        s = structural(clean, estimate)
    return {"psnr": round(float(psnr(clean, estimate, data_range=1.0)), 3), "ssim": round(float(s), 4)}


def evaluate(model: Any, model_card: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Score ``model`` on its card's held-out case (see :func:`heldout_case`) as a user gets it.

    The whole noisy source volume, in source units, is denoised by
    :func:`resprunet.inference.denoise_array` with the card's normaliser (fitted on that
    noisy input, as ``resprunet denoise`` does); the output is mapped to reference units
    and scored on the crop.

    A DivNoising model is scored by its MMSE of ``evaluation.samples`` posterior samples
    (default :data:`resprunet.divnoising.DEFAULT_SAMPLES`).

    Returns
    -------
    dict
        ``{"noisy": {"psnr", "ssim"}, "model": {"psnr", "ssim"}}``; PSNR in dB with data
        range 1 (reference units); SSIM 2D for a single slice, 3D for a volume.
    """
    from .divnoising import DEFAULT_SAMPLES, PosteriorMean, is_divnoising
    from .inference import denoise_array

    if is_divnoising(model):
        model = PosteriorMean(model, int(model_card["evaluation"].get("samples", DEFAULT_SAMPLES)))
    case = heldout_case(model_card)
    denoised = denoise_array(model, case.noisy_source, normalizer(model_card), prior="auto",
                             prior_options=prior_options(model_card), progress=False)
    return {"noisy": scores(case.clean, case.noisy), "model": scores(case.clean, case.reference(denoised)[case.crop])}
