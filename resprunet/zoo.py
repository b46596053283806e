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
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ZooError", "root", "list", "path", "card", "load", "load_path", "normalizer", "heldout_case",
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
        data = yaml.safe_load(card_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ZooError(f"{card_path}: cannot read the model card: {exc}") from exc
    if not isinstance(data, dict):
        raise ZooError(f"{card_path}: a model card must be a mapping, got {type(data).__name__}")
    return data


def card(name: str) -> dict[str, Any]:
    """The model card of zoo model ``name`` (``card.yaml`` as a dict)."""
    return _read_card(path(name) / CARD_FILE)


def load_path(model_path: str | os.PathLike) -> tuple[Any, dict[str, Any] | None]:
    """Load a ``.keras`` file (or a folder holding ``model.keras``) and the card next to it.

    The card is ``card.yaml`` in the model's folder; None when there is none.

    Raises
    ------
    ZooError
        The file does not exist or is not a loadable Keras model.
    """
    import keras

    model_path = Path(model_path)
    if model_path.is_dir():
        model_path = model_path / MODEL_FILE
    if not model_path.is_file():
        raise ZooError(f"{model_path}: no such model file (expected a .keras file or a zoo model name)")
    try:
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loading failure becomes one clear error
        raise ZooError(f"{model_path}: not a loadable Keras model ({type(exc).__name__}: {exc})") from exc
    card_path = model_path.parent / CARD_FILE
    return model, (_read_card(card_path) if card_path.is_file() else None)


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
        The card has no ``normalization`` entry.
    """
    from data_pipelines import Normalizer

    spec = model_card.get("normalization")
    if not isinstance(spec, dict):
        raise ZooError(f"model card {model_card.get('name', '?')!r} has no 'normalization' mapping")
    return Normalizer.from_dict(spec)


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


def heldout_case(model_card: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Rebuild a card's held-out test case exactly as its ``evaluation`` recipe says.

    The clean source (``evaluation.source``) is normalised with the card's normaliser
    (fitted on the whole source volume when it needs statistics), cropped to
    ``evaluation.crop`` ((z, y, x) half-open voxel ranges), corrupted with
    ``evaluation.noise`` seeded by ``evaluation.noise_seed``; the prior (when the card has
    one) is the neighbour-slice prior of the noisy crop with the card's options.

    Returns
    -------
    (clean, noisy, prior)
        float32 (z, y, x) arrays in normalised units (data range 1); prior is None for a
        model without a prior input.
    """
    import numpy as np

    import data_pipelines as dp

    recipe = model_card.get("evaluation")
    if not isinstance(recipe, dict):
        raise ZooError(f"model card {model_card.get('name', '?')!r} has no 'evaluation' recipe")
    volume = _source_volume(recipe["source"])
    norm = normalizer(model_card).fit(volume.array)
    crop = tuple(slice(int(lo), int(hi)) for lo, hi in recipe["crop"])
    clean = norm(volume.array)[crop]
    noise = dp.NoiseModel.from_dict(recipe["noise"])
    noisy = noise(clean, np.random.default_rng(int(recipe["noise_seed"])))
    prior = None
    prior_card = model_card.get("prior")
    if prior_card:
        options = {k: prior_card[k] for k in ("size", "decay", "include_self") if k in prior_card}
        prior = dp.neighbour_slice_prior(noisy, **options)
    return clean, noisy, prior


def scores(clean: Any, estimate: Any) -> dict[str, float]:
    """PSNR and SSIM of ``estimate`` against ``clean`` as zoo cards report them.

    Parameters
    ----------
    clean, estimate : np.ndarray
        (z, y, x) in normalised units (data range 1); z = 1 for a 2D image.

    Returns
    -------
    dict
        ``{"psnr": dB (3 decimals), "ssim": 2D SSIM for one slice, 3D SSIM for a volume}``.
    """
    from .assess.metrics import psnr, ssim_2d, ssim_3d

    if clean.shape[0] == 1:
        s = ssim_2d(clean[0], estimate[0], data_range=1.0)
    else:
        s = ssim_3d(clean, estimate, data_range=1.0)
    return {"psnr": round(float(psnr(clean, estimate, data_range=1.0)), 3), "ssim": round(float(s), 4)}


def evaluate(model: Any, model_card: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Score ``model`` on its card's held-out case (see :func:`heldout_case`).

    Returns
    -------
    dict
        ``{"noisy": {"psnr", "ssim"}, "model": {"psnr", "ssim"}}``; PSNR in dB with data
        range 1 (normalised units); SSIM 2D for a single slice, 3D for a volume.
    """
    from .inference import predict_volume

    clean, noisy, prior = heldout_case(model_card)
    denoised = predict_volume(model, noisy, prior, progress=False)
    return {"noisy": scores(clean, noisy), "model": scores(clean, denoised)}
