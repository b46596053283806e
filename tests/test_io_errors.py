"""Bad input files: each raises a specific error naming the file and what was expected."""
from __future__ import annotations

import gzip

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile

import data_pipelines as dp
from data_pipelines.errors import (
    InvalidDataError,
    OutputExistsError,
    UnsupportedFormatError,
    VolumeReadError,
    VolumeWriteError,
)
from data_pipelines.io import VolumeNotFoundError


def _nifti(path, data):
    nib.Nifti1Image(data, np.eye(4)).to_filename(str(path))
    return path


def test_unknown_suffix_lists_supported(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"12345")
    with pytest.raises(UnsupportedFormatError, match=r"scan\.xyz.*'\.xyz'.*\.nii\.gz.*\.dcm.*\.h5"):
        dp.read_volume(path)
    with pytest.raises(UnsupportedFormatError, match=r"out\.jpg"):
        dp.write_volume(np.zeros((1, 2, 2)), tmp_path / "out.jpg")


def test_missing_path(tmp_path):
    with pytest.raises(VolumeNotFoundError, match="missing.nii"):
        dp.read_volume(tmp_path / "missing.nii")
    with pytest.raises(FileNotFoundError):
        dp.read_volume(tmp_path / "missing.nii")


def test_empty_and_unusable_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeReadError, match="empty.*empty folder"):
        dp.read_volume(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(UnsupportedFormatError, match="neither DICOM nor PNG"):
        dp.read_volume(tmp_path / "notes")


def test_truncated_and_corrupt_nifti(tmp_path):
    data = np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32)
    raw = (_nifti(tmp_path / "full.nii.gz", data)).read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeReadError, match="cut.nii.gz.*NIfTI"):
        dp.read_volume(cut)
    plain = gzip.decompress(raw)
    short = tmp_path / "short.nii"
    short.write_bytes(plain[: len(plain) // 2])
    with pytest.raises(VolumeReadError, match="short.nii"):
        dp.read_volume(short)
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not a nifti header" * 40)
    with pytest.raises(VolumeReadError, match="junk.nii"):
        dp.read_volume(junk)


@pytest.mark.parametrize("name", ["bad.tif", "bad.png", "bad.npz", "bad.npy", "bad.h5"])
def test_corrupt_files_of_each_format(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(VolumeReadError, match=name.replace(".", r"\.")):
        dp.read_volume(path)


def test_truncated_tiff_and_hdf5(tmp_path):
    data = np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64)
    tifffile.imwrite(tmp_path / "t.tif", data)
    raw = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t_cut.tif").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(VolumeReadError, match="t_cut.tif"):
        dp.read_volume(tmp_path / "t_cut.tif")
    with h5py.File(tmp_path / "h.h5", "w") as handle:
        handle["data"] = data
    raw = (tmp_path / "h.h5").read_bytes()
    (tmp_path / "h_cut.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(VolumeReadError, match="h_cut.h5"):
        dp.read_volume(tmp_path / "h_cut.h5")


def test_nonfinite_voxels_rejected_by_default(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, 0] = data[1, 1, 1] = np.nan
    data[2, 2, 2] = np.inf
    path = _nifti(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InvalidDataError, match=r"nan\.nii\.gz: 3 of 64 voxels are NaN/Inf"):
        dp.read_volume(path)
    vol = dp.read_volume(path, allow_nonfinite=True)
    assert int(np.isnan(vol.array).sum()) == 2 and int(np.isinf(vol.array).sum()) == 1


def test_wrong_dimensionality(tmp_path):
    np.save(tmp_path / "five.npy", np.zeros((2, 2, 2, 2, 2), np.float32))
    with pytest.raises(InvalidDataError, match=r"five\.npy.*\(2, 2, 2, 2, 2\)"):
        dp.read_volume(tmp_path / "five.npy")
    np.save(tmp_path / "line.npy", np.zeros(5, np.float32))
    with pytest.raises(InvalidDataError, match="line.npy"):
        dp.read_volume(tmp_path / "line.npy")
    with pytest.raises(VolumeWriteError, match=r"\(5,\)"):
        dp.write_volume(np.zeros(5), tmp_path / "x.npy")


def test_options_that_do_not_apply(tmp_path):
    path = _nifti(tmp_path / "a.nii", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(VolumeReadError, match="key='x' applies to NPZ/HDF5"):
        dp.read_volume(path, key="x")
    with pytest.raises(VolumeReadError, match="series="):
        dp.read_volume(path, series="1.2.3")


def test_write_refuses_existing_and_missing_parent(tmp_path):
    path = _nifti(tmp_path / "keep.nii", np.ones((2, 2, 2), np.float32))
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="keep.nii.*force=True"):
        dp.write_volume(np.zeros((2, 2, 2)), path)
    assert path.read_bytes() == before
    with pytest.raises(VolumeWriteError, match="does not exist"):
        dp.write_volume(np.zeros((2, 2, 2)), tmp_path / "no" / "x.nii")
    with pytest.raises(VolumeWriteError, match="unknown dtype"):
        dp.write_volume(np.zeros((2, 2, 2)), tmp_path / "y.nii", dtype="banana")
