"""resprunet.assess.metrics against skimage.metrics on a real image and a real MRI volume."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from skimage import data, metrics as skm

import data_pipelines as dp
from resprunet.assess import metrics as M

SK_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture(scope="module")
def image_pair() -> tuple[np.ndarray, np.ndarray]:
    """camera (128 x 160 crop, [0, 1]) and a noisy copy (sigma 0.1), float64."""
    clean = data.camera()[150:278, 180:340].astype(np.float64) / 255.0
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape)
    return clean, noisy


@pytest.fixture(scope="module")
def volume_pair() -> tuple[np.ndarray, np.ndarray]:
    """A (24, 40, 32) crop of the embedded MNI152 T1 (percentile-normalised) and a noisy copy."""
    vol = dp.sample("mni152_t1").array
    x = dp.Normalizer.percentile(1, 99.8).fit(vol)(vol)[28:52, 30:70, 24:56].astype(np.float64)
    noisy = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape)
    return x, noisy


def _body_mask(x: np.ndarray) -> np.ndarray:
    return x > np.percentile(x, 40)


def test_pixel_metrics_match_skimage(image_pair):
    x, y = image_pair
    assert M.psnr(x, y, 1.0) == pytest.approx(skm.peak_signal_noise_ratio(x, y, data_range=1.0), abs=1e-6)
    assert M.psnr(x, y, 2.0) == pytest.approx(skm.peak_signal_noise_ratio(x, y, data_range=2.0), abs=1e-6)
    for norm in ("euclidean", "min-max", "mean"):
        assert M.nrmse(x, y, normalization=norm) == pytest.approx(
            skm.normalized_root_mse(x, y, normalization=norm), abs=1e-6)
    assert M.relative_error(x, y) == pytest.approx(100 * skm.normalized_root_mse(x, y), abs=1e-6)
    assert M.relative_error(x, y) == pytest.approx(100 * np.linalg.norm(x - y) / np.linalg.norm(x), abs=1e-9)


def test_masked_pixel_metrics_use_the_region_only(image_pair):
    x, y = image_pair
    m = _body_mask(x)
    assert M.psnr(x, y, 1.0, mask=m) == pytest.approx(skm.peak_signal_noise_ratio(x[m], y[m], data_range=1.0), abs=1e-6)
    assert M.nrmse(x, y, mask=m) == pytest.approx(skm.normalized_root_mse(x[m], y[m]), abs=1e-6)
    assert M.relative_error(x, y, mask=m) == pytest.approx(100 * skm.normalized_root_mse(x[m], y[m]), abs=1e-6)
    # the masked value really differs from the whole-image one
    assert abs(M.relative_error(x, y, mask=m) - M.relative_error(x, y)) > 0.5


def test_ssim_2d_matches_skimage_with_and_without_mask(image_pair):
    x, y = image_pair
    expected, full = skm.structural_similarity(x, y, data_range=1.0, full=True, **SK_SSIM)
    assert M.ssim_2d(x, y, 1.0) == pytest.approx(expected, abs=1e-6)
    assert M.ssim(x, y, 1.0) == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(M.ssim_map(x, y, 1.0), full, atol=1e-6)
    m = _body_mask(x)
    inner = np.zeros_like(m)
    inner[5:-5, 5:-5] = True
    assert M.ssim_2d(x, y, 1.0, mask=m) == pytest.approx(full[m & inner].mean(), abs=1e-6)
    # data_range matters (science note 3): a wrong range gives a different SSIM
    assert abs(M.ssim_2d(x, y, 255.0) - expected) > 0.1


def test_ssim_3d_is_a_true_3d_ssim(volume_pair):
    x, y = volume_pair
    expected, full = skm.structural_similarity(x, y, data_range=1.0, full=True, **SK_SSIM)
    assert M.ssim_3d(x, y, 1.0) == pytest.approx(expected, abs=1e-6)
    assert M.ssim(x, y, 1.0) == pytest.approx(expected, abs=1e-6)
    m = _body_mask(x)
    inner = np.zeros_like(m)
    inner[5:-5, 5:-5, 5:-5] = True
    assert M.ssim_3d(x, y, 1.0, mask=m) == pytest.approx(full[m & inner].mean(), abs=1e-6)


def test_ssim_slicewise_is_the_mean_of_2d_slices_and_differs_from_3d(volume_pair):
    x, y = volume_pair
    per_slice = [skm.structural_similarity(a, b, data_range=1.0, **SK_SSIM) for a, b in zip(x, y)]
    assert M.ssim_slicewise(x, y, 1.0) == pytest.approx(np.mean(per_slice), abs=1e-6)
    along_x = [skm.structural_similarity(x[..., i], y[..., i], data_range=1.0, **SK_SSIM) for i in range(x.shape[2])]
    assert M.ssim_slicewise(x, y, 1.0, axis=2) == pytest.approx(np.mean(along_x), abs=1e-6)
    assert abs(M.ssim_slicewise(x, y, 1.0) - M.ssim_3d(x, y, 1.0)) > 1e-3
    m = _body_mask(x)
    masked = []
    for a, b, s in zip(x, y, m):
        _, full = skm.structural_similarity(a, b, data_range=1.0, full=True, **SK_SSIM)
        region = s.copy()
        region[:5], region[-5:], region[:, :5], region[:, -5:] = False, False, False, False
        if region.any():
            masked.append(full[region].mean())
    assert M.ssim_slicewise(x, y, 1.0, mask=m) == pytest.approx(np.mean(masked), abs=1e-6)


def test_metric_errors_name_the_problem(image_pair):
    x, y = image_pair
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(x, y, 0.0)
    with pytest.raises(ValueError, match="shape"):
        M.psnr(x, y[:-1], 1.0)
    with pytest.raises(ValueError, match="no voxel"):
        M.psnr(x, y, 1.0, mask=np.zeros(x.shape, bool))
    with pytest.raises(ValueError, match="ssim_slicewise"):
        M.ssim_3d(np.zeros((4, 32, 32)), np.zeros((4, 32, 32)), 1.0)
    assert M.psnr(x, x, 1.0) == float("inf")


def test_metrics_module_does_not_import_tensorflow():
    import subprocess

    code = "import sys, resprunet.assess, resprunet.variational; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
