"""Training-step benchmark: 3D U-Net and ResPr-UNet (Keras, float32 vs mixed_bfloat16) and the
same 3D U-Net written in PyTorch (float32 and bfloat16 autocast), on the same CPU, same run.

    PYTHONPATH=. python benchmarks/bench_training.py [--batch 2] [--shape 32 64 64] [--steps 5]

Every row times whole optimiser steps (forward, MSE loss, backward, Adam update) on a fixed
random batch after ``--warmup`` untimed steps (graph tracing, allocation); the rows take turns
step by step, so a change of machine load affects all of them alike. The PyTorch model
mirrors ``resprunet.models.unet`` (conv 3x3 + ReLU units, max pooling, a 3x3 conv unit at the
coarse level then nearest upsampling, concatenated skips, 1x1 output conv, global residual);
the benchmark asserts that both have the same number of parameters. torch is a benchmark-only
dependency (``pip install torch``), not one of the package's requirements.
Prints a table and writes ``benchmarks/results/bench_training.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from functools import partial
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# PyTorch's OpenMP threads spin while waiting; on a shared (oversubscribed) CPU that costs it
# several times its step time, so let them sleep (set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


Stepper = tuple[dict[str, Any], Callable[[], Any]]  # (row description, one training step)


def measure(steppers: list[Stepper], steps: int, warmup: int, batch: int) -> list[dict[str, Any]]:
    """Time every stepper, interleaved round by round so that a change of machine load hits
    all rows alike. Returns one row per stepper with wall and process-CPU milliseconds per step
    (CPU time counts every thread; on an idle machine wall ~ CPU / threads used)."""
    for _, step in steppers:
        for _ in range(warmup):
            step()
    wall: list[list[float]] = [[] for _ in steppers]
    cpu: list[list[float]] = [[] for _ in steppers]
    for _ in range(steps):
        for i, (_, step) in enumerate(steppers):
            w, c = time.perf_counter(), time.process_time()
            step()
            wall[i].append(time.perf_counter() - w)
            cpu[i].append(time.process_time() - c)
    rows = []
    for (meta, _), w, c in zip(steppers, wall, cpu):
        median = statistics.median(w)
        rows.append({
            **meta, "step_ms_median": round(1000 * median, 1), "step_ms_min": round(1000 * min(w), 1),
            "cpu_ms_median": round(1000 * statistics.median(c), 1),
            "samples_per_s": round(batch / median, 2), "steps_timed": steps,
        })
    return rows


def keras_steppers(args: argparse.Namespace) -> list[Stepper]:
    """Keras U-Net and ResPr-UNet, float32 and mixed_bfloat16."""
    import keras
    import numpy as np

    from resprunet import models
    from resprunet.training.build import precision_policy

    rng = np.random.default_rng(0)
    shape = (args.batch, *args.shape, 1)
    clean = rng.random(shape, dtype=np.float32)
    noisy = clean + rng.normal(0.0, 0.1, shape).astype(np.float32)
    steppers: list[Stepper] = []
    for name in ("unet", "respr_unet"):
        for precision in ("float32", "mixed_bfloat16"):
            keras.utils.set_random_seed(0)
            with precision_policy(precision):
                model = models.build(
                    name, 3, filters=args.filters, depth=args.depth, batch_norm=False
                )
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            inputs = {"noisy": noisy, "prior": clean} if name == "respr_unet" else noisy
            meta = {"framework": "keras", "model": name, "precision": precision,
                    "params": model.count_params()}
            steppers.append((meta, partial(model.train_on_batch, inputs, clean)))
    return steppers


def torch_unet(filters: int, depth: int) -> Any:
    """The PyTorch twin of ``models.build("unet", 3, filters, depth, batch_norm=False)``."""
    from torch import nn

    def unit(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))

    class UNet3D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [filters * 2**level for level in range(depth + 1)]
            self.down = nn.ModuleList()
            cin = 1
            for level in range(depth):
                self.down.append(nn.Sequential(unit(cin, widths[level]), unit(widths[level], widths[level])))
                cin = widths[level]
            self.up = nn.ModuleList()
            for level in range(depth, 0, -1):
                self.up.append(nn.Sequential(unit(cin, widths[level]), unit(widths[level], widths[level - 1])))
                cin = 2 * widths[level - 1]
            self.last = nn.Sequential(unit(cin, widths[0]), unit(widths[0], widths[0]))
            self.head = nn.Conv3d(widths[0], 1, 1)
            self.pool = nn.MaxPool3d(2)
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x: Any) -> Any:
            import torch

            skips, h = [], x
            for block in self.down:
                h = block(h)
                skips.append(h)
                h = self.pool(h)
            for block in self.up:
                h = torch.cat([skips.pop(), self.upsample(block(h))], dim=1)
            return x + self.head(self.last(h)).float()

    return UNet3D()


def torch_steppers(args: argparse.Namespace, keras_params: int) -> list[Stepper]:
    """PyTorch U-Net, float32 and bfloat16 autocast; empty (with a note) without torch."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the PyTorch rows (pip install torch)")
        return []
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand((args.batch, 1, *args.shape), generator=gen)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=gen)
    steppers: list[Stepper] = []
    for precision, dtype in (("float32", None), ("bfloat16_autocast", torch.bfloat16)):
        torch.manual_seed(0)
        model = torch_unet(args.filters, args.depth)
        params = sum(p.numel() for p in model.parameters())
        if params != keras_params:
            raise RuntimeError(f"PyTorch U-Net has {params} parameters, the Keras one {keras_params}")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model: Any = model, optimizer: Any = optimizer, dtype: Any = dtype) -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = torch.mean((model(noisy) - clean) ** 2)
            loss.backward()
            optimizer.step()

        meta = {"framework": "pytorch", "model": "unet", "precision": precision, "params": params}
        steppers.append((meta, step))
    return steppers


