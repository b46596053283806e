"""Build models by name, with presets (``build``, ``available``)."""
from __future__ import annotations

from typing import Any, Callable

import keras

from .blocks import check_ndim
from .convnet import convnet
from .irunet import irunet
from .resnet import resnet
from .respr_unet import respr_unet
from .unet import unet

_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "convnet": convnet,
    "resnet": resnet,
    "unet": unet,
    "respr_unet": respr_unet,
    "irunet": irunet,
}

# The original architectures, reproduced exactly by parameter count.
# 3 resolution levels (depth=2), 32 filters, max pooling, nearest upsampling, no batch norm.
_SEED_UNET_TRUNK = {
    "filters": 32,
    "depth": 2,
    "batch_norm": False,
    "upsampling": "nearest",
    "pooling": "max",
    "final_activation": None,
}
#: N2V2 (Hoeck et al. 2022): max-blur-pool, no top skip, no residual; linear upsampling (as
#: CAREamics), since without the top skip nearest upsampling's 2-voxel blocks reach the output.
N2V2_OPTIONS: dict[str, Any] = {"pooling": "blur", "top_skip": False, "residual": False, "upsampling": "linear"}
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "convnet": {"seed": {"filters": 64, "final_activation": None}},
    "unet": {"seed": {**_SEED_UNET_TRUNK, "residual": False}, "n2v2": N2V2_OPTIONS},
    "respr_unet": {"seed": _SEED_UNET_TRUNK},
    "irunet": {"seed": {"filters": 16}},
}


def available() -> list[str]:
    """Names accepted by :func:`build`, sorted."""
    return sorted(_BUILDERS)


def presets(name: str) -> list[str]:
    """Preset names of model ``name`` (may be empty), sorted."""
    _check_name(name)
    return sorted(_PRESETS.get(name, {}))


def build(name: str, ndim: int = 2, *, preset: str | None = None, **options: Any) -> keras.Model:
    """Build a denoising model by name.

    Parameters
    ----------
    name : str
        One of :func:`available`: "convnet", "resnet", "unet", "respr_unet", "irunet".
    ndim : int
        2 for images ``(batch, y, x, c)``, 3 for volumes ``(batch, z, y, x, c)``.
    preset : str, optional
        ``"seed"`` gives the original architecture, ``"n2v2"`` (U-Net) the N2V2 variant
        (:data:`N2V2_OPTIONS`; see :func:`presets`); explicit ``options`` override the
        preset's values.
    **options
        Keyword options of the builder (``channels``, ``filters``, ``depth``, ...); see
        :func:`~resprunet.models.unet.unet` and the other builders.

    Returns
    -------
    keras.Model
        Inputs channels-last with free spatial size; ``respr_unet`` takes
        ``{"noisy": x, "prior": p}``, the others a single ``"noisy"`` tensor.

    Raises
    ------
    ValueError
        Unknown name, preset or option value, or ``ndim`` not 2 or 3.
    """
    _check_name(name)
    check_ndim(ndim)
    settings: dict[str, Any] = {}
    if preset is not None:
        known = _PRESETS.get(name, {})
        if preset not in known:
            raise ValueError(
                f"preset={preset!r} is not defined for model {name!r}; "
                f"expected one of {sorted(known)}"
            )
        settings.update(known[preset])
    settings.update(options)
    return _BUILDERS[name](ndim, **settings)


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model name {name!r}; expected one of {available()}")
