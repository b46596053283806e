"""make_dataset, split_volumes, the patch helpers and the on-disk store."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from data_pipelines import InvalidDataError, PatchSizeError, ShapeMismatchError, Volume
from data_pipelines.datasets import make_dataset, split_volumes
from data_pipelines.noise import GaussianNoise
from data_pipelines.normalize import Normalizer
from data_pipelines.patches import (
    augment_slab,
    choose_corner,
    count_patches,
    crop_slab,
    foreground_fraction,
    pad_to_shape,
    random_gamma,
)
from data_pipelines.priors import neighbour_slice_prior
from data_pipelines.store import VolumeStore, content_key, spill

SIGMA = 0.05


def _phantom(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth random volume in [0, 1]."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return ((field - field.min()) / (field.max() - field.min())).astype(np.float32)


def _coded(shape: tuple[int, int, int]) -> np.ndarray:
    """Every voxel holds a unique value z * 10000 + y * 100 + x, so a crop tells where it came from."""
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return (z * 10000 + y * 100 + x).astype(np.float32)


def _batches(ds: tf.data.Dataset, n: int = 1) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


# ---------------------------------------------------------------- shapes and noise


def test_3d_patches_shape_dtype_and_noise_level() -> None:
    ds = make_dataset([_phantom((20, 40, 40))], patch_shape=(8, 16, 16), batch_size=4, noise=GaussianNoise(SIGMA))
    noisy, clean = _batches(ds)[0]
    assert noisy.shape == clean.shape == (4, 8, 16, 16, 1)
    assert noisy.dtype == clean.dtype == np.float32
    assert (noisy - clean).std() == pytest.approx(SIGMA, rel=0.05)
    assert 0.0 <= clean.min() and clean.max() <= 1.0


def test_2d_slices_and_default_patches_per_epoch() -> None:
    vols = [_phantom((6, 32, 32)), _phantom((4, 16, 32), 1)]
    ds = make_dataset(vols, patch_shape=(16, 16), batch_size=5)
    batches = _batches(ds, 100)
    assert batches[0][0].shape == batches[0][1].shape == (5, 16, 16, 1)
    # covering each volume about once: 6 * 4 + 4 * 2 = 32 slices-patches, rounded up to 35
    assert sum(b[1].shape[0] for b in batches) == 35
    assert count_patches((6, 32, 32), (1, 16, 16)) == 24


def test_noise_is_fresh_per_element_and_per_epoch_but_seeded() -> None:
    vol = _phantom((16, 24, 24))

    def build(seed: int) -> tf.data.Dataset:
        return make_dataset([vol], patch_shape=(8, 16, 16), batch_size=2, patches_per_epoch=4, seed=seed)

    ds = build(3)
    epoch1 = [b for b in ds.as_numpy_iterator()]
    epoch2 = [b for b in ds.as_numpy_iterator()]
    again = [b for b in build(3).as_numpy_iterator()]
    other = [b for b in build(4).as_numpy_iterator()]
    for a, b in zip(epoch1, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])
    assert not np.array_equal(epoch1[0][0], other[0][0])
    residual = epoch1[0][0] - epoch1[0][1]
    assert np.abs(residual[0] - residual[1]).mean() > SIGMA  # two elements: independent noise maps


def test_validation_set_is_identical_every_epoch_and_unaugmented() -> None:
    vol = _coded((10, 20, 20))
    ds = make_dataset([vol], patch_shape=(4, 8, 8), batch_size=3, training=False, patches_per_epoch=6,
                      noise=GaussianNoise(0.5))
    first, second = list(ds.as_numpy_iterator()), list(ds.as_numpy_iterator())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
    for clean in np.concatenate([b[1] for b in first])[..., 0]:
        z, y, x = (int(round(clean[0, 0, 0])) // 10000, int(round(clean[0, 0, 0])) // 100 % 100,
                   int(round(clean[0, 0, 0])) % 100)
        np.testing.assert_array_equal(clean, vol[z : z + 4, y : y + 8, x : x + 8])  # plain crop, no flip


def test_augmentation_is_identical_on_noisy_prior_and_clean() -> None:
    vol = _coded((12, 16, 16)) / 1e5
    ds = make_dataset([vol], patch_shape=(6, 8, 8), prior=[2.0 * vol], batch_size=8, seed=5,
                      noise=GaussianNoise(0.0))
    inputs, clean = _batches(ds)[0]
    np.testing.assert_allclose(inputs["prior"], 2.0 * clean, rtol=1e-6)
    np.testing.assert_array_equal(inputs["noisy"], clean)
    # at least one patch was flipped or rotated: its values do not increase along x
    assert any(np.any(np.diff(c[..., 0], axis=2) < 0) for c in clean)
    # and every patch is the crop of some flip / rotation of the volume (values are consistent)
    for c in clean[..., 0] * 1e5:
        assert np.ptp(np.round(c) % 100) <= 7 and np.ptp(np.round(c) // 10000) <= 5


# ---------------------------------------------------------------- priors


def test_neighbour_prior_equals_numpy_prior_of_the_noisy_patch() -> None:
    vol = _phantom((24, 20, 20))
    opts = {"size": 5, "decay": 0.2, "include_self": False, "axis": 0}
    ds = make_dataset([vol], patch_shape=(12, 16, 16), prior="neighbour", prior_options=opts, batch_size=4,
                      augment=False, training=False)
    inputs, clean = _batches(ds)[0]
    assert inputs["noisy"].shape == inputs["prior"].shape == clean.shape == (4, 12, 16, 16, 1)
    for noisy, prior in zip(inputs["noisy"][..., 0], inputs["prior"][..., 0]):
        expected = neighbour_slice_prior(noisy, **opts)
        np.testing.assert_allclose(prior[2:-2], expected[2:-2], atol=1e-5)  # interior: margin slices not needed
    # whole-depth patches: margin slices lie outside the volume, so the prior equals numpy's everywhere
    ds = make_dataset([vol], patch_shape=(24, 8, 8), prior="neighbour", prior_options=opts, batch_size=2,
                      augment=False, training=False)
    inputs, _ = _batches(ds)[0]
    for noisy, prior in zip(inputs["noisy"][..., 0], inputs["prior"][..., 0]):
        np.testing.assert_allclose(prior, neighbour_slice_prior(noisy, **opts), atol=1e-5)


def test_neighbour_prior_for_2d_slices_uses_the_neighbouring_slices() -> None:
    vol = _coded((8, 12, 12))
    ds = make_dataset([vol], patch_shape=(6, 6), prior="neighbour", prior_options={"size": 3}, batch_size=8,
                      noise=GaussianNoise(0.0), augment=False)
    inputs, clean = _batches(ds)[0]
    full_prior = neighbour_slice_prior(vol, size=3)
    for c, p in zip(clean[..., 0], inputs["prior"][..., 0]):
        z, y, x = int(c[0, 0]) // 10000, int(c[0, 0]) // 100 % 100, int(c[0, 0]) % 100
        np.testing.assert_allclose(p, full_prior[z, y : y + 6, x : x + 6], rtol=1e-6)


def test_temporal_prior_is_the_mean_of_the_frames() -> None:
    frames = np.stack([_phantom((6, 16, 16), s) for s in range(3)], axis=-1)
    ds = make_dataset([frames], patch_shape=(4, 8, 8), prior="temporal", noise=GaussianNoise(0.0), batch_size=4,
                      augment=False)
    inputs, clean = _batches(ds)[0]
    assert clean.shape == (4, 4, 8, 8, 1)
    mean = frames.mean(axis=-1)
    for c, p in zip(clean[..., 0], inputs["prior"][..., 0]):
        hits = [(z, y, x, t) for t in range(3) for z in range(3) for y in range(9) for x in range(9)
                if np.array_equal(frames[z : z + 4, y : y + 8, x : x + 8, t], c)]
        assert len(hits) == 1
        z, y, x, _ = hits[0]
        np.testing.assert_allclose(p, mean[z : z + 4, y : y + 8, x : x + 8], rtol=1e-5)


def test_colour_images_keep_their_channels_and_get_independent_noise() -> None:
    rgb = np.stack([_phantom((1, 24, 24), s) for s in range(3)], axis=-1)[0] * 255.0  # (y, x, 3)
    ds = make_dataset([rgb], patch_shape=(16, 16), channels=3, noise=GaussianNoise(0.1), batch_size=4,
                      normalizer=Normalizer.fixed(0, 255), augment=False, noise_level=True)
    inputs, clean = _batches(ds)[0]
    assert clean.shape == inputs["noisy"].shape == (4, 16, 16, 3)
    assert inputs["sigma"].shape == (4, 16, 16, 1)
    np.testing.assert_allclose(inputs["sigma"], 0.1, rtol=1e-6)
    for c in clean:  # every patch is a crop of the image with its channels in order
        assert any(np.allclose(rgb[y : y + 16, x : x + 16] / 255.0, c, atol=1e-6) for y in range(9) for x in range(9))
    residual = (inputs["noisy"] - clean).reshape(-1, 3)
    np.testing.assert_allclose(residual.std(axis=0), 0.1, rtol=0.1)
    assert np.abs(np.corrcoef(residual.T)[np.triu_indices(3, 1)]).max() < 0.1  # drawn per channel
    with pytest.raises(InvalidDataError, match=r"channels=3 expects \(z, y, x, 3\)"):
        make_dataset([rgb[..., :2]], patch_shape=(16, 16), channels=3)
    with pytest.raises(ValueError, match="temporal"):
        make_dataset([rgb[None]], patch_shape=(16, 16), channels=3, prior="temporal")


def test_real_noisy_pairs_and_normalizer() -> None:
    hu = _phantom((10, 16, 16)) * 1400.0 - 1000.0
    low_dose = hu + 70.0  # +70 HU = +0.05 of a (-1000, 400) window
    ds = make_dataset([Volume(hu)], noisy=[low_dose], normalizer=Normalizer.ct(), patch_shape=(4, 8, 8),
                      batch_size=4)
    noisy, clean = _batches(ds)[0]
    np.testing.assert_allclose(noisy - clean, 0.05, atol=1e-5)  # no synthetic noise on top
    assert clean.min() >= 0.0 and clean.max() <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="noise=None"):
        make_dataset([hu], noisy=[low_dose], noise=GaussianNoise(0.1))


# ---------------------------------------------------------------- sampling


def test_foreground_sampling_prefers_object_and_cannot_hang() -> None:
    vol = np.zeros((16, 64, 64), np.float32)
    vol[4:12, 8:24, 8:24] = 1.0  # object fills 1/16 of the volume
    kwargs = dict(patch_shape=(8, 16, 16), batch_size=16, augment=False, noise=GaussianNoise(0.0))
    plain = _batches(make_dataset([vol], foreground=None, **kwargs))[0][1]
    chosen = _batches(make_dataset([vol], foreground=0.1, **kwargs))[0][1]
    frac = lambda b: np.mean([foreground_fraction(p) >= 0.1 for p in b])  # noqa: E731
    assert frac(chosen) >= 0.9 and frac(plain) < 0.5
    empty = _batches(make_dataset([np.zeros((8, 16, 16))], foreground=0.5, **kwargs))[0][1]
    assert empty.shape == (16, 8, 16, 16, 1) and empty.max() == 0.0


def test_thin_stack_is_padded_or_rejected(caplog) -> None:
    thin = _phantom((3, 20, 20))
    with caplog.at_level("INFO", logger="data_pipelines.patches"):
        reflect = _batches(make_dataset([thin], patch_shape=(8, 16, 16), batch_size=2,
                                        noise=GaussianNoise(0.0), augment=False, training=False))[0][1]
    assert "(3, 20, 20) is smaller than the patch (8, 16, 16); reflect-padded to (8, 20, 20)" in caplog.text
    assert reflect.shape == (2, 8, 16, 16, 1) and reflect.min() > 0.0
    constant = _batches(make_dataset([thin], patch_shape=(8, 16, 16), pad="constant", batch_size=2,
                                     noise=GaussianNoise(0.0), augment=False, training=False))[0][1]
    np.testing.assert_array_equal(constant[:, :2], 0.0)  # 5 slices missing: 2 above, 3 below
    np.testing.assert_array_equal(constant[:, 5:], 0.0)
    with pytest.raises(PatchSizeError, match=r"volume 1 .*\(3, 20, 20\).*\(8, 16, 16\)"):
        make_dataset([_phantom((10, 20, 20)), thin], patch_shape=(8, 16, 16), pad=None)


def test_patch_helpers() -> None:
    a = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 3), np.float32)
    inside, valid = crop_slab(a, (2, 0, 1), (2, 2, 2), margin=1)
    assert np.shares_memory(inside, a) and inside.shape == (4, 2, 2)  # a view: nothing read yet
    np.testing.assert_array_equal(valid, 1.0)
    slab, valid = crop_slab(a, (0, 0, 1), (2, 2, 2), margin=2)
    assert slab.shape == (6, 2, 2)
    np.testing.assert_array_equal(valid, [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(slab[:, 0, 0], [0, 0, 0, 1, 2, 3])
    assert pad_to_shape(a, (5, 2, 3)) is a
    assert pad_to_shape(a, (8, 4, 3), "constant").shape == (8, 4, 3)
    calls = []
    corner = choose_corner(np.random.default_rng(0), (10, 10, 10), (2, 2, 2),
                           score=lambda c: calls.append(c) or float(sum(c)), min_score=1e9, tries=7)
    assert len(calls) == 7 and float(sum(corner)) == max(float(sum(c)) for c in calls)


def test_augment_slab_flips_consistently() -> None:
    slab = _coded((4, 6, 8))[..., None]
    valid = np.array([0, 1, 1, 1], np.float32)
    seen = set()
    for seed in range(40):
        out, v = augment_slab(np.random.default_rng(seed), slab, valid)
        assert out.shape == (4, 6, 8, 1)  # non-square: half turns only
        z_reversed = out[0, 0, 0, 0] // 10000 == 3
        np.testing.assert_array_equal(v, valid[::-1] if z_reversed else valid)
        assert sorted(out.ravel()) == sorted(slab.ravel())  # a permutation of the voxels
        seen.add((bool(z_reversed), float(out[0, 0, 0, 0]) % 10000))
    assert len(seen) == 8  # every flip combination occurs
    out, v = augment_slab(np.random.default_rng(0), slab, valid, flip_z=False)
    np.testing.assert_array_equal(v, valid)


# ---------------------------------------------------------------- out of core


def test_random_gamma_keeps_the_range_and_follows_the_curve() -> None:
    slab = _phantom((2, 8, 8)) * 3.0 - 1.0  # range [-1, 2]: the curve works on any units
    out = random_gamma(np.random.default_rng(0), slab, (2.0, 2.0))
    expected = -1.0 + 3.0 * ((slab + 1.0) / 3.0) ** 2
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(2.0)
    assert np.abs(out - slab).max() > 0.2  # mid tones moved
    drawn = [float(np.median(random_gamma(np.random.default_rng(s), slab, (0.5, 2.0)))) for s in range(40)]
    assert min(drawn) < np.median(slab) - 0.1 < np.median(slab) + 0.1 < max(drawn)  # both directions
    flat = np.full((1, 4, 4), 0.3, np.float32)
    np.testing.assert_array_equal(random_gamma(np.random.default_rng(0), flat, (0.5, 2.0)), flat)


def test_gamma_changes_training_clean_patches_only_and_before_the_noise() -> None:
    """Same seed with and without ``gamma=(2, 2)``: the training targets are the gamma curve of
    the plain run's (crops and flips drawn first), the noisy input is that target plus noise,
    and the validation set is untouched."""
    volume = _phantom((12, 32, 32))
    kwargs = {"patch_shape": (4, 16, 16), "batch_size": 4, "noise": GaussianNoise(SIGMA), "seed": 3}
    (plain_noisy, plain), = _batches(make_dataset([volume], **kwargs))
    (noisy, clean), = _batches(make_dataset([volume], gamma=(2.0, 2.0), **kwargs))
    for before, after in zip(plain, clean):
        lo, hi = before.min(), before.max()
        np.testing.assert_allclose(after, lo + (hi - lo) * ((before - lo) / (hi - lo)) ** 2, atol=1e-5)
    assert np.abs(clean - plain).max() > 0.1
    assert (noisy - clean).std() == pytest.approx(SIGMA, rel=0.1)
    val = {"training": False, "patches_per_epoch": 4}
    (_, val_plain), = _batches(make_dataset([volume], **kwargs, **val))
    (_, val_gamma), = _batches(make_dataset([volume], gamma=(2.0, 2.0), **kwargs, **val))
    np.testing.assert_array_equal(val_gamma, val_plain)


def test_gamma_is_refused_where_it_cannot_apply() -> None:
    volume = _phantom((8, 16, 16))
    with pytest.raises(ValueError, match=r"gamma=\[0.0, 1.0\] must be \[low, high\] with 0 < low <= high"):
        make_dataset([volume], patch_shape=(4, 8, 8), gamma=(0.0, 1.0))
    with pytest.raises(ValueError, match="not with noisy volumes"):
        make_dataset([volume], patch_shape=(4, 8, 8), noisy=[volume], noise=None, gamma=(0.5, 2.0))
    with pytest.raises(ValueError, match="not with noisy volumes"):
        make_dataset([volume], patch_shape=(4, 8, 8), prior=[volume], gamma=(0.5, 2.0))


def test_lazy_disk_store_gives_the_same_batches(tmp_path: Path) -> None:
    vols = [_phantom((12, 20, 20), 0), _phantom((10, 24, 20), 1)]
    kwargs = dict(patch_shape=(4, 16, 16), batch_size=3, seed=9, prior="neighbour", prior_options={"size": 3})
    memory = list(make_dataset(vols, **kwargs).as_numpy_iterator())
    lazy = list(make_dataset(vols, memory_budget=0, cache_dir=tmp_path, **kwargs).as_numpy_iterator())
    assert len(list(tmp_path.glob("*.npy"))) == 2
    for a, b in zip(memory, lazy):
        np.testing.assert_array_equal(a[0]["noisy"], b[0]["noisy"])
        np.testing.assert_array_equal(a[0]["prior"], b[0]["prior"])
        np.testing.assert_array_equal(a[1], b[1])
    # a different normaliser never reuses the old files
    make_dataset(vols, memory_budget=0, cache_dir=tmp_path, normalizer=Normalizer.minmax(), **kwargs)
    assert len(list(tmp_path.glob("*.npy"))) == 4
    # a budget larger than the data keeps it in memory
    make_dataset(vols, memory_budget=10**9, cache_dir=tmp_path / "unused", **kwargs)
    assert not (tmp_path / "unused").exists()


def test_store_and_content_key(tmp_path: Path) -> None:
    a = np.random.default_rng(0).random((4, 5, 6, 1)).astype(np.float32)
    key = content_key([a], {"normalizer": None})
    assert key == content_key([a.copy()], {"normalizer": None})
    assert key != content_key([a], {"normalizer": {"kind": "minmax"}})
    assert key != content_key([a + 1e-3], {"normalizer": None})
    mapped = spill(a, key, tmp_path)
    assert isinstance(mapped, np.memmap)
    store = VolumeStore([mapped])
    assert store.on_disk and store.shapes == [(4, 5, 6, 1)] and store.nbytes == a.nbytes
    slab, valid = store.read(0, (1, 1, 2), (2, 3, 3))
    np.testing.assert_array_equal(slab, a[1:3, 1:4, 2:5])


# ---------------------------------------------------------------- bad input


def test_bad_input_errors_name_the_volume() -> None:
    good = _phantom((10, 20, 20))
    bad = good.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(InvalidDataError, match=r"volume 1 \(scan\.nii\.gz\) holds 1 NaN/Inf"):
        make_dataset([good, Volume(bad, source="scan.nii.gz")], patch_shape=(4, 8, 8))
    inf = good.copy()
    inf[0, 0, 0] = np.inf
    with pytest.raises(InvalidDataError, match="volume 0 holds 1 NaN/Inf"):
        make_dataset([inf], patch_shape=(4, 8, 8))
    with pytest.raises(InvalidDataError, match=r"volume 0 has shape \(20, 20\) \(a 2D \(y, x\) image\)"):
        make_dataset([good[0]], patch_shape=(4, 8, 8))
    with pytest.raises(ShapeMismatchError, match=r"\(10, 20, 19\).*\(10, 20, 20\)"):
        make_dataset([good], prior=[good[..., :19]], patch_shape=(4, 8, 8))
    with pytest.raises(ShapeMismatchError, match="noisy holds 2 volumes but volumes holds 1"):
        make_dataset([good], noisy=[good, good], noise=None, patch_shape=(4, 8, 8))
    with pytest.raises(PatchSizeError, match=r"\(10, 20, 20\).*\(12, 8, 8\)"):
        make_dataset([good], patch_shape=(12, 8, 8), pad=None)
    with pytest.raises(InvalidDataError, match="empty list"):
        make_dataset([], patch_shape=(4, 8, 8))
    with pytest.raises(ValueError, match="patch_shape"):
        make_dataset([good], patch_shape=(4,))
    with pytest.raises(ValueError, match="prior must be"):
        make_dataset([good], prior="previous")
    with pytest.raises(ValueError, match="unknown prior_options"):
        make_dataset([good], prior="neighbour", prior_options={"sigma": 2})
    with pytest.raises(ValueError, match="axis must be 0"):
        make_dataset([good], prior="neighbour", prior_options={"axis": 2})
    with pytest.raises(InvalidDataError, match="prior='temporal' expects"):
        make_dataset([good], prior="temporal", patch_shape=(4, 8, 8))


# ---------------------------------------------------------------- split


def test_split_by_volume() -> None:
    vols = [np.full((2, 2, 2), i, np.float32) for i in range(10)]
    train, val = split_volumes(vols, val_fraction=0.2, seed=1)
    ids = lambda vs: [int(v[0, 0, 0]) for v in vs]  # noqa: E731
    assert len(train) == 8 and len(val) == 2
    assert sorted(ids(train) + ids(val)) == list(range(10))
    assert ids(train) == sorted(ids(train))
    assert ids(split_volumes(vols, 0.2, seed=1)[1]) == ids(val)
    assert ids(split_volumes(vols, 0.2, seed=2)[1]) != ids(val) or ids(split_volumes(vols, 0.2, seed=3)[1]) != ids(val)
    train, val = split_volumes(vols[:2], val_fraction=0.01)
    assert len(train) == len(val) == 1
    with pytest.raises(InvalidDataError, match="at least 2 volumes"):
        split_volumes(vols[:1])


def test_paths_are_read_lazily_with_read_volume(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    vol = _phantom((10, 20, 20))
    path = tmp_path / "clean.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), np.eye(4)), path)  # NIfTI stores (x, y, z)
    import data_pipelines as dp

    from_path = _batches(dp.make_dataset([path], patch_shape=(4, 8, 8), batch_size=2, seed=2))[0]
    from_array = _batches(dp.make_dataset([dp.read_volume(path)], patch_shape=(4, 8, 8), batch_size=2, seed=2))[0]
    np.testing.assert_array_equal(from_path[1], from_array[1])
    assert from_path[1].shape == (2, 4, 8, 8, 1)
    bad = vol.copy()
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(np.transpose(bad, (2, 1, 0)), np.eye(4)), tmp_path / "bad.nii.gz")
    with pytest.raises(InvalidDataError, match=r"bad\.nii\.gz.*NaN/Inf"):
        dp.make_dataset([tmp_path / "bad.nii.gz"], patch_shape=(4, 8, 8))


def test_model_units_are_those_of_a_fit_on_a_noisy_realisation():
    import data_pipelines as dp

    """The normalisation contract in training: clean targets and noisy inputs are in the units
    of the normaliser fitted on a seeded noisy realisation, as denoise_array fits it at inference."""
    vol = dp.sample("mni152_t1").array
    noise = dp.GaussianNoise(0.1)
    norm = dp.Normalizer.minmax()
    reference = norm.fit(vol)(vol)  # units of the noise sigma
    on_noisy = norm.fit(noise(reference[..., None], np.random.default_rng([7, 0])))
    offset, scale = on_noisy.low, on_noisy.high - on_noisy.low
    assert abs(scale - 1.0) > 0.05  # measured 1.083: not the identity, so the test can fail
    ds = dp.make_dataset([vol], patch_shape=(8, 16, 16), noise=noise, normalizer=norm, batch_size=4, seed=7,
                         training=False, patches_per_epoch=16)
    targets = np.concatenate([clean.numpy().ravel() for _, clean in ds])
    back = targets * scale + offset  # to reference units
    assert back.max() <= reference.max() + 1e-4 and back.min() >= reference.min() - 1e-4
    assert targets.max() < 1.0 - 0.5 * abs(scale - 1.0) or targets.min() > 0.5 * abs(scale - 1.0)
