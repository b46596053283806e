"""Zarr / OME-Zarr I/O: lazy reads with OME-NGFF metadata, pyramids, atomic writes, the CLI."""
from __future__ import annotations

import logging
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

import data_pipelines as dp  # noqa: E402
from data_pipelines.errors import OutputExistsError, VolumeReadError  # noqa: E402
from data_pipelines.io import detect_format  # noqa: E402
from data_pipelines.io import zarr as zarr_io  # noqa: E402
from data_pipelines.io.axes_view import AxesView  # noqa: E402
from data_pipelines.io.pyramid import block_mean, pyramid_factors  # noqa: E402


def _multiscales(path: Path) -> dict:
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    return attrs["ome"]["multiscales"][0]


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


@pytest.fixture
def volume() -> dp.Volume:
    rng = np.random.default_rng(0)
    return dp.Volume(rng.normal(100, 20, (6, 128, 130)).astype(np.float32), spacing=(2.5, 0.4, 0.4),
                     meta={"spacing_unit": "um"})


def test_round_trip_keeps_values_dtype_voxel_size_and_axes(tmp_path, volume):
    out = tmp_path / "vol.ome.zarr"
    assert dp.write_volume(volume, out) == out
    assert out.is_dir() and detect_format(out) == "zarr"
    back = dp.read_volume(out)
    assert back.spacing == pytest.approx(volume.spacing) and back.meta["spacing_unit"] == "um"
    assert back.meta["axes"] == "zyx" and back.meta["ome"] and back.meta["ome_version"] == "0.5"
    assert np.dtype(back.array.dtype) == np.float32
    np.testing.assert_array_equal(np.asarray(back.array), volume.array)  # exact
    axes = _multiscales(out)["axes"]
    assert [(a["name"], a["type"], a.get("unit")) for a in axes] == [
        ("z", "space", "micrometer"), ("y", "space", "micrometer"), ("x", "space", "micrometer")]

    counts = np.random.default_rng(1).integers(0, 4000, (3, 20, 24)).astype(np.uint16)
    dp.write_volume(dp.Volume(counts, spacing=(1.0, 0.5, 0.5)), tmp_path / "counts.zarr")
    again = dp.read_volume(tmp_path / "counts.zarr")
    assert again.meta["dtype"] == "uint16" and np.dtype(again.array.dtype) == np.uint16
    assert again.meta["spacing_unit"] == "mm"  # a Volume's spacing is in mm unless it says otherwise
    np.testing.assert_array_equal(again.load().array, counts.astype(np.float32))


def test_channels_are_stored_first_and_read_back_last(tmp_path):
    rgb = np.random.default_rng(2).random((3, 16, 20, 3)).astype(np.float32)
    dp.write_volume(dp.Volume(rgb, spacing=(1.0, 1.0, 1.0)), tmp_path / "rgb.ome.zarr")
    stored = zarr.open_group(str(tmp_path / "rgb.ome.zarr"), mode="r")["0"]
    assert stored.shape == (3, 3, 16, 20)  # OME order (c, z, y, x)
    assert [a["name"] for a in _multiscales(tmp_path / "rgb.ome.zarr")["axes"]] == ["c", "z", "y", "x"]
    back = dp.read_volume(tmp_path / "rgb.ome.zarr")
    assert back.shape == rgb.shape and back.meta["channel_axis"] == "c"
    np.testing.assert_array_equal(np.asarray(back.array), rgb)
    np.testing.assert_array_equal(back.array[1, 3:7, -5:, 2], rgb[1, 3:7, -5:, 2])


def test_axes_view_indexes_like_numpy():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (c, z, y, x)
    view = AxesView(data, ("c", "z", "y", "x"), ("z", "y", "x", "c"))
    expected = np.moveaxis(data, 0, -1)
    assert view.shape == expected.shape and view.ndim == 4
    for key in [(0,), (slice(1, 3), 2), (Ellipsis, 1), (-1, slice(None), 3, slice(0, 2)), (1, 2, 3, 0),
                (slice(None, None, 2), Ellipsis)]:
        np.testing.assert_array_equal(view[key], expected[key])
    plane = np.arange(12).reshape(3, 4)  # a 2D (y, x) store seen as (1, y, x)
    flat = AxesView(plane, ("y", "x"), ("z", "y", "x"))
    assert flat.shape == (1, 3, 4)
    np.testing.assert_array_equal(np.asarray(flat), plane[None])
    np.testing.assert_array_equal(flat[0, 1:], plane[1:])
    np.testing.assert_array_equal(flat[:, :, 2], plane[None, :, 2])


