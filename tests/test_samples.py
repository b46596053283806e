"""Embedded sample data: names, shapes, spacing, provenance, size budget."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import data_pipelines as dp
from data_pipelines.samples import UnknownSampleError, sample_path

REQUIRED = {"mni152_t1", "epi", "epi_4d", "ct_slices"}


def _dir() -> Path:
    return sample_path("mni152_t1").parent


def test_list_samples_has_required_names_and_descriptions():
    listing = dp.list_samples()
    assert REQUIRED <= set(listing)
    assert all(isinstance(text, str) and len(text) > 20 and "\n" not in text for text in listing.values())
    assert "2 subjects" in listing["ct_slices"]


def test_mni152_t1():
    vol = dp.sample("mni152_t1")
    assert vol.shape == (80, 96, 80) and vol.spacing == (2.0, 2.0, 2.0)
    assert all(s % 8 == 0 for s in vol.shape)
    assert vol.meta["dtype"] == "uint8" and 200 <= vol.array.max() <= 255
    # the brain reaches every side's margin but is not cut: the outer faces are background
    # (apart from the inferior face, where the template's brain stem leaves the field of view)
    assert vol.array[:, :, 0].max() == 0 and vol.array[:, :, -1].max() == 0
    assert vol.array[:, 0].max() == 0 and vol.array[:, -1].max() == 0 and vol.array[-1].max() == 0
    assert 0.25 < float((vol.array > 20).mean()) < 0.7
    affine = vol.meta["affine"]
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), 2.0)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    # the 2 mm voxel (k, j, i) averages 1 mm voxels around world point affine @ (i, j, k):
    # the centre of the grid lies inside the brain, near the MNI origin
    centre = affine @ np.array([40, 48, 40, 1.0])
    assert np.all(np.abs(centre[:3]) < 40) and vol.array[40, 48, 40] > 50


def test_epi_and_epi_4d():
    epi, epi4 = dp.sample("epi"), dp.sample("epi_4d")
    assert epi.shape == (24, 96, 128) and epi4.shape == (24, 96, 128, 2)
    np.testing.assert_allclose(epi.spacing, (2.2, 2.0, 2.0), rtol=1e-5)
    np.testing.assert_array_equal(epi.array, epi4.array[..., 0])
    assert epi.meta["dtype"] == "int16"
    assert not np.array_equal(epi4.array[..., 0], epi4.array[..., 1])
    # the two frames are the same anatomy: strongly correlated, yet noisy copies of each other
    r = np.corrcoef(epi4.array[..., 0].ravel(), epi4.array[..., 1].ravel())[0, 1]
    assert 0.9 < r < 1.0


def test_epi_is_writable_as_3d_nifti(tmp_path):
    epi = dp.sample("epi")
    back = dp.read_volume(dp.write_volume(epi, tmp_path / "epi.nii.gz"))
    assert back.shape == (24, 96, 128)
    np.testing.assert_array_equal(back.array, epi.array)
    np.testing.assert_allclose(back.meta["affine"], epi.meta["affine"])


def test_ct_slices_in_hu_with_subjects():
    vol = dp.sample("ct_slices")
    n = vol.shape[0]
    assert vol.shape == (3, 128, 128) and vol.spacing is None
    subject = vol.meta["subject"]
    assert subject.dtype.kind == "i" and subject.shape == (n,)
    assert list(subject) == [0, 1, 1] and len(set(subject.tolist())) >= 2
    assert vol.meta["pixel_spacing"].shape == (n, 2)
    assert vol.array.min() >= -1100 and vol.array.max() <= 3100
    for k in range(n):  # every slice has air or lung (< -700 HU) and soft tissue or bone (> -100 HU)
        plane = vol.array[k]
        assert (plane < -700).mean() > 0.04 and (plane > -100).mean() > 0.3
    assert len(vol.meta["subject_sources"]) == 2


def test_samples_are_distinct_volumes():
    mni, epi = dp.sample("mni152_t1"), dp.sample("epi")
    assert mni.shape != epi.shape and mni.source != epi.source


def test_files_small_documented_and_local():
    folder = _dir()
    files = [p for p in folder.iterdir() if p.suffix in (".gz", ".npz")]
    assert sum(p.stat().st_size for p in files) <= 5 * 1024 * 1024
    readme = (folder / "README.md").read_text()
    for p in files:
        assert p.name in readme
    for word in ("Licence", "MIT", "BSD", "Louis Collins", "nibabel", "pydicom-data", "CQ500"):
        assert word in readme, word
    for name in REQUIRED:
        assert sample_path(name).parent == folder and sample_path(name).is_file()


def test_samples_do_not_use_nilearn_at_run_time():
    code = ("import sys, data_pipelines as dp; dp.sample('mni152_t1'); dp.sample('ct_slices'); "
            "print('nilearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(dp.__file__).parent.parent)
    assert result.stdout.strip() == "False"


def test_unknown_sample():
    with pytest.raises(UnknownSampleError, match="no sample 'brain'.*mni152_t1"):
        dp.sample("brain")
