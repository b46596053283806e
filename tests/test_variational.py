"""Variational and classical denoisers: objectives, PSNR gains, BM3D/BM4D, tuning."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
from skimage import data, restoration

from resprunet.assess.metrics import psnr
from resprunet.variational import (
    INSTALL_HINT,
    BMPackageMissingError,
    DenoiserFailedError,
    bm3d_denoise,
    bm3d_rgb_denoise,
    per_channel,
    bm4d_denoise,
    bm_available,
    calibrate_j_invariance,
    estimate_noise_sigma,
    nl_means_denoise,
    spade_denoise,
    tune_on_validation,
    tv_chambolle_denoise,
    tv_denoise,
    wavelet_denoise,
)
from resprunet.variational._split_bregman import objective

SIGMA = 0.1
NEEDS_BM3D = pytest.mark.skipif(not bm_available("bm3d"), reason=f"bm3d not installed ({INSTALL_HINT})")
NEEDS_BM4D = pytest.mark.skipif(not bm_available("bm4d"), reason=f"bm4d not installed ({INSTALL_HINT})")
TV_GRID = {"weight": [0.04, 0.06, 0.08, 0.1, 0.12, 0.15]}
SPADE_GRID = {"weight": [0.06, 0.1, 0.15], "alpha": [0.0, 0.25, 0.5, 0.75]}
SPADE_BOUNDS = {"alpha": (0.0, 1.0)}  # a share: the grid widening stops at 1


def _noisy(x: np.ndarray, seed: int, sigma: float = SIGMA) -> np.ndarray:
    return x + sigma * np.random.default_rng(seed).standard_normal(x.shape)


@pytest.fixture(scope="module")
def camera_split() -> dict[str, np.ndarray]:
    """Disjoint validation and test crops (96 x 96) of camera in [0, 1], with sigma-0.1 noise."""
    cam = data.camera().astype(np.float64) / 255.0
    val, test = cam[60:156, 150:246], cam[250:346, 180:276]
    return {"val": val, "val_noisy": _noisy(val, 0), "test": test, "test_noisy": _noisy(test, 1)}


@pytest.fixture(scope="module")
def tuned_tv(camera_split) -> tuple[dict, np.ndarray]:
    """TV weight tuned on the validation crop, and TV's output on the test crop."""
    s = camera_split
    best = tune_on_validation(tv_denoise, s["val"], s["val_noisy"], TV_GRID)
    return best, tv_denoise(s["test_noisy"], **best)


def _camera_stack(depth: int, size: int) -> np.ndarray:
    """A (depth, size, size) volume: camera windows sliding down 2 pixels per slice."""
    cam = data.camera().astype(np.float64) / 255.0
    return np.stack([cam[150 + 2 * k : 150 + 2 * k + size, 200 : 200 + size] for k in range(depth)])


@pytest.mark.parametrize("isotropic", [True, False])
@pytest.mark.parametrize("ndim", [2, 3])
def test_tv_objective_never_increases(ndim, isotropic):
    clean = _camera_stack(8, 32) if ndim == 3 else _camera_stack(1, 64)[0]
    f = _noisy(clean, 2)
    _, info = tv_denoise(f, 0.08, isotropic=isotropic, tol=1e-6, max_iter=150, return_info=True)
    obj = info.objective
    assert info.n_iter == len(obj) > 10
    assert np.all(np.diff(obj) <= 1e-7 * obj[0]), np.max(np.diff(obj))
    start = objective(f, f, [(0.08, None)], tuple(range(ndim)), isotropic)  # E(noisy)
    assert obj[-1] < 0.5 * start


def test_tv_reaches_the_chambolle_minimum_of_the_same_functional(camera_split):
    f = camera_split["test_noisy"]
    for w in (0.05, 0.12):
        ours = objective(tv_denoise(f, w, tol=1e-5), f, [(w, None)], (0, 1), True)
        skimage_tv = objective(tv_chambolle_denoise(f, w), f, [(w, None)], (0, 1), True)
        assert ours <= skimage_tv * (1 + 1e-4)


def test_tv_gain_on_a_real_image_with_validation_tuned_weight(camera_split, tuned_tv):
    s = camera_split
    best, out = tuned_tv
    gain = psnr(s["test"], out, 1.0) - psnr(s["test"], s["test_noisy"], 1.0)
    assert best["weight"] == 0.08  # PSNR peaks inside the grid on the validation crop
    assert gain >= 9.0, gain  # measured 10.9 dB at sigma 0.1
    assert out.shape == s["test"].shape and out.dtype == np.float64
    assert tv_denoise(s["test_noisy"].astype(np.float32), 0.08).dtype == np.float32


