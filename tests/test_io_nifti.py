"""NIfTI: axis order, spacing, affine/header kept, dtype and scaling on write-back."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import data_pipelines as dp

AFFINE = np.array([
    [0.0, 0.0, 2.5, -40.0],
    [0.0, 0.7, 0.0, -30.0],
    [-0.5, 0.0, 0.0, 20.0],
    [0.0, 0.0, 0.0, 1.0],
])


@pytest.fixture
def nifti_int16(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 3000, size=(6, 5, 4), dtype=np.int16)  # (x, y, z)
    image = nib.Nifti1Image(data, AFFINE)
    image.header.set_xyzt_units("mm")
    path = tmp_path / "scan.nii.gz"
    image.to_filename(str(path))
    return path, data


def test_read_transposes_to_zyx(nifti_int16):
    path, data = nifti_int16
    vol = dp.read_volume(path)
    assert vol.shape == (4, 5, 6)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0).astype(np.float32))
    assert vol.array[3, 2, 1] == data[1, 2, 3]
    # zooms (x, y, z) = (0.5, 0.7, 2.5) from the oblique affine, reported as (z, y, x)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.7, 0.5), rtol=1e-6)
    assert vol.meta["dtype"] == "int16" and vol.meta["format"] == "nifti"
    np.testing.assert_allclose(vol.meta["affine"], AFFINE, atol=1e-6)


def test_round_trip_exact_with_header(nifti_int16, tmp_path):
    path, data = nifti_int16
    vol = dp.read_volume(path)
    out = dp.write_volume(vol, tmp_path / "copy.nii")
    back = nib.load(str(out))
    assert back.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, nib.load(str(path)).affine)
    original = nib.load(str(path)).header
    for field in ("dim", "pixdim", "qform_code", "sform_code", "srow_x", "srow_y", "srow_z",
                  "quatern_b", "quatern_c", "quatern_d", "xyzt_units", "datatype", "bitpix"):
        np.testing.assert_array_equal(back.header[field], original[field], err_msg=field)


def test_like_rounds_and_clips_to_source_dtype(nifti_int16, tmp_path):
    path, _ = nifti_int16
    vol = dp.read_volume(path)
    new = np.zeros(vol.shape, np.float32)
    new[0, 0, 0], new[0, 0, 1], new[0, 0, 2], new[0, 0, 3] = 3.6, -2.5, 1e6, -1e6
    out = dp.write_volume(new, tmp_path / "den.nii.gz", like=vol)
    back = dp.read_volume(out)
    assert back.meta["dtype"] == "int16"
    np.testing.assert_array_equal(back.array[0, 0, :4], [4.0, -2.0, 32767.0, -32768.0])
    np.testing.assert_allclose(back.meta["affine"], vol.meta["affine"])


def test_float_output_dtype(nifti_int16, tmp_path):
    path, _ = nifti_int16
    vol = dp.read_volume(path)
    out = dp.write_volume(vol.array / 7.0, tmp_path / "f.nii.gz", like=vol, dtype="float32")
    back = dp.read_volume(out)
    assert back.meta["dtype"] == "float32"
    np.testing.assert_array_equal(back.array, (vol.array / 7.0).astype(np.float32))


def test_scaled_int16_rewritten_within_slope(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) * 100
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(0.25, 10.0)
    path = tmp_path / "scaled.nii"
    image.to_filename(str(path))
    vol = dp.read_volume(path)
    np.testing.assert_allclose(vol.array, data.transpose(2, 1, 0) * 0.25 + 10.0)
    assert vol.meta["scaling"] == (0.25, 10.0)
    values = vol.array * 3.3 - 5.0
    back = dp.read_volume(dp.write_volume(values, tmp_path / "out.nii", like=vol))
    assert back.meta["dtype"] == "int16"
    slope = back.meta["scaling"][0]
    assert np.abs(back.array - values).max() <= slope / 2 + 1e-4


def test_4d_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 4, 3, 2)).astype(np.float32)
    path = tmp_path / "f4d.nii.gz"
    nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])).to_filename(str(path))
    vol = dp.read_volume(path)
    assert vol.shape == (3, 4, 5, 2)
    np.testing.assert_array_equal(vol.array[..., 1], data[..., 1].transpose(2, 1, 0))
    assert vol.spacing == (3.0, 2.0, 1.0)
    back = nib.load(str(dp.write_volume(vol, tmp_path / "b.nii.gz")))
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float32), data)


def test_plain_array_gets_spacing_affine(tmp_path):
    vol = dp.Volume(np.ones((3, 4, 5), np.float32), spacing=(2.0, 0.5, 0.25))
    back = dp.read_volume(dp.write_volume(vol, tmp_path / "p.nii.gz"))
    np.testing.assert_allclose(back.meta["affine"], np.diag([0.25, 0.5, 2.0, 1.0]))
    assert back.spacing == (2.0, 0.5, 0.25)
    assert back.meta["dtype"] == "float32"
