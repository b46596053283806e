"""Training patches sampled lazily from Zarr volumes: the same batches as in memory, no whole read."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

import data_pipelines as dp  # noqa: E402
from data_pipelines import lazy  # noqa: E402
from data_pipelines.errors import InvalidDataError, PatchSizeError  # noqa: E402

FIXED = dp.Normalizer.fixed(0.0, 1000.0)


class GuardedArray:
    """A lazy array that refuses any read of more than ``limit`` voxels in one call (and any
    whole read through ``np.asarray``), and records the size of every read."""

    def __init__(self, source: Any, limit: int) -> None:
        self.source, self.limit, self.reads = source, limit, []

    shape = property(lambda self: tuple(self.source.shape))
    dtype = property(lambda self: self.source.dtype)
    ndim = property(lambda self: self.source.ndim)
    chunks = property(lambda self: self.source.chunks)

    def __getitem__(self, key: Any) -> np.ndarray:
        size = np.broadcast_to(np.zeros((), np.uint8), self.shape)[key].size  # no voxel read
        if size > self.limit:
            raise AssertionError(f"a read of {size} voxels (limit {self.limit}) from a volume of {self.shape}")
        self.reads.append(size)
        return np.asarray(self.source[key])

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError(f"the whole volume {self.shape} was read")


def _phantom(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth random volume in [0, 1000]."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return (1000 * (field - field.min()) / (field.max() - field.min())).astype(np.float32)


def _zarr(tmp_path: Path, array: np.ndarray, name: str = "vol.ome.zarr", **meta: Any) -> dp.Volume:
    """Write ``array`` as OME-Zarr (small chunks) and open it lazily."""
    dp.write_volume(dp.Volume(array, spacing=(1.0, 1.0, 1.0), meta=meta), tmp_path / name)
    volume = dp.read_volume(tmp_path / name)
    assert volume.is_lazy
    return volume


def _batches(ds: tf.data.Dataset, n: int) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, x, y)


CASES = {
    "3d_neighbour_prior": dict(patch_shape=(6, 16, 16), prior="neighbour", prior_options={"size": 5}),
    "2d_neighbour_prior": dict(patch_shape=(16, 16), prior="neighbour"),
    "3d_padded_reflect": dict(patch_shape=(16, 16, 16)),  # 12 slices: padded along z
    "2d_padded_constant": dict(patch_shape=(24, 40), pad="constant"),  # y padded with zeros
    "3d_poisson_gaussian": dict(patch_shape=(4, 8, 8), noise=dp.PoissonGaussianNoise(photons=50, sigma=0.02)),
    "2d_blindspot": dict(patch_shape=(16, 16), noise=None, blindspot=dp.BlindSpot(fraction=0.02)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_batches_from_zarr_as_from_memory(tmp_path, case):
    volume = _zarr(tmp_path, _phantom((12, 20, 36)))
    kwargs = dict(batch_size=3, seed=5, normalizer=FIXED, patches_per_epoch=6, foreground=0.2,
                  noise=dp.GaussianNoise(0.05))
    kwargs.update(CASES[case])
    guarded = dp.Volume(GuardedArray(volume.array, limit=20 * 20 * 36 // 2), source=volume.source)
    memory = dp.make_dataset([volume.load()], **kwargs)
    from_zarr = dp.make_dataset([guarded], **kwargs)
    _assert_same(_batches(memory, 4), _batches(from_zarr, 4))  # 2 epochs: fresh noise, same on both
    if "prior" in kwargs:
        assert set(_batches(from_zarr, 1)[0][0]) == {"noisy", "prior"}


def test_real_noisy_pairs_and_frames_from_zarr(tmp_path):
    clean = _phantom((10, 24, 24), 1)
    noisy = _zarr(tmp_path, clean + np.random.default_rng(2).normal(0, 30, clean.shape).astype(np.float32),
                  "noisy.ome.zarr")
    kwargs = dict(patch_shape=(4, 16, 16), batch_size=2, seed=1, normalizer=FIXED, noise=None, patches_per_epoch=4)
    _assert_same(_batches(dp.make_dataset([clean], noisy=[noisy.load()], **kwargs), 2),
                 _batches(dp.make_dataset([clean], noisy=[noisy], **kwargs), 2))  # in memory with lazy
    series = _zarr(tmp_path, np.stack([_phantom((6, 20, 20), s) for s in range(3)], -1), "t.ome.zarr",
                   channel_axis="t")
    assert series.shape == (6, 20, 20, 3)  # stored (t, z, y, x), read through an AxesView
    kwargs = dict(patch_shape=(16, 16), prior="temporal", batch_size=2, seed=3, normalizer=FIXED, patches_per_epoch=4)
    _assert_same(_batches(dp.make_dataset([series.load()], **kwargs), 2), _batches(dp.make_dataset([series], **kwargs), 2))


def test_no_whole_volume_is_read(tmp_path):
    shape = (40, 96, 96)
    volume = _zarr(tmp_path, _phantom(shape))
    guard = GuardedArray(volume.array, limit=5 * 96 * 96)  # one statistics block; the volume is 8 x more
    kwargs = dict(patch_shape=(8, 24, 24), prior="neighbour", batch_size=4, seed=0, foreground=0.3,
                  normalizer=dp.Normalizer.percentile(1, 99.8), patches_per_epoch=16)
    with pytest.raises(AssertionError, match="whole volume"):  # the guard can fail
        np.asarray(guard)
    ds = dp.make_dataset([dp.Volume(guard, source=volume.source)], **kwargs)
    batches = _batches(ds, 8)
    assert batches[0][1].shape == (4, 8, 24, 24, 1)
    assert guard.reads and max(guard.reads) <= guard.limit
    assert sum(guard.reads) < 4 * math.prod(shape)  # statistics blocks + 2 epochs of patches and foreground draws
    with pytest.raises(AssertionError, match="whole volume"):  # loading it (the in-memory path) reads it whole
        dp.make_dataset([dp.Volume(guard, source=volume.source).load()], **kwargs)


def test_lazy_statistics_are_a_bounded_sample_close_to_the_whole_volume(tmp_path, monkeypatch):
    clean = dp.sample("mni152_t1").array  # (80, 96, 80) brain MRI
    array = clean + np.random.default_rng(4).normal(0, 0.05 * np.ptp(clean), clean.shape).astype(np.float32)
    volume = _zarr(tmp_path, array)
    part = lazy.LazyPart(volume.array, append_c=True)
    norm = dp.Normalizer.percentile(1, 99.8)
    full = norm.fit(array)
    span = full.high - full.low
    # the default budget keeps all 16 slabs of 5 slices; 4 of them (measured: within 0.21 % of the
    # range); 2 of them (measured: the high end 3.8 % off, so the bound below can fail)
    for budget, slabs, tolerance in ((None, 16, 0.005), (5 * 96 * 80 * 4, 4, 0.005), (5 * 96 * 80 * 2, 2, 0.05)):
        sample = lazy.statistics_blocks(part, "vol", budget)
        assert sample.shape == (5, 96, 80, slabs)
        fitted = norm.fit(sample)
        assert abs(fitted.low - full.low) < tolerance * span and abs(fitted.high - full.high) < tolerance * span
        assert (fitted.low, fitted.high) != (full.low, full.high)  # a sample, not the whole volume
    monkeypatch.setattr(lazy, "LAZY_STATISTICS_VOXELS", 5 * 96 * 80 * 4)  # what make_dataset uses
    kwargs = dict(patch_shape=(8, 32, 32), batch_size=2, seed=2, normalizer=norm, patches_per_epoch=4, training=False)
    (memory,), (from_zarr,) = _batches(dp.make_dataset([array], **kwargs), 1), _batches(dp.make_dataset([volume], **kwargs), 1)
    np.testing.assert_allclose(from_zarr[1], memory[1], atol=0.01)  # same crops, units within 1 %
    assert not np.array_equal(from_zarr[1], memory[1])


def test_bad_zarr_input_errors_like_memory(tmp_path):
    thin = _zarr(tmp_path, _phantom((3, 20, 20)))
    errors = []
    for item in (thin, thin.load(), tmp_path / "vol.ome.zarr"):
        with pytest.raises(PatchSizeError) as info:
            dp.make_dataset([item], patch_shape=(8, 16, 16), pad=None)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "(3, 20, 20), smaller than the patch (8, 16, 16)" in errors[0]
    assert "vol.ome.zarr" in errors[2]
    bad = _phantom((10, 20, 20))
    bad[4, 5, 6] = np.nan
    with pytest.raises(InvalidDataError, match=r"bad\.ome\.zarr.*1 NaN/Inf"):
        dp.make_dataset([_zarr(tmp_path, bad, "bad.ome.zarr")], patch_shape=(4, 8, 8),
                        normalizer=dp.Normalizer.percentile())  # found by the statistics blocks


def test_training_config_runs_two_steps_from_ome_zarr(tmp_path, monkeypatch):
    from resprunet.training import TrainConfig, train

    train_path = tmp_path / "train.ome.zarr"
    dp.write_volume(dp.Volume(_phantom((32, 64, 64), 7), spacing=(1.0, 1.0, 1.0)), train_path)
    val_path = tmp_path / "val.ome.zarr"
    dp.write_volume(dp.Volume(_phantom((12, 32, 32), 8), spacing=(1.0, 1.0, 1.0)), val_path)
    guards: list[GuardedArray] = []
    read_volume = dp.read_volume

    def guarded_read(path: Any, **kwargs: Any) -> dp.Volume:
        volume = read_volume(path, **kwargs)
        guards.append(GuardedArray(volume.array, limit=5 * 64 * 64))
        return dp.Volume(guards[-1], volume.spacing, volume.meta, volume.source)

    monkeypatch.setattr(dp, "read_volume", guarded_read)
    config = TrainConfig.from_dict({
        "model": {"name": "unet", "ndim": 3, "filters": 4, "depth": 1},
        "data": {"train": [str(train_path)], "val": [str(val_path)], "patch_shape": [8, 16, 16],
                 "normalize": {"method": "percentile", "low": 1.0, "high": 99.8},
                 "batch_size": 2, "patches_per_epoch": 4, "val_patches": 2},
        "epochs": 1, "run": {"root": str(tmp_path / "runs"), "name": "zarr"},
    })
    result = train(config, verbose=0)
    assert result.history["epoch"] == [0.0] and np.isfinite(result.history["loss"]).all()
    assert (result.run_dir / "model.keras").is_file()
    assert len(guards) == 2 and all(g.reads for g in guards)  # both read lazily, never whole
    assert sum(guards[0].reads) < 2 * 32 * 64 * 64
