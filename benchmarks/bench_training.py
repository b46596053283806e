"""Training-step benchmark of one 3D U-Net across runtimes, in one run on one machine.

    python benchmarks/bench_training.py            # the full matrix (a few minutes on 2 cores)
    python benchmarks/bench_training.py --quick    # smoke run: tiny batch, one step per row

The model is ``resprunet.models.build("unet", 3, filters=16, depth=3, batch_norm=False)``
trained on a fixed random batch (default 4 x 16 x 64 x 64 voxels) with MSE and Adam; every
row times whole optimiser steps (``train_on_batch``: forward, loss, backward, update) after
``--warmup`` untimed steps (tracing, XLA compilation, allocation). Rows:

- Keras on TensorFlow with oneDNN on / off (``TF_ENABLE_ONEDNN_OPTS=1/0``, read once when
  TensorFlow is imported, so each setting runs in its own subprocess), XLA
  (``jit_compile``) off / on, precision ``float32`` / ``mixed_bfloat16``;
- Keras on the torch and jax backends (``pip install -e ".[bench]"``), each in a subprocess
  with ``KERAS_BACKEND`` set; skipped with the reason printed when the backend is missing.
  torch: ``jit_compile`` off (Keras' torch backend would mean ``torch.compile``); jax: always
  jitted (XLA), as Keras runs it;
- the same U-Net written in plain PyTorch (:func:`torch_unet`: same layers, filters, depth and
  parameter count, asserted), float32 and bfloat16 autocast.

On a CPU without native bfloat16 (no AVX512_BF16 / AMX-BF16), TensorFlow's oneDNN has no bf16
kernels and falls back to Eigen, and torch emulates bf16 (36 s, 103 s and 100 s per step for
Keras/TF, Keras/torch and PyTorch autocast on the 2-core AMD EPYC, against 1.3-2.7 s in
float32), so by default only the TensorFlow bf16 row with oneDNN on and XLA off runs there
(``--bf16 all`` measures every one; the skipped ones are listed).

Throughput is also given as achieved GFLOP/s against the cores' peak: FLOPs per sample are
counted from the conv layers' shapes (2 x multiply-adds of every Conv3D at its output
resolution; pooling, ReLU, upsampling, concatenation and the loss are left out, < 1 %), a
training step as 3 x the forward pass (forward, gradient w.r.t. inputs, gradient w.r.t.
weights); peak = cores x GHz x FLOPs/cycle, FLOPs/cycle from the CPU flags (fp32: AVX-512
with two FMA units 64, AVX2 + FMA 32, AVX 16, else 8), GHz from lscpu's "CPU max MHz" or, where
lscpu has none (virtual machines), the "cpu MHz" of /proc/cpuinfo. These assumptions are written
into the output.

Prints a table and writes ``benchmarks/results/bench_training_<cpu>_<date>.json``. Timings are
medians of the timed steps; the rows of one subprocess run one after the other, so compare
ratios within one run on a quiet machine (the load average before and after is recorded).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

BF16 = "mixed_bfloat16"
PRECISIONS = ("float32", BF16)
ROW_PREFIX = "ROW "
DEFAULT_ROW = {"runtime": "keras/tensorflow", "onednn": "1", "xla": False, "precision": "float32"}


# ----------------------------------------------------------------------------- machine


def cpu_peak() -> dict[str, Any]:
    """The CPU (``resprunet.runtime.cpu_info``) and its fp32 peak, with the assumptions."""
    from resprunet.runtime import cpu_info

    info = dict(cpu_info())
    flags = set()
    mhz, mhz_source = None, None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "CPU max MHz":
                mhz, mhz_source = float(value), "lscpu CPU max MHz"
            elif key.strip() == "Flags":
                flags = set(value.split())
    except OSError:
        pass
    if not flags or mhz is None:
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "flags" and not flags:
                    flags = set(value.split())
                elif key.strip() == "cpu MHz" and mhz is None:
                    mhz, mhz_source = float(value), "/proc/cpuinfo cpu MHz (lscpu has no max MHz)"
    if "avx512f" in flags:
        per_cycle, why = 64, "AVX-512 (16 fp32 lanes) x 2 FMA units x 2 FLOPs (assumes 2 FMA units)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, why = 32, "AVX2 (8 fp32 lanes) x 2 FMA units x 2 FLOPs"
    elif "avx" in flags:
        per_cycle, why = 16, "AVX (8 lanes), separate add and multiply"
    else:
        per_cycle, why = 8, "SSE (4 lanes), separate add and multiply"
    ghz = (mhz or 0.0) / 1000
    peak = info["cores"] * ghz * per_cycle
    return {
        **info, "ghz": round(ghz, 3), "ghz_source": mhz_source, "fp32_flops_per_cycle": per_cycle,
        "flops_per_cycle_assumption": why, "peak_gflops": round(peak, 1),
        "peak_formula": f"{info['cores']} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle (fp32)",
    }


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


def result_path(kind: str, cpu_model: str) -> Path:
    """``benchmarks/results/bench_<kind>_<cpu slug>_<YYYY-MM-DD>.json``."""
    return RESULTS / f"bench_{kind}_{slug(cpu_model)}_{_dt.date.today().isoformat()}.json"


def versions() -> dict[str, str]:
    """Installed versions, read without importing the frameworks."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "torch", "jax", "jaxlib", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