def test_pyramid_levels_shapes_and_scales(tmp_path):
    iso = np.random.default_rng(3).random((8, 256, 200)).astype(np.float32)
    dp.write_volume(dp.Volume(iso, spacing=(0.5, 0.5, 0.5)), tmp_path / "iso.ome.zarr")
    group = zarr.open_group(str(tmp_path / "iso.ome.zarr"), mode="r")
    meta = _multiscales(tmp_path / "iso.ome.zarr")
    # isotropic: z, y, x halved per level until the largest y/x side would drop below 64
    assert [d["path"] for d in meta["datasets"]] == ["0", "1", "2"]
    assert [group[p].shape for p in ("0", "1", "2")] == [(8, 256, 200), (4, 128, 100), (2, 64, 50)]
    scales = [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]]
    assert scales == [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]

    # anisotropic (z 4x coarser): z is kept until y/x catch up
    assert pyramid_factors((8, 1024, 1024), (2.0, 0.5, 0.5)) == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16)]
    assert pyramid_factors((1, 300, 300), None) == [(1, 1, 1), (1, 2, 2), (1, 4, 4)]  # a 2D image keeps z=1
    assert len(pyramid_factors((4, 16, 16), None, levels=3)) == 3
    dp.write_volume(iso[:, :20, :20], tmp_path / "small.zarr", levels=3)  # below 64: only when asked
    assert [a.shape for _, a in sorted(zarr.open_group(str(tmp_path / "small.zarr"), mode="r").arrays())] == [
        (8, 20, 20), (4, 10, 10), (2, 5, 5)]
    with pytest.raises(dp.VolumeWriteError, match="levels=3 applies to Zarr"):
        dp.write_volume(iso, tmp_path / "x.npy", levels=3)


def test_reading_level_one_gives_the_block_mean_and_doubled_voxel_size(tmp_path, volume):
    dp.write_volume(volume, tmp_path / "v.ome.zarr")
    level1 = dp.read_volume(tmp_path / "v.ome.zarr", level=1)
    # dz (2.5) > dy (0.4): only y and x are halved; 128x130 -> 64x65, and no level 2 (32 < 64)
    assert level1.shape == (6, 64, 65) and level1.meta["level"] == 1 and level1.meta["levels"] == 2
    assert level1.spacing == pytest.approx((2.5, 0.8, 0.8))
    expected = volume.array.reshape(6, 64, 2, 65, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(level1.array), expected, rtol=1e-6)
    odd = np.arange(5, dtype=float)[None, None]
    np.testing.assert_array_equal(block_mean(odd, (1, 1, 2)), [[[0.5, 2.5, 4.0]]])  # last block: edge repeated


