"""DICOM: single file, multi-frame, series sorted by position, rescale, write-back as a new series."""
from __future__ import annotations

import copy
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

import data_pipelines as dp
from data_pipelines.errors import ShapeMismatchError, VolumeReadError, VolumeWriteError
from data_pipelines.io import dicom as dicom_io

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
# coronal slices: rows along +x, columns along -z, so the slice normal is +y
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]


def make_series(folder: Path, n: int = 5, step: float = 2.5, offset: int = 7,
                seed: int = 0, series_uid: str | None = None) -> np.ndarray:
    """Write an ``n``-slice coronal series built from CT_small; return the expected HU (z, y, x).

    Slice k (in position order) holds CT_small's stored values + ``offset * k``. File names
    are random and InstanceNumbers run against the positions, so only sorting by position
    along the normal gives the right order.
    """
    rng = np.random.default_rng(seed)
    source = pydicom.dcmread(CT_SMALL)
    stored = source.pixel_array.astype(np.int16)
    series_uid = series_uid or generate_uid()
    folder.mkdir(exist_ok=True)
    names = rng.permutation(n)
    for k in range(n):
        ds = copy.deepcopy(source)
        ds.ImageOrientationPatient = CORONAL
        ds.ImagePositionPatient = [-40.0, 12.0 + step * k, 30.0]
        ds.InstanceNumber = n - k
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = (stored + offset * k).astype(np.int16).tobytes()
        ds.save_as(folder / f"img_{names[k]:03d}_{rng.integers(1000)}.dcm")
    return np.stack([stored + offset * k for k in range(n)]).astype(np.float32) - 1024.0


def test_single_file_in_hu():
    vol = dp.read_volume(CT_SMALL)
    ds = pydicom.dcmread(CT_SMALL)
    assert vol.shape == (1, 128, 128)
    np.testing.assert_array_equal(vol.array[0], ds.pixel_array * 1.0 - 1024.0)
    assert vol.meta["dtype"] == "int16" and vol.meta["rescale"] == [(1.0, -1024.0)]
    np.testing.assert_allclose(vol.spacing, (5.0, 0.661468, 0.661468))
    assert "PixelData" not in vol.meta["datasets"][0]
    assert vol.meta["datasets"][0].PatientID == ds.PatientID


def test_multiframe_enhanced_ct_sorted_by_position():
    path = get_testdata_file("eCT_Supplemental.dcm")
    vol = dp.read_volume(path)
    assert vol.shape == (2, 512, 512)
    assert vol.meta["multiframe"] and vol.meta["frame_order"] == [1, 0]
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(vol.array, ds.pixel_array[[1, 0]] - 1024.0)  # functional-group rescale
    np.testing.assert_allclose(vol.spacing, (10.0, 0.388672, 0.388672))


def test_series_sorted_by_position_not_name_or_instance(tmp_path):
    expected = make_series(tmp_path / "series")
    vol = dp.read_volume(tmp_path / "series")
    assert vol.shape == (5, 128, 128)
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_allclose(vol.spacing, (2.5, 0.661468, 0.661468))
    assert [ds.InstanceNumber for ds in vol.meta["datasets"]] == [5, 4, 3, 2, 1]


def test_series_write_back_is_a_new_series(tmp_path):
    make_series(tmp_path / "series")
    vol = dp.read_volume(tmp_path / "series")
    out = dp.write_volume(vol.array + 100.0, tmp_path / "denoised", like=vol)
    files = sorted(out.iterdir())
    assert len(files) == 5
    back = dp.read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array + 100.0)  # fits with slope 1
    assert back.spacing == vol.spacing
    assert back.meta["dtype"] == "int16"
    assert back.meta["series_uid"] != vol.meta["series_uid"]
    new_sops = {ds.SOPInstanceUID for ds in back.meta["datasets"]}
    old_sops = {ds.SOPInstanceUID for ds in vol.meta["datasets"]}
    assert len(new_sops) == 5 and not new_sops & old_sops
    first = pydicom.dcmread(files[0])
    assert first.PatientID == vol.meta["datasets"][0].PatientID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_write_back_rescales_values_out_of_dtype_range(tmp_path):
    vol = dp.read_volume(CT_SMALL)
    values = vol.array * 40.0  # up to ~47 000, beyond int16
    back = dp.read_volume(dp.write_volume(values, tmp_path / "scaled.dcm", like=vol))
    slope, intercept = back.meta["rescale"][0]
    assert slope != 1.0
    assert np.abs(back.array - values).max() <= slope / 2 + 0.01  # rescale precision (+ float32)
    np.testing.assert_allclose(back.array.min(), values.min(), atol=slope)


