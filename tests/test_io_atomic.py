"""Atomic writes: nothing half-written is ever left, existing outputs need force."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import data_pipelines as dp
from data_pipelines import io as dio
from data_pipelines.errors import OutputExistsError, VolumeWriteError
from data_pipelines.io import atomic_path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith("out.bin") and tmp != target
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    assert _leftovers(tmp_path) == []


def test_atomic_path_failure_keeps_old_output(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target, force=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_refuses_existing_without_force(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="out.bin"):
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"old"


def test_atomic_directory_replaces_whole_folder(tmp_path):
    target = tmp_path / "series"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_path(target, force=True, directory=True) as tmp:
        assert tmp.is_dir()
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _leftovers(tmp_path) == []


def test_atomic_path_missing_parent(tmp_path):
    with pytest.raises(VolumeWriteError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "out.bin"):
            pass


def test_body_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(VolumeWriteError, match="no output"):
        with atomic_path(tmp_path / "out.bin"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    def half_then_fail(array, path, **kwargs):
        path.write_bytes(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(dio, "write_npz", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        dp.write_volume(np.zeros((2, 3, 4), np.float32), tmp_path / "out.npz")
    assert list(tmp_path.iterdir()) == []


def test_nan_into_integer_format_writes_nothing(tmp_path):
    array = np.zeros((2, 4, 5), np.float32)
    array[1, 2, 3] = np.nan
    target = tmp_path / "out.nii.gz"
    with pytest.raises(VolumeWriteError, match="1 NaN/Inf"):
        dp.write_volume(array, target, dtype="int16")
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_and_returns_path(tmp_path):
    target = tmp_path / "out.npy"
    dp.write_volume(np.ones((1, 2, 2)), target)
    with pytest.raises(OutputExistsError):
        dp.write_volume(np.zeros((1, 2, 2)), target)
    assert dp.write_volume(np.full((1, 2, 2), 7.0), target, force=True) == target
    np.testing.assert_array_equal(np.load(target), np.full((1, 2, 2), 7.0, np.float32))
