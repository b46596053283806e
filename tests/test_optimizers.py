"""make_optimizer: the schedule and the global gradient-norm clipping reach the Adam it builds."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from resprunet.training.config import OptimizerConfig
from resprunet.training.optimizers import make_optimizer


def _steps(optimizer: keras.optimizers.Optimizer, grads: list[np.ndarray]) -> np.ndarray:
    """Apply each gradient in turn to two weights starting at zero; return the weights."""
    weights = [keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros(2, "float32"))]
    optimizer.build(weights)
    for grad in grads:
        optimizer.apply([keras.ops.convert_to_tensor(grad[:3]), keras.ops.convert_to_tensor(grad[3:])],
                        weights)
    return np.concatenate([keras.ops.convert_to_numpy(w) for w in weights])


def test_clipnorm_scales_a_gradient_spike_down_to_the_global_norm():
    """A small step then a spike of norm 1000: with clipnorm 1 the result must equal plain Adam
    given the spike scaled to norm 1 over both weights together (a per-weight or missing clip
    gives other weights)."""
    rng = np.random.default_rng(0)
    small = rng.normal(size=5).astype("float32") * 0.01
    spike = rng.normal(size=5).astype("float32")
    spike *= 1000 / np.linalg.norm(spike)
    plain = OptimizerConfig(learning_rate=0.1, schedule="constant")
    clipped = OptimizerConfig(learning_rate=0.1, schedule="constant", clipnorm=1.0)

    got = _steps(make_optimizer(clipped, 10), [small, spike])
    expected = _steps(make_optimizer(plain, 10), [small, spike / 1000])
    unclipped = _steps(make_optimizer(plain, 10), [small, spike])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(got - unclipped).max() > 5e-4  # far beyond the tolerance: the clip mattered


def test_a_gradient_below_the_norm_is_untouched():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=5).astype("float32") * 0.01 for _ in range(3)]
    got = _steps(make_optimizer(OptimizerConfig(schedule="constant", clipnorm=1.0), 10), grads)
    expected = _steps(make_optimizer(OptimizerConfig(schedule="constant"), 10), grads)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("schedule, fraction_at_end", [("cosine", 0.05), ("exponential", 0.05), ("constant", 1.0)])
def test_the_schedule_ends_at_the_final_fraction(schedule, fraction_at_end):
    optimizer = make_optimizer(OptimizerConfig(learning_rate=2e-3, schedule=schedule, final_fraction=0.05), 100)
    optimizer.iterations.assign(100)  # learning_rate reads the schedule at the current step
    at_end = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    assert at_end == pytest.approx(2e-3 * fraction_at_end, rel=1e-4)