# ----------------------------------------------------------------------------- FLOPs


def keras_conv_flops(model: Any, spatial: tuple[int, ...]) -> float:
    """Forward FLOPs of one sample: 2 x multiply-adds of every conv layer at its output size.

    Output shapes come from ``compute_output_spec`` on a concrete ``(1, *spatial, c)`` input;
    a ConvND does ``out voxels x kernel volume x c_in x c_out`` MACs (a transposed conv the
    same per *input* voxel).
    """
    import math

    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D | keras.layers.Conv2D
                                                           | keras.layers.Conv3DTranspose
                                                           | keras.layers.Conv2DTranspose)]
    probe = keras.Model(model.inputs, [layer.output for layer in convs] + [layer.input for layer in convs])
    inputs = [keras.KerasTensor((1, *spatial, int(t.shape[-1]))) for t in model.inputs]
    specs = probe.compute_output_spec(inputs if len(inputs) > 1 else inputs[0])
    outs, ins = specs[: len(convs)], specs[len(convs):]
    total = 0
    for layer, out, inp in zip(convs, outs, ins):
        kernel = math.prod(layer.kernel_size)
        transpose = "Transpose" in type(layer).__name__
        voxels = math.prod((inp if transpose else out).shape[1:-1])
        total += voxels * kernel * int(inp.shape[-1]) * int(out.shape[-1])
    return 2.0 * total


def torch_conv_flops(net: Any, x: Any) -> float:
    """Forward FLOPs of one sample of the PyTorch twin, counted with forward hooks."""
    import math

    import torch

    total = [0]

    def hook(module: Any, args: Any, out: Any) -> None:
        cin = module.in_channels // module.groups
        total[0] += math.prod(out.shape[2:]) * math.prod(module.kernel_size) * cin * module.out_channels

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        net(x[:1])
    for h in handles:
        h.remove()
    return 2.0 * total[0]


# ----------------------------------------------------------------------------- timing


def time_steps(step: Callable[[], Any], warmup: int, steps: int, max_seconds: float) -> dict[str, Any]:
    """Run ``warmup`` untimed steps, then up to ``steps`` timed ones, stopping after the first
    timed step once the row has used ``max_seconds`` (warm-up included). Wall seconds."""
    start = time.perf_counter()
    first = None
    for i in range(warmup):
        t = time.perf_counter()
        step()
        if i == 0:
            first = time.perf_counter() - t
    times: list[float] = []
    cpu: list[float] = []
    while len(times) < steps:
        w, c = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        if time.perf_counter() - start > max_seconds:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "timed": len(times),
            "times_s": [round(t, 4) for t in times], "cpu_s_median": statistics.median(cpu),
            "first_step_s": first}


