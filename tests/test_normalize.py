"""Normalizer: CT window, percentile and min-max maps with an exact inverse."""
from __future__ import annotations

import numpy as np
import pytest

from data_pipelines import InvalidDataError, Volume
from data_pipelines.normalize import Normalizer


def _ct_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1200.0, 1500.0, size=(4, 16, 16)).astype(np.float32)


def test_ct_window_maps_window_to_unit_interval() -> None:
    norm = Normalizer.ct(window=(-1000.0, 400.0))
    y = norm(np.array([-1000.0, -300.0, 400.0, 1800.0], np.float32))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0, 2.0], atol=1e-7)
    assert norm.fit(_ct_image()) is norm  # a window needs no statistics


def test_fixed_window_for_8_bit_data_needs_no_fit_and_round_trips() -> None:
    norm = Normalizer.fixed(0, 255)
    y = norm(np.array([0, 51, 255], np.uint8))
    np.testing.assert_allclose(y, [0.0, 0.2, 1.0], atol=1e-7)
    assert norm.fit(np.full((4, 4), 7.0)) is norm  # even a constant image: nothing is estimated
    assert Normalizer.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="high > low"):
        Normalizer.fixed(255, 0)


def test_inverse_is_exact_without_clipping() -> None:
    x = _ct_image()
    for norm in (Normalizer.ct(), Normalizer.percentile(1, 99.8).fit(x), Normalizer.minmax().fit(x)):
        back = norm.inverse(norm(x))
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, x, rtol=1e-6, atol=1e-3)  # float32 precision of values up to 1500


def test_clip_bounds_output_and_breaks_exactness() -> None:
    x = _ct_image()
    norm = Normalizer.ct(clip=True)
    y = norm(x)
    assert y.min() == 0.0 and y.max() == 1.0
    inside = (x >= -1000) & (x <= 400)
    np.testing.assert_allclose(norm.inverse(y)[inside], x[inside], atol=1e-3)
    assert np.abs(norm.inverse(y)[~inside] - x[~inside]).max() > 100.0


def test_percentile_and_minmax_statistics() -> None:
    x = np.arange(1001, dtype=np.float32)
    p = Normalizer.percentile(1.0, 99.0).fit(x)
    assert (p.low, p.high) == pytest.approx((10.0, 990.0))
    assert p(np.float32(500.0)) == pytest.approx(0.5)
    m = Normalizer.minmax().fit(x)
    # statistics of the 5-voxel box mean (reflected edges): 0.8 and 999.2 on a ramp
    assert (m.low, m.high) == pytest.approx((0.8, 999.2))
    y = m(x)
    assert y.min() == pytest.approx(-0.8 / 998.4, rel=1e-4) and y.max() == pytest.approx(1 + 0.8 / 998.4, rel=1e-4)


@pytest.mark.parametrize("kind", ["percentile", "minmax"])
def test_a_fit_on_noisy_data_is_nearly_the_fit_on_clean_data(kind) -> None:
    yy, xx = np.mgrid[0:128, 0:128] / 127.0
    clean = (np.sin(3 * xx) * np.cos(2 * yy) + 1.0) * 500.0  # smooth, 0-1000
    noisy = clean + 100.0 * np.random.default_rng(0).standard_normal(clean.shape)  # sigma 10 % of the range
    make = Normalizer.percentile if kind == "percentile" else Normalizer.minmax
    on_clean, on_noisy = make().fit(clean), make().fit(noisy)
    # the map fitted on the noisy image, applied to the clean one, is close to the clean fit's
    mapped = on_noisy(clean)
    reference = on_clean(clean)
    scale, offset = np.polyfit(reference.ravel(), mapped.ravel(), 1)
    low, high = np.percentile(noisy, (1.0, 99.8)) if kind == "percentile" else (noisy.min(), noisy.max())
    raw_scale = (on_clean.high - on_clean.low) / (high - low)  # the map of unsmoothed statistics
    # measured: percentile 0.971 (raw statistics 0.78), minmax 0.886 (raw 0.55)
    assert abs(scale - 1.0) < {"percentile": 0.04, "minmax": 0.15}[kind], (scale, offset)
    assert abs(scale - 1.0) < 0.5 * abs(raw_scale - 1.0) and abs(offset) < 0.08, (scale, raw_scale, offset)


def test_uint16_is_handled_in_float64() -> None:
    x = np.array([[0, 1, 65534, 65535]], np.uint16)
    norm = Normalizer.minmax().fit(x)
    y = norm(x)
    np.testing.assert_allclose(y, [[0.0, 1 / 65535, 65534 / 65535, 1.0]], rtol=1e-6)
    np.testing.assert_array_equal(np.round(norm.inverse(y)).astype(np.uint16), x)  # no wrap-around


def test_accepts_volume() -> None:
    vol = Volume(_ct_image())
    norm = Normalizer.minmax().fit(vol)
    np.testing.assert_array_equal(norm(vol), norm(vol.array))


def test_dict_round_trip_keeps_fitted_bounds() -> None:
    norm = Normalizer.percentile(2.0, 98.0).fit(_ct_image())
    d = norm.to_dict()
    assert d["kind"] == "percentile" and d["params"] == [2.0, 98.0]
    again = Normalizer.from_dict(d)
    assert again == norm
    x = _ct_image(1)
    np.testing.assert_array_equal(again(x), norm(x))


def test_unfitted_statistics_normaliser_is_an_error() -> None:
    with pytest.raises(InvalidDataError, match="not fitted"):
        Normalizer.percentile()(_ct_image())
    with pytest.raises(InvalidDataError, match="not fitted"):
        Normalizer.minmax().inverse(np.zeros(3))


def test_constant_image_cannot_be_fitted() -> None:
    with pytest.raises(InvalidDataError, match=r"\(4, 4\) is constant"):
        Normalizer.minmax().fit(np.full((4, 4), 7.0))
    with pytest.raises(InvalidDataError, match="constant"):
        Normalizer.percentile().fit(np.full((3, 5), -2.0))


def test_nan_and_empty_input_cannot_be_fitted() -> None:
    x = _ct_image()
    x[0, 0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN/Inf"):
        Normalizer.percentile().fit(x)
    with pytest.raises(InvalidDataError, match="empty"):
        Normalizer.minmax().fit(np.zeros((0, 3)))


@pytest.mark.parametrize(
    "make",
    [lambda: Normalizer.ct(window=(400, -1000)), lambda: Normalizer.percentile(50, 10), lambda: Normalizer("zscore")],
)
def test_bad_parameters(make) -> None:
    with pytest.raises(ValueError):
        make()
