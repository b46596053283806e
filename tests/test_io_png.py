"""PNG: slice folders in natural order, subject folders, uint8/uint16 round trips."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import data_pipelines as dp
from data_pipelines.errors import VolumeReadError, VolumeWriteError
from data_pipelines.io import read_png_subjects
from data_pipelines.io.png import natural_key


def _write_slices(folder, stack, names):
    folder.mkdir(parents=True)
    for plane, name in zip(stack, names):
        Image.fromarray(plane).save(folder / name)


def test_natural_sort_of_slices(tmp_path):
    stack = np.stack([np.full((4, 5), k, np.uint8) for k in range(12)])
    names = [f"slice{k + 1}.png" for k in range(12)]  # slice1 ... slice12
    order = np.random.default_rng(0).permutation(12)
    _write_slices(tmp_path / "case", stack[order], [names[i] for i in order])
    vol = dp.read_volume(tmp_path / "case")
    assert vol.shape == (12, 4, 5) and vol.spacing is None
    np.testing.assert_array_equal(vol.array[:, 0, 0], np.arange(12))
    assert vol.meta["files"][:3] == ["slice1.png", "slice2.png", "slice3.png"]
    assert sorted(["slice10", "slice2"], key=natural_key) == ["slice2", "slice10"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_folder_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = rng.integers(0, np.iinfo(dtype).max, size=(3, 8, 9), endpoint=True).astype(dtype)
    _write_slices(tmp_path / "in", data, [f"s{k}.png" for k in range(3)])
    vol = dp.read_volume(tmp_path / "in")
    assert vol.meta["dtype"] == dtype
    out = dp.write_volume(vol, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["slice_0000.png", "slice_0001.png", "slice_0002.png"]
    back = dp.read_volume(out)
    assert back.meta["dtype"] == dtype
    np.testing.assert_array_equal(back.array, data.astype(np.float32))


def test_subjects(tmp_path):
    for subject, value in (("patient10", 10), ("patient2", 2)):
        _write_slices(tmp_path / "root" / subject, np.full((2, 3, 3), value, np.uint8), ["a1.png", "a2.png"])
    volumes = read_png_subjects(tmp_path / "root")
    assert [v.meta["subject"] for v in volumes] == ["patient2", "patient10"]
    assert [float(v.array.mean()) for v in volumes] == [2.0, 10.0]
    with pytest.raises(VolumeReadError, match="no subject subfolders"):
        read_png_subjects(tmp_path / "root" / "patient2")


def test_single_png_and_float_needs_dtype(tmp_path):
    Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5)).save(tmp_path / "one.png")
    vol = dp.read_volume(tmp_path / "one.png")
    assert vol.shape == (1, 4, 5)
    floats = np.array([[[0.4, 0.6, 254.5, 300.0, -2.0]]], np.float32)
    with pytest.raises(VolumeWriteError, match="uint8 or uint16"):
        dp.write_volume(floats, tmp_path / "f.png")
    back = dp.read_volume(dp.write_volume(floats, tmp_path / "f.png", dtype="uint8"))
    np.testing.assert_array_equal(back.array[0, 0], [0, 1, 254, 255, 0])
    with pytest.raises(VolumeWriteError, match="folder"):
        dp.write_volume(np.zeros((2, 3, 3)), tmp_path / "two.png", dtype="uint8")


def test_mixed_slice_sizes_rejected(tmp_path):
    (tmp_path / "bad").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "bad" / "1.png")
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "bad" / "2.png")
    with pytest.raises(VolumeReadError, match="differ"):
        dp.read_volume(tmp_path / "bad")
