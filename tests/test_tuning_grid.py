"""Grid widening of tune_on_validation and calibrate_j_invariance when the best value is on an edge."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from resprunet.variational import calibrate_j_invariance, tune_on_validation

CLEAN = np.zeros((16, 16))


def _peaked(noisy: np.ndarray, weight: float) -> np.ndarray:
    """A stand-in denoiser whose error grows with |log(weight / 0.3)|: PSNR optimum at weight 0.3."""
    return noisy + 0.01 * abs(np.log(weight / 0.3))


def _fraction(noisy: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """Best at the largest alpha: the error falls as alpha rises."""
    return noisy + 0.01 * (1.5 - alpha)


def test_an_edge_optimum_widens_the_grid_until_it_is_interior():
    result = tune_on_validation(_peaked, CLEAN, CLEAN, {"weight": [0.01, 0.02, 0.04]}, return_result=True)
    assert result.best["weight"] == pytest.approx(0.32)  # the grid's ratio 2 from 0.04: 0.08 ... 0.64
    assert result.widened == {"weight": pytest.approx([0.08, 0.16, 0.32, 0.64])}
    assert result.at_edge == {} and len(result.params) == len(result.scores) == 7
    assert "weight widened to 0.08, 0.16, 0.32, 0.64" in result.describe_widening()
    below = tune_on_validation(_peaked, CLEAN, CLEAN, {"weight": [2.0, 3.0]}, return_result=True)
    assert 0.25 <= below.best["weight"] <= 0.4 and below.at_edge == {}


def test_an_interior_optimum_leaves_the_grid_unchanged():
    grid = {"weight": [0.1, 0.3, 0.9]}
    result = tune_on_validation(_peaked, CLEAN, CLEAN, grid, return_result=True)
    assert result.best == {"weight": 0.3} and result.widened == {} and result.at_edge == {}
    assert result.params == [{"weight": w} for w in grid["weight"]]


def test_a_real_denoiser_is_widened_to_its_optimum():
    rng = np.random.default_rng(0)
    clean = gaussian_filter(rng.standard_normal((48, 48)), 3.0)
    clean = (clean - clean.min()) / np.ptp(clean)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    fine = np.geomspace(0.2, 6.0, 40)
    reference = fine[np.argmax([-np.mean((gaussian_filter(noisy, s) - clean) ** 2) for s in fine])]
    best = tune_on_validation(gaussian_filter, clean, noisy, {"sigma": [0.1, 0.2]})
    assert best["sigma"] == pytest.approx(reference, rel=0.45)  # within one factor-2 step


def test_bounds_stop_the_widening_and_are_reported():
    prior = CLEAN
    result = tune_on_validation(_fraction, CLEAN, CLEAN, {"alpha": [0.0, 0.25, 0.5]}, prior=prior,
                                bounds={"alpha": (0.0, 1.0)}, return_result=True)
    assert result.best == {"alpha": 1.0} and result.widened == {"alpha": [1.0]}
    assert result.at_edge == {"alpha": "at its upper bound 1"}
    lower = tune_on_validation(lambda n, p, alpha: n + 0.01 * alpha, CLEAN, CLEAN, {"alpha": [0.0, 0.5]},
                               prior=prior, bounds={"alpha": (0.0, 1.0)}, return_result=True)
    assert lower.best == {"alpha": 0.0} and lower.widened == {} and "lower bound 0" in lower.at_edge["alpha"]
    with pytest.raises(ValueError, match="outside its bounds"):
        tune_on_validation(_fraction, CLEAN, CLEAN, {"alpha": [0.5, 1.5]}, prior=prior, bounds={"alpha": (0.0, 1.0)})
    with pytest.raises(ValueError, match="not in the grid"):
        tune_on_validation(_peaked, CLEAN, CLEAN, {"weight": [0.1]}, bounds={"alpha": (0.0, 1.0)})


def test_the_extension_limit_is_reported_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="resprunet.variational.tuning"):
        result = tune_on_validation(_peaked, CLEAN, CLEAN, {"weight": [0.001, 0.002]}, max_extensions=2,
                                    return_result=True)
    assert result.best["weight"] == pytest.approx(0.008) and "after 2 widenings" in result.at_edge["weight"]
    assert "still on the edge" in caplog.text
    off = tune_on_validation(_peaked, CLEAN, CLEAN, {"weight": [0.001, 0.002]}, max_extensions=0, return_result=True)
    assert off.widened == {} and len(off.params) == 2


def test_non_numeric_and_single_value_axes_are_not_widened():
    def method(noisy: np.ndarray, weight: float, mode: str) -> np.ndarray:
        return _peaked(noisy, weight) + (0.0 if mode == "b" else 0.01)

    result = tune_on_validation(method, CLEAN, CLEAN, {"weight": [0.3], "mode": ["a", "b"]}, return_result=True)
    assert result.best == {"weight": 0.3, "mode": "b"} and result.widened == {} and result.at_edge == {}


def test_integer_axes_stay_integer():
    result = tune_on_validation(lambda n, k: n + 0.001 * abs(k - 40), CLEAN, CLEAN, {"k": [1, 2, 3]},
                                return_result=True)
    assert all(isinstance(v, int) for v in result.widened["k"]) and result.at_edge == {}
    assert 30 <= result.best["k"] <= 50


def test_j_invariance_widens_its_grid_too():
    rng = np.random.default_rng(1)
    clean = gaussian_filter(rng.standard_normal((64, 64)), 4.0)
    clean = (clean - clean.min()) / np.ptp(clean)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    result = calibrate_j_invariance(gaussian_filter, noisy, {"sigma": [0.5, 1.0]}, return_result=True)
    assert result.widened == {"sigma": [2.0, 4.0]} and result.at_edge == {}  # loss lowest at 2 (measured)
    assert result.best == {"sigma": 2.0} and np.argmin(result.scores) == result.params.index(result.best)
