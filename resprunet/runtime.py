"""What machine this is, and the TensorFlow/Keras settings that make it fast.

:func:`cpu_info` names the CPU (the benchmarks print it beside every time). The training run
chooses its settings from the machine with :func:`resolve_precision` and
:func:`resolve_jit_compile`, and logs them with :func:`runtime_summary`. oneDNN is switched on
by :mod:`data_pipelines.tf_env` when the package is imported.

Measurements behind the choices: one training step of a 3D U-Net (16 filters, depth 3, batch 2
of 16 x 64 x 64 voxels, Adam, MSE), ms per step, TensorFlow 2.21, Keras 3.15, on a 2-core AMD
EPYC (Zen 3, family 25 model 1: AVX2 and FMA, no AVX-512, no bfloat16), shared with other jobs
(load 1-4, so single numbers vary ~2x):

==========================================  ==============
setting                                     ms / step
==========================================  ==============
oneDNN off (TF 2.21 default on this CPU)    6829
oneDNN on, float32, no XLA                  560 - 1347
oneDNN on, ``jit_compile=True`` (XLA)       7728
oneDNN on, ``mixed_bfloat16``               21637
==========================================  ==============

- **XLA** (Keras' ``jit_compile="auto"`` compiles with it) bypasses oneDNN: 8x slower here,
  20x on a 2-core Intel Xeon. So ``"auto"`` means no XLA on a CPU, XLA on a GPU.
- **bfloat16** on a CPU without native bf16 (AVX512_BF16 or AMX) is emulated: 16-40x slower
  here, and slower on the Xeon too, silently. With native bf16 (AMD Zen 4, family 25 model
  17) a 3D U-Net step (batch 8 of 8 x 64 x 64) took ~280 ms against ~440 ms in float32 in a
  3-epoch trial (not a benchmark run), but the result is **wrong**: against float32 on the same weights and
  batch, the gradients of every convolution bias are 70-99 % off (2D and 3D; the sums over
  the batch and voxels are accumulated in bfloat16) and a 3D kernel gradient came out NaN; a
  residual 3D U-Net stayed at its input (loss flat for 3 epochs) where float32 learned. So
  ``"auto"`` picks float32 on every CPU; mixed bfloat16 on GPUs of compute capability 8 or
  more, mixed float16 (with loss scaling) on 7.x (V100, T4), which lacks bf16.
- **float16** on a CPU: TensorFlow has no float16 CPU kernel for ``MaxPool3D``, so a 3D
  U-Net under ``mixed_float16`` fails on the first step; ``"auto"`` never picks it on a CPU.
- **Threads**: TensorFlow's defaults (intra-op and inter-op pools sized by the CPU count)
  against ``tf.config.threading`` intra = 2 (the cores) with inter = 1 or 2, and 1/1,
  interleaved, 6-8 steps each: 560-1347 ms (defaults), 1212-3415 (2/1), 639-1371 (2/2),
  1089-1707 (1/1). No setting was measurably faster than the defaults, so none is set
  (no ``configure_threads``); TensorFlow's defaults are kept.
"""
from __future__ import annotations

import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

__all__ = [
    "CPU_FLAGS_OF_INTEREST", "PRECISIONS", "cpu_info", "gpu_info", "precision_policy", "resolve_precision",
    "resolve_jit_compile", "runtime_summary",
]

log = logging.getLogger(__name__)

#: Keras dtype policies a run may ask for; ``"auto"`` lets :func:`resolve_precision` choose.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

