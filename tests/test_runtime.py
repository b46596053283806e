"""Hardware-aware settings: precision and XLA choice, oneDNN environment, throughput log."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from resprunet import models, runtime
from resprunet.training import TrainConfig
from resprunet.runtime import precision_policy
from resprunet.training.build import RUNTIME_LOG, start_runtime
from resprunet.training.callbacks import ThroughputLogger, format_duration

ROOT = Path(__file__).resolve().parents[1]
CPU_NO_BF16 = {"model": "Test CPU 1", "cores": 2, "flags": ["avx2", "fma"], "native_bfloat16": False}
CPU_BF16 = {"model": "Test CPU 2", "cores": 4, "flags": ["avx512f", "avx512_bf16"], "native_bfloat16": True}


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """``machine(cpu, gpus)``: make :mod:`resprunet.runtime` see this CPU and these GPUs."""
    def set_machine(cpu: dict, gpus: list[tuple[int, int] | None]) -> None:
        monkeypatch.setattr(runtime, "cpu_info", lambda: cpu)
        monkeypatch.setattr(runtime, "gpu_info", lambda: [
            {"name": f"Test GPU {i}", "compute_capability": cc} for i, cc in enumerate(gpus)])
    return set_machine


def test_auto_precision_on_any_cpu_is_float32(machine) -> None:
    # with native bf16 TensorFlow's CPU gradients are wrong under mixed_bfloat16 (see runtime)
    machine(CPU_NO_BF16, [])
    assert runtime.resolve_precision("auto") == "float32"
    machine(CPU_BF16, [])
    assert runtime.resolve_precision("auto") == "float32"


@pytest.mark.parametrize("capabilities, expected", [
    ([(7, 0)], "mixed_float16"),
    ([(7, 5)], "mixed_float16"),
    ([(8, 0)], "mixed_bfloat16"),
    ([(9, 0)], "mixed_bfloat16"),
    ([(8, 6), (7, 5)], "mixed_float16"),  # the weakest GPU decides
    ([(6, 1)], "float32"),
    ([None], "float32"),
])
def test_auto_precision_on_gpu_follows_compute_capability(machine, capabilities, expected) -> None:
    machine(CPU_NO_BF16, capabilities)  # the CPU does not matter when there is a GPU
    assert runtime.resolve_precision("auto") == expected


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_explicit_precision_passes_through(machine, precision) -> None:
    machine(CPU_BF16, [(8, 0)])
    assert runtime.resolve_precision(precision) == precision
    machine(CPU_NO_BF16, [])
    assert runtime.resolve_precision(precision) == precision


def test_explicit_bfloat16_on_a_cpu_warns_of_wrong_gradients(machine, caplog: pytest.LogCaptureFixture) -> None:
    machine(CPU_NO_BF16, [])
    with caplog.at_level(logging.WARNING, logger="resprunet.runtime"):
        assert runtime.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert any("wrong" in r.message and "slower" in r.message and "Test CPU 1" in r.message
               for r in caplog.records)
    caplog.clear()
    machine(CPU_BF16, [])
    with caplog.at_level(logging.WARNING, logger="resprunet.runtime"):
        runtime.resolve_precision("mixed_bfloat16")
    assert any("wrong" in r.message and "slower" not in r.message and "Test CPU 2" in r.message
               for r in caplog.records)
    caplog.clear()
    machine(CPU_BF16, [(8, 0)])  # on a GPU: no warning
    with caplog.at_level(logging.WARNING, logger="resprunet.runtime"):
        runtime.resolve_precision("mixed_bfloat16")
        runtime.resolve_precision("float32")
    assert not caplog.records


@pytest.mark.parametrize("bad", ["float16", "bfloat16", "", "AUTO"])
def test_unknown_precision_raises(bad) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        runtime.resolve_precision(bad)


def test_jit_compile_auto_is_off_on_cpu_on_on_gpu(machine) -> None:
    machine(CPU_NO_BF16, [])
    assert runtime.resolve_jit_compile("auto") is False
    machine(CPU_NO_BF16, [(8, 0)])
    assert runtime.resolve_jit_compile("auto") is True
    assert runtime.resolve_jit_compile(True) is True
    assert runtime.resolve_jit_compile(False) is False
    with pytest.raises(ValueError, match="jit_compile"):
        runtime.resolve_jit_compile("yes")


def test_runtime_summary_names_the_cpu_and_settings() -> None:
    line = runtime.runtime_summary("float32", False)
    assert runtime.cpu_info()["model"] in line
    assert f"{runtime.cpu_info()['cores']} cores" in line
    for part in ("oneDNN", "XLA off", "precision float32", "Keras backend tensorflow", "TensorFlow 2."):
        assert part in line
    assert "\n" not in line
    assert "XLA on" in runtime.runtime_summary("mixed_bfloat16", True)


def test_start_runtime_resolves_logs_and_records(machine, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    machine(CPU_NO_BF16, [])
    with caplog.at_level(logging.INFO, logger="resprunet.training.build"):
        assert start_runtime(TrainConfig(), tmp_path) == "float32"  # precision "auto"
        start_runtime(TrainConfig(), tmp_path)
    lines = (tmp_path / RUNTIME_LOG).read_text().splitlines()
    assert len(lines) == 2  # one per start (a resumed run adds one)
    assert "Test CPU 1" in lines[0] and "XLA off" in lines[0] and "precision float32" in lines[0]
    assert any(r.message.startswith("runtime: CPU Test CPU 1") for r in caplog.records)


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _env_without_onednn() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_tf_env_keeps_a_user_setting() -> None:
    code = ("import os; os.environ['TF_ENABLE_ONEDNN_OPTS'] = '0'; import data_pipelines; "
            "from data_pipelines.tf_env import onednn_state; s = onednn_state(); "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], s['user_set'], s['enabled'])")
    out = _run_python(code, _env_without_onednn())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "False"]


@pytest.mark.parametrize("package", ["data_pipelines", "resprunet"])
def test_tf_env_enables_onednn_when_unset(package) -> None:
    code = (f"import os, sys; import {package}; from data_pipelines.tf_env import onednn_state; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], onednn_state()['user_set'], "
            "'tensorflow' in sys.modules)")
    out = _run_python(code, _env_without_onednn())
    assert out.returncode == 0, out.stderr
    # set, not by the user, and TensorFlow is still not imported (so it will read the setting)
    assert out.stdout.split() == ["1", "False", "False"]


def test_tf_env_warns_when_tensorflow_came_first() -> None:
    code = ("import tensorflow, logging; logging.basicConfig(); import data_pipelines; "
            "from data_pipelines.tf_env import onednn_state; print(onednn_state()['enabled'])")
    out = _run_python(code, _env_without_onednn())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "None"  # TensorFlow's own default applies
    assert "cannot take effect" in out.stderr


def test_throughput_logger_logs_samples_per_second_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((24, 4), dtype=np.float32)
    logger = ThroughputLogger(batch_size=4, every_seconds=None, every_steps=2)
    with caplog.at_level(logging.INFO, logger="resprunet.training.callbacks"):
        model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0, callbacks=[logger])
    lines = [r.getMessage() for r in caplog.records if r.name == "resprunet.training.callbacks"]
    progress = [line for line in lines if line.startswith("step ")]
    # 2 epochs x 6 steps, a line every 2nd step after the first step: steps 2, 4, ..., 12
    assert [int(re.match(r"step (\d+)/12", line).group(1)) for line in progress] == [2, 4, 6, 8, 10, 12]
    assert "(epoch 2/2)" in progress[-1]
    for line in progress:
        rate = float(re.search(r"([\d.]+) samples/s", line).group(1))
        assert rate > 0
        assert "ETA" in line
    assert progress[-1].endswith("ETA 0 s")
    assert lines[-1].startswith("trained 12 steps:") and "samples/s" in lines[-1]


def test_format_duration() -> None:
    assert format_duration(42.4) == "42 s"
    assert format_duration(185) == "3 min 05 s"
    assert format_duration(3720) == "1 h 02 min"


def test_model_output_is_float32_under_mixed_precision() -> None:
    with precision_policy("mixed_bfloat16"):
        model = models.build("unet", 2, filters=4, depth=1)
        out = model(np.zeros((1, 8, 8, 1), np.float32))
    assert model.get_layer("output_conv").compute_dtype == "float32"
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
