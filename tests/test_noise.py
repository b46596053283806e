"""Noise models: numpy and TensorFlow versions agree in distribution; seeding is per sample."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from data_pipelines.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise

SHAPE = (8, 32, 32)  # 8192 voxels


def _tf(model: NoiseModel, x: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    return model.apply_tf(tf.constant(x, tf.float32), tf.constant(seed, tf.int64)).numpy()


def test_gaussian_numpy_and_tf_agree_in_distribution() -> None:
    x = np.linspace(0.0, 1.0, np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    model = GaussianNoise(0.05)
    res_np = model(x, 0) - x
    res_tf = _tf(model, x, (1, 2)) - x
    for res in (res_np, res_tf):
        assert res.dtype == np.float32 and res.shape == SHAPE
        assert abs(res.mean()) < 0.05 * 4 / np.sqrt(res.size)
        assert res.std() == pytest.approx(0.05, rel=0.03)
        assert stats.kstest(res.ravel() / 0.05, "norm").pvalue > 1e-3
    assert stats.ks_2samp(res_np.ravel(), res_tf.ravel()).pvalue > 1e-3


def test_no_clipping_and_no_rounding_by_default() -> None:
    x = np.zeros(SHAPE, np.float32)
    y = GaussianNoise(0.05)(x, np.random.default_rng(3))
    assert (y < 0).mean() == pytest.approx(0.5, abs=0.03)  # negative values kept
    assert not np.allclose(y * 255, np.round(y * 255), atol=1e-4)


def test_quantize_rounds_to_grey_levels() -> None:
    x = np.full(SHAPE, 0.5, np.float32)
    model = GaussianNoise(0.05, quantize=True, levels=255)
    for y in (model(x, 1), _tf(model, x, (4, 5))):
        np.testing.assert_allclose(y * 255, np.round(y * 255), atol=1e-3)
        assert y.std() == pytest.approx(np.sqrt(0.05**2 + 1 / (12 * 255**2)), rel=0.05)


def test_same_seed_same_map_different_seed_different_map() -> None:
    x = np.full(SHAPE, 0.3, np.float32)
    model = GaussianNoise(0.1)
    np.testing.assert_array_equal(model(x, 7), model(x, 7))
    np.testing.assert_array_equal(model(x, np.random.default_rng(7)), model(x, 7))
    assert np.abs(model(x, 7) - model(x, 8)).mean() > 0.05
    np.testing.assert_array_equal(_tf(model, x, (3, 9)), _tf(model, x, (3, 9)))
    assert np.abs(_tf(model, x, (3, 9)) - _tf(model, x, (3, 10))).mean() > 0.05


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_blind_sigma_is_drawn_per_sample_and_covers_range(backend: str) -> None:
    x = np.zeros((64, 64), np.float32)
    model = GaussianNoise(sigma=(0.0, 0.2))
    if backend == "numpy":
        rng = np.random.default_rng(0)
        sigmas = np.array([model(x, rng).std() for _ in range(150)])
    else:
        sigmas = np.array([_tf(model, x, (0, i)).std() for i in range(150)])
    assert sigmas.min() < 0.015 and sigmas.max() > 0.185
    assert sigmas.mean() == pytest.approx(0.1, abs=0.015)
    assert stats.kstest(sigmas, "uniform", args=(0.0, 0.2)).pvalue > 1e-3


def test_poisson_statistics_numpy_and_tf() -> None:
    x = np.full(SHAPE, 0.5, np.float32)
    model = PoissonNoise(photons=40.0)
    for y in (model(x, 0), _tf(model, x, (2, 2))):
        assert y.mean() == pytest.approx(0.5, abs=0.005)
        assert y.var() == pytest.approx(0.5 / 40.0, rel=0.05)
        np.testing.assert_allclose(y * 40.0, np.round(y * 40.0), atol=1e-4)  # whole photon counts
    zero = model(np.full((4, 4), -0.2, np.float32), 0)
    np.testing.assert_array_equal(zero, 0.0)  # negative intensities carry no photons


def test_poisson_gaussian_variance_numpy_and_tf() -> None:
    x = np.full(SHAPE, 0.8, np.float32)
    model = PoissonGaussianNoise(photons=100.0, sigma=0.03)
    expected = 0.8 / 100.0 + 0.03**2
    for y in (model(x, 5), _tf(model, x, (6, 7))):
        assert y.mean() == pytest.approx(0.8, abs=0.006)
        assert y.var() == pytest.approx(expected, rel=0.06)
    quantised = PoissonGaussianNoise(photons=100.0, sigma=0.03, quantize=True)(x, 5)
    np.testing.assert_allclose(quantised * 100.0, np.round(quantised * 100.0), atol=1e-3)


def test_dict_round_trip_and_description() -> None:
    for model in (GaussianNoise(0.05), GaussianNoise((0.0, 0.2)), PoissonNoise(30.0), PoissonGaussianNoise(50, 0.01)):
        d = model.to_dict()
        assert NoiseModel.from_dict(d) == model
        assert d["kind"] in ("gaussian", "poisson", "poisson_gaussian")
    assert GaussianNoise(0.05).describe() == "Gaussian noise, sigma = 0.05 of the normalised range [0, 1]"
    assert "[0, 0.2]" in GaussianNoise((0.0, 0.2)).describe()
    assert "photons = 30" in PoissonNoise(30.0).describe()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianNoise(-0.1),
        lambda: GaussianNoise((0.2, 0.1)),
        lambda: GaussianNoise((0.1, 0.2, 0.3)),
        lambda: PoissonNoise(0.0),
        lambda: PoissonGaussianNoise(10.0, float("nan")),
        lambda: NoiseModel.from_dict({"kind": "speckle"}),
    ],
)
def test_bad_parameters(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_numpy_side_modules_do_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, data_pipelines as dp\n"
        "from data_pipelines import patches, store\n"
        "x = dp.Normalizer.minmax().fit(np.arange(8.0))(np.arange(8.0))\n"
        "dp.GaussianNoise(0.1)(x, 0); dp.PoissonGaussianNoise(10, 0.1)(x, 0)\n"
        "dp.neighbour_slice_prior(np.ones((3, 2, 2)))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
