"""Tiled inference: tiled == whole volume, no seams, one tile, thin stacks, 2D, prior, memmap, OOM,
the default (memory-planned) tiling."""
from __future__ import annotations

import logging

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines.errors import InvalidDataError, ShapeMismatchError
from model_helpers import random_head
from resprunet import models
from resprunet.inference import plan_tiles, predict_volume
from resprunet.inference.tiles import activation_bytes_per_voxel, memory_budget, plan_auto_tiles


def _smooth_volume(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth random volume in [0, 1] plus a little noise (like a normalised scan)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random(shape), 2.0)
    x = (x - x.min()) / (x.max() - x.min())
    return np.clip(x + 0.05 * rng.standard_normal(shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def unet3d() -> keras.Model:
    keras.utils.set_random_seed(1)
    return random_head(models.build("unet", ndim=3, filters=4, depth=1, batch_norm=False))


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return _smooth_volume((40, 64, 64), seed=0)


@pytest.fixture(scope="module")
def whole(unet3d: keras.Model, volume: np.ndarray) -> np.ndarray:
    return predict_volume(unet3d, volume, progress=False)


def test_whole_volume_is_the_model_output(unet3d, volume, whole):
    # a one-tile grid: the result is exactly the model on the volume (not black, not scaled)
    direct = np.asarray(unet3d.predict_on_batch(volume[None, ..., None]))[0, ..., 0]
    assert whole.shape == volume.shape
    assert np.abs(whole - direct).max() < 1e-5
    assert np.abs(whole).mean() > 0.1


def test_tiled_matches_whole_volume(unet3d, volume, whole):
    info = models.describe(unet3d)
    assert (info.divisor, info.receptive_field) == (2, 18)
    # halo 10 (rf / 2 = 9 up to the divisor): z (40) is shorter than the least cut tile
    # (2 x 10 + 2 x 10), so one tile; y, x: 48 with an overlap raised from 12 to 2 x 10
    grid = plan_tiles((40, 64, 64), (32, 48, 48), divisor=(2, 2, 2), receptive_field=(18, 18, 18))
    assert grid.tile_shape == (40, 48, 48) and grid.starts == ((0,), (0, 16), (0, 16))
    assert grid.halo == (0, 10, 10)
    for blend in ("gaussian", "constant"):
        tiled = predict_volume(unet3d, volume, tile_shape=(32, 48, 48), blend=blend, progress=False)
        assert np.abs(tiled - whole).max() <= 1e-5


@pytest.mark.parametrize("tile, overlap", [((4, 4, 4), 0.25), ((40, 44, 44), 0.9)])
def test_too_small_tiles_and_too_large_overlap_are_raised_and_said(unet3d, volume, whole, tile,
                                                                   overlap, caplog):
    with caplog.at_level(logging.INFO, logger="resprunet.inference.tiles"):
        tiled = predict_volume(unet3d, volume, tile_shape=tile, overlap=overlap, progress=False)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "using" in said and ("smaller than this model needs" in said or "overlap" in said)
    grid = plan_tiles(volume.shape, tile, divisor=(2, 2, 2), receptive_field=(18, 18, 18),
                      overlap=overlap)
    assert grid.n_tiles > 1 and min(grid.tile_shape) >= 40
    # the old plans (no halo; overlap capped at half a 4-voxel tile) were 1.3e-2 and 3.7e-5 off
    assert np.abs(tiled - whole).max() <= 1e-5


def test_explicit_grids_keep_every_voxel_in_a_trusted_core():
    for length in range(41, 140, 7):
        for want in (1, 30, 48, 64, 100):
            for overlap in (0.0, 0.25, 0.6, 0.95):
                grid = plan_tiles((length, length, 8), (want, want, 8), divisor=(4, 4, 1),
                                  receptive_field=(44, 44, 1), overlap=overlap)
                tile, starts, halo = grid.tile_shape[0], grid.starts[0], grid.halo[0]
                padded = 4 * -(-length // 4)
                assert starts[0] == 0 and starts[-1] + tile == padded and tile % 4 == 0
                assert all(s % 4 == 0 for s in starts)
                if len(starts) > 1:
                    assert halo == 24
                    assert all(24 <= b - a <= tile - 2 * halo for a, b in zip(starts, starts[1:]))


def test_any_shape_pads_and_crops(unet3d):
    x = _smooth_volume((13, 30, 27), seed=2)
    y = predict_volume(unet3d, x, progress=False)
    assert y.shape == x.shape
    padded = np.pad(x, ((0, 1), (0, 0), (0, 1)), mode="reflect")
    direct = np.asarray(unet3d.predict_on_batch(padded[None, ..., None]))[0, :13, :30, :27, 0]
    assert np.abs(y - direct).max() < 1e-5


@pytest.mark.parametrize("z", [1, 3])
def test_thin_stack(z):
    # z is smaller than the divisor 2**depth = 4: reflect-padded to 4, cropped back
    keras.utils.set_random_seed(4)
    m = random_head(models.build("unet", ndim=3, filters=4, depth=2, batch_norm=False))
    x = _smooth_volume((z, 32, 32), seed=3)
    y = predict_volume(m, x, tile_shape=(2, 16, 16), progress=False)
    assert y.shape == (z, 32, 32)
    padded = np.pad(x, ((0, 4 - z), (0, 0), (0, 0)), mode="reflect")
    direct = np.asarray(m.predict_on_batch(padded[None, ..., None]))[0, :z, ..., 0]
    whole = predict_volume(m, x, progress=False)
    assert np.abs(whole - direct).max() < 1e-5
    assert np.abs(y - whole).max() < 0.05


def test_2d_model_slice_by_slice_and_on_an_image():
    keras.utils.set_random_seed(2)
    m = random_head(models.build("unet", ndim=2, filters=4, depth=2, batch_norm=False))
    x = _smooth_volume((3, 36, 40), seed=4)
    y = predict_volume(m, x, batch_size=2, progress=False)
    direct = np.asarray(m.predict_on_batch(x[..., None]))[..., 0]
    assert y.shape == x.shape
    assert np.abs(y - direct).max() < 1e-5
    image = predict_volume(m, x[1], progress=False)
    assert image.shape == (36, 40)
    assert np.abs(image - y[1]).max() < 1e-5
    tiled = predict_volume(m, x, tile_shape=(24, 24), overlap=0.5, progress=False)
    assert tiled.shape == x.shape and np.abs(tiled - y).max() < 0.05


def test_3d_model_rejects_a_2d_image(unet3d):
    with pytest.raises(InvalidDataError, match="3D model"):
        predict_volume(unet3d, np.zeros((32, 32), np.float32), progress=False)


def test_prior_model():
    keras.utils.set_random_seed(3)
    m = models.build("respr_unet", ndim=3, filters=4, depth=2, batch_norm=False)
    random_head(m)
    x = _smooth_volume((8, 32, 32), seed=5)
    p = _smooth_volume((8, 32, 32), seed=6)
    y = predict_volume(m, x, p, progress=False)
    direct = np.asarray(m.predict_on_batch({"noisy": x[None, ..., None], "prior": p[None, ..., None]}))
    assert np.abs(y - direct[0, ..., 0]).max() < 1e-5
    assert np.abs(y - p).mean() > 1e-3
    with pytest.raises(ShapeMismatchError, match="needs a prior"):
        predict_volume(m, x, progress=False)
    with pytest.raises(ShapeMismatchError, match=r"prior has shape \(8, 32, 30\)"):
        predict_volume(m, x, p[..., :30], progress=False)


def test_memmap_and_hdf5_outputs_equal_in_memory(unet3d, tmp_path):
    x = _smooth_volume((12, 32, 32), seed=7)
    ref = predict_volume(unet3d, x, tile_shape=(8, 32, 32), progress=False)
    path = tmp_path / "out.npy"
    got = predict_volume(unet3d, x, tile_shape=(8, 32, 32), out=path, progress=False)
    assert np.array_equal(np.load(path), ref) and np.array_equal(got, ref)
    mm = np.lib.format.open_memmap(tmp_path / "mm.npy", mode="w+", dtype=np.float32, shape=x.shape)
    predict_volume(unet3d, x, tile_shape=(8, 32, 32), out=mm, progress=False)
    assert np.array_equal(np.asarray(mm), ref)
    with h5py.File(tmp_path / "out.h5", "w") as f:
        ds = f.create_dataset("den", shape=x.shape, dtype="float32")
        predict_volume(unet3d, x, tile_shape=(8, 32, 32), out=ds, progress=False)
        assert np.array_equal(ds[...], ref)
    with pytest.raises(ShapeMismatchError, match=r"out has shape \(12, 32, 31\)"):
        predict_volume(unet3d, x, out=np.zeros((12, 32, 31), np.float32), progress=False)


def _processed_ratio(grid) -> float:
    """Voxels the model runs on (tiles x tile voxels) / the volume's voxels."""
    return float(np.prod([len(s) * t for s, t in zip(grid.starts, grid.tile_shape)])
                 / np.prod(grid.volume_shape))


def test_activation_estimate_of_a_unet():
    # 3D U-Net, f filters at full resolution: skip f + concat 2f + conv f live at once,
    # plus the input and the output: (4 f + 1) float32 per voxel, times the 1.5 safety
    m = models.build("unet", ndim=3, filters=16, depth=3, batch_norm=True)
    assert activation_bytes_per_voxel(m) == pytest.approx(1.5 * 4 * (4 * 16 + 1))
    assert 0 < memory_budget() <= 4 * 2**30


@pytest.mark.parametrize("depth, shape, share", [(1, (40, 64, 64), 3), (2, (40, 126, 150), 2.5)])
def test_default_tiling_small_budget_matches_whole_volume(depth, shape, share):
    keras.utils.set_random_seed(5)
    m = random_head(models.build("unet", ndim=3, filters=4, depth=depth, batch_norm=False))
    info = models.describe(m)
    x = _smooth_volume(shape, seed=8)
    per_voxel = activation_bytes_per_voxel(m)
    budget = per_voxel * np.prod(shape) / share  # the whole volume needs 3x (2.5x) the budget
    grid = plan_auto_tiles(shape, divisor=(info.divisor,) * 3, receptive_field=(info.receptive_field,) * 3,
                           bytes_per_voxel=per_voxel, budget_bytes=budget)
    assert grid.n_tiles > 1 and per_voxel * np.prod(grid.tile_shape) <= budget
    halo = info.divisor * -(-(info.receptive_field // 2) // info.divisor)  # rf / 2 up to the divisor
    assert set(grid.halo) <= {0, halo} and max(grid.halo) == halo
    assert all(o >= 2 * h for o, h in zip(grid.overlap, grid.halo))
    assert all(s % info.divisor == 0 for starts in grid.starts for s in starts)
    whole = predict_volume(m, x, progress=False)  # the default budget holds this volume
    direct = np.asarray(m.predict_on_batch(np.pad(
        x, [(0, -n % info.divisor) for n in shape], mode="reflect")[None, ..., None]))
    assert np.abs(whole - direct[0, : shape[0], : shape[1], : shape[2], 0]).max() < 1e-5
    tiled = predict_volume(m, x, memory_budget=budget, progress=False)
    assert np.abs(whole - x).mean() > 0.05  # a random head: not the identity
    assert np.abs(tiled - whole).max() <= 1e-3  # measured: 1.2e-7 and 8.9e-8
    constant = predict_volume(m, x, memory_budget=budget, blend="constant", progress=False)
    assert np.abs(constant - whole).max() <= 1e-3


def test_default_tiling_of_a_2d_model_cuts_slices_in_plane():
    keras.utils.set_random_seed(6)
    m = random_head(models.build("unet", ndim=2, filters=4, depth=2, batch_norm=False))
    x = _smooth_volume((3, 96, 128), seed=9)
    whole = predict_volume(m, x, progress=False)
    budget = activation_bytes_per_voxel(m) * 96 * 128 / 2
    tiled = predict_volume(m, x, memory_budget=budget, progress=False)
    assert np.abs(tiled - whole).max() <= 1e-3
    grid = plan_auto_tiles(x.shape, divisor=(1, 4, 4), receptive_field=(1, 44, 44),
                           bytes_per_voxel=activation_bytes_per_voxel(m), budget_bytes=budget, slices=True)
    assert grid.tile_shape[0] == 1 and grid.starts[0] == (0, 1, 2) and grid.n_tiles > 3


@pytest.mark.parametrize("budget_gib, ratio", [(4, 1.19), (3, 1.41), (2, 1.67)])
def test_default_tiling_cost_on_a_realistic_volume(budget_gib, ratio):
    # 256^3 with a U-Net of depth 2 (rf 44, divisor 4) and 16 filters (390 B/voxel): the whole
    # volume needs 6.1 GiB, so each budget forces tiles; halo 24 (22 rounded up to 4), so
    # neighbours overlap by 48. The default budget is min(25 % of MemAvailable, 4 GiB): with
    # 12 GiB or more available the model runs on <= 1.5x the volume's voxels; 2 GiB: 1.67x.
    per_voxel = 1.5 * 4 * (4 * 16 + 1)
    budget = budget_gib * 2**30
    grid = plan_auto_tiles((256, 256, 256), divisor=(4, 4, 4), receptive_field=(44, 44, 44),
                           bytes_per_voxel=per_voxel, budget_bytes=budget)
    assert grid.n_tiles > 1
    assert per_voxel * np.prod(grid.tile_shape) <= budget
    assert set(grid.halo) <= {0, 24}
    for starts, tile, halo in zip(grid.starts, grid.tile_shape, grid.halo):
        assert starts[0] == 0 and starts[-1] + tile == 256  # covered, as the whole volume is
        assert all(halo <= b - a <= tile - 2 * halo for a, b in zip(starts, starts[1:]))
    assert _processed_ratio(grid) == pytest.approx(ratio, abs=0.005)
    if budget_gib >= 3:
        assert _processed_ratio(grid) <= 1.5


def test_default_tiling_big_budget_is_one_tile():
    grid = plan_auto_tiles((250, 256, 256), divisor=(4, 4, 4), receptive_field=(44, 44, 44),
                           bytes_per_voxel=390.0, budget_bytes=2**40)
    assert grid.n_tiles == 1 and grid.tile_shape == (252, 256, 256) and grid.overlap == (0, 0, 0)
    assert _processed_ratio(grid) == pytest.approx(252 / 250)


class _OOMOnLargeBatches:
    """Wraps a model; raises TensorFlow's out-of-memory error above ``max_voxels`` per call."""

    def __init__(self, model: keras.Model, max_voxels: int) -> None:
        self._model = model
        self.max_voxels = max_voxels
        self.calls: list[tuple[int, ...]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def predict_on_batch(self, x):
        self.calls.append(tuple(x.shape))
        if x.size > self.max_voxels:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return self._model.predict_on_batch(x)


def test_out_of_memory_halves_batch_then_tile(unet3d, volume, whole, caplog):
    tile = (32, 48, 48)
    ref = predict_volume(unet3d, volume, tile_shape=tile, batch_size=4, progress=False)
    wrapped = _OOMOnLargeBatches(unet3d, max_voxels=2 * 32 * 48 * 48)
    with caplog.at_level(logging.WARNING, logger="resprunet.inference"):
        got = predict_volume(wrapped, volume, tile_shape=tile, batch_size=4, progress=False)
    assert "retrying with batch_size=2" in caplog.text
    assert np.abs(got - ref).max() < 1e-5
    # one tile still too big: the tile is halved (to the least this model allows, 40), and
    # the result is still the whole-volume prediction
    wrapped = _OOMOnLargeBatches(unet3d, max_voxels=40 * 40 * 40)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="resprunet.inference"):
        got = predict_volume(wrapped, volume, tile_shape=tile, batch_size=2, progress=False)
    assert "retrying with tiles of (40, 40, 40)" in caplog.text
    assert max(np.prod(c[1:4]) for c in wrapped.calls[-3:]) == 40 * 40 * 40
    assert np.abs(got - whole).max() < 1e-5
    # below the least tile: a MemoryError that says so
    with pytest.raises(MemoryError, match="the smallest this model allows"):
        predict_volume(_OOMOnLargeBatches(unet3d, max_voxels=1000), volume, tile_shape=tile,
                       progress=False)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def _fill(path, release: bool) -> float:
    """Write 16 MiB slice by slice into a new .npy memmap (through a view of it, as a caller's
    ``out[...]`` may be); return the RSS growth in MiB."""
    from resprunet.inference.output import release_pages

    before = _rss_mb()
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(65, 256, 256))[1:]
    for z in range(64):
        big[z] = z
        if release:
            release_pages(big, z, z + 1)
    growth = _rss_mb() - before
    big.flush()
    del big
    return growth


def test_memmap_pages_are_released_without_losing_data(tmp_path):
    from resprunet.inference.output import release_pages

    kept = _fill(tmp_path / "kept.npy", release=False)
    released = _fill(tmp_path / "released.npy", release=True)
    # ratios of the 16 MiB written, not machine-dependent MiB
    assert kept > 0.75 * 16 and released < 0.2 * kept, (kept, released)
    assert np.array_equal(np.load(tmp_path / "released.npy")[1:, 7, 9], np.arange(64, dtype=np.float32))
    cow = np.load(tmp_path / "released.npy", mmap_mode="c")
    cow[0] = -1.0
    release_pages(cow, 0, 1)  # copy-on-write changes live only in memory: kept
    assert float(cow[0, 3, 3]) == -1.0
