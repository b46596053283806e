"""Blind-spot training (Noise2Void, N2V2, structN2V): masking stage, masked loss, N2V2
architecture, and short runs through ``train()`` on noisy data alone (small shapes)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import data_pipelines as dp
from resprunet import models
from resprunet.training import load_config, train
from resprunet.training.config import ConfigError
from resprunet.training.losses import masked_mse


def _distinct(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A patch (spatial + (1,)) whose values are all different, so a value names its voxel."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape + (1,)).astype(np.float32) / n


def _mask(blindspot: dp.BlindSpot, x: np.ndarray, seed: tuple[int, int] = (3, 4)) -> tuple[np.ndarray, np.ndarray]:
    masked, mask = blindspot.mask_tf(tf.constant(x), tf.constant(seed))
    return masked.numpy(), mask.numpy()[..., 0]


@pytest.mark.parametrize("shape", [(40, 56), (12, 20, 24)])
def test_masked_voxels_take_another_value_of_their_window(shape):
    x = _distinct(shape)
    masked, mask = _mask(dp.BlindSpot(fraction=0.05, window=5), x)
    changed = masked[..., 0] != x[..., 0]
    assert mask.sum() > 10 and np.array_equal(changed, mask > 0)  # exactly the masked voxels
    position = {float(v): np.unravel_index(i, shape) for i, v in enumerate(x.ravel())}
    offsets = np.array([np.subtract(position[float(masked[c][0])], c) for c in zip(*np.nonzero(mask))])
    assert np.abs(offsets).max() <= 2  # inside the 5-voxel window
    assert np.all(np.abs(offsets).max(axis=1) >= 1)  # never itself
    assert len({tuple(o) for o in offsets}) > 5  # drawn, not one fixed neighbour


def _window_median(x: np.ndarray, centre: tuple[int, ...], r: int, line: int | None) -> np.ndarray:
    """NumPy: per-channel median of the voxels within ``r`` of ``centre`` inside ``x`` (spatial +
    (c,)), the centre excluded (with ``line``: every voxel differing from it along that axis only)."""
    values = []
    for offset in np.ndindex(*(2 * r + 1,) * len(centre)):
        o = np.subtract(offset, r)
        p = np.add(centre, o)
        kept = np.delete(o, line).any() if line is not None else o.any()
        if kept and np.all(p >= 0) and np.all(p < x.shape[:-1]):
            values.append(x[tuple(p)])
    return np.median(np.array(values), axis=0)


@pytest.mark.parametrize(("shape", "axis"), [((24, 30), None), ((10, 14, 12), None), ((24, 30), -1), ((10, 14, 12), -3)])
def test_median_replacement_is_the_median_of_the_window_without_the_voxel(shape, axis):
    """N2V2's replacement: each masked voxel shows the median of its window (at the border the
    part inside the patch) without itself, per channel; structN2V also leaves out its line."""
    x = np.random.default_rng(1).random(shape + (2,), dtype=np.float32)
    blindspot = dp.BlindSpot(fraction=0.08, window=5, struct_axis=axis, struct_span=1 if axis else 0,
                             replacement="median")
    masked, mask = _mask(blindspot, x)
    centres = list(zip(*np.nonzero(mask)))
    assert len(centres) > 10
    assert any(min(c) < 2 or any(ci >= n - 2 for ci, n in zip(c, shape)) for c in centres)  # border ones too
    line = None if axis is None else axis % len(shape)
    for c in centres:
        np.testing.assert_allclose(masked[c], _window_median(x, c, 2, line), rtol=0, atol=1e-6)
    if axis is None:  # nothing else changes (structN2V also hides the line neighbours)
        assert np.array_equal(masked[mask == 0], x[mask == 0])


def test_unknown_replacement_is_a_clear_error():
    with pytest.raises(ValueError, match=r"replacement='mean' must be one of \('random', 'median'\)"):
        dp.BlindSpot(replacement="mean")
    with pytest.raises(ConfigError, match="replacement"):
        load_config(None, ["method=n2v2", "blindspot.replacement=mean", "data.test=[]"])
    config = load_config(None, ["method=n2v2", "blindspot.replacement=median", "data.test=[]"])
    from resprunet.training.build import make_blindspot

    assert make_blindspot(config).replacement == "median"


@pytest.mark.parametrize(("shape", "fraction"), [((64, 64), 0.002), ((64, 64), 0.05), ((16, 32, 32), 0.002)])
def test_fraction_is_respected_and_stratified(shape, fraction):
    blindspot = dp.BlindSpot(fraction=fraction)
    counts = []
    for seed in range(20):
        _, mask = _mask(blindspot, np.zeros(shape + (1,), np.float32), (seed, 1))
        counts.append(mask.sum())
        g = blindspot.cell(len(shape))  # at most one masked voxel per sampling cell
        cells = mask
        for axis, size in enumerate(shape):
            cells = np.add.reduceat(cells, np.arange(0, size, g), axis=axis)
        assert cells.max() <= 1
    expected = fraction * np.prod(shape)
    assert np.mean(counts) == pytest.approx(expected, rel=0.15), (np.mean(counts), expected)


def test_masks_are_fresh_every_epoch_and_fixed_for_validation():
    volume = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    options = dict(patch_shape=(32, 32), noise=None, blindspot=dp.BlindSpot(0.01), batch_size=4,
                   patches_per_epoch=4, augment=False, foreground=None)
    for training in (True, False):
        ds = dp.make_dataset([volume], training=training, **options)
        (m1, t1), (m2, t2) = next(iter(ds)), next(iter(ds))
        assert t1.shape == (4, 32, 32, 2) and m1.shape == (4, 32, 32, 1)
        assert np.array_equal(np.asarray(m1) != np.asarray(t1[..., :1]), np.asarray(t1[..., 1:]) > 0)
        same = np.array_equal(t1[..., 1], t2[..., 1])
        assert same != training, f"training={training}: masks {'equal' if same else 'differ'} between epochs"


def test_masked_loss_depends_on_masked_voxels_only():
    rng = np.random.default_rng(1)
    noisy = rng.random((2, 16, 16, 1)).astype(np.float32)
    mask = np.zeros((2, 16, 16, 1), np.float32)
    mask[:, 3, 5] = mask[:, 10, 12] = 1
    target = np.concatenate([noisy, mask], axis=-1)
    pred = rng.random((2, 16, 16, 1)).astype(np.float32)
    base = np.asarray(masked_mse(target, pred))
    expected = ((pred - noisy) ** 2)[mask > 0].reshape(2, 2).mean(axis=1)
    np.testing.assert_allclose(base, expected, rtol=1e-5)
    unmasked = pred.copy()
    unmasked[mask == 0] = rng.random(int((mask == 0).sum()))
    np.testing.assert_allclose(np.asarray(masked_mse(target, unmasked)), base, rtol=1e-6)
    at_mask = pred.copy()
    at_mask[0, 3, 5] += 0.5
    assert np.asarray(masked_mse(target, at_mask))[0] != pytest.approx(base[0])
    assert float(masked_mse(target, noisy).numpy().max()) == 0.0  # an identity on unmasked data would be 0...
    masked_input = noisy.copy()
    masked_input[mask > 0] = 0.5  # ...but it only ever sees the masked input
    assert np.asarray(masked_mse(target, masked_input)).min() > 0


@pytest.mark.parametrize(("shape", "axis"), [((32, 40), -1), ((32, 40), -2), ((8, 24, 24), -3)])
def test_structn2v_hides_the_line_along_its_axis_only(shape, axis):
    x = _distinct(shape, 2)
    masked, mask = _mask(dp.BlindSpot(fraction=0.01, window=5, struct_axis=axis, struct_span=2), x)
    changed = masked[..., 0] != x[..., 0]
    centres = np.argwhere(mask > 0)
    line = axis % len(shape)
    allowed = np.zeros(shape, bool)
    for c in centres:
        for k in range(-2, 3):
            p = c.copy()
            p[line] += k
            if 0 <= p[line] < shape[line]:
                allowed[tuple(p)] = True
    assert changed[mask > 0].all() and not changed[~allowed].any()
    assert changed[allowed & (mask == 0)].mean() > 0.9  # the line voxels are replaced
    position = {float(v): np.unravel_index(i, shape) for i, v in enumerate(x.ravel())}
    for c in centres:  # the centre's value comes from off its line
        source = np.array(position[float(masked[tuple(c)][0])])
        assert np.delete(source - c, line).any()


@pytest.mark.parametrize("fraction", [0.0, 0.2, -0.01])
def test_fraction_outside_range_is_a_clear_error(fraction):
    with pytest.raises(ValueError, match=r"fraction=.* must be in \(0, 0.1\]"):
        dp.BlindSpot(fraction=fraction)
    with pytest.raises(ConfigError, match="fraction"):
        load_config(None, ["method=n2v", f"blindspot.fraction={fraction}", "data.test=[]"])


def test_config_method_choices():
    with pytest.raises(ConfigError, match="method='n3v' is not one of"):
        load_config(None, ["method=n3v"])
    with pytest.raises(ConfigError, match="model.name=unet"):
        load_config(None, ["method=n2v2", "model.name=irunet", "data.test=[]"])
    with pytest.raises(ConfigError, match="eval_noise"):
        load_config(None, ["method=n2v"])  # default test volume without a noise to score it with


def _nyquist_peak(model: keras.Model, seed: int = 0) -> float:
    """Largest ratio of the mean power spectrum of ``model``'s output on flat noisy images
    (0.5 + 0.1 N(0, 1), 64 of 64 x 64, borders cut) at a Nyquist point ((N/2, 0), (0, N/2),
    (N/2, N/2)) to the mean of the 3 points before it along the same direction: ~1 without
    a periodic pattern, >> 1 with a checkerboard."""
    x = 0.5 + 0.1 * np.random.default_rng(seed).standard_normal((64, 64, 64, 1)).astype(np.float32)
    out = model.predict(x, verbose=0)[:, 8:-8, 8:-8, 0]
    power = (np.abs(np.fft.fft2(out - out.mean(axis=(1, 2), keepdims=True))) ** 2).mean(axis=0)
    n = power.shape[0] // 2
    return max(power[n * i, n * j] / np.mean([power[n * i - k * i, n * j - k * j] for k in (1, 2, 3)])
               for i, j in ((1, 0), (0, 1), (1, 1)))


def _blindspot_fit(model: keras.Model, steps: int = 60) -> keras.Model:
    """Train on flat noisy 64 x 64 images with 1 % masking (where N2V's checkerboard appears)."""
    images = 0.5 + 0.1 * np.random.default_rng(5).standard_normal((64, 64, 64, 1)).astype(np.float32)
    blindspot = dp.BlindSpot(0.01)
    ds = tf.data.Dataset.from_tensor_slices(images).enumerate().map(
        lambda i, x: blindspot.training_pair(x, tf.stack([i, tf.constant(7, tf.int64)]))).batch(8).repeat()
    model.compile(keras.optimizers.Adam(1e-3), masked_mse)
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return model


def test_n2v2_has_no_checkerboard_where_plain_n2v_has_one():
    """Random weights alone rarely show the artefact, so both nets are trained briefly with the
    blind-spot loss on flat noise: the plain N2V U-Net (max pooling, top skip, nearest
    upsampling) then has a Nyquist peak (measured 8.4, seed 0), the N2V2 U-Net none (1.1)."""
    keras.utils.set_random_seed(0)
    n2v2 = models.build("unet", 2, preset="n2v2", filters=8, depth=2)
    assert _nyquist_peak(n2v2) < 2.0  # untrained too
    assert _nyquist_peak(_blindspot_fit(n2v2)) < 2.5
    keras.utils.set_random_seed(0)
    plain = _blindspot_fit(models.build("unet", 2, filters=8, depth=2, residual=False))
    assert _nyquist_peak(plain) > 4.0  # the statistic sees a checkerboard


@pytest.mark.parametrize("ndim", [2, 3])
def test_n2v2_architecture_round_trips(tmp_path, ndim):
    model = models.build("unet", ndim, preset="n2v2", filters=4, depth=2)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert f"MaxPooling{ndim}D" in names and f"AveragePooling{ndim}D" in names
    assert sum(n == "Concatenate" for n in names) == 1  # depth 2 without the top skip: one skip left
    x = np.random.default_rng(0).random((1,) + (16,) * ndim + (1,)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert models.describe(loaded).divisor == 4


@pytest.mark.parametrize(("ndim", "patch"), [(2, [32, 32]), (3, [8, 16, 16])])
def test_n2v2_trains_on_noisy_data_alone(tmp_path, ndim, patch):
    config = load_config(None, [
        "method=n2v2", f"model.ndim={ndim}", "model.filters=8", "model.depth=2", "model.batch_norm=false",
        "data.train=[mni152_t1]", "data.val=[t1_head]", "data.test=[]",
        "data.simulate_noise={kind: gaussian, sigma: 0.1}", f"data.patch_shape={patch}",
        "data.batch_size=4", "data.patches_per_epoch=64", "data.val_patches=8",
        "blindspot.fraction=0.02", "epochs=3", "optimizer.learning_rate=3e-3",
        "callbacks.image_panel=true", f"run.root={tmp_path}",
    ])
    result = train(config, verbose=0)
    history, baseline = result.history, result.final_metrics["val_baseline"]
    assert "psnr" not in history and history["loss"][-1] < history["loss"][0], history
    if ndim == 2:  # 48 steps suffice in 2D to beat a model that returns its (masked) input
        assert history["val_loss"][-1] < baseline["identity_masked_mse"], (history, baseline)
    assert (result.run_dir / "checkpoints" / "best.keras").is_file()
    model = keras.saving.load_model(result.run_dir / "model.keras")  # no custom objects
    noisy = dp.sample("t1_head").array[:8, :16, :16] if ndim == 3 else dp.sample("t1_head").array[10, :32, :32]
    x = (noisy / noisy.max()).astype(np.float32)[None, ..., None]
    out = model.predict(x, verbose=0)
    assert out.shape == x.shape and np.abs(out - x).mean() > 1e-3  # not an identity
    if ndim == 2:
        _run_folder_serves_assess_and_cli(result.run_dir, tmp_path)


def _run_folder_serves_assess_and_cli(run_dir, tmp_path):
    """A blind-spot run folder is a model like any other: the assess API and ``resprunet
    denoise`` load it with its run's normaliser and give the same, denoised, image."""
    from resprunet import cli
    from resprunet.assess import Case, Method, assess

    clean = dp.sample("t1_head").array[12].astype(np.float32)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = (clean + np.random.default_rng(1).normal(0, 0.1, clean.shape)).astype(np.float32)
    method = Method.from_path(run_dir, name="n2v2")
    report = assess([method], [Case(clean, noisy, name="t1")], metrics=["psnr"], progress=False)
    np.save(tmp_path / "noisy.npy", noisy[None])
    assert cli.main(["-q", "denoise", str(tmp_path / "noisy.npy"), str(tmp_path / "out.npy"),
                     "--model", str(run_dir)]) == 0
    from_cli = np.load(tmp_path / "out.npy")[0]
    np.testing.assert_allclose(report.outputs["t1"]["n2v2"], from_cli, atol=1e-5)
    assert np.abs(from_cli - noisy).mean() > 1e-3  # it changed the image
    assert report.value("t1", "n2v2", "psnr") != report.value("t1", "noisy", "psnr")
