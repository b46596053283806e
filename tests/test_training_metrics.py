"""PSNR/SSIM (keras.ops) against skimage.metrics; losses; metric serialisation."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from resprunet.training.losses import L1SSIMLoss, get_loss
from resprunet.training.metrics import PSNR, SSIM, psnr, ssim


def _pair(shape, seed, sigma=0.1):
    rng = np.random.default_rng(seed)
    clean = gaussian_filter(rng.random(shape), 2.0)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = clean + rng.normal(0.0, sigma, shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


def _sk_ssim(a, b):
    return structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )


@pytest.mark.parametrize("shape", [(40, 36), (18, 24, 20)])
def test_psnr_and_ssim_match_skimage(shape):
    pairs = [_pair(shape, seed, sigma) for seed, sigma in ((0, 0.05), (1, 0.2))]
    clean = np.stack([p[0] for p in pairs])[..., None]
    noisy = np.stack([p[1] for p in pairs])[..., None]
    got_psnr = keras.ops.convert_to_numpy(psnr(clean, noisy))
    got_ssim = keras.ops.convert_to_numpy(ssim(clean, noisy))
    for i, (c, n) in enumerate(pairs):
        assert got_psnr[i] == pytest.approx(peak_signal_noise_ratio(c, n, data_range=1.0), abs=1e-3)
        assert got_ssim[i] == pytest.approx(_sk_ssim(c, n), abs=1e-4)
    assert got_psnr[0] > got_psnr[1] + 10  # 4x the noise: 12 dB lower


def test_ssim_of_volume_is_3d_not_a_stack_of_slices():
    clean, noisy = _pair((14, 22, 22), 3)
    vol = float(ssim(clean[None, ..., None], noisy[None, ..., None])[0])
    slices = float(np.mean(keras.ops.convert_to_numpy(ssim(clean[..., None], noisy[..., None]))))
    assert vol == pytest.approx(_sk_ssim(clean, noisy), abs=1e-4)
    per_slice = np.mean([_sk_ssim(c, n) for c, n in zip(clean, noisy)])
    assert slices == pytest.approx(per_slice, abs=1e-4)
    assert abs(vol - slices) > 1e-3


def test_ssim_channels_are_averaged():
    a0, b0 = _pair((24, 24), 4)
    a1, b1 = _pair((24, 24), 5, sigma=0.3)
    got = float(ssim(np.stack([a0, a1], -1)[None], np.stack([b0, b1], -1)[None])[0])
    assert got == pytest.approx((_sk_ssim(a0, b0) + _sk_ssim(a1, b1)) / 2, abs=1e-4)


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((1, 8, 32, 1), "float32"), np.zeros((1, 8, 32, 1), "float32"))
    with pytest.raises(ValueError, match="y and x sizes >= 11"):
        ssim(np.zeros((1, 16, 8, 32, 1), "float32"), np.zeros((1, 16, 8, 32, 1), "float32"))


def test_ssim_of_a_thin_slab_is_the_mean_2d_ssim_of_its_slices():
    """An 8-slice 3D patch (thinner than the 11-tap window) is scored slice by slice."""
    clean, noisy = _pair((8, 24, 28), 7)
    got = float(ssim(clean[None, ..., None], noisy[None, ..., None])[0])
    assert got == pytest.approx(np.mean([_sk_ssim(c, n) for c, n in zip(clean, noisy)]), abs=1e-4)
    assert got < 0.99  # the noise is seen: not a constant or identity score


def test_metric_objects_average_over_batches_and_serialise():
    clean, noisy = _pair((2, 24, 24), 6)
    clean, noisy = clean[..., None], noisy[..., None]
    metric = PSNR()
    metric.update_state(clean[:1], noisy[:1])
    metric.update_state(clean[1:], noisy[1:])
    expected = np.mean([peak_signal_noise_ratio(c, n, data_range=1.0) for c, n in zip(clean, noisy)])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-3)
    for cls in (PSNR, SSIM):
        restored = keras.metrics.deserialize(keras.metrics.serialize(cls(data_range=2.0)))
        assert isinstance(restored, cls) and restored.data_range == 2.0


def test_losses():
    clean, noisy = _pair((2, 16, 16, 16), 7)
    clean, noisy = clean[..., None], noisy[..., None]
    assert float(get_loss("mse")(clean, noisy)) == pytest.approx(np.mean((clean - noisy) ** 2), rel=1e-4)
    assert float(get_loss("mae")(clean, noisy)) == pytest.approx(np.mean(np.abs(clean - noisy)), rel=1e-4)
    mix = L1SSIMLoss(alpha=0.84)
    assert float(mix(clean, clean)) == pytest.approx(0.0, abs=1e-5)
    expected = np.mean(
        [0.84 * (1 - _sk_ssim(c[..., 0], n[..., 0])) + 0.16 * np.mean(np.abs(c - n))
         for c, n in zip(clean, noisy)]
    )
    assert float(mix(clean, noisy)) == pytest.approx(expected, abs=1e-4)
    restored = keras.losses.deserialize(keras.losses.serialize(L1SSIMLoss(alpha=0.5)))
    assert restored.alpha == 0.5
    with pytest.raises(ValueError, match="huber"):
        get_loss("huber")