def set_threads(backend: str, threads: int) -> None:
    """Intra-op threads of the framework in this process (before it runs anything)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend in ("torch", "pytorch"):
        import torch

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- models


def build_keras_unet(filters: int, depth: int, precision: str = "float32") -> Any:
    """The benchmarked Keras 3D U-Net (no batch norm, global residual), seeded."""
    import keras

    from resprunet import models
    from resprunet.runtime import precision_policy

    keras.utils.set_random_seed(0)
    with precision_policy(precision):
        return models.build("unet", 3, filters=filters, depth=depth, batch_norm=False)


def torch_unet(filters: int, depth: int) -> Any:
    """The PyTorch twin of ``models.build("unet", 3, filters, depth, batch_norm=False)``.

    Same layers in the same order: per encoder level two 3x3x3 conv + ReLU units (kept as the
    skip), 2x max pooling; per coarser level a 3x3x3 unit of the level's width, a 3x3x3 unit to
    the finer width at the coarse resolution, 2x nearest upsampling, concatenation [skip, up];
    two 3x3x3 units of ``filters`` at full resolution; a 1x1x1 head; global residual. Its
    ``convs`` (then ``head``) are in the order of the Keras model's Conv3D layers, so weights
    can be copied one to one (:func:`copy_keras_weights`).
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    widths = [filters * 2**level for level in range(depth + 1)]

    class UNet3D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            convs: list[nn.Module] = []
            cin = 1
            for level in range(depth):
                convs += [nn.Conv3d(cin, widths[level], 3, padding=1),
                          nn.Conv3d(widths[level], widths[level], 3, padding=1)]
                cin = widths[level]
            for level in range(depth, 0, -1):
                convs += [nn.Conv3d(cin, widths[level], 3, padding=1),
                          nn.Conv3d(widths[level], widths[level - 1], 3, padding=1)]
                cin = 2 * widths[level - 1]
            convs += [nn.Conv3d(cin, widths[0], 3, padding=1), nn.Conv3d(widths[0], widths[0], 3, padding=1)]
            self.convs = nn.ModuleList(convs)
            self.head = nn.Conv3d(widths[0], 1, 1)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            it = iter(self.convs)
            x, skips = inp, []
            for _ in range(depth):
                x = F.relu(next(it)(x))
                x = F.relu(next(it)(x))
                skips.append(x)
                x = F.max_pool3d(x, 2)
            for level in range(depth, 0, -1):
                x = F.relu(next(it)(x))
                x = F.interpolate(F.relu(next(it)(x)), scale_factor=2, mode="nearest")
                x = torch.cat([skips[level - 1], x], dim=1)
            x = F.relu(next(it)(x))
            x = F.relu(next(it)(x))
            return inp + self.head(x).float()

    return UNet3D()


def copy_keras_weights(keras_model: Any, net: Any) -> None:
    """Copy the Keras U-Net's Conv3D kernels and biases into the PyTorch twin."""
    import keras
    import numpy as np
    import torch

    kconvs = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.Conv3D)]
    tconvs = [*net.convs, net.head]
    if len(kconvs) != len(tconvs):
        raise RuntimeError(f"Keras model has {len(kconvs)} Conv3D layers; the PyTorch twin {len(tconvs)}")
    with torch.no_grad():
        for k, t in zip(kconvs, tconvs):
            kernel, bias = (np.asarray(w, dtype=np.float32) for w in k.get_weights())
            t.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
            t.bias.copy_(torch.from_numpy(bias))


# ----------------------------------------------------------------------------- child


