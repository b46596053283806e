"""NPY/NPZ and HDF5: keys, the ResPr-UNet keys, spacing, exact round trips."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import data_pipelines as dp
from data_pipelines.errors import VolumeReadError
from data_pipelines.io import read_npz_case


@pytest.fixture
def data():
    return np.random.default_rng(0).integers(-500, 500, size=(3, 4, 5)).astype(np.int16)


def test_npz_single_array_without_key_and_exact_round_trip(tmp_path, data):
    np.savez(tmp_path / "a.npz", image=data)
    vol = dp.read_volume(tmp_path / "a.npz")
    assert vol.meta["key"] == "image" and vol.meta["dtype"] == "int16" and vol.spacing is None
    out = dp.write_volume(vol, tmp_path / "b.npz")
    with np.load(out) as archive:
        assert archive.files == ["image"]
        assert archive["image"].dtype == np.int16
        np.testing.assert_array_equal(archive["image"], data)


def test_npz_several_arrays_need_key(tmp_path, data):
    np.savez(tmp_path / "m.npz", first=data, second=data * 2)
    with pytest.raises(VolumeReadError, match=r"\['first', 'second'\].*key="):
        dp.read_volume(tmp_path / "m.npz")
    np.testing.assert_array_equal(dp.read_volume(tmp_path / "m.npz", key="second").array, data * 2)
    with pytest.raises(VolumeReadError, match="no array 'third'"):
        dp.read_volume(tmp_path / "m.npz", key="third")


def test_resprunet_keys(tmp_path, data):
    np.savez(tmp_path / "case.npz", data_test=data, data_test_noisy=data + 3, data_test_prior=data - 1)
    assert dp.read_volume(tmp_path / "case.npz").meta["key"] == "data_test"
    case = read_npz_case(tmp_path / "case.npz")
    assert sorted(case) == ["clean", "noisy", "prior"]
    np.testing.assert_array_equal(case["noisy"].array - case["clean"].array, 3.0)
    np.testing.assert_array_equal(case["prior"].array, data - 1)
    np.savez(tmp_path / "no_prior.npz", data_test=data, data_test_noisy=data)
    assert sorted(read_npz_case(tmp_path / "no_prior.npz")) == ["clean", "noisy"]
    np.savez(tmp_path / "half.npz", data_test=data)
    with pytest.raises(VolumeReadError, match="data_test_noisy"):
        read_npz_case(tmp_path / "half.npz")


def test_npz_spacing_and_npy(tmp_path, data):
    vol = dp.Volume(data.astype(np.float32), spacing=(2.0, 0.5, 0.5), meta={"dtype": "int16"})
    back = dp.read_volume(dp.write_volume(vol, tmp_path / "s.npz", key="ct"))
    assert back.spacing == (2.0, 0.5, 0.5) and back.meta["key"] == "ct" and back.meta["dtype"] == "int16"
    np.testing.assert_array_equal(back.array, data)
    np.save(tmp_path / "slice.npy", data[0].astype(np.float32))
    one = dp.read_volume(tmp_path / "slice.npy")
    assert one.shape == (1, 4, 5)
    back = np.load(dp.write_volume(one, tmp_path / "copy.npy"))
    assert back.dtype == np.float32 and back.shape == (1, 4, 5)


def test_hdf5_key_attrs_and_round_trip(tmp_path, data):
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("volumes/raw", data=data).attrs["element_size_um"] = [4.0, 1.5, 1.5]
        handle["volumes/raw"].attrs["note"] = "scan 3"
        handle.create_dataset("labels", data=data > 0)
    with pytest.raises(VolumeReadError, match=r"\['labels', 'volumes/raw'\].*key="):
        dp.read_volume(path)
    vol = dp.read_volume(path, key="volumes/raw")
    assert vol.spacing == (4.0, 1.5, 1.5) and vol.meta["spacing_unit"] == "um"
    np.testing.assert_array_equal(vol.array, data)
    out = dp.write_volume(vol, tmp_path / "copy.hdf5")
    with h5py.File(out, "r") as handle:
        dataset = handle["volumes/raw"]
        assert dataset.dtype == np.int16 and dataset.attrs["note"] == "scan 3"
        np.testing.assert_array_equal(dataset[()], data)
    again = dp.read_volume(out)
    assert again.spacing == (4.0, 1.5, 1.5) and again.meta["spacing_unit"] == "um"
    with pytest.raises(VolumeReadError, match="no dataset 'missing'"):
        dp.read_volume(path, key="missing")


def test_hdf5_single_dataset_without_key(tmp_path, data):
    back = dp.read_volume(dp.write_volume(data.astype(np.float32), tmp_path / "d.h5", dtype="int16"))
    assert back.meta["key"] == "data" and back.meta["dtype"] == "int16"
    np.testing.assert_array_equal(back.array, data)
