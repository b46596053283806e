"""Benchmark of 3D inference: throughput, a PyTorch twin, disk-to-disk peak memory, BM4D.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_inference.py                 # quick (128^3 disk run)
    PYTHONPATH=. python benchmarks/bench_inference.py --size 512 --tile 64    # the 512^3 memory check

Measures, in one run on the same CPU:

1. voxels/s of whole-volume and tiled 3D inference with :func:`resprunet.inference.predict_volume`
   (a small 3D U-Net, float32 and the ``mixed_bfloat16`` policy);
2. the same U-Net written in PyTorch with the Keras weights copied in (its output is checked
   against Keras), whole volume, float32;
3. peak resident memory (``resource.getrusage`` in a fresh subprocess) when denoising a
   ``size^3`` float32 ``.npy`` from disk (memory-mapped) to disk (memory-mapped ``.npy``),
   against the goal ``2 x volume bytes + model``;
4. time and PSNR of the zoo's 3D U-Net against BM4D (true sigma) on the same held-out volume.

Prints a table and writes ``benchmarks/results/bench_inference.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "bench_inference.json"
FILTERS, DEPTH = 8, 2


def build_unet(precision: str = "float32") -> Any:
    """The benchmark's Keras 3D U-Net (no batch norm, residual), seeded, under ``precision``."""
    import keras

    from resprunet import models

    keras.utils.set_random_seed(0)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        return models.build("unet", ndim=3, filters=FILTERS, depth=DEPTH, batch_norm=False)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def smooth_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth random volume in [0, 1] with 10 % Gaussian noise, float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.zoom(rng.random(tuple(max(s // 8, 2) for s in shape)), 8, order=1)[tuple(slice(0, s) for s in shape)]
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    return (x + 0.1 * rng.standard_normal(shape)).astype(np.float32)


def _best_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def keras_throughput(size: int, repeats: int) -> list[dict[str, Any]]:
    """voxels/s of whole and tiled prediction, float32 and mixed_bfloat16."""
    from resprunet.inference import predict_volume

    x = smooth_volume((size,) * 3)
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        model = build_unet(precision)
        for mode, tile in (("whole", None), ("tiled", (size // 2,) * 3)):
            seconds = _best_time(
                lambda: predict_volume(model, x, tile_shape=tile, batch_size=2, progress=False), repeats)
            rows.append({"framework": "keras/tf", "precision": precision, "mode": mode,
                         "tile": list(tile) if tile else None, "shape": [size] * 3,
                         "seconds": round(seconds, 3), "voxels_per_s": round(x.size / seconds)})
    return rows


def torch_unet(keras_model: Any) -> Any:
    """The same U-Net in PyTorch (channels-first), with the Keras model's weights."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    widths = [FILTERS * 2**level for level in range(DEPTH + 1)]

    class TorchUNet3D(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            convs: list[nn.Module] = []
            cin = 1
            for level in range(DEPTH):  # encoder: two 3x3x3 convs per level
                convs += [nn.Conv3d(cin, widths[level], 3, padding=1),
                          nn.Conv3d(widths[level], widths[level], 3, padding=1)]
                cin = widths[level]
            for level in range(DEPTH, 0, -1):  # level conv, then conv to the finer width
                convs += [nn.Conv3d(cin, widths[level], 3, padding=1),
                          nn.Conv3d(widths[level], widths[level - 1], 3, padding=1)]
                cin = 2 * widths[level - 1]
            convs += [nn.Conv3d(cin, widths[0], 3, padding=1), nn.Conv3d(widths[0], widths[0], 3, padding=1)]
            self.convs = nn.ModuleList(convs)
            self.head = nn.Conv3d(widths[0], 1, 1)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            it = iter(self.convs)
            x, skips = inp, []
            for _ in range(DEPTH):
                x = F.relu(next(it)(x))
                x = F.relu(next(it)(x))
                skips.append(x)
                x = F.max_pool3d(x, 2)
            for level in range(DEPTH, 0, -1):
                x = F.relu(next(it)(x))
                x = F.interpolate(F.relu(next(it)(x)), scale_factor=2, mode="nearest")
                x = torch.cat([skips[level - 1], x], dim=1)
            x = F.relu(next(it)(x))
            x = F.relu(next(it)(x))
            return inp + self.head(x)

    net = TorchUNet3D().eval()
    import keras

    kconvs = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.Conv3D)]
    tconvs = [*net.convs, net.head]
    if len(kconvs) != len(tconvs):
        raise RuntimeError(f"Keras model has {len(kconvs)} Conv3D layers; the PyTorch twin {len(tconvs)}")
    with torch.no_grad():
        for k, t in zip(kconvs, tconvs):
            kernel, bias = (np.asarray(w) for w in k.get_weights())
            t.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
            t.bias.copy_(torch.from_numpy(bias))
    return net


def torch_throughput(size: int, repeats: int) -> dict[str, Any]:
    """voxels/s of the PyTorch twin on the whole volume, and its max difference to Keras."""
    import torch

    model = build_unet("float32")
    net = torch_unet(model)
    x = smooth_volume((size,) * 3)
    xt = torch.from_numpy(x[None, None])

    def run() -> np.ndarray:
        with torch.inference_mode():
            return net(xt)[0, 0].numpy()

    seconds = _best_time(run, repeats)
    reference = np.asarray(model.predict_on_batch(x[None, ..., None]))[0, ..., 0]
    return {"framework": f"pytorch {torch.__version__}", "precision": "float32", "mode": "whole",
            "tile": None, "shape": [size] * 3, "seconds": round(seconds, 3),
            "voxels_per_s": round(x.size / seconds), "threads": torch.get_num_threads(),
            "max_abs_diff_to_keras": float(np.abs(run() - reference).max())}


def _current_rss_mb() -> dict[str, float]:
    """Resident memory of this process now, MiB: total (VmRSS), anonymous and file-backed."""
    keys = {"VmRSS:": "total", "RssAnon:": "anon", "RssFile:": "file"}
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":")[0] + ":"
            if key in keys:
                values[keys[key]] = int(line.split()[1]) / 1024
    return values


def _rss_child(model_path: str, src: str, dst: str, tile: int) -> None:
    """Subprocess body: denoise ``src`` (.npy, memory-mapped) into ``dst``; print JSON.

    ``peak_rss_mb`` is the process's lifetime peak (``resource.getrusage``). The TensorFlow
    runtime's start-up alone can set that peak, so the RSS is also sampled during
    the prediction every 5 ms (``run_peak_rss_mb``, with its anonymous and file-backed parts)
    and compared with the RSS just before it.
    """
    import resource
    import threading

    import keras

    from resprunet.inference import predict_volume

    model = keras.models.load_model(model_path, compile=False)
    x = np.load(src, mmap_mode="r")
    predict_volume(model, np.array(x[:tile, :tile, :tile]), progress=False)  # trace once
    before = _current_rss_mb()
    samples = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            samples.append(_current_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    predict_volume(model, x, tile_shape=(tile, tile, tile), batch_size=2, out=dst, progress=False)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    top = max(samples, key=lambda v: v["total"])
    print(json.dumps({"rss_before_mb": round(before["total"], 1), "run_peak_rss_mb": round(top["total"], 1),
                      "run_peak_anon_mb": round(top["anon"], 1), "run_peak_file_mb": round(top["file"], 1),
                      "peak_rss_mb": round(peak, 1), "seconds": round(seconds, 2)}))


def disk_to_disk(size: int, tile: int) -> dict[str, Any]:
    """Peak RSS of a fresh process denoising a size^3 float32 .npy to a .npy."""
    model = build_unet("float32")
    with tempfile.TemporaryDirectory(prefix="bench_inference-") as work:
        src, dst, model_path = (str(Path(work) / n) for n in ("in.npy", "out.npy", "unet.keras"))
        model.save(model_path)
        x = np.lib.format.open_memmap(src, mode="w+", dtype=np.float32, shape=(size,) * 3)
        for z in range(0, size, 64):  # written slab by slab: the parent stays small too
            x[z : z + 64] = smooth_volume((min(64, size - z), size, size), seed=z)
        x.flush()
        del x
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        # Linux carries a process's peak RSS across exec from the memory image it was
        # (v)forked from, so a child started by this large process would report this
        # process's peak. A tiny launcher starts the measured process instead.
        launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
        command = [sys.executable, __file__, "--rss-child", model_path, src, dst, str(tile)]
        proc = subprocess.run([sys.executable, "-c", launcher, *command],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"disk-to-disk child failed:\n{proc.stderr[-2000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        out = np.load(dst, mmap_mode="r")
        finite = bool(np.isfinite(out[:: max(size // 8, 1)]).all())
        model_mb = Path(model_path).stat().st_size / 2**20
    volume_mb = size**3 * 4 / 2**20
    goal = 2 * volume_mb + model_mb
    return {"shape": [size] * 3, "tile": [tile] * 3, "volume_mb": round(volume_mb, 1),
            "model_file_mb": round(model_mb, 2), **result,
            "goal_mb": round(goal, 1), "meets_goal": result["peak_rss_mb"] <= goal,
            "run_growth_mb": round(result["run_peak_rss_mb"] - result["rss_before_mb"], 1),
            "meets_goal_above_runtime": result["run_peak_rss_mb"] - result["rss_before_mb"] <= goal,
            "voxels_per_s": round(size**3 / result["seconds"]), "output_finite": finite}


def versus_bm4d() -> dict[str, Any] | None:
    """The zoo's 3D U-Net against BM4D (true sigma) on its held-out EPI crop: time, PSNR."""
    from resprunet import zoo
    from resprunet.assess.metrics import psnr
    from resprunet.inference import predict_volume
    from resprunet.variational import bm4d_denoise

    if "unet3d_mri" not in zoo.list():
        return None
    model, card = zoo.load("unet3d_mri")
    clean, noisy, _ = zoo.heldout_case(card)
    sigma = float(card["evaluation"]["noise"]["sigma"])
    predict_volume(model, noisy, progress=False)  # trace once
    start = time.perf_counter()
    net = predict_volume(model, noisy, progress=False)
    net_s = time.perf_counter() - start
    start = time.perf_counter()
    bm = bm4d_denoise(noisy, sigma)
    bm_s = time.perf_counter() - start
    return {"volume": f"{card['evaluation']['source']} crop {card['evaluation']['crop']}",
            "shape": list(clean.shape), "sigma": sigma,
            "noisy_psnr": round(psnr(clean, noisy, 1.0), 2),
            "unet3d_mri": {"seconds": round(net_s, 2), "psnr": round(psnr(clean, net, 1.0), 2)},
            "bm4d": {"seconds": round(bm_s, 2), "psnr": round(psnr(clean, bm, 1.0), 2)}}


def print_table(results: dict[str, Any]) -> None:
    print(f"\n3D inference throughput ({results['machine']['cpus']} CPUs, U-Net filters {FILTERS}, depth {DEPTH})")
    print(f"{'framework':22s} {'precision':15s} {'mode':6s} {'shape':14s} {'seconds':>8s} {'Mvoxel/s':>9s}")
    for r in results["throughput"]:
        shape = "x".join(map(str, r["shape"]))
        print(f"{r['framework']:22s} {r['precision']:15s} {r['mode']:6s} {shape:14s} "
              f"{r['seconds']:8.3f} {r['voxels_per_s'] / 1e6:9.3f}")
    d = results["disk_to_disk"]
    print(f"\ndisk to disk {'x'.join(map(str, d['shape']))} float32 ({d['volume_mb']} MB), tiles {d['tile'][0]}^3: "
          f"{d['seconds']} s; peak RSS {d['peak_rss_mb']} MB; before the run (TensorFlow runtime + model) "
          f"{d['rss_before_mb']} MB, growth during the run {d['run_growth_mb']} MB; goal 2 x volume + model "
          f"= {d['goal_mb']} MB: {'met' if d['meets_goal'] else 'not met'} for the whole process, "
          f"{'met' if d['meets_goal_above_runtime'] else 'not met'} above the runtime")
    v = results.get("versus_bm4d")
    if v:
        print(f"\n{v['volume']} {v['shape']} sigma {v['sigma']}: noisy {v['noisy_psnr']} dB; "
              f"unet3d_mri {v['unet3d_mri']['psnr']} dB in {v['unet3d_mri']['seconds']} s; "
              f"BM4D {v['bm4d']['psnr']} dB in {v['bm4d']['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="edge of the disk-to-disk cube (512 for the goal)")
    parser.add_argument("--tile", type=int, default=64, help="tile edge for the disk-to-disk run")
    parser.add_argument("--speed-size", type=int, default=64, help="edge of the throughput cube")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    parser.add_argument("--no-bm4d", action="store_true", help="skip the BM4D comparison")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output")
    parser.add_argument("--rss-child", nargs=4, metavar=("MODEL", "IN", "OUT", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        model_path, src, dst, tile = args.rss_child
        _rss_child(model_path, src, dst, int(tile))
        return 0
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": {"name": "unet", "ndim": 3, "filters": FILTERS, "depth": DEPTH, "batch_norm": False},
    }
    results["throughput"] = keras_throughput(args.speed_size, args.repeats)
    results["throughput"].append(torch_throughput(args.speed_size, args.repeats))
    results["disk_to_disk"] = disk_to_disk(args.size, args.tile)
    results["versus_bm4d"] = None if args.no_bm4d else versus_bm4d()
    print_table(results)
    from data_pipelines.io.atomic import atomic_path

    with atomic_path(args.out, force=True) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