def child_keras(cfg: dict[str, Any], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Rows of one Keras backend (this process's ``KERAS_BACKEND``)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    set_threads(backend, args.threads)
    rng = np.random.default_rng(0)
    shape = (args.batch, *args.shape, 1)
    clean = rng.random(shape, dtype=np.float32)
    noisy = clean + rng.normal(0.0, 0.1, shape).astype(np.float32)
    for xla, precision in cfg["rows"]:
        model = build_keras_unet(args.filters, args.depth, precision)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=xla)
        flops = keras_conv_flops(model, tuple(args.shape))
        timing = time_steps(lambda: model.train_on_batch(noisy, clean), args.warmup, args.steps,
                            args.max_seconds)
        yield {"xla": xla, "precision": precision, "params": model.count_params(),
               "forward_flops_per_sample": flops, **timing}


def child_pytorch(cfg: dict[str, Any], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Rows of the plain PyTorch twin: float32 and bfloat16 autocast."""
    import torch

    set_threads("pytorch", args.threads)
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand((args.batch, 1, *args.shape), generator=gen)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=gen)
    keras_params = build_keras_unet(args.filters, args.depth).count_params()
    for _, precision in cfg["rows"]:
        torch.manual_seed(0)
        net = torch_unet(args.filters, args.depth)
        params = sum(p.numel() for p in net.parameters())
        if params != keras_params:
            raise RuntimeError(f"PyTorch U-Net has {params} parameters, the Keras one {keras_params}")
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        dtype = torch.bfloat16 if precision == BF16 else None

        def step(net: Any = net, optimizer: Any = optimizer, dtype: Any = dtype) -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = torch.mean((net(noisy) - clean) ** 2)
            loss.backward()
            optimizer.step()

        flops = torch_conv_flops(net, noisy)
        timing = time_steps(step, args.warmup, args.steps, args.max_seconds)
        yield {"xla": False, "precision": "bfloat16_autocast" if dtype else "float32",
               "params": params, "forward_flops_per_sample": flops, "threads": torch.get_num_threads(),
               **timing}


def run_child(args: argparse.Namespace) -> int:
    cfg = json.loads(args.child)
    rows = child_pytorch(cfg, args) if cfg["kind"] == "pytorch" else child_keras(cfg, args)
    for row in rows:
        print(ROW_PREFIX + json.dumps(row), flush=True)
    return 0


# ----------------------------------------------------------------------------- parent


def configurations(native_bf16: bool, bf16: str, xla: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """Subprocess configurations (id, kind, env, rows of (xla, precision)) and skip notes.

    ``xla=False`` leaves out TensorFlow's XLA rows (``--quick``: their compilation dominates).
    """
    configs = []
    notes: list[str] = []
    measure_bf16 = {"all": lambda c, x: True, "none": lambda c, x: False,
                    # without native bf16 a bf16 step takes 36-100 s here (TF falls back to Eigen,
                    # torch emulates): only the row resprunet could pick (TF, oneDNN on, XLA off)
                    "some": lambda c, x: c == "tf-onednn1" and not x}
    choice = "all" if bf16 == "auto" and native_bf16 else ("some" if bf16 == "auto" else bf16)
    keep = measure_bf16[choice]

    def rows(cid: str, xlas: tuple[bool, ...]) -> list[tuple[bool, str]]:
        out = []
        for precision in PRECISIONS:
            for xla in xlas:
                if precision == BF16 and not keep(cid, xla):
                    notes.append(f"{cid} xla={'on' if xla else 'off'} {precision}: not measured "
                                 f"(--bf16 {choice}" + ("; no native bfloat16 on this CPU" if not native_bf16 else "")
                                 + ")")
                    continue
                out.append((xla, precision))
        return out

    for onednn in ("1", "0"):
        cid = f"tf-onednn{onednn}"
        configs.append({"id": cid, "kind": "keras", "runtime": "keras/tensorflow", "onednn": onednn,
                        "env": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": onednn},
                        "rows": rows(cid, (False, True) if xla else (False,))})
    configs.append({"id": "keras-torch", "kind": "keras", "runtime": "keras/torch", "onednn": None,
                    "env": {"KERAS_BACKEND": "torch"}, "needs": ["torch"], "rows": rows("keras-torch", (False,))})
    configs.append({"id": "keras-jax", "kind": "keras", "runtime": "keras/jax", "onednn": None,
                    "env": {"KERAS_BACKEND": "jax"}, "needs": ["jax"], "rows": rows("keras-jax", (True,))})
    configs.append({"id": "pytorch", "kind": "pytorch", "runtime": "pytorch", "onednn": None,
                    "env": {"KERAS_BACKEND": "torch"}, "needs": ["torch"], "rows": rows("pytorch", (False,))})
    return configs, notes


def spawn(script: str, cfg: dict[str, Any], argv: list[str], timeout: float,
          on_row: Callable[[dict[str, Any]], None], skipped: list[str]) -> list[dict[str, Any]]:
    """Run ``script --child cfg argv`` with the config's environment and return its ROW lines
    (each also passed to ``on_row`` as it arrives); when the child fails, print why and add
    the reason with the tail of its output to ``skipped``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           # PyTorch's OpenMP threads spin while waiting; on a shared CPU that costs it
           # several times its step time, so let them sleep
           "OMP_WAIT_POLICY": "PASSIVE", **cfg["env"]}
    if "TF_ENABLE_ONEDNN_OPTS" not in cfg["env"]:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    cmd = [sys.executable, script, "--child", json.dumps(cfg), *argv]
    rows: list[dict[str, Any]] = []
    other: list[str] = []
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith(ROW_PREFIX):
                    rows.append(json.loads(line[len(ROW_PREFIX):]))
                    if on_row:
                        on_row(rows[-1])
                else:
                    other.append(line)
            rc = proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        tail = "" if rc == 0 else (err.read() or "".join(other))[-1500:] + (
            f"\n(killed after {timeout:.0f} s)" if rc < 0 else "")
    if tail:
        reason = f"{cfg['id']}: failed after {len(rows)} row(s): {tail.strip().splitlines()[-1]}"
        print(reason)
        skipped.append(reason + "\n" + tail)
    return rows


def _fmt_row(r: dict[str, Any]) -> str:
    onednn = {"1": "on", "0": "off", None: "-"}[r["onednn"]]
    return (f"{r['runtime']:17s} {onednn:6s} {'on' if r['xla'] else 'off':4s} {r['precision']:18s} "
            f"{1000 * r['median_s']:9.0f} {1000 * r['min_s']:9.0f} {r['timed']:5d} "
            f"{r['gflops']:8.1f} {r['percent_of_peak']:6.1f} {r.get('vs_default', float('nan')):8.2f}")


HEADER = (f"{'runtime':17s} {'oneDNN':6s} {'XLA':4s} {'precision':18s} {'median ms':>9s} {'min ms':>9s} "
          f"{'steps':>5s} {'GFLOP/s':>8s} {'%peak':>6s} {'xdefault':>8s}")


def main(argv: list[str] | None = None) -> dict[str, Any] | int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--shape", type=int, nargs=3, default=[16, 64, 64], metavar=("Z", "Y", "X"))
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row (at most)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per row")
    p.add_argument("--max-seconds", type=float, default=25.0,
                   help="stop timing a row after its first timed step once it has used this long")
    p.add_argument("--threads", type=int, default=None, help="framework threads (default: usable cores)")
    p.add_argument("--bf16", choices=("auto", "all", "some", "none"), default="auto",
                   help="which mixed_bfloat16 rows to run (auto: all with native bf16, else some)")
    p.add_argument("--only", nargs="*", default=None, metavar="ID",
                   help="configurations to run: tf-onednn1 tf-onednn0 keras-torch keras-jax pytorch")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 1 of 16x32x32, depth 2, no warm-up (times include tracing), "
                   "one step, no bf16, no TF XLA rows")
    p.add_argument("--out", type=Path, default=None, help="JSON (default: results/bench_training_<cpu>_<date>.json)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.shape, args.depth, args.steps, args.warmup = 1, [16, 32, 32], 2, 1, 0
        args.bf16 = "none"
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.child:
        return run_child(args)

    cpu = cpu_peak()
    load_before = os.getloadavg()[0]
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags of interest: {' '.join(cpu['flags']) or 'none'}; "
          f"native bfloat16: {'yes' if cpu['native_bfloat16'] else 'no'}")
    print(f"fp32 peak {cpu['peak_gflops']} GFLOP/s = {cpu['peak_formula']}; FLOPs/cycle: "
          f"{cpu['flops_per_cycle_assumption']}; clock from {cpu['ghz_source']}")
    print(f"3D U-Net filters {args.filters}, depth {args.depth}; batch {args.batch} x {tuple(args.shape)}; "
          f"{args.threads} threads; load average {load_before:.2f}")
    configs, notes = configurations(cpu["native_bfloat16"], args.bf16, xla=not args.quick)
    if args.only:
        configs = [c for c in configs if c["id"] in args.only]
    child_argv = ["--batch", str(args.batch), "--shape", *map(str, args.shape), "--filters", str(args.filters),
                  "--depth", str(args.depth), "--steps", str(args.steps), "--warmup", str(args.warmup),
                  "--max-seconds", str(args.max_seconds), "--threads", str(args.threads)]
    print(HEADER)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = list(notes)
    started = time.perf_counter()
    for cfg in configs:
        missing = [m for m in cfg.get("needs", []) if importlib.util.find_spec(m) is None]
        if missing:
            reason = f"{cfg['id']}: skipped, {' and '.join(missing)} not installed (pip install -e \".[bench]\")"
            print(reason)
            skipped.append(reason)
            continue
        if not cfg["rows"]:
            continue
        def add(r: dict[str, Any], cfg: dict[str, Any] = cfg) -> None:
            r.update(runtime=cfg["runtime"], onednn=cfg["onednn"], config=cfg["id"])
            r["train_flops_per_step"] = 3 * r["forward_flops_per_sample"] * args.batch
            r["gflops"] = r["train_flops_per_step"] / r["median_s"] / 1e9
            r["percent_of_peak"] = 100 * r["gflops"] / cpu["peak_gflops"] if cpu["peak_gflops"] else float("nan")
            rows.append(r)
            print(_fmt_row(r), flush=True)

        spawn(__file__, cfg, child_argv, timeout=120 + 3 * len(cfg["rows"]) * (args.max_seconds + 150),
              on_row=add, skipped=skipped)
    default = next((r for r in rows if all(r.get(k) == v for k, v in DEFAULT_ROW.items())), None)
    if default:
        for r in rows:
            r["vs_default"] = r["median_s"] / default["median_s"]
    summary = summarise(rows, default, cpu)
    print("\n" + HEADER)
    for r in rows:
        print(_fmt_row(r))
    for line in summary["lines"]:
        print(line)
    for note in skipped:
        print("skipped: " + note.splitlines()[0])
    result = {
        "benchmark": "training step (forward + MSE + backward + Adam) of one 3D U-Net, fixed random batch; "
                     "median wall time of the timed steps",
        "model": {"name": "unet", "ndim": 3, "filters": args.filters, "depth": args.depth, "batch_norm": False},
        "batch": args.batch, "patch_shape": list(args.shape), "steps": args.steps, "warmup": args.warmup,
        "max_seconds": args.max_seconds, "quick": args.quick,
        "default_row": DEFAULT_ROW | {"why": "what resprunet runs on this CPU: it sets TF_ENABLE_ONEDNN_OPTS=1, "
                                             "Keras' jit_compile='auto' is off on a CPU-only machine, float32"},
        "flops": {"count": "2 x multiply-adds of every Conv3D at its output resolution (pooling, ReLU, "
                           "upsampling, concatenation, loss left out); training step = 3 x forward",
                  "forward_flops_per_sample": rows[0]["forward_flops_per_sample"] if rows else None},
        "machine": {"cpu": cpu, "threads": args.threads, "platform": platform.platform(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
                    "seconds": round(time.perf_counter() - started, 1)},
        "versions": versions(), "results": rows, "summary": summary["values"], "skipped": skipped,
    }
    out = args.out or result_path("training" + ("_quick" if args.quick else ""), cpu["model"])
    from data_pipelines.io.atomic import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, force=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} ({result['machine']['seconds']} s)")
    return result


