"""Crafted files: HDF5 that points at other files or holds no numbers, headers that lie about
their size. Each is refused with one clear error before any voxel is read."""
from __future__ import annotations

import gzip
import time

import h5py
import nibabel as nib
import numpy as np
import pytest

import data_pipelines as dp
from data_pipelines import VolumeReadError
from data_pipelines.io.arrays import check_declared_size


def test_hdf5_external_raw_storage_cannot_expose_another_file(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 4)  # any local file
    path = tmp_path / "evil.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", shape=(4, 16, 16), dtype="uint8", external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
    with h5py.File(path, "r") as f:  # what the old reader returned: the secret's bytes as voxels
        assert f["img"][()].tobytes() == secret.read_bytes()
    with pytest.raises(VolumeReadError, match=r"evil.h5\[img\]: .*stored in other files"):
        dp.read_volume(path)


def test_hdf5_external_links_and_virtual_datasets_are_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.ones((4, 8, 8), np.float32)
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["own"] = np.zeros((4, 8, 8), np.float32)
        f["img"] = h5py.ExternalLink(str(other), "/data")
    with pytest.raises(VolumeReadError, match="external links .*img"):
        dp.read_volume(linked, key="own")
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(4, 8, 8), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(other), "data", shape=(4, 8, 8))
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("img", layout)
    with pytest.raises(VolumeReadError, match="virtual dataset"):
        dp.read_volume(virtual)


@pytest.mark.parametrize("kind", ["string", "object", "compound", "complex"])
def test_hdf5_datasets_that_are_not_real_numbers_are_refused(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w") as f:
        if kind == "string":
            f["img"] = np.array([b"abc", b"def"] * 8, dtype="S3").reshape(2, 2, 4)
        elif kind == "object":
            f.create_dataset("img", data=np.array(["a", "bc"] * 8, dtype=object).reshape(2, 2, 4),
                             dtype=h5py.string_dtype())
        elif kind == "compound":
            f["img"] = np.zeros((2, 2, 4), dtype=[("a", "f4"), ("b", "i2")])
        else:
            f["img"] = np.ones((2, 2, 4), np.complex64)
    with pytest.raises(VolumeReadError, match=r"\[img\]: dtype .* is not a real number type"):
        dp.read_volume(path)


def test_a_tiny_nifti_claiming_600_cubed_voxels_fails_at_once(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((600, 600, 600))
    header.set_data_dtype(np.int16)
    path = tmp_path / "liar.nii.gz"
    with gzip.open(path, "wb") as f:  # a header and 16 voxels: ~100 bytes claiming 432 MB
        f.write(header.binaryblock + b"\0" * 4 + np.zeros(16, np.int16).tobytes())
    assert path.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(VolumeReadError, match=r"liar.nii.gz: the header declares shape \(600, 600, 600\)"):
        dp.read_volume(path)
    assert time.perf_counter() - start < 1.0


def test_a_real_nifti_still_reads_and_a_huge_one_names_the_memory():
    vol = dp.sample("t1_head")  # a compressed NIfTI well within the limits
    assert vol.shape == (25, 41, 33)
    with pytest.raises(VolumeReadError, match=r"big.nii: shape \(4096, 4096, 4096\) needs 256.0 GiB as float32"):
        check_declared_size("big.nii", (4096, 4096, 4096), 2, None, compressed=False, memory=16 * 2**30)
    check_declared_size("ok.nii", (64, 64, 64), 2, 64**3 * 2, compressed=False, memory=16 * 2**30)
    with pytest.raises(VolumeReadError, match="truncated"):
        check_declared_size("short.nii", (64, 64, 64), 2, 1000, compressed=False, memory=16 * 2**30)


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nmodel: {filters: *i}\n"


def test_a_billion_laughs_config_is_refused_in_well_under_a_second(tmp_path):
    from resprunet import cli
    from resprunet.training import load_config
    from resprunet.training.config import ConfigError

    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    assert path.stat().st_size < 1024
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="laughs.yaml: more than 100,000 YAML nodes"):
        load_config(path)  # 9**9 lists of 'lol' once expanded
    assert time.perf_counter() - start < 1.0
    assert cli.main(["train", str(path)]) == 2
    assert not (tmp_path / "runs").exists()


def test_empty_and_python_tagged_configs_are_refused(tmp_path, capsys):
    from resprunet import cli
    from resprunet.training import load_config
    from resprunet.training.config import ConfigError

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match="empty.yaml: the file is empty"):
        load_config(empty)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    assert cli.main(["train", str(tagged)]) == 2
    err = capsys.readouterr().err
    assert "tagged.yaml: not safe YAML" in err and "Traceback" not in err and "pwned" not in err