def test_tv_axes_denoise_slices_independently_and_zero_weight_is_identity():
    f = _noisy(_camera_stack(1, 48)[0], 3)
    stack = tv_denoise(np.stack([f, f]), 0.08, axes=(-2, -1))
    np.testing.assert_allclose(stack[0], tv_denoise(f, 0.08), atol=1e-10)
    np.testing.assert_allclose(stack[1], stack[0], atol=1e-12)
    np.testing.assert_array_equal(tv_denoise(f, 0.0), f)
    with pytest.raises(ValueError, match="weight"):
        tv_denoise(f, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        tv_denoise(np.full((8, 8), np.nan), 0.1)


def test_spade_with_alpha_zero_is_tv_and_its_objective_never_increases(camera_split):
    f = camera_split["test_noisy"]
    prior = camera_split["test"]
    np.testing.assert_allclose(spade_denoise(f, prior, weight=0.1, alpha=0.0), tv_denoise(f, 0.1), atol=1e-12)
    _, info = spade_denoise(f, prior, weight=0.15, alpha=0.5, tol=1e-6, max_iter=100, return_info=True)
    assert np.all(np.diff(info.objective) <= 1e-7 * info.objective[0])
    with pytest.raises(ValueError, match="alpha"):
        spade_denoise(f, prior, weight=0.1, alpha=1.5)
    with pytest.raises(ValueError, match="shape"):
        spade_denoise(f, prior[:-1], weight=0.1, alpha=0.5)


def test_spade_with_a_perfect_prior_beats_tv_clearly(camera_split, tuned_tv):
    s = camera_split
    best = tune_on_validation(spade_denoise, s["val"], s["val_noisy"], SPADE_GRID, prior=s["val"],
                              bounds=SPADE_BOUNDS)
    out = spade_denoise(s["test_noisy"], s["test"], **best)
    margin = psnr(s["test"], out, 1.0) - psnr(s["test"], tuned_tv[1], 1.0)
    assert best["alpha"] > 0
    assert margin >= 5.0, margin  # measured 15.4 dB


def test_spade_with_a_useless_prior_falls_back_to_tv(camera_split, tuned_tv):
    s = camera_split
    # priors unrelated to the images (crops of another picture): a constant prior would make
    # SPADE equal to TV for every alpha, so the test could not fail
    moon = data.moon().astype(np.float64) / 255.0
    val_prior, test_prior = moon[100:196, 100:196], moon[300:396, 250:346]
    best = tune_on_validation(spade_denoise, s["val"], s["val_noisy"], SPADE_GRID, prior=val_prior,
                              bounds=SPADE_BOUNDS)
    out = spade_denoise(s["test_noisy"], test_prior, **best)
    delta = psnr(s["test"], out, 1.0) - psnr(s["test"], tuned_tv[1], 1.0)
    assert delta >= -0.2, delta  # measured +0.32 dB (alpha 0.25; a constant prior gave exactly TV)


@NEEDS_BM3D
def test_bm3d_runs_for_real_in_2d_and_slicewise():
    clean = _camera_stack(2, 64)
    noisy = _noisy(clean, 4)
    out2d = bm3d_denoise(noisy[0], SIGMA)
    assert psnr(clean[0], out2d, 1.0) - psnr(clean[0], noisy[0], 1.0) > 6.0
    out3d = bm3d_denoise(noisy.astype(np.float32), SIGMA)
    assert out3d.shape == noisy.shape and out3d.dtype == np.float32
    np.testing.assert_allclose(out3d[0], out2d, atol=1e-5)


@NEEDS_BM3D
def test_colour_bm3d_beats_grey_bm3d_per_channel():
    from skimage import data as skdata

    clean = skdata.immunohistochemistry()[200:264, 200:264].astype(np.float32) / 255.0
    noisy = clean + np.random.default_rng(3).normal(0, SIGMA, clean.shape).astype(np.float32)
    colour = bm3d_rgb_denoise(noisy, SIGMA)
    grey = np.stack([bm3d_denoise(noisy[..., c], SIGMA) for c in range(3)], axis=-1)
    assert colour.shape == clean.shape and colour.dtype == np.float32
    assert psnr(clean, colour, 1.0) > psnr(clean, grey, 1.0) + 0.3  # the channels' shared structure
    np.testing.assert_allclose(bm3d_rgb_denoise(noisy[None], SIGMA)[0], colour, atol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        bm3d_rgb_denoise(noisy[..., :2], SIGMA)


def test_per_channel_denoises_each_channel_on_its_own():
    rng = np.random.default_rng(5)
    rgb = rng.random((2, 16, 16, 3)).astype(np.float32)
    rgb[..., 1] = 0.5  # a flat channel stays flat, whatever the others hold
    out = per_channel(tv_denoise)(rgb, 0.1)
    assert out.shape == rgb.shape
    np.testing.assert_allclose(out[..., 1], 0.5, atol=1e-5)
    np.testing.assert_allclose(out[..., 2], tv_denoise(rgb[..., 2], 0.1), atol=1e-6)
    assert not np.allclose(out[..., 0], out[..., 2], atol=1e-2)  # not one channel copied


@NEEDS_BM4D
def test_bm4d_runs_for_real_on_a_small_volume():
    clean = _camera_stack(16, 32)
    noisy = _noisy(clean, 5)
    out = bm4d_denoise(noisy, SIGMA)
    assert out.shape == clean.shape
    assert psnr(clean, out, 1.0) - psnr(clean, noisy, 1.0) > 6.0
    with pytest.raises(ValueError, match="3-D"):
        bm4d_denoise(noisy[0], SIGMA)


@pytest.mark.parametrize("package, fn", [("bm3d", bm3d_denoise), ("bm4d", bm4d_denoise)])
def test_missing_bm_package_says_how_to_install(monkeypatch, package, fn):
    monkeypatch.setitem(sys.modules, package, None)  # makes ``import package`` raise ImportError
    assert not bm_available(package)
    with pytest.raises(ImportError) as err:
        fn(np.zeros((8, 16, 16)), 0.1)
    assert isinstance(err.value, BMPackageMissingError)
    assert INSTALL_HINT in str(err.value) and 'pip install -e ".[bm]"' in str(err.value)  # works from a clone


@pytest.mark.parametrize(
    "failure, message",
    [
        (lambda z, s, profile: z, "unchanged"),
        (lambda z, s, profile: np.zeros_like(z), "constant"),
        (lambda z, s, profile: np.full(z.shape, np.nan), "NaN"),
        (lambda z, s, profile: z[:-1], "shape"),
    ],
)
def test_bm4d_silent_failure_is_detected(monkeypatch, failure, message):
    # the package's entry point replaced by one that fails silently (no real bm4d needed)
    monkeypatch.setitem(sys.modules, "bm4d", SimpleNamespace(bm4d=failure))
    with pytest.raises(DenoiserFailedError, match=message):
        bm4d_denoise(_noisy(_camera_stack(8, 16), 6), SIGMA)


def test_skimage_methods_are_wrapped_faithfully(camera_split):
    f, clean = camera_split["test_noisy"], camera_split["test"]
    np.testing.assert_allclose(tv_chambolle_denoise(f, 0.08), restoration.denoise_tv_chambolle(f, weight=0.08), atol=1e-12)
    np.testing.assert_allclose(
        nl_means_denoise(f, 0.08, sigma=SIGMA),
        restoration.denoise_nl_means(f, h=0.08, sigma=SIGMA, patch_size=5, patch_distance=6, fast_mode=True),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        wavelet_denoise(f, SIGMA), restoration.denoise_wavelet(f, sigma=SIGMA, rescale_sigma=True), atol=1e-12
    )
    for fn in (lambda: tv_chambolle_denoise(f, 0.08), lambda: nl_means_denoise(f, 0.08, sigma=SIGMA),
               lambda: wavelet_denoise(f, SIGMA)):
        assert psnr(clean, fn(), 1.0) - psnr(clean, f, 1.0) > 5.0
    # a one-slice volume keeps its shape (skimage's NL-means dropped the axis, which broke
    # tuning on (1, y, x) cases)
    one = f[np.newaxis]
    for fn in (tv_chambolle_denoise, wavelet_denoise):
        assert fn(one, SIGMA).shape == one.shape
    np.testing.assert_allclose(nl_means_denoise(one, 0.08, sigma=SIGMA)[0], nl_means_denoise(f, 0.08, sigma=SIGMA))


def test_tuning_reports_every_score_and_picks_the_best(camera_split):
    s = camera_split
    result = tune_on_validation(tv_denoise, s["val"], s["val_noisy"], {"weight": [0.02, 0.08]}, return_result=True)
    weights = (0.02, 0.08, 0.32)  # 0.08 is on the grid's edge: widened by the grid's ratio, 4
    direct = [psnr(s["val"], tv_denoise(s["val_noisy"], w), 1.0) for w in weights]
    np.testing.assert_allclose(result.scores, direct, atol=1e-9)
    assert result.best == {"weight": 0.08} and result.params == [{"weight": w} for w in weights]
    assert result.widened == {"weight": [0.32]} and result.at_edge == {}
    with pytest.raises(ValueError, match="no values"):
        tune_on_validation(tv_denoise, s["val"], s["val_noisy"], {"weight": []})


def test_j_invariance_picks_a_near_optimal_weight_without_ground_truth(camera_split, tuned_tv):
    s = camera_split
    best = calibrate_j_invariance(tv_denoise, s["test_noisy"], TV_GRID)
    loss_gap = psnr(s["test"], tv_denoise(s["test_noisy"], **best), 1.0) - psnr(s["test"], tuned_tv[1], 1.0)
    assert loss_gap > -0.5, (best, loss_gap)


def test_sigma_is_estimated_from_the_data(camera_split):
    assert estimate_noise_sigma(camera_split["test_noisy"]) == pytest.approx(SIGMA, rel=0.1)
    stack = np.stack([_noisy(camera_split["test"], 7, 0.05), _noisy(camera_split["val"], 8, 0.05)])
    assert estimate_noise_sigma(stack) == pytest.approx(0.05, rel=0.15)