def summarise(rows: list[dict[str, Any]], default: dict[str, Any] | None, cpu: dict[str, Any]) -> dict[str, Any]:
    """The targets: default TF step / plain PyTorch step, and GFLOP/s as % of peak."""
    lines, values = [], {}
    torch_f32 = next((r for r in rows if r["runtime"] == "pytorch" and r["precision"] == "float32"), None)
    if default:
        values["default_step_s"] = default["median_s"]
        values["default_gflops"] = default["gflops"]
        values["default_percent_of_peak"] = default["percent_of_peak"]
        lines.append(f"default (Keras/TF, oneDNN on, XLA off, float32): {1000 * default['median_s']:.0f} ms/step, "
                     f"{default['gflops']:.1f} GFLOP/s = {default['percent_of_peak']:.1f} % of the "
                     f"{cpu['peak_gflops']} GFLOP/s fp32 peak")
    if default and torch_f32:
        ratio = default["median_s"] / torch_f32["median_s"]
        values["default_tf_over_pytorch_step"] = ratio
        lines.append(f"default TF step / plain PyTorch float32 step = {ratio:.2f} "
                     f"({'TF faster' if ratio < 1 else 'PyTorch faster'})")
    best = min(rows, key=lambda r: r["median_s"]) if rows else None
    if best:
        values["fastest"] = {k: best[k] for k in ("runtime", "onednn", "xla", "precision", "median_s", "gflops",
                                                  "percent_of_peak")}
        lines.append(f"fastest: {best['runtime']} oneDNN {best['onednn']} XLA {'on' if best['xla'] else 'off'} "
                     f"{best['precision']}: {1000 * best['median_s']:.0f} ms/step, {best['percent_of_peak']:.1f} % of peak")
    return {"lines": lines, "values": values}


if __name__ == "__main__":
    out = main()
    sys.exit(out if isinstance(out, int) else 0)
