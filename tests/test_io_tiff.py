"""TIFF stacks: uint8/uint16/float32 kept, ImageJ spacing read and written."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

import data_pipelines as dp


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_imagej_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(0)
    top = 255 if dtype == "uint8" else 60000
    data = (rng.random((3, 6, 7)) * top).astype(dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "micron", "axes": "ZYX"})
    vol = dp.read_volume(path)
    assert vol.shape == (3, 6, 7) and vol.meta["dtype"] == dtype
    np.testing.assert_array_equal(vol.array, data.astype(np.float32))
    assert vol.spacing == (2.0, 0.5, 0.25) and vol.meta["spacing_unit"] == "um"
    out = dp.write_volume(vol, tmp_path / "copy.tiff")
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 2.0
        back = tif.asarray()
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, data)
    again = dp.read_volume(out)
    assert again.spacing == (2.0, 0.5, 0.25) and again.meta["spacing_unit"] == "um"


def test_int16_plain_tiff_keeps_spacing(tmp_path):
    data = np.arange(-30, 30, dtype=np.int16).reshape(1, 6, 10).repeat(2, axis=0)
    vol = dp.Volume(data.astype(np.float32), spacing=(3.0, 0.75, 0.5), meta={"dtype": "int16"})
    back = dp.read_volume(dp.write_volume(vol, tmp_path / "s.tif"))
    assert back.meta["dtype"] == "int16" and back.spacing == (3.0, 0.75, 0.5)
    assert back.meta["spacing_unit"] == "mm"
    np.testing.assert_array_equal(back.array, data)


def test_2d_tiff_is_one_slice_without_spacing(tmp_path):
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    tifffile.imwrite(tmp_path / "one.tif", image)
    vol = dp.read_volume(tmp_path / "one.tif")
    assert vol.shape == (1, 3, 4) and vol.spacing is None
    np.testing.assert_array_equal(vol.array[0], image)


def test_float_to_uint16_rounds_and_clips(tmp_path):
    values = np.array([[[-3.0, 0.4, 0.6, 2.5, 70000.0]]], np.float32)
    back = dp.read_volume(dp.write_volume(values, tmp_path / "c.tif", dtype="uint16"))
    np.testing.assert_array_equal(back.array[0, 0], [0, 0, 1, 2, 65535])
    assert back.meta["dtype"] == "uint16"
