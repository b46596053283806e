"""Subprocess tests: a killed run resumes from its last completed epoch; two localhost workers
under MultiWorkerMirroredStrategy end with identical weights and a falling loss."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "train_3d.py"
HARD_TIMEOUT = 180  # seconds; a stuck worker is killed

# a tiny 3D U-Net on small patches: seconds per epoch on 2 CPU cores
TINY = [
    "model.filters=4", "model.depth=1", "model.batch_norm=false",
    "data.patch_shape=[12, 24, 24]", "data.val_patch_shape=[12, 24, 24]",
    "data.batch_size=2", "data.val_patches=2", "data.foreground=0.3",
    "callbacks.image_panel=false", "callbacks.histogram_freq=0",
    "optimizer.learning_rate=3e-3",
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
        TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", PYTHONUNBUFFERED="1", **extra,
    )
    return env


def _args(root: Path, *overrides: str) -> list[str]:
    sets = [f"--set={o}" for o in (*TINY, f"run.root={root}", *overrides)]
    return [sys.executable, str(SCRIPT), *sets]


def _epochs(csv_path: Path) -> list[int]:
    with csv_path.open(newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _column(csv_path: Path, key: str) -> list[float]:
    with csv_path.open(newline="") as f:
        return [float(row[key]) for row in csv.DictReader(f)]


def test_killed_run_resumes_from_last_completed_epoch(tmp_path):
    epochs = 6
    first = subprocess.Popen(
        _args(tmp_path, f"epochs={epochs}", "data.patches_per_epoch=8"),
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + HARD_TIMEOUT
    metadata = None
    try:
        while time.monotonic() < deadline and first.poll() is None:
            found = list(tmp_path.glob("unet_3d/*/backup/training_metadata.json"))
            if found:
                try:
                    if json.loads(found[0].read_text())["epoch"] >= 2:
                        metadata = found[0]
                        break
                except (ValueError, KeyError):
                    pass  # being written
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        output = first.communicate()[0]
    assert metadata is not None, f"no backup after the 2nd epoch; output:\n{output[-3000:]}"
    completed = json.loads(metadata.read_text())["epoch"]  # epochs 0 .. completed-1 are done
    assert 2 <= completed < epochs, output[-3000:]
    run_dir = metadata.parent.parent

    second = subprocess.run(
        [sys.executable, str(SCRIPT), "--resume", str(run_dir)],
        env=_env(), capture_output=True, text=True, timeout=HARD_TIMEOUT,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    started = [int(m) for m in re.findall(r"Epoch (\d+)/%d" % epochs, second.stdout)]
    assert started[0] == completed + 1  # Keras counts from 1: it resumed at epoch `completed`
    assert started[-1] == epochs
    logged = _epochs(run_dir / "metrics.csv")
    assert sorted(set(logged)) == list(range(epochs))  # every epoch logged, none skipped
    assert logged[-(epochs - completed):] == list(range(completed, epochs))
    assert len(logged) <= epochs + 1  # at most the killed epoch's row is repeated
    # the optimizer state came back too: the cosine learning rate keeps falling, no restart
    rates = dict(zip(logged, _column(run_dir / "metrics.csv", "learning_rate")))
    assert all(rates[e + 1] < rates[e] for e in range(epochs - 1)), rates
    assert (run_dir / "model.keras").is_file() and (run_dir / "final_metrics.json").is_file()
    assert not (run_dir / "backup").exists()  # removed once the run completed


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_train_to_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                _args(tmp_path / f"worker{index}", "epochs=3", "data.patches_per_epoch=8",
                      "data.batch_size=4", "model.residual=false", "model.batch_norm=true",
                      "strategy=multiworker"),
                env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    deadline = time.monotonic() + HARD_TIMEOUT
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("multi-worker training did not finish within the hard timeout")
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]
    run_dirs = [next((tmp_path / f"worker{i}" / "unet_3d").iterdir()) for i in range(2)]
    weights = [np.load(d / "weights.npz") for d in run_dirs]
    assert sorted(weights[0].files) == sorted(weights[1].files) and len(weights[0].files) > 0
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
    losses = [_column(d / "metrics.csv", "loss") for d in run_dirs]
    assert losses[0] == losses[1]  # the reduced loss is the same on both workers
    assert losses[0][-1] < 0.7 * losses[0][0]  # from output ~0 towards the clean image
    assert (run_dirs[0] / "model.keras").is_file()  # the chief saves the model
    assert not (run_dirs[1] / "model.keras").exists()
