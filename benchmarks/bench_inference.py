"""Benchmark of 3D inference: one U-Net across runtimes, the default tiling, disk-to-disk
memory, and BM4D, in one run on one machine.

    python benchmarks/bench_inference.py                 # full run (a few minutes on 2 cores)
    python benchmarks/bench_inference.py --quick         # smoke run
    python benchmarks/bench_inference.py --size 512 --tile 64 --only   # just the 512^3 memory check

Measures:

1. Seconds and voxels/s of :func:`resprunet.inference.predict_volume` on a ``--speed-size``^3
   volume (default 64^3), whole (the default tiling, one tile) and tiled (32^3 tiles at 50 %
   overlap), for ``models.build("unet", 3, filters=16, depth=3, batch_norm=False)`` under:
   Keras on TensorFlow with oneDNN on / off (``TF_ENABLE_ONEDNN_OPTS``, one subprocess
   each), XLA (``jit_compile``) off / on, ``float32`` / ``mixed_bfloat16``; Keras on the torch
   and jax backends (skipped, with the reason, when not installed: ``pip install -e
   ".[bench]"``); and the same U-Net in plain PyTorch (the Keras weights copied in, its output
   checked against Keras) run through the same tiler, float32 and bfloat16 autocast. As in
   ``bench_training.py``: achieved GFLOP/s (useful work: conv FLOPs of the volume, so a tiled
   row pays for its overlap) against the cores' fp32 peak, with the assumptions printed. On a
   CPU without native bfloat16 only some bf16 rows run and bf16 rows skip the tiled mode
   (``--bf16 all`` runs them all).
2. The default tiling (``tile_shape=None``) against the whole volume and 32^3 tiles at 50 %
   overlap on 64 x 128 x 128 (default budget: one tile), and on 64 x 128 x 256 with a memory
   budget of 0.75 of what the whole volume needs (forced tiles: 2 tiles of 64 x 128 x 176, the
   receptive field of 96 voxels needs a halo of 48): time ratios (modes interleaved), voxels
   processed and max |tiled - whole| (Keras/TF, oneDNN on, float32).
3. Peak resident memory (``resource.getrusage`` in a fresh subprocess) when denoising a
   ``--size``^3 float32 ``.npy`` from disk (memory-mapped) to disk (memory-mapped ``.npy``)
   with ``--tile``^3 tiles, against the goal ``2 x volume bytes + model`` (U-Net 8 filters,
   depth 2).
4. Time and PSNR of the zoo's 3D U-Net against BM4D (true sigma) on the same held-out volume.

Prints tables and writes ``benchmarks/results/bench_inference_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import (  # noqa: E402  (the shared machine, FLOP and twin code)
    BF16, PRECISIONS, ROW_PREFIX, build_keras_unet, copy_keras_weights, cpu_peak, keras_conv_flops,
    result_path, set_threads, spawn, torch_unet, versions,
)

FILTERS, DEPTH = 16, 3
DISK_FILTERS, DISK_DEPTH = 8, 2
DEFAULT = {"runtime": "keras/tensorflow", "onednn": "1", "xla": False, "precision": "float32"}


def smooth_volume(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth random volume in [0, 1] with 10 % Gaussian noise, float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.zoom(rng.random(tuple(max(s // 8, 2) for s in shape)), 8, order=1)[tuple(slice(0, s) for s in shape)]
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    return (x + 0.1 * rng.standard_normal(shape)).astype(np.float32)


def time_calls(fn: Callable[[], Any], repeats: int, max_seconds: float, warmup: int = 1) -> dict[str, Any]:
    """``warmup`` untimed calls (tracing, compilation), then up to ``repeats`` timed ones,
    stopping after the first timed call once the whole has used ``max_seconds``."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > max_seconds:
            break
    return {"seconds": statistics.median(times), "min_seconds": min(times), "timed": len(times)}


