"""Tests of resprunet.models: parameter counts, shapes, describe, round trips, mixed precision."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from model_helpers import random_head
from resprunet import models

# Small options per model so every test runs on tiny inputs.
SMALL = {
    "convnet": {"filters": 4},
    "resnet": {"filters": 4, "blocks": 2},
    "unet": {"filters": 4, "depth": 2},
    "respr_unet": {"filters": 4, "depth": 2},
    "irunet": {"filters": 4},
}
SPATIAL = {2: (16, 32), 3: (16, 16, 16)}  # multiples of 16 (the largest divisor)
ALL_MODELS = [(name, ndim) for name in models.available() for ndim in (2, 3)]


def _inputs(model: keras.Model, ndim: int, channels: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (2,) + SPATIAL[ndim] + (channels,)
    noisy = rng.random(shape, dtype=np.float32)
    if models.describe(model).needs_prior:
        return {"noisy": noisy, "prior": rng.random(shape, dtype=np.float32)}
    return noisy


@pytest.fixture
def bfloat16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- registry ---------------------------------------------------------------------------


def test_available_lists_the_five_models():
    assert models.available() == ["convnet", "irunet", "resnet", "respr_unet", "unet"]


def test_unknown_name_lists_the_available_names():
    names = r"\['convnet', 'irunet', 'resnet', 'respr_unet', 'unet'\]"
    with pytest.raises(ValueError, match=r"'vnet'.*" + names):
        models.build("vnet")


@pytest.mark.parametrize("ndim", [1, 4, "3"])
def test_ndim_other_than_2_or_3_is_rejected(ndim):
    with pytest.raises(ValueError, match=f"ndim={ndim!r}"):
        models.build("unet", ndim=ndim)


def test_unknown_preset_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match=r"preset='tiny'.*\['n2v2', 'seed'\]"):
        models.build("unet", preset="tiny")
    with pytest.raises(ValueError, match=r"upsampling='bilinear'.*\['nearest', 'linear', 'transpose'\]"):
        models.build("unet", upsampling="bilinear")
    with pytest.raises(ValueError, match=r"depth=0"):
        models.build("unet", depth=0)
    with pytest.raises(ValueError, match=r"final_activation='tanh'"):
        models.build("convnet", final_activation="tanh")
    assert models.presets("resnet") == []


def test_preset_values_are_overridden_by_explicit_options():
    model = models.build("unet", preset="seed", filters=8)
    first_conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert tuple(first_conv.kernel.shape) == (3, 3, 1, 8)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


# --- seed presets reproduce the original parameter counts -------------------------------


@pytest.mark.parametrize(
    ("name", "ndim", "options", "expected"),
    [
        ("convnet", 2, {}, 37_633),
        ("unet", 2, {}, 332_641),
        ("unet", 3, {}, 996_769),
        ("respr_unet", 3, {}, 997_633),
    ],
)
def test_seed_parameter_counts(name, ndim, options, expected):
    assert models.build(name, ndim=ndim, preset="seed", **options).count_params() == expected


def test_irunet_f16_on_96x96x3():
    model = models.build("irunet", ndim=2, preset="seed", channels=3)
    assert model.count_params() == 123_379
    out = model(np.full((1, 96, 96, 3), 0.5, dtype=np.float32))
    assert tuple(out.shape) == (1, 96, 96, 3)
    out = np.asarray(out)
    assert np.all((out >= 0) & (out <= 1))  # sigmoid output


def test_irunet_adds_encoder_levels_2_and_1_to_the_decoder():
    """The skip topology, not just the parameter count: exactly two long skips, each adding an
    encoder level's output to the decoder at that level's resolution (1/4, then 1/2)."""
    model = models.build("irunet", ndim=2, filters=4)
    order = {id(layer.output): i for i, layer in enumerate(model.layers)}
    long_skips = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Add):
            sources = sorted(order[id(t)] for t in layer.input)
            if i - sources[0] > 20:  # an encoder tensor made long before: a U-Net skip
                long_skips.append((layer, model.layers[sources[0]]))
    assert len(long_skips) == 2
    probe = keras.Model(model.inputs, [t for add, enc in long_skips for t in (add.output, enc.output)])
    shapes = [tuple(spec.shape[1:3]) for spec in probe.compute_output_spec(
        keras.KerasTensor((1, 64, 64, 1)))]
    assert shapes == [(16, 16), (16, 16), (32, 32), (32, 32)]  # level 2 (1/4), then level 1 (1/2)
    encoder_adds = [layer for layer in model.layers[: len(model.layers) // 2]
                    if isinstance(layer, keras.layers.Add)]
    # each encoder level ends in an inception Add (after the reduction's Add): levels 1 and 2
    assert [enc for _, enc in long_skips] == [encoder_adds[3], encoder_adds[1]]


def test_seed_convnet_layers_match_the_original():
    model = models.build("convnet", preset="seed")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [tuple(c.kernel.shape) for c in convs] == [(3, 3, 1, 64), (3, 3, 64, 64), (1, 1, 64, 1)]
    assert [c.get_config()["activation"] for c in convs] == ["relu", "relu", "linear"]


@pytest.mark.parametrize(("batch_norm", "expected"), [(False, 449), (True, 509)])
def test_transpose_and_conv_pooling_parameter_count(batch_norm, expected):
    # depth 1, 2 filters: convs 1->2, 2->2, pool conv 2x2 2->2, bottom 2->4, 4->4, transpose
    # 2x2 4->2, decoder (2+2)->2, 2->2, output 1x1 2->1. 20 conv units; batch norm drops their
    # biases (-20) and adds gamma, beta, mean, variance per channel (+80).
    model = models.build(
        "unet",
        filters=2,
        depth=1,
        batch_norm=batch_norm,
        upsampling="transpose",
        pooling="conv",
        residual=False,
    )
    assert model.count_params() == expected


def test_transpose_and_conv_pooling_3d_shape():
    model = models.build("unet", ndim=3, filters=2, depth=2, upsampling="transpose", pooling="conv")
    assert models.describe(model).divisor == 4
    assert tuple(model(np.zeros((1, 4, 8, 12, 1), dtype=np.float32)).shape) == (1, 4, 8, 12, 1)


# --- shapes, divisor, describe ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("convnet", {"filters": 4}, (1, 5)),
        ("resnet", {"filters": 4, "blocks": 3}, (1, 13)),
        ("unet", {"filters": 4, "depth": 2, "batch_norm": False}, (4, 44)),
        ("unet", {"filters": 4, "depth": 3}, (8, 96)),
        ("respr_unet", {"filters": 4, "depth": 2}, (4, 44)),
        ("irunet", {"filters": 4}, (16, 213)),
    ],
)
def test_describe_fresh_model(name, options, expected):
    info = models.describe(models.build(name, ndim=3, channels=2, **options))
    assert info == models.ModelInfo(
        name=name,
        ndim=3,
        channels=2,
        needs_prior=name == "respr_unet",
        divisor=expected[0],
        receptive_field=expected[1],
    )


def test_receptive_field_is_the_impulse_response_width():
    keras.utils.set_random_seed(0)
    model = models.build("unet", ndim=2, filters=4, depth=2, batch_norm=False, residual=False)
    rf = models.describe(model).receptive_field
    size = 128
    base = np.full((1, size, size, 1), 0.5, dtype=np.float32)
    impulse = base.copy()
    impulse[0, size // 2, size // 2, 0] += 1.0
    difference = np.asarray(model(impulse) - model(base))[0, ..., 0]
    changed = np.flatnonzero(np.any(difference != 0, axis=1))  # rows reached by the impulse
    assert changed.max() - changed.min() + 1 == rf == 44


def test_3d_unet_depth_2_runs_on_16x24x32():
    model = models.build("unet", ndim=3, filters=4, depth=2)
    assert models.describe(model).divisor == 4
    out = model(np.zeros((1, 16, 24, 32, 1), dtype=np.float32))
    assert tuple(out.shape) == (1, 16, 24, 32, 1)


def test_describe_rejects_a_model_without_noisy_input():
    inp = keras.Input((None, None, 1), name="image")
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp))
    with pytest.raises(ValueError, match=r"inputs \['image'\].*'noisy'"):
        models.describe(model)


# --- residual behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
def test_untrained_residual_unet_returns_its_input(ndim):
    """With a global residual the head starts at zero: out = noisy before any training."""
    model = models.build("unet", ndim=ndim, filters=4, depth=2, residual=True)
    x = _inputs(model, ndim)
    np.testing.assert_array_equal(np.asarray(model(x)), x)
    assert not np.any(model.get_layer("output_conv").get_weights()[0])
    non_residual = models.build("unet", ndim=ndim, filters=4, depth=2, residual=False)
    assert np.any(non_residual.get_layer("output_conv").get_weights()[0])


@pytest.mark.parametrize("ndim", [2, 3])
def test_untrained_respr_unet_returns_the_prior(ndim):
    model = models.build("respr_unet", ndim=ndim, filters=4, depth=2)
    x = _inputs(model, ndim)
    np.testing.assert_array_equal(np.asarray(model(x)), x["prior"])


def test_respr_unet_output_depends_on_noisy_input():
    model = models.build("respr_unet", ndim=2, filters=4, depth=2)
    random_head(model)
    x = _inputs(model, 2)
    y = dict(x, noisy=x["noisy"] + 0.5)
    assert not np.allclose(np.asarray(model(x)), np.asarray(model(y)))


# --- saving and mixed precision -------------------------------------------------------------


def _randomise(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random values for every weight, batch-norm moving statistics included (variances > 0)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for weight in layer.weights:
            values = rng.normal(0.0, 0.3, weight.shape)
            if "variance" in weight.path:
                values = rng.uniform(0.5, 2.0, weight.shape)
            weight.assign(values.astype(weight.dtype))
    return model


WITH_BATCH_NORM = ("resnet", "unet", "respr_unet")  # the builders with a batch_norm option


@pytest.mark.parametrize(("name", "ndim", "batch_norm"), [
    *((name, ndim, False) for name, ndim in ALL_MODELS),
    *((name, ndim, True) for name, ndim in ALL_MODELS if name in WITH_BATCH_NORM),
])
def test_output_shape_and_keras_file_round_trip(name, ndim, batch_norm, tmp_path):
    options = {**SMALL[name], **({"batch_norm": True} if batch_norm else {})}
    model = _randomise(models.build(name, ndim=ndim, channels=2, **options))
    x = _inputs(model, ndim, channels=2)
    out = model(x)
    assert tuple(out.shape) == (2,) + SPATIAL[ndim] + (2,)
    assert out.dtype == "float32"
    path = tmp_path / f"{name}_{ndim}d.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(out))
    assert models.describe(loaded) == models.describe(model)
    assert loaded.count_params() == model.count_params()
    # the test can fail: a freshly built model (any weight or moving statistic lost) differs
    fresh = models.build(name, ndim=ndim, channels=2, **options)
    assert np.abs(np.asarray(fresh(x)) - np.asarray(out)).max() > 1e-2
    if batch_norm:
        stats = [w for w in loaded.weights if "moving" in w.path]
        assert stats and all(np.abs(np.asarray(w) - (0.0 if "mean" in w.path else 1.0)).max() > 0.1
                             for w in stats)


@pytest.mark.parametrize(("name", "ndim"), ALL_MODELS)
def test_mixed_bfloat16_gives_float32_output(name, ndim, bfloat16_policy):
    model = models.build(name, ndim=ndim, **SMALL[name])
    hidden = [layer for layer in model.layers if layer.name != "output_conv" and layer.weights]
    assert hidden and all(layer.compute_dtype == "bfloat16" for layer in hidden)
    assert model.get_layer("output_conv").compute_dtype == "float32"
    out = model(_inputs(model, ndim))
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))
