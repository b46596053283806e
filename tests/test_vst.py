"""Generalised Anscombe transform, and BM3D/BM4D on Poisson-Gaussian data through it."""
from __future__ import annotations

import numpy as np
import pytest

from resprunet.assess import Case, Method, tuned_baselines
from resprunet.assess.metrics import psnr
from resprunet.variational import (
    INSTALL_HINT,
    bm3d_denoise,
    bm4d_denoise,
    bm_available,
    generalized_anscombe,
    inverse_generalized_anscombe,
)

NEEDS_BM3D = pytest.mark.skipif(not bm_available("bm3d"), reason=f"bm3d not installed ({INSTALL_HINT})")
NEEDS_BM4D = pytest.mark.skipif(not bm_available("bm4d"), reason=f"bm4d not installed ({INSTALL_HINT})")


def _poisson_gaussian(x: np.ndarray, photons: float, sigma: float, seed: int) -> np.ndarray:
    """The noise model of data_pipelines.PoissonGaussianNoise, in normalised units."""
    rng = np.random.default_rng(seed)
    return (rng.poisson(photons * np.maximum(x, 0)) + photons * sigma * rng.standard_normal(x.shape)) / photons


def _ramp(size: int = 64) -> np.ndarray:
    """A smooth image from 0.02 to 1 (a wide range of noise variances under Poisson noise)."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return 0.02 + 0.98 * xx**2 * (0.75 + 0.25 * np.cos(np.pi * yy))


@pytest.mark.parametrize(("photons", "sigma"), [(10, 0.0), (10, 0.02), (30, 0.05)])
def test_the_inverse_of_the_expected_transform_is_nearly_unbiased(photons, sigma):
    levels = np.array([0.01, 0.03, 0.1, 0.3, 0.6, 1.0])
    samples = np.stack([_poisson_gaussian(np.full(200_000, x), photons, sigma, 3) for x in levels])
    expected = generalized_anscombe(samples, photons, sigma).mean(axis=1)  # what an ideal denoiser returns
    back = inverse_generalized_anscombe(expected[:, None], photons, sigma)[:, 0]
    algebraic = ((expected / 2) ** 2 - 3 / 8 - (photons * sigma) ** 2) / photons
    np.testing.assert_allclose(back, levels, atol=0.004)  # measured <= 0.0025
    assert np.max(np.abs(algebraic - levels)) > 3 * np.max(np.abs(back - levels))


def test_the_transform_stabilises_the_variance_to_one():
    for x in (0.2, 0.5, 1.0):
        f = generalized_anscombe(_poisson_gaussian(np.full((300, 300), x), 30, 0.02, 4), 30, 0.02)
        assert f.std() == pytest.approx(1.0, abs=0.05)


def test_bad_photons_or_sigma_fail_clearly():
    with pytest.raises(ValueError, match="photons must be"):
        generalized_anscombe(np.zeros((8, 8)), 0.0)
    with pytest.raises(ValueError, match="sigma must be"):
        inverse_generalized_anscombe(np.ones((8, 8)), 10.0, -0.1)


@NEEDS_BM3D
def test_bm3d_with_the_transform_beats_bm3d_with_a_mean_effective_sigma():
    clean = _ramp()
    photons, sigma = 20.0, 0.02
    noisy = _poisson_gaussian(clean, photons, sigma, 0)
    stabilised = bm3d_denoise(noisy, sigma, photons=photons)
    effective = bm3d_denoise(noisy, float(np.sqrt(clean.mean() / photons + sigma**2)))
    margin = psnr(clean, stabilised, 1.0) - psnr(clean, effective, 1.0)
    assert margin >= 5.0, margin  # measured 7.4-10.6 dB over seeds and photons 10-30
    np.testing.assert_allclose(Method.bm3d(sigma, photons=photons)(noisy), stabilised, atol=2e-3)  # bm3d: not bitwise
    with pytest.raises(ValueError, match="photons must be"):
        bm3d_denoise(noisy, sigma, photons=-1.0)
    with pytest.raises(ValueError, match="give sigma"):
        bm3d_denoise(noisy, photons=photons)


@NEEDS_BM4D
def test_bm4d_denoises_poisson_gaussian_volumes_through_the_transform():
    clean = np.stack([_ramp(32)[:, ::-1] * (0.7 + 0.3 * k / 7) for k in range(8)])
    noisy = _poisson_gaussian(clean, 20.0, 0.0, 1)
    out = Method.bm4d(0.0, photons=20.0)(noisy)
    assert out.shape == clean.shape and psnr(clean, out, 1.0) - psnr(clean, noisy, 1.0) > 8.0
    np.testing.assert_allclose(out, bm4d_denoise(noisy, 0.0, photons=20.0), atol=2e-3)  # bm4d: not bitwise either


@NEEDS_BM3D
def test_tuned_baselines_pass_photons_to_bm3d_and_scale_the_grids_with_the_effective_sigma():
    clean = _ramp()
    validation = Case(clean, _poisson_gaussian(clean, 20.0, 0.02, 5), name="validation")
    methods, params, tuning = tuned_baselines(validation, 0.02, ["tv", "wavelet", "bm3d"], photons=20.0,
                                              return_tuning=True)
    effective = float(np.sqrt(clean.mean() / 20.0 + 0.02**2))
    assert params["bm3d"] == {"sigma": 0.02, "photons": 20.0} and params["wavelet"] == {"sigma": effective}
    assert tuning["tv"].params[0] == {"weight": pytest.approx(0.4 * effective)} and set(tuning) == {"tv"}
    test = _poisson_gaussian(clean, 20.0, 0.02, 6)
    via_method, direct = methods[2](test), bm3d_denoise(test, 0.02, photons=20.0)
    # bm3d is not bitwise reproducible between calls (measured differences up to 2.5e-4 on a few voxels)
    np.testing.assert_allclose(via_method, direct, atol=2e-3)
    assert np.mean(np.abs(via_method - direct)) < 1e-4
    with pytest.raises(ValueError, match="give sigma"):
        tuned_baselines(validation, None, ["bm3d"], photons=20.0)
    with pytest.raises(ValueError, match="photons must be"):
        tuned_baselines(validation, 0.02, ["bm3d"], photons=0.0)