class TorchAsKeras:
    """The PyTorch twin behind a Keras model's face, for :func:`predict_volume`.

    Attribute lookups (inputs, layers, ... used by ``models.describe`` and the memory planner)
    go to the Keras model; ``predict_on_batch`` runs the twin on (b, z, y, x, c) arrays.
    """

    def __init__(self, keras_model: Any, net: Any, dtype: Any = None) -> None:
        self._keras, self._net, self._dtype = keras_model, net, dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self._keras, name)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        import torch

        inp = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), -1, 1)))
        with torch.inference_mode(), torch.autocast("cpu", dtype=self._dtype, enabled=self._dtype is not None):
            out = self._net(inp)
        return np.moveaxis(out.float().numpy(), 1, -1)


# ----------------------------------------------------------------------------- child


def _modes(args: argparse.Namespace, precision: str) -> list[tuple[str, tuple[int, ...] | None, float]]:
    size = args.speed_size
    modes = [("whole", None, 0.25)]
    if precision == "float32" or args.bf16_tiled:
        modes.append(("tiled", (size // 2,) * 3, 0.5))
    return modes


def _throughput_rows(model: Any, args: argparse.Namespace, precision: str, flops_per_volume: float,
                     extra: dict[str, Any]) -> list[dict[str, Any]]:
    from resprunet.inference import predict_volume

    x = smooth_volume((args.speed_size,) * 3)
    rows = []
    for mode, tile, overlap in _modes(args, precision):
        timing = time_calls(lambda: predict_volume(model, x, tile_shape=tile, overlap=overlap,
                                                   progress=False), args.repeats, args.max_seconds)
        rows.append({"precision": precision, "mode": mode, "tile": list(tile) if tile else None,
                     "overlap": overlap if tile else None, "shape": [args.speed_size] * 3,
                     "voxels_per_s": x.size / timing["seconds"],
                     "useful_flops": flops_per_volume, **timing, **extra})
    return rows


def child_keras(cfg: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    import keras

    set_threads(keras.backend.backend(), args.threads)
    rows = []
    for xla, precision in cfg["rows"]:
        model = build_keras_unet(FILTERS, DEPTH, precision)
        model.compile(jit_compile=xla)
        flops = keras_conv_flops(model, (args.speed_size,) * 3)
        for row in _throughput_rows(model, args, precision, flops, {"xla": xla}):
            print(ROW_PREFIX + json.dumps(row), flush=True)
            rows.append(row)
        if cfg.get("tiling") and precision == "float32" and not xla:
            for row in default_tiling_rows(model, args):
                print(ROW_PREFIX + json.dumps(row), flush=True)
    return rows


def child_pytorch(cfg: dict[str, Any], args: argparse.Namespace) -> None:
    import torch

    set_threads("pytorch", args.threads)
    from resprunet.inference import predict_volume

    model = build_keras_unet(FILTERS, DEPTH)  # Keras on the torch backend: only its weights and graph
    net = torch_unet(FILTERS, DEPTH).eval()
    copy_keras_weights(model, net)
    x = smooth_volume((args.speed_size,) * 3)
    reference = predict_volume(model, x, progress=False)
    flops = keras_conv_flops(model, (args.speed_size,) * 3)
    for _, precision in cfg["rows"]:
        dtype = torch.bfloat16 if precision == BF16 else None
        adapter = TorchAsKeras(model, net, dtype)
        diff = float(np.abs(predict_volume(adapter, x, progress=False) - reference).max())
        for row in _throughput_rows(adapter, args, precision, flops,
                                    {"xla": False, "threads": torch.get_num_threads(),
                                     "max_abs_diff_to_keras": diff}):
            row["precision"] = "bfloat16_autocast" if dtype else "float32"
            print(ROW_PREFIX + json.dumps(row), flush=True)


def default_tiling_rows(model: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The default tiling against the whole volume and 32^3 tiles at 50 % (Keras/TF, float32).

    Per volume, every mode is called once untimed (tracing), then the modes take turns
    ``--tiling-repeats`` times, so that a change of machine load hits them alike; medians.
    """
    import math

    from resprunet import models
    from resprunet.inference import predict_volume
    from resprunet.inference.tiles import activation_bytes_per_voxel, memory_budget, plan_auto_tiles

    info = models.describe(model)
    per_voxel = activation_bytes_per_voxel(model)
    share = args.forced_share
    rows = []
    for shape, budget_share in ((tuple(args.tiling_shape), None), (tuple(args.forced_shape), share)):
        x = smooth_volume(shape, seed=1)
        budget = memory_budget() if budget_share is None else budget_share * per_voxel * math.prod(shape)
        grid = plan_auto_tiles(shape, divisor=(info.divisor,) * 3, receptive_field=(info.receptive_field,) * 3,
                               bytes_per_voxel=per_voxel, budget_bytes=budget)
        processed = math.prod(len(s) * t for s, t in zip(grid.starts, grid.tile_shape)) / math.prod(shape)
        default_name = "default" if budget_share is None else f"default, budget {budget_share:g} x whole's"
        runs = [("whole", {"tile_shape": shape}), (default_name, {"memory_budget": budget})]
        if budget_share is None:
            runs.append(("32^3 @ 50 %", {"tile_shape": (32, 32, 32), "overlap": 0.5}))
        outputs = {name: predict_volume(model, x, progress=False, **kw) for name, kw in runs}  # warm-up
        times: dict[str, list[float]] = {name: [] for name, _ in runs}
        for _ in range(args.tiling_repeats):
            for name, kw in runs:
                start = time.perf_counter()
                predict_volume(model, x, progress=False, **kw)
                times[name].append(time.perf_counter() - start)
        whole_s = statistics.median(times["whole"])
        for name, _ in runs:
            seconds = statistics.median(times[name])
            row = {"tiling": True, "shape": list(shape), "mode": name, "seconds": seconds,
                   "times_s": [round(t, 4) for t in times[name]], "voxels_per_s": x.size / seconds,
                   "ratio_vs_whole": seconds / whole_s,
                   "max_abs_diff_vs_whole": float(np.abs(outputs[name] - outputs["whole"]).max())}
            if name == default_name:
                row.update(tiles=grid.n_tiles, tile=list(grid.tile_shape), halo=list(grid.halo),
                           budget_mb=round(budget / 2**20, 1), activation_bytes_per_voxel=per_voxel,
                           voxels_processed_ratio=processed)
            rows.append(row)
    return rows


def run_child(args: argparse.Namespace) -> int:
    cfg = json.loads(args.child)
    if cfg["kind"] == "pytorch":
        child_pytorch(cfg, args)
    else:
        child_keras(cfg, args)
    return 0


# ----------------------------------------------------------------------------- parent


def configurations(native_bf16: bool, bf16: str, xla: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """As in ``bench_training.py``; the first (TF, oneDNN on) also runs the default-tiling rows."""
    from bench_training import configurations as training_configurations

    configs, notes = training_configurations(native_bf16, bf16, xla)
    configs[0]["tiling"] = True
    return configs, notes


def _row_line(r: dict[str, Any]) -> str:
    onednn = {"1": "on", "0": "off", None: "-"}[r["onednn"]]
    mode = r["mode"] + ("" if not r.get("tile") else f" {r['tile'][0]}^3@{int(100 * r['overlap'])}%")
    return (f"{r['runtime']:17s} {onednn:6s} {'on' if r['xla'] else 'off':4s} {r['precision']:18s} {mode:16s} "
            f"{r['seconds']:8.3f} {r['voxels_per_s'] / 1e6:9.3f} {r['gflops']:8.1f} {r['percent_of_peak']:6.1f} "
            f"{r.get('vs_default', float('nan')):8.2f}")


HEADER = (f"{'runtime':17s} {'oneDNN':6s} {'XLA':4s} {'precision':18s} {'mode':16s} {'seconds':>8s} "
          f"{'Mvoxel/s':>9s} {'GFLOP/s':>8s} {'%peak':>6s} {'xdefault':>8s}")


def print_tables(results: dict[str, Any]) -> None:
    cpu = results["machine"]["cpu"]
    print(f"\n3D inference, {'x'.join(map(str, results['throughput_shape']))} volume, U-Net {FILTERS} filters, "
          f"depth {DEPTH}; CPU {cpu['model']} ({cpu['cores']} cores, fp32 peak {cpu['peak_gflops']} GFLOP/s)")
    print(HEADER)
    for r in results["throughput"]:
        print(_row_line(r))
    if results.get("tiling"):
        print("\ndefault tiling (Keras/TF, oneDNN on, XLA off, float32)")
        print(f"{'volume':12s} {'mode':30s} {'tiles':>5s} {'voxels x':>8s} {'seconds':>8s} {'x whole':>8s} {'max |diff|':>10s}")
        for r in results["tiling"]:
            tiles = r.get("tiles", "")
            ratio = f"{r['voxels_processed_ratio']:.2f}" if "voxels_processed_ratio" in r else ""
            print(f"{'x'.join(map(str, r['shape'])):12s} {r['mode']:30s} {tiles!s:>5s} {ratio:>8s} "
                  f"{r['seconds']:8.2f} {r['ratio_vs_whole']:8.2f} {r['max_abs_diff_vs_whole']:10.1e}")
    for line in results.get("summary_lines", []):
        print(line)
    d = results.get("disk_to_disk")
    if d:
        print(f"\ndisk to disk {'x'.join(map(str, d['shape']))} float32 ({d['volume_mb']} MB), tiles {d['tile'][0]}^3, "
              f"U-Net {DISK_FILTERS} filters depth {DISK_DEPTH}: {d['seconds']} s; peak RSS {d['peak_rss_mb']} MB; before "
              f"the run (TensorFlow runtime + model) {d['rss_before_mb']} MB, growth during the run "
              f"{d['run_growth_mb']} MB; goal 2 x volume + model = {d['goal_mb']} MB: "
              f"{'met' if d['meets_goal'] else 'not met'} for the whole process, "
              f"{'met' if d['meets_goal_above_runtime'] else 'not met'} above the runtime")
    v = results.get("versus_bm4d")
    if v:
        print(f"\n{v['volume']} {v['shape']} sigma {v['sigma']}: noisy {v['noisy_psnr']} dB; "
              f"unet3d_mri {v['unet3d_mri']['psnr']} dB in {v['unet3d_mri']['seconds']} s; "
              f"BM4D {v['bm4d']['psnr']} dB in {v['bm4d']['seconds']} s")
    for note in results.get("skipped", []):
        print("skipped: " + note.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="edge of the disk-to-disk cube (512 for the goal)")
    parser.add_argument("--tile", type=int, default=64, help="tile edge for the disk-to-disk run")
    parser.add_argument("--speed-size", type=int, default=64, help="edge of the throughput cube")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (at most; median kept)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="stop timing a row after its first timed call once it has used this long")
    parser.add_argument("--tiling-shape", type=int, nargs=3, default=[64, 128, 128], metavar=("Z", "Y", "X"))
    parser.add_argument("--forced-shape", type=int, nargs=3, default=[64, 128, 256], metavar=("Z", "Y", "X"),
                        help="volume tiled by the default tiling under a budget smaller than its need")
    parser.add_argument("--forced-share", type=float, default=0.75,
                        help="memory budget of the forced-tiling volume, as a share of what its whole needs")
    parser.add_argument("--tiling-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="framework threads (default: usable cores)")
    parser.add_argument("--bf16", choices=("auto", "all", "some", "none"), default="auto",
                        help="which mixed_bfloat16 rows to run (auto: all with native bf16, else some)")
    parser.add_argument("--only", nargs="*", default=None, metavar="ID",
                        help="runtime configurations: tf-onednn1 tf-onednn0 keras-torch keras-jax pytorch "
                        "(none given: only the disk-to-disk and BM4D parts)")
    parser.add_argument("--no-disk", action="store_true", help="skip the disk-to-disk memory run")
    parser.add_argument("--no-bm4d", action="store_true", help="skip the BM4D comparison")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 32^3 volume, one timed call, no XLA/bf16 rows, small tiling and "
                        "disk volumes, no BM4D")
    parser.add_argument("--out", type=Path, default=None, help="JSON (default: results/bench_inference_<cpu>_<date>.json)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--bf16-tiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=4, metavar=("MODEL", "IN", "OUT", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        model_path, src, dst, tile = args.rss_child
        _rss_child(model_path, src, dst, int(tile))
        return 0
    if args.quick:
        args.speed_size, args.repeats, args.tiling_repeats = 32, 1, 1
        args.tiling_shape, args.forced_shape = [32, 64, 64], [32, 64, 256]
        args.size, args.tile, args.no_bm4d, args.bf16 = 64, 32, True, "none"
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.child:
        return run_child(args)

    cpu = cpu_peak()
    args.bf16_tiled = cpu["native_bfloat16"] or args.bf16 == "all"
    load_before = os.getloadavg()[0]
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags of interest: {' '.join(cpu['flags']) or 'none'}; "
          f"native bfloat16: {'yes' if cpu['native_bfloat16'] else 'no'}")
    print(f"fp32 peak {cpu['peak_gflops']} GFLOP/s = {cpu['peak_formula']}; FLOPs/cycle: "
          f"{cpu['flops_per_cycle_assumption']}; clock from {cpu['ghz_source']}; load average {load_before:.2f}")
    configs, notes = configurations(cpu["native_bfloat16"], args.bf16, xla=not args.quick)
    if args.only is not None:
        configs = [c for c in configs if c["id"] in args.only]
    if not args.bf16_tiled:
        notes.append("mixed_bfloat16 / bf16 autocast rows: tiled mode not measured (no native bfloat16 on "
                     "this CPU; --bf16 all measures it)")
    child_argv = ["--speed-size", str(args.speed_size), "--repeats", str(args.repeats),
                  "--max-seconds", str(args.max_seconds), "--threads", str(args.threads),
                  "--tiling-shape", *map(str, args.tiling_shape), "--forced-shape", *map(str, args.forced_shape),
                  "--tiling-repeats", str(args.tiling_repeats), "--forced-share", str(args.forced_share)] + (["--bf16-tiled"] if args.bf16_tiled else [])
    started = time.perf_counter()
    throughput: list[dict[str, Any]] = []
    tiling: list[dict[str, Any]] = []
    skipped = list(notes)
    print(HEADER)
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
            if r.get("tiling"):
                tiling.append(r)
                print(f"  default-tiling row: {'x'.join(map(str, r['shape']))} {r['mode']}: {r['seconds']:.2f} s, "
                      f"{r['ratio_vs_whole']:.2f}x whole", flush=True)
                return
            r.update(runtime=cfg["runtime"], onednn=cfg["onednn"], config=cfg["id"])
            r["gflops"] = r["useful_flops"] / r["seconds"] / 1e9
            r["percent_of_peak"] = 100 * r["gflops"] / cpu["peak_gflops"] if cpu["peak_gflops"] else float("nan")
            throughput.append(r)
            print(_row_line(r), flush=True)

        spawn(__file__, cfg, child_argv, timeout=300 + 6 * len(cfg["rows"]) * (args.max_seconds + 150),
              on_row=add, skipped=skipped)
    results: dict[str, Any] = {
        "benchmark": "3D inference with resprunet.inference.predict_volume; median seconds of the timed calls",
        "model": {"name": "unet", "ndim": 3, "filters": FILTERS, "depth": DEPTH, "batch_norm": False},
        "throughput_shape": [args.speed_size] * 3, "repeats": args.repeats, "quick": args.quick,
        "default_row": DEFAULT,
        "flops": "useful FLOPs: 2 x multiply-adds of every Conv3D over the whole volume (a tiled row's overlap "
                 "is work it pays for, not useful work); peak as in bench_training.py",
        "throughput": throughput, "tiling": tiling,
    }
    default = next((r for r in throughput if r["mode"] == "whole"
                    and all(r.get(k) == v for k, v in DEFAULT.items())), None)
    lines = []
    if default:
        for r in throughput:
            same_mode = next((d for d in throughput if d["mode"] == r["mode"]
                              and all(d.get(k) == v for k, v in DEFAULT.items())), None)
            if same_mode:
                r["vs_default"] = r["seconds"] / same_mode["seconds"]
        lines.append(f"default (Keras/TF, oneDNN on, XLA off, float32) whole {args.speed_size}^3: "
                     f"{default['seconds']:.3f} s, {default['gflops']:.1f} GFLOP/s = {default['percent_of_peak']:.1f} % "
                     f"of the {cpu['peak_gflops']} GFLOP/s fp32 peak")
        torch_f32 = next((r for r in throughput if r["runtime"] == "pytorch" and r["mode"] == "whole"
                          and r["precision"] == "float32"), None)
        if torch_f32:
            results["default_tf_over_pytorch_whole"] = default["seconds"] / torch_f32["seconds"]
            lines.append(f"default TF whole / plain PyTorch float32 whole = {results['default_tf_over_pytorch_whole']:.2f}")
    for r in tiling:
        if r["mode"].startswith("default") or r["mode"].startswith("32"):
            lines.append(f"{'x'.join(map(str, r['shape']))}: {r['mode']} costs {r['ratio_vs_whole']:.2f}x the whole "
                         f"volume, max |diff| {r['max_abs_diff_vs_whole']:.1e}")
    results["summary_lines"] = lines
    for key, skip, part in (("disk_to_disk", args.no_disk, lambda: disk_to_disk(args.size, args.tile)),
                            ("versus_bm4d", args.no_bm4d, versus_bm4d)):
        results[key] = None
        if skip:
            continue
        try:
            results[key] = part()
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the rest of the run
            skipped.append(f"{key}: failed: {type(exc).__name__}: {exc}")
    results["skipped"] = skipped
    results["machine"] = {"cpu": cpu, "threads": args.threads, "platform": platform.platform(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
                          "seconds": round(time.perf_counter() - started, 1)}
    results["versions"] = versions()
    print_tables(results)
    from data_pipelines.io.atomic import atomic_path

    out = args.out or result_path("inference" + ("_quick" if args.quick else ""), cpu["model"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, force=True) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out} ({results['machine']['seconds']} s)")
    return 0


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
    """Peak RSS of a fresh process denoising a size^3 float32 .npy to a .npy (U-Net 8 filters, depth 2)."""
    model = build_keras_unet(DISK_FILTERS, DISK_DEPTH)
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
    """The zoo's 3D U-Net against BM4D (true sigma) on its held-out EPI crop: time, PSNR.

    As the card's ``evaluation_notes`` say: the network denoises the whole noisy source in
    source units as ``resprunet denoise`` does (``denoise_array``, the default tiling), scored
    on the crop in the card's reference units; BM4D gets the noisy crop and the true sigma.
    (With an older ``zoo.heldout_case`` that returns ``(clean, noisy, prior)`` the network
    runs on the noisy crop directly.)
    """
    from resprunet import zoo
    from resprunet.assess.metrics import psnr
    from resprunet.inference import denoise_array, predict_volume
    from resprunet.variational import bm4d_denoise

    if "unet3d_mri" not in zoo.list():
        return None
    model, card = zoo.load("unet3d_mri")
    case = zoo.heldout_case(card)
    sigma = float(card["evaluation"]["noise"]["sigma"])
    if isinstance(case, tuple):
        clean, noisy = case[0], case[1]

        def run() -> np.ndarray:
            return predict_volume(model, noisy, progress=False)
    else:
        clean, noisy = case.clean, case.noisy

        def run() -> np.ndarray:
            out = denoise_array(model, case.noisy_source, zoo.normalizer(card), progress=False)
            return case.reference(out)[case.crop]
    run()  # trace once
    start = time.perf_counter()
    net = run()
    net_s = time.perf_counter() - start
    start = time.perf_counter()
    bm = bm4d_denoise(noisy, sigma)
    bm_s = time.perf_counter() - start
    return {"volume": f"{card['evaluation']['source']} crop {card['evaluation']['crop']}",
            "shape": list(clean.shape), "sigma": sigma,
            "network_input": "noisy crop" if isinstance(case, tuple) else
            f"whole noisy source {list(case.noisy_source.shape)} via denoise_array",
            "noisy_psnr": round(psnr(clean, noisy, 1.0), 2),
            "unet3d_mri": {"seconds": round(net_s, 2), "psnr": round(psnr(clean, net, 1.0), 2)},
            "bm4d": {"seconds": round(bm_s, 2), "psnr": round(psnr(clean, bm, 1.0), 2)}}

if __name__ == "__main__":
    sys.exit(main())