def test_multiframe_write_back_keeps_frame_order(tmp_path):
    vol = dp.read_volume(get_testdata_file("eCT_Supplemental.dcm"))
    back = dp.read_volume(dp.write_volume(vol.array * 2.0, tmp_path / "mf.dcm", like=vol, dtype="int16"))
    assert back.meta["multiframe"] and back.meta["dtype"] == "int16"
    np.testing.assert_array_equal(back.array, vol.array * 2.0)
    assert back.spacing == vol.spacing
    with pytest.raises(VolumeWriteError, match="multi-frame"):
        dp.write_volume(vol, tmp_path / "folder_out")


def test_two_series_folder_names_both(tmp_path):
    uid_a, uid_b = generate_uid(), generate_uid()
    make_series(tmp_path / "mixed", n=3, series_uid=uid_a, seed=1)
    make_series(tmp_path / "other", n=2, series_uid=uid_b, seed=2, offset=3)
    for f in (tmp_path / "other").iterdir():
        f.rename(tmp_path / "mixed" / f"b_{f.name}")
    with pytest.raises(VolumeReadError) as info:
        dp.read_volume(tmp_path / "mixed")
    assert uid_a in str(info.value) and uid_b in str(info.value) and "series=" in str(info.value)
    assert dp.read_volume(tmp_path / "mixed", series=uid_b).shape == (2, 128, 128)
    assert dp.read_volume(tmp_path / "mixed", series=uid_a).shape == (3, 128, 128)


def test_duplicate_positions_rejected(tmp_path):
    make_series(tmp_path / "dup", n=2, step=0.0)
    with pytest.raises(VolumeReadError, match="share one position"):
        dp.read_volume(tmp_path / "dup")


def test_corrupt_and_truncated_dicom(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(VolumeReadError, match="garbage.dcm"):
        dp.read_volume(garbage)
    raw = Path(CT_SMALL).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeReadError, match="cut.dcm"):
        dp.read_volume(cut)


def test_write_needs_dicom_metadata_and_matching_shape(tmp_path):
    with pytest.raises(VolumeWriteError, match="like="):
        dp.write_volume(np.zeros((1, 4, 4)), tmp_path / "x.dcm")
    vol = dp.read_volume(MR_SMALL)
    with pytest.raises(ShapeMismatchError, match=r"\(1, 64, 64\)"):
        dp.write_volume(np.zeros((1, 32, 32)), tmp_path / "y.dcm", like=vol)
    with pytest.raises(VolumeWriteError, match="float32"):
        dp.write_volume(vol, tmp_path / "z.dcm", dtype="float32")
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_through_series_leaves_nothing(tmp_path, monkeypatch):
    make_series(tmp_path / "series", n=4)
    vol = dp.read_volume(tmp_path / "series")
    real_write = pydicom.dcmwrite
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(dicom_io.pydicom, "dcmwrite", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        dp.write_volume(vol, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_choose_rescale_fits_dtype():
    values = np.array([-5000.0, 0.0, 90000.0])
    slope, intercept = dicom_io.choose_rescale(values, "int16", (1.0, -1024.0))
    stored = (values - intercept) / slope
    assert stored.min() >= -32768.5 and stored.max() <= 32767.5
    assert dicom_io.choose_rescale(np.array([-1000.0, 2000.0]), "int16", (1.0, -1024.0)) == (1.0, -1024.0)


def test_non_image_dicom_in_folder_is_skipped(tmp_path):
    expected = make_series(tmp_path / "series", n=3)
    report = pydicom.dcmread(CT_SMALL)
    del report.PixelData
    report.save_as(tmp_path / "series" / "DICOMDIR")
    vol = dp.read_volume(tmp_path / "series")
    np.testing.assert_array_equal(vol.array, expected)
    with pytest.raises(VolumeReadError, match="no pixel data"):
        dp.read_volume(tmp_path / "series" / "DICOMDIR")


def test_dicom_to_nifti_keeps_patient_geometry(tmp_path):
    make_series(tmp_path / "series", n=4)
    vol = dp.read_volume(tmp_path / "series")
    assert vol.meta["slice_positions"] == [12.0, 14.5, 17.0, 19.5]
    image = nib.load(str(dp.write_volume(vol, tmp_path / "ct.nii.gz")))
    assert image.get_data_dtype() == np.int16
    i, j, k = 3, 5, 2  # column, row, slice
    lps = np.array([-40.0, 12.0, 30.0]) + i * 0.661468 * np.array([1, 0, 0]) \
        + j * 0.661468 * np.array([0, 0, -1]) + k * 2.5 * np.array([0, 1, 0])
    np.testing.assert_allclose((image.affine @ [i, j, k, 1])[:3], lps * [-1, -1, 1], atol=1e-4)
    np.testing.assert_array_equal(np.asarray(image.dataobj)[i, j, k], vol.array[k, j, i])
    assert nib.aff2axcodes(image.affine) == ("L", "I", "P")  # LPS +x, -z, +y
