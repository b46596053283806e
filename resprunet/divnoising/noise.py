"""The noise model of a DivNoising run, from its config: a file, a closed form, or a fit to
the noisy training data.

``divnoising.noise_model`` in a training config is one of

- a path to a ``noise_model.json`` (:meth:`resprunet.noise_models.NoiseModel.save`), e.g.
  fitted from calibration data with :func:`~resprunet.noise_models.fit_calibration`;
- a noise-model dict (:meth:`~resprunet.noise_models.NoiseModel.from_dict`), e.g.
  ``{kind: gaussian, sigma: 0.1}`` or ``{kind: poisson_gaussian, photons: 50, sigma: 0.02}``;
  ``{kind: gaussian, sigma: estimate}`` estimates sigma from the noisy training patches
  (wavelet MAD, :func:`resprunet.variational.estimate_noise_sigma`, the median over patches);
- ``{kind: bootstrap, ...}``: a Gaussian mixture fitted by
  :func:`~resprunet.noise_models.fit_bootstrap` to the noisy training patches and a first
  estimate of their signal, total-variation denoising with its weight chosen by J-invariance
  on the patches (no clean data). Other keys go to the fit (``n_components``, ``degree``,
  ``steps``, ...). The model is only as good as that first estimate: TV at its MSE-best weight
  keeps part of the noise, so the fitted noise is too weak (on 32 x 32 patches with Gaussian
  noise of 0.1 it found 0.056, ``tests/test_divnoising.py``); prefer calibration data or a
  known noise model where there is one.

Every sigma and the data the model describes are in the run's NORMALISED units (the
normaliser fitted on the noisy input, ``data.normalize``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..noise_models import NoiseModel, fit_bootstrap

__all__ = ["check_noise_spec", "resolve_noise_model"]

log = logging.getLogger(__name__)

_TV_WEIGHTS = (0.02, 0.04, 0.08, 0.16, 0.32)


def check_noise_spec(spec: Any) -> None:
    """Check a ``divnoising.noise_model`` value without data.

    Raises
    ------
    ValueError
        None, a missing file, or a dict that is not a noise model (see the module docstring).
    """
    if spec is None:
        raise ValueError("DivNoising needs a noise model: divnoising.noise_model = a noise_model.json path, "
                         "{kind: gaussian, sigma: S|estimate}, {kind: poisson_gaussian, photons: P, sigma: S} "
                         "or {kind: bootstrap}")
    if isinstance(spec, str):
        if not Path(spec).is_file():
            raise ValueError(f"divnoising.noise_model={spec!r}: no such noise model file")
        return
    if not isinstance(spec, dict):
        raise ValueError(f"divnoising.noise_model={spec!r} must be a file path or a mapping")
    kind = spec.get("kind")
    if kind == "bootstrap":
        unknown = set(spec) - {"kind", "n_components", "degree", "steps", "batch_size", "learning_rate", "seed"}
        if unknown:
            raise ValueError(f"divnoising.noise_model bootstrap: unknown key(s) {sorted(unknown)}")
        return
    if kind == "gaussian" and spec.get("sigma") == "estimate":
        return
    NoiseModel.from_dict(dict(spec))


def resolve_noise_model(spec: Any, patches: np.ndarray) -> NoiseModel:
    """The noise model a spec names, fitted or estimated on ``patches`` where it says so.

    Parameters
    ----------
    spec : str or dict
        See the module docstring (checked by :func:`check_noise_spec`).
    patches : np.ndarray
        Noisy training patches (n, *spatial, 1), normalised units.

    Returns
    -------
    NoiseModel
    """
    check_noise_spec(spec)
    if isinstance(spec, str):
        return NoiseModel.load(spec)
    options = dict(spec)
    kind = options.pop("kind")
    images = np.asarray(patches, np.float32)[..., 0]
    if kind == "gaussian" and options.get("sigma") == "estimate":
        from ..variational import estimate_noise_sigma

        sigma = float(np.median([estimate_noise_sigma(p) for p in images]))
        log.info("noise model: Gaussian, sigma %.4f estimated from %d noisy training patches (normalised units)",
                 sigma, len(images))
        return NoiseModel.from_dict({"kind": "gaussian", "sigma": sigma})
    if kind == "bootstrap":
        from ..variational import calibrate_j_invariance, tv_denoise

        weight = calibrate_j_invariance(tv_denoise, images[0], {"weight": _TV_WEIGHTS})["weight"]
        estimate = np.stack([tv_denoise(p, weight=weight) for p in images])
        log.info("noise model: Gaussian mixture bootstrapped from %d noisy training patches and their TV "
                 "estimate (weight %g, chosen by J-invariance)", len(images), weight)
        return fit_bootstrap(images, estimate, **options)
    return NoiseModel.from_dict(spec)
