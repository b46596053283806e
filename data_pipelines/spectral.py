"""Energy bins of a spectral (photon-counting) CT simulated from a conventional CT in HU.

The energy-integrated image of a spectral CT is the prior ResPr-UNet was designed for: the
same object, the same structures, but with the photons of every bin, so about sqrt(bins) less
noise than one bin, and a contrast of its own (bone is brighter at low energy). This module
makes such data from any CT in Hounsfield units, so that the prior's value can be measured on
real anatomy.

Two-material model (documented simplification)
-----------------------------------------------
Each voxel is a mixture of water (soft tissue) and cortical bone (ICRU-44, 1.92 g/cm3), or of
water and air below 0 HU:

- ``HU <= 0``: water at density ``1 + HU / 1000`` g/cm3 (air at -1000 HU has none), no bone;
- ``HU > 0``: a bone volume fraction ``f = min(HU / HU_BONE, 1)`` and water ``1 - f``, where
  ``HU_BONE`` is the HU of cortical bone at the scanner's effective energy
  (:data:`EFFECTIVE_KEV`, 60 keV: 1935 HU).

The linear attenuation of bin ``b`` (1/cm) is then
``mu_b = rho_water (mu/rho)_water(E_b) + 1.92 f (mu/rho)_bone(E_b)``, with the mass
attenuation coefficients of NIST's X-ray tables (Hubbell and Seltzer, NISTIR 5632: water,
liquid; bone, cortical ICRU-44) at the bin's mean energy (:data:`MASS_ATTENUATION`). Beam
hardening, scatter, the detector's spectral response and the correlation of noise between
bins are left out; every bin gets independent noise (see :func:`energy_integrated`).
"""
from __future__ import annotations

import numpy as np

from .errors import InvalidDataError

#: Mass attenuation coefficients (cm2/g) from NIST's tables: energy (keV) -> (water, cortical bone).
MASS_ATTENUATION: dict[float, tuple[float, float]] = {
    40.0: (0.2683, 0.6655),
    50.0: (0.2269, 0.4242),
    60.0: (0.2059, 0.3148),
    80.0: (0.1837, 0.2229),
    100.0: (0.1707, 0.1855),
}
#: Density of cortical bone (ICRU-44), g/cm3.
BONE_DENSITY = 1.92
#: Effective energy (keV) at which the input CT's HU are read.
EFFECTIVE_KEV = 60.0
#: Default bins: mean energies (keV) of a five-bin photon-counting acquisition.
DEFAULT_BINS_KEV = (40.0, 50.0, 60.0, 80.0, 100.0)


def _coefficients(energy_kev: float) -> tuple[float, float]:
    """(water, bone) mass attenuation at ``energy_kev``, log-log interpolated in the table."""
    energies = np.array(sorted(MASS_ATTENUATION))
    if not energies[0] <= energy_kev <= energies[-1]:
        raise InvalidDataError(
            f"bin energy {energy_kev} keV is outside the tabulated {energies[0]:g}-{energies[-1]:g} keV"
        )
    table = np.array([MASS_ATTENUATION[e] for e in energies])
    logs = [np.interp(np.log(energy_kev), np.log(energies), np.log(table[:, k])) for k in (0, 1)]
    return float(np.exp(logs[0])), float(np.exp(logs[1]))


def bone_hu(energy_kev: float = EFFECTIVE_KEV) -> float:
    """HU of cortical bone at ``energy_kev``: ``1000 (mu_bone / mu_water - 1)``."""
    water, bone = _coefficients(energy_kev)
    return 1000.0 * (BONE_DENSITY * bone / water - 1.0)


def spectral_bins(hu: np.ndarray, bins_kev: tuple[float, ...] = DEFAULT_BINS_KEV) -> np.ndarray:
    """Attenuation images of the energy bins of a spectral CT, from a CT in HU.

    Parameters
    ----------
    hu : np.ndarray
        (z, y, x) (or (y, x)) CT in Hounsfield units.
    bins_kev : tuple of float
        Mean energy of each bin, keV, within the tabulated 40-100 keV.

    Returns
    -------
    np.ndarray
        float32, ``hu.shape + (len(bins_kev),)``: linear attenuation of each bin, 1/cm
        (water is 0.268 at 40 keV and 0.171 at 100 keV; bone 1.28 and 0.36).
    """
    hu = np.asarray(hu, np.float64)
    if not np.isfinite(hu).all():
        raise InvalidDataError("the CT holds NaN or Inf values; expected finite HU")
    if len(bins_kev) < 2:
        raise InvalidDataError(f"a spectral CT needs at least 2 bins, got {len(bins_kev)}")
    bone = np.clip(hu / bone_hu(), 0.0, 1.0)
    water = np.where(hu > 0, 1.0 - bone, np.clip(1.0 + hu / 1000.0, 0.0, None))
    out = np.empty(hu.shape + (len(bins_kev),), np.float32)
    for b, energy in enumerate(bins_kev):
        mu_water, mu_bone = _coefficients(float(energy))
        out[..., b] = water * mu_water + BONE_DENSITY * bone * mu_bone
    return out


def energy_integrated(bins: np.ndarray) -> np.ndarray:
    """The energy-integrated image: the mean over the bins (last axis).

    With independent noise of standard deviation ``s`` in each of ``B`` bins, its noise is
    ``s / sqrt(B)``: the higher-SNR prior of a spectral CT. (A scanner weights bins by their
    photon counts; equal weights are the simplification used here.)

    Parameters
    ----------
    bins : np.ndarray
        (..., B) bin images.

    Returns
    -------
    np.ndarray
        (...) float32 mean over the bins.
    """
    return np.asarray(bins, np.float32).mean(axis=-1)
