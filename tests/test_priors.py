"""Priors: neighbour-slice weighted mean (numpy and TensorFlow), temporal mean, external file."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import InvalidDataError, ShapeMismatchError, Volume
from data_pipelines.priors import (
    external_prior,
    neighbour_slice_prior,
    neighbour_slice_prior_tf,
    neighbour_weights,
    temporal_mean_prior,
)


def _ramp(n: int = 20) -> np.ndarray:
    """Slice z holds the value z everywhere: (n, 3, 4)."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 3, 4)).copy()


def test_prior_of_a_ramp_is_centred_on_the_slice() -> None:
    x = _ramp()
    prior = neighbour_slice_prior(x, size=9, decay=0.04)
    assert prior.shape == x.shape and prior.dtype == np.float32
    np.testing.assert_allclose(prior[4:16], x[4:16], atol=1e-5)  # symmetric window: exact; off-by-one gives z - 1


def test_border_slices_renormalise_over_existing_neighbours() -> None:
    x = _ramp(10)
    d = 0.3
    prior = neighbour_slice_prior(x, size=5, decay=d)
    w1, w2 = np.exp(-d), np.exp(-2 * d)
    assert prior[0, 0, 0] == pytest.approx((w1 * 1 + w2 * 2) / (w1 + w2), rel=1e-6)
    assert prior[1, 0, 0] == pytest.approx((w1 * 0 + w1 * 2 + w2 * 3) / (2 * w1 + w2), rel=1e-6)
    assert prior[9, 0, 0] == pytest.approx((w1 * 8 + w2 * 7) / (w1 + w2), rel=1e-6)
    assert neighbour_slice_prior(x, size=3)[0, 0, 0] == pytest.approx(1.0)  # only slice 1 exists


def test_include_self_uses_the_slice_itself() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((6, 4, 4)).astype(np.float32)
    d = 0.5
    w = np.exp(-d)
    prior = neighbour_slice_prior(x, size=3, decay=d, include_self=True)
    np.testing.assert_allclose(prior[2], (w * x[1] + x[2] + w * x[3]) / (1 + 2 * w), rtol=1e-6)
    without = neighbour_slice_prior(x, size=3, decay=d)
    np.testing.assert_allclose(without[2], (x[1] + x[3]) / 2, rtol=1e-6)
    assert neighbour_weights(3, d, include_self=True) == pytest.approx({-1: w, 0: 1.0, 1: w})


def test_axis_argument() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((5, 7, 6)).astype(np.float32)
    along_x = neighbour_slice_prior(x, size=5, axis=2)
    expected = np.moveaxis(neighbour_slice_prior(np.moveaxis(x, 2, 0), size=5), 0, 2)
    np.testing.assert_array_equal(along_x, expected)


def test_tf_prior_matches_numpy_inside_and_at_volume_borders() -> None:
    rng = np.random.default_rng(2)
    size, half = 7, 3
    x = rng.random((12, 5, 6)).astype(np.float32)
    reference = neighbour_slice_prior(x, size=size, decay=0.1)
    # a slab fully inside the volume: slices 3..8 with a margin of 3 each side
    slab = tf.constant(x[0:12])
    out = neighbour_slice_prior_tf(slab, tf.ones(12), size=size, decay=0.1).numpy()
    np.testing.assert_allclose(out, reference[half : 12 - half], rtol=1e-5)
    # a slab at the top of the volume: margin slices beyond it are zeros marked invalid
    padded = np.concatenate([np.full((half, 5, 6), 9.0, np.float32), x[: 4 + half]])
    valid = np.r_[np.zeros(half), np.ones(4 + half)].astype(np.float32)
    out = neighbour_slice_prior_tf(tf.constant(padded), tf.constant(valid), size=size, decay=0.1).numpy()
    np.testing.assert_allclose(out, reference[:4], rtol=1e-5)


def test_neighbour_prior_bad_input() -> None:
    with pytest.raises(InvalidDataError, match=r"\(1, 4, 4\)"):
        neighbour_slice_prior(np.zeros((1, 4, 4)))
    assert neighbour_slice_prior(np.ones((1, 4, 4)), include_self=True).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="no neighbour"):
        neighbour_slice_prior(np.zeros((4, 4, 4)), size=1)
    with pytest.raises(ValueError, match="decay"):
        neighbour_slice_prior(np.zeros((4, 4, 4)), decay=-1.0)


def test_temporal_mean_prior_drops_or_keeps_the_frame_axis() -> None:
    x = np.stack([np.full((2, 3, 4), v, np.float32) for v in (1.0, 2.0, 6.0)], axis=-1)
    prior = temporal_mean_prior(x)
    assert prior.shape == (2, 3, 4) and prior.dtype == np.float32
    np.testing.assert_array_equal(prior, 3.0)
    assert temporal_mean_prior(x, keepdims=True).shape == (2, 3, 4, 1)
    np.testing.assert_array_equal(temporal_mean_prior(x, axis=0), x.mean(axis=0))
    with pytest.raises(InvalidDataError, match="no frames"):
        temporal_mean_prior(np.zeros((2, 3, 0)))


def test_external_prior_checks_shape_and_names_the_file() -> None:
    image = np.zeros((4, 5, 6), np.float32)
    ok = external_prior(np.ones((4, 5, 6), np.float64), image)
    assert ok.dtype == np.float32 and ok.shape == (4, 5, 6)
    expected = r"prior \(from /data/prior\.nii\.gz\) has shape \(4, 5, 7\).*\(4, 5, 6\)"
    with pytest.raises(ShapeMismatchError, match=expected):
        external_prior(Volume(np.zeros((4, 5, 7)), source="/data/prior.nii.gz"), image)
    with pytest.raises(ShapeMismatchError, match=r"\(3, 5, 6\).*\(4, 5, 6\)"):
        external_prior(np.zeros((3, 5, 6)), Volume(image), source="p.npz")