def test_read_is_lazy_and_allocates_nothing_like_the_store(tmp_path):
    path = tmp_path / "big.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", shape=(64, 1024, 1024), dtype="float32", chunks=(16, 256, 256), fill_value=0.0)
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}], fmt=FormatV05(),
        axes=[{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"])
    tracemalloc.start()
    try:
        vol = dp.read_volume(path)  # 256 MiB of float32 declared
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(vol.array, zarr.Array) and not isinstance(vol.array, np.ndarray) and vol.is_lazy
    assert vol.shape == (64, 1024, 1024) and vol.spacing == (1.0, 1.0, 1.0)
    assert peak < 16 * 2**20, f"read_volume allocated {peak / 2**20:.0f} MiB for a lazy read"
    assert vol.array[3, :2, :2].shape == (2, 2)  # a part is read on indexing
    assert vol.with_array(np.zeros((2, 2, 2))).is_lazy is False


def test_load_reads_float32_and_checks_nan(tmp_path):
    data = np.ones((2, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    zarr.save_array(str(tmp_path / "nan.zarr"), data)
    vol = dp.read_volume(tmp_path / "nan.zarr")  # lazy: no NaN scan yet
    with pytest.raises(dp.InvalidDataError, match="1 of 128 voxels are NaN"):
        vol.load()
    loaded = vol.load(allow_nonfinite=True)
    assert isinstance(loaded.array, np.ndarray) and loaded.array.dtype == np.float32 and not loaded.is_lazy


def test_plain_zarr_assumes_zyx_and_says_so(tmp_path, caplog):
    data = np.random.default_rng(4).random((4, 10, 12)).astype(np.float32)
    zarr.save_array(str(tmp_path / "plain.zarr"), data)
    with caplog.at_level(logging.WARNING, logger="data_pipelines"):
        vol = dp.read_volume(tmp_path / "plain.zarr")
    assert "axes assumed (z, y, x)" in caplog.text and "plain.zarr" in caplog.text
    assert vol.spacing is None and vol.meta["ome"] is False and vol.meta["axes"] == "zyx"
    np.testing.assert_array_equal(np.asarray(vol.array), data)
    # a group without OME metadata: one array is taken, several need key=
    group = zarr.open_group(str(tmp_path / "group"), mode="w")  # no .zarr suffix: found by its zarr.json
    group.create_array("raw", shape=(2, 4, 4), dtype="uint8")
    group.create_array("labels", shape=(2, 4, 4), dtype="uint8")
    with pytest.raises(VolumeReadError, match=r"holds arrays \['labels', 'raw'\]; choose one with --key"):
        dp.read_volume(tmp_path / "group")
    assert dp.read_volume(tmp_path / "group", key="raw").meta["key"] == "raw"


def test_missing_resolution_level_is_a_clear_error(tmp_path, volume):
    dp.write_volume(volume, tmp_path / "v.ome.zarr")
    with pytest.raises(VolumeReadError) as info:
        dp.read_volume(tmp_path / "v.ome.zarr", level=3)
    message = str(info.value)
    assert "no resolution level 3" in message and "levels 0 ('0'), 1 ('1')" in message
    assert "v.ome.zarr" in message and "\n" not in message
    zarr.save_array(str(tmp_path / "plain.zarr"), volume.array)
    with pytest.raises(VolumeReadError, match="no resolution level 1; a plain Zarr array .* has only level 0"):
        dp.read_volume(tmp_path / "plain.zarr", level=1)
    with pytest.raises(VolumeReadError, match="level=1 applies to .*Zarr stores, not npz"):
        np.save(tmp_path / "a.npy", volume.array)
        dp.read_volume(tmp_path / "a.npy", level=1)


def test_ome_ngff_04_with_singleton_time_and_channel(tmp_path):
    """A Zarr v2 / NGFF 0.4 store in the (t, c, z, y, x) layout that bioformats2raw writes."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    data = np.random.default_rng(5).integers(0, 255, (1, 1, 3, 8, 10)).astype(np.uint8)
    group = zarr.open_group(str(tmp_path / "v04.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("s0", shape=data.shape, dtype="uint8", chunks=(1, 1, 3, 8, 8))[...] = data
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    write_multiscales_metadata(group, [{"path": "s0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0, 300.0, 65.0, 65.0]}]}], fmt=FormatV04(), axes=axes)
    vol = dp.read_volume(tmp_path / "v04.ome.zarr")
    assert vol.shape == (3, 8, 10) and vol.meta["axes"] == "tczyx" and vol.meta["ome_version"] == "0.4"
    assert vol.spacing == (300.0, 65.0, 65.0) and vol.meta["spacing_unit"] == "nm"
    np.testing.assert_array_equal(np.asarray(vol.array), data[0, 0])


def test_interrupted_write_leaves_no_partial_store(tmp_path, volume, monkeypatch):
    out = tmp_path / "out.ome.zarr"

    def fail(*args, **kwargs):
        raise RuntimeError("disk full while writing level 1")

    monkeypatch.setattr(zarr_io, "block_mean", fail)  # level 0 is written, then the pyramid fails
    with pytest.raises(RuntimeError, match="disk full"):
        dp.write_volume(volume, out)
    assert not out.exists() and _no_temporaries(tmp_path)
    monkeypatch.undo()
    dp.write_volume(volume, out)
    monkeypatch.setattr(zarr_io, "block_mean", fail)
    with pytest.raises(RuntimeError):
        dp.write_volume(volume.with_array(volume.array + 1), out, force=True)
    np.testing.assert_array_equal(np.asarray(dp.read_volume(out).array), volume.array)  # old store kept
    assert _no_temporaries(tmp_path)


def test_existing_output_is_refused_without_force(tmp_path, volume):
    out = tmp_path / "out.zarr"
    dp.write_volume(volume, out)
    with pytest.raises(OutputExistsError, match="output exists; use --force"):
        dp.write_volume(volume.with_array(volume.array * 2), out)
    np.testing.assert_array_equal(np.asarray(dp.read_volume(out).array), volume.array)
    dp.write_volume(volume.with_array(volume.array * 2), out, force=True)
    np.testing.assert_array_equal(np.asarray(dp.read_volume(out).array), volume.array * 2)


def test_a_lazy_volume_is_copied_chunk_by_chunk(tmp_path, volume):
    dp.write_volume(volume, tmp_path / "a.ome.zarr")
    lazy = dp.read_volume(tmp_path / "a.ome.zarr")
    dp.write_volume(lazy, tmp_path / "b.ome.zarr")  # zarr -> zarr without loading
    dp.write_volume(lazy, tmp_path / "b.npy")  # other formats load it
    back = dp.read_volume(tmp_path / "b.ome.zarr")
    assert back.spacing == pytest.approx(volume.spacing) and back.meta["spacing_unit"] == "um"
    np.testing.assert_array_equal(np.asarray(back.array), volume.array)
    np.testing.assert_array_equal(dp.read_volume(tmp_path / "b.npy").array, volume.array)


def test_missing_zarr_package_says_how_to_install(tmp_path, volume, monkeypatch):
    dp.write_volume(volume, tmp_path / "v.ome.zarr")
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr -> ImportError
    with pytest.raises(zarr_io.ZarrMissingError, match=r'pip install "resprunet\[zarr\]"'):
        dp.read_volume(tmp_path / "v.ome.zarr")


def test_cli_denoise_ome_zarr_keeps_voxel_size(tmp_path, capsys, monkeypatch):
    keras = pytest.importorskip("keras")
    import yaml

    from model_helpers import random_head
    from resprunet import cli, models
    from resprunet.inference import denoise_array

    keras.utils.set_random_seed(0)
    folder = tmp_path / "model"
    folder.mkdir()
    model = random_head(models.build("unet", ndim=3, filters=4, depth=1), scale=0.3)
    model.save(folder / "model.keras")
    norm = dp.Normalizer.percentile(1, 99.8)
    (folder / "card.yaml").write_text(yaml.safe_dump({
        "name": "tiny3d", "normalization": norm.to_dict(), "noise": {"kind": "gaussian", "sigma": [0.0, 0.2]}}))
    data = np.random.default_rng(6).normal(500, 50, (4, 16, 16)).round().astype(np.uint16)  # camera counts
    src, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    dp.write_volume(dp.Volume(data, spacing=(3.0, 0.7, 0.7), meta={"spacing_unit": "um"}), src)

    code = cli.main(["-q", "denoise", str(src), str(out), "--model", str(folder / "model.keras")])
    _, err = capsys.readouterr()
    assert code == 0, err
    result = dp.read_volume(out)
    assert result.spacing == pytest.approx((3.0, 0.7, 0.7)) and result.meta["spacing_unit"] == "um"
    assert result.shape == data.shape and result.meta["dtype"] == "uint16"  # the input's dtype, rounded
    expected = denoise_array(keras.models.load_model(folder / "model.keras"), data.astype(np.float32), norm,
                             progress=False)
    assert np.abs(np.asarray(result.array).astype(float) - np.rint(expected)).max() <= 1
    assert np.abs(expected - data).mean() > 1  # the model changed the data
    code = cli.main(["-q", "denoise", str(src), str(out), "--model", str(folder / "model.keras")])
    _, err = capsys.readouterr()
    assert code == 2 and "output exists" in err and len(err.strip().splitlines()) == 1
    # the whole input is loaded for now: one that cannot fit in memory is refused in one line
    import data_pipelines.io.arrays as arrays

    monkeypatch.setattr(arrays, "available_memory", lambda: 1000)
    code = cli.main(["-q", "denoise", str(src), str(tmp_path / "big.ome.zarr"), "--model", str(folder / "model.keras")])
    _, err = capsys.readouterr()
    assert code == 2 and "as float32, more than 80%" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "big.ome.zarr").exists()


def test_cli_denoise_level_of_a_pyramid(tmp_path, capsys):
    """``--level 1`` denoises the half-resolution level (its shape and voxel size come out);
    a level the store lacks is a one-line error that writes nothing."""
    keras = pytest.importorskip("keras")
    import yaml

    from model_helpers import random_head
    from resprunet import cli, models
    from resprunet.inference import denoise_array

    keras.utils.set_random_seed(0)
    folder = tmp_path / "model"
    folder.mkdir()
    random_head(models.build("unet", ndim=3, filters=4, depth=1), scale=0.3).save(folder / "model.keras")
    norm = dp.Normalizer.percentile(1, 99.8)
    (folder / "card.yaml").write_text(yaml.safe_dump({"name": "tiny3d", "normalization": norm.to_dict()}))
    data = np.random.default_rng(7).normal(500, 50, (4, 128, 128)).astype(np.float32)
    src, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    dp.write_volume(dp.Volume(data, spacing=(3.0, 0.5, 0.5), meta={"spacing_unit": "um"}), src)
    level1 = dp.read_volume(src, level=1)
    assert level1.shape == (4, 64, 64)

    code = cli.main(["-q", "denoise", str(src), str(out), "--level", "1", "--model", str(folder / "model.keras")])
    _, err = capsys.readouterr()
    assert code == 0, err
    result = dp.read_volume(out)
    assert result.shape == (4, 64, 64) and result.spacing == pytest.approx(level1.spacing)
    assert result.spacing == pytest.approx((3.0, 1.0, 1.0))
    expected = denoise_array(keras.models.load_model(folder / "model.keras"), np.asarray(level1.array), norm,
                             progress=False)
    assert np.abs(np.asarray(result.array) - expected).max() < 1e-3
    assert np.abs(expected - np.asarray(level1.array)).mean() > 1  # the model changed the data

    code = cli.main(["-q", "denoise", str(src), str(tmp_path / "none.ome.zarr"), "--level", "9",
                     "--model", str(folder / "model.keras")])
    _, err = capsys.readouterr()
    assert code == 2 and "level" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.ome.zarr").exists()