#: CPU flags that decide fast paths: AVX-512, VNNI (int8), native bfloat16 (AVX-512 / AMX).
CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """The CPU as Linux reports it.

    Returns
    -------
    dict
        ``model`` (model name from ``/proc/cpuinfo``, else ``platform.processor()``),
        ``cores`` (CPUs this process may use), ``flags`` (the :data:`CPU_FLAGS_OF_INTEREST`
        present), ``native_bfloat16`` (AVX512_BF16 or AMX-BF16 present).
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                if model and flags and key == "":
                    break
    except OSError:
        pass
    present = [f for f in CPU_FLAGS_OF_INTEREST if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {
        "model": model,
        "cores": cores,
        "flags": present,
        "native_bfloat16": "avx512_bf16" in flags or "amx_bf16" in flags,
    }


def gpu_info() -> list[dict[str, Any]]:
    """The GPUs TensorFlow sees.

    Returns
    -------
    list of dict
        One dict per GPU: ``name`` (e.g. ``"NVIDIA H200"``, else TensorFlow's device name)
        and ``compute_capability`` (``(major, minor)``, or None when TensorFlow does not say).
        Empty on a machine without a usable GPU.
    """
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        capability = details.get("compute_capability")
        gpus.append({
            "name": details.get("device_name", device.name),
            "compute_capability": tuple(capability) if capability else None,
        })
    return gpus


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not known; expected one of {list(PRECISIONS)}")


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy to train with.

    Parameters
    ----------
    precision : {"auto", "float32", "mixed_bfloat16", "mixed_float16"}
        ``"auto"`` chooses by the hardware: on a GPU (the lowest compute capability if there
        are several) ``"mixed_float16"`` for 7.x, ``"mixed_bfloat16"`` for 8.0 or more,
        ``"float32"`` for older or unknown; on a CPU always ``"float32"``: TensorFlow's CPU
        gradients under ``mixed_bfloat16`` are wrong (see the module notes). Other values
        are returned as given; ``"mixed_bfloat16"`` asked for on a CPU logs a warning (wrong
        gradients; without native bfloat16 also 16-40x slower), and so does
        ``"mixed_float16"`` on a CPU.

    Returns
    -------
    str
        ``"float32"``, ``"mixed_bfloat16"`` or ``"mixed_float16"``.

    Raises
    ------
    ValueError
        ``precision`` is not one of the four values.
    """
    _check_precision(precision)
    gpus = gpu_info() if precision != "float32" else []
    if precision == "auto":
        if gpus:
            capabilities = [g["compute_capability"] for g in gpus]
            if any(c is None for c in capabilities):
                return "float32"
            major = min(capabilities)[0]
            if major >= 8:
                return "mixed_bfloat16"
            return "mixed_float16" if major == 7 else "float32"
        return "float32"
    if precision == "mixed_bfloat16" and not gpus:
        slow = "" if cpu_info()["native_bfloat16"] else (
            "; without native bfloat16 (no AVX512_BF16 or AMX-BF16) it is also emulated, 16-40x slower")
        log.warning(
            "precision mixed_bfloat16 on a CPU (%s): TensorFlow's CPU gradients are wrong under it "
            "(convolution bias gradients 70-99 %% off, NaN in 3D kernel gradients; a 3D U-Net did not "
            "learn)%s; use precision auto or float32",
            cpu_info()["model"], slow,
        )
    if precision == "mixed_float16" and not gpus:
        log.warning(
            "precision mixed_float16 on a CPU (%s): TensorFlow has few float16 CPU kernels "
            "(3D max pooling has none, so 3D U-Nets fail); use precision auto or float32",
            cpu_info()["model"],
        )
    return precision


@contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Set the Keras dtype policy (``"float32"``, ``"mixed_bfloat16"``, ``"mixed_float16"``)
    for the block, restoring the previous one afterwards (imports Keras, not TensorFlow)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def resolve_jit_compile(jit_compile: bool | str) -> bool:
    """Whether ``model.compile`` should compile with XLA.

    Parameters
    ----------
    jit_compile : bool or "auto"
        ``"auto"``: True on a GPU, False on a CPU (XLA bypasses the oneDNN kernels: 8-20x
        slower per step, see the module notes). Booleans are returned as given.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        Neither a bool nor ``"auto"``.
    """
    if isinstance(jit_compile, bool):
        return jit_compile
    if jit_compile != "auto":
        raise ValueError(f"jit_compile={jit_compile!r} is not known; expected 'auto', True or False")
    return bool(gpu_info())


def runtime_summary(precision: str, jit_compile: bool) -> str:
    """One line naming the hardware and the settings a run uses, for its log.

    Parameters
    ----------
    precision : str
        The Keras dtype policy in use (as :func:`resolve_precision` returns it).
    jit_compile : bool
        Whether the model is compiled with XLA.

    Returns
    -------
    str
        E.g. ``"CPU AMD EPYC (2 cores; avx2 fma; no native bf16) | oneDNN on (set by
        resprunet) | XLA off | precision float32 | Keras backend tensorflow | TensorFlow
        2.21.0"``; with GPUs, ``"GPU 1x NVIDIA H200 (compute 9.0) | CPU ..."``.
    """
    import keras
    import tensorflow as tf

    from data_pipelines.tf_env import onednn_state

    cpu = cpu_info()
    parts = []
    gpus = gpu_info()
    if gpus:
        names: dict[str, int] = {}
        for g in gpus:
            cc = g["compute_capability"]
            label = g["name"] + (f" (compute {cc[0]}.{cc[1]})" if cc else "")
            names[label] = names.get(label, 0) + 1
        parts.append("GPU " + ", ".join(f"{n}x {label}" for label, n in names.items()))
    flags = " ".join(cpu["flags"]) or "no AVX2"
    bf16 = "native bf16" if cpu["native_bfloat16"] else "no native bf16"
    parts.append(f"CPU {cpu['model']} ({cpu['cores']} cores; {flags}; {bf16})")
    state = onednn_state()
    onednn = {True: "on", False: "off", None: "TensorFlow default"}[state["enabled"]]
    who = "set by the user" if state["user_set"] else "set by resprunet"
    if state["tf_imported_before"] and not state["user_set"]:
        who = "TensorFlow imported before resprunet could set it"
    parts += [
        f"oneDNN {onednn} ({who}: TF_ENABLE_ONEDNN_OPTS={state['value']})",
        f"XLA {'on' if jit_compile else 'off'}",
        f"precision {precision}",
        f"Keras backend {keras.backend.backend()}",
        f"TensorFlow {tf.__version__}",
    ]
    return " | ".join(parts)