def _format(row: dict[str, Any]) -> str:
    return (f"{row['framework']:8s} {row['model']:11s} {row['precision']:18s} {row['params']:>9,d} "
            f"{row['step_ms_median']:>10.1f} {row['step_ms_min']:>10.1f} {row['cpu_ms_median']:>10.1f} "
            f"{row['samples_per_s']:>9.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--shape", type=int, nargs=3, default=[32, 64, 64], metavar=("Z", "Y", "X"))
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both frameworks")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_training.json")
    args = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    load_before = os.getloadavg()
    print(f"batch {args.batch} x {tuple(args.shape)} voxels, filters {args.filters}, depth {args.depth}, "
          f"{args.threads} threads, load average {load_before[0]:.2f}")
    print(f"{'framework':8s} {'model':11s} {'precision':18s} {'params':>9s} {'median ms':>10s} "
          f"{'min ms':>10s} {'CPU ms':>10s} {'samples/s':>9s}")
    steppers = keras_steppers(args)
    steppers += torch_steppers(args, next(m["params"] for m, _ in steppers if m["model"] == "unet"))
    rows = measure(steppers, args.steps, args.warmup, args.batch)
    for row in rows:
        print(_format(row))
    import keras

    result = {
        "benchmark": "training step (forward + MSE + backward + Adam), fixed random batch; "
                     "rows interleaved step by step; wall and process-CPU ms per step",
        "batch": args.batch, "patch_shape": list(args.shape), "filters": args.filters,
        "depth": args.depth, "steps": args.steps, "warmup": args.warmup,
        "machine": {
            "cpu_count": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
            "processor": platform.processor(), "load_average_before": load_before[0],
            "load_average_after": os.getloadavg()[0],
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"],
        },
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__, **_torch_version()},
        "results": rows,
    }
    from data_pipelines.io.atomic import atomic_path

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out, force=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


def _torch_version() -> dict[str, str]:
    try:
        import torch
    except ImportError:
        return {}
    return {"torch": torch.__version__}


if __name__ == "__main__":
    main()