SLOW_WRITER = """
import sys, time
from pathlib import Path
from resprunet.cli import sigterm_as_interrupt
from data_pipelines.io.atomic import atomic_path
out = Path(sys.argv[1])
try:
    with sigterm_as_interrupt(), atomic_path(out) as tmp:
        tmp.write_text("partial")
        print("writing", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_killed_writer_leaves_no_temporary_file(tmp_path, how):
    import signal
    import subprocess
    import sys

    from data_pipelines.io.atomic import atomic_path

    out = tmp_path / "out.txt"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".tmp-")
    proc.send_signal(getattr(signal, how))
    code = proc.wait(timeout=30)
    if how == "SIGTERM":  # handled like Ctrl-C: cleaned up on the way out
        assert code == 130 and list(tmp_path.iterdir()) == []
    else:  # no chance to clean up: the next writer in the folder removes the dead process's temporary
        assert code == -signal.SIGKILL and len(list(tmp_path.iterdir())) == 1
        with atomic_path(tmp_path / "next.txt") as tmp:
            tmp.write_text("ok")
        assert [p.name for p in tmp_path.iterdir()] == ["next.txt"]


def test_a_card_with_an_unknown_normalisation_kind_is_a_one_line_error(tmp_path, capsys):
    import yaml

    from resprunet import cli, models

    folder = tmp_path / "model"
    folder.mkdir()
    models.build("unet", ndim=2, filters=2, depth=1).save(folder / "model.keras")
    (folder / "card.yaml").write_text(yaml.safe_dump({"name": "bogus", "normalization": {"kind": "zscore"}}))
    np.save(tmp_path / "in.npy", np.zeros((1, 16, 16), np.float32))
    assert cli.main(["--quiet", "denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"),
                     "--model", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'bogus': normalization" in err and "zscore" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("model.filters=-4", "model.filters=-4 must be a whole number >= 1"),
    ("model.depth=0", "model.depth=0 must be a whole number >= 1"),
    ("model.name=../models/unet", "model.name='../models/unet' is not one of"),
])
def test_bad_model_settings_are_one_line_config_errors(tmp_path, capsys, override, message):
    from resprunet import cli

    config = tmp_path / "c.yaml"
    config.write_text(f"run: {{root: {tmp_path / 'runs'}}}\n")
    assert cli.main(["train", str(config), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def _read_only_folder(tmp_path):
    """A folder this process cannot create files in (root ignores permissions: use /sys)."""
    import os
    from pathlib import Path

    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    probe = Path("/sys") / "resprunet-probe"  # sysfs refuses new files, even to root
    try:
        probe.touch()
    except OSError:
        return probe.parent
    probe.unlink()
    pytest.skip("no folder on this machine refuses writes to this process")


@pytest.fixture
def denoise_case(tmp_path, monkeypatch):
    """A 3D input, a small model with its card, and a denoiser that must never be reached."""
    import keras
    import yaml

    import resprunet.inference
    from resprunet import models

    folder = tmp_path / "model"
    folder.mkdir()
    models.build("unet", ndim=3, filters=2, depth=1).save(folder / "model.keras")
    (folder / "card.yaml").write_text(yaml.safe_dump(
        {"name": "tiny", "normalization": dp.Normalizer.percentile(1, 99.8).to_dict()}))
    volume = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 8)).astype(np.float32),
                             np.eye(4)), volume)

    def never(*args, **kwargs):
        raise AssertionError("the denoiser ran before the error was found")

    monkeypatch.setattr(resprunet.inference, "denoise_array", never)
    keras.utils.set_random_seed(0)
    return tmp_path, volume, folder


def _bad_model(tmp_path, case):
    import keras

    if case == "not_a_zip":
        path = tmp_path / "notzip.keras"
        path.write_text("hello")
        return path
    folder = tmp_path / case
    folder.mkdir()
    name = "image" if case == "input_not_noisy" else "noisy"
    x = keras.Input((None, None, None, 1), name=name)
    keras.Model(x, keras.layers.Conv3D(1, 3, padding="same")(x)).save(folder / "model.keras")
    config = {"run_config_bogus_normalisation": "data:\n  normalize: {method: zscore}\n",
              "run_config_python_tag": "data: !!python/object/apply:os.system ['echo pwned']\n",
              "input_not_noisy": "data: {}\n"}[case]
    (folder / "config.yaml").write_text(config)
    return folder / "model.keras"


@pytest.mark.parametrize(("case", "message"), [
    ("not_a_zip", "notzip.keras: not a Keras .keras file (a .keras model is a zip archive)"),
    ("input_not_noisy", "has inputs ['image']; expected one named 'noisy'"),
    ("run_config_bogus_normalisation", "data.normalize.method='zscore' is not one of"),
    ("run_config_python_tag", "config.yaml: not safe YAML"),
])
def test_bad_model_files_are_one_line_errors(denoise_case, capsys, case, message):
    from resprunet import cli

    tmp_path, volume, _ = denoise_case
    model = _bad_model(tmp_path, case)
    out = tmp_path / "out.nii.gz"
    assert cli.main(["-q", "denoise", str(volume), str(out), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "pwned" not in err, err
    assert not out.exists()


@pytest.mark.parametrize(("case", "message"), [
    ("hdf5_strings", "[img]: dtype |S3 is not a real number type"),
    ("read_only_output", "cannot write in folder"),
    ("nifti_to_dicom", "DICOM is written only from a DICOM input"),
])
def test_bad_inputs_and_outputs_fail_before_the_computation(denoise_case, capsys, case, message):
    from resprunet import cli

    tmp_path, volume, model = denoise_case
    out = tmp_path / "out.nii.gz"
    if case == "hdf5_strings":
        volume = tmp_path / "strings.h5"
        with h5py.File(volume, "w") as f:
            f["img"] = np.array([b"abc", b"def"] * 8, dtype="S3").reshape(2, 2, 4)
    elif case == "read_only_output":
        out = _read_only_folder(tmp_path) / "out.nii.gz"
    else:
        out = tmp_path / "out.dcm"
    assert cli.main(["-q", "denoise", str(volume), str(out), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert str(out) in err or case == "hdf5_strings"  # the output is named, not a temporary
    assert ".tmp-" not in err and not out.exists()


def test_series_picks_one_of_several_dicom_series(tmp_path, capsys):
    import shutil

    from pydicom.data import get_testdata_file

    from resprunet import cli

    folder = tmp_path / "two_series"
    source = dp.read_volume(get_testdata_file("CT_small.dcm"))
    for offset, name in ((0.0, "a"), (100.0, "b")):
        dp.write_volume(source.array + offset, tmp_path / name, like=source)
        for f in (tmp_path / name).iterdir():
            folder.mkdir(exist_ok=True)
            shutil.copy(f, folder / f"{name}_{f.name}")
    uids = sorted({dp.read_volume(tmp_path / n).meta["series_uid"] for n in "ab"})
    out = tmp_path / "out.npy"
    argv = ["-q", "denoise", str(folder), str(out), "--model", "unet2d_ct"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "holds 2 DICOM series" in err and "--series UID" in err
    assert cli.main([*argv, "--series", uids[1]]) == 0
    picked = dp.read_volume(folder, series=uids[1]).array
    assert np.load(out).shape == picked.shape


def test_a_missing_bm_package_is_said_before_tensorflow_loads(tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "c.npy", np.zeros((4, 16, 16), np.float32))
    script = (
        "import sys; sys.modules['bm4d'] = None\n"  # as if bm4d were not installed
        "from resprunet import cli\n"
        f"code = cli.main(['-q', 'assess', '--clean', r'{tmp_path / 'c.npy'}', '--noisy', "
        f"r'{tmp_path / 'c.npy'}', '--method', 'bm4d', '--out', r'{tmp_path / 'report'}'])\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert 'pip install -e ".[bm]"' in done.stderr and "Traceback" not in done.stderr
