"""Scaling benchmark: tiled inference of a volume larger than a worker's memory, on Dask.

    python benchmarks/bench_scale.py                        # 1 GiB workers, a 4.25 GiB volume
    python benchmarks/bench_scale.py --limit-mib 1536 --workers 1 2 4
    python benchmarks/bench_scale.py --quick                # smoke run (256 MiB volume)

A synthetic float32 volume of ``--factor`` x ``--limit-mib`` (default 4.25 x 1 GiB) is written
once as a Zarr array (chunks 64 x 256 x 256) and once as a ``.npy`` file. The same model (a
3D ConvNet of the repository, 2 filters: the benchmark measures the machinery, not the
network) denoises it with the same tiles (``--tile``, overlap raised to the receptive
field) three ways:

* **memmap**: :func:`resprunet.inference.predict_volume` in one fresh process, reading the
  ``.npy`` memory-mapped and writing a memory-mapped ``.npy`` (TensorFlow on all cores);
* **dask N**: :func:`resprunet.inference.distributed.predict_distributed` on a
  ``LocalCluster`` of N worker processes with ``memory_limit = --limit-mib`` each, from the
  Zarr input to a Zarr output; the cluster is started and the model loaded on every worker
  before the clock starts (start-up is reported apart).

Voxels/s is volume voxels over wall seconds. Peak memory is the largest resident set (RSS)
of each process, sampled every 0.1 s with psutil from this process (for Dask: per worker;
the client's own RSS is reported apart). The Dask outputs are compared with the memmap output
on a few slabs (max abs difference). Prints the CPU (``lscpu`` model name and flags), a table,
and writes ``benchmarks/results/bench_scale_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_pipelines  # noqa: E402,F401  (sets oneDNN on before TensorFlow loads)
from bench_training import result_path, versions  # noqa: E402

CHUNKS = (64, 256, 256)
YX = 2048


def lscpu() -> dict[str, str]:
    """``lscpu``'s model name and flags (empty strings where it has none)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    return {"model": fields.get("Model name", platform.processor() or "unknown"), "flags": fields.get("Flags", ""),
            "cpus": fields.get("CPU(s)", str(os.cpu_count()))}


class RssSampler:
    """Peak RSS (bytes) of processes, sampled every ``interval`` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        import psutil

        self.procs = {pid: psutil.Process(pid) for pid in pids}
        self.peak = {pid: 0 for pid in pids}
        self.interval = interval
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self.done.wait(self.interval):
            for pid, proc in self.procs.items():
                try:
                    self.peak[pid] = max(self.peak[pid], proc.memory_info().rss)
                except psutil.Error:  # a restarted or finished process
                    pass

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.thread.join()


def make_inputs(work: Path, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    """Write the same synthetic volume (a smooth pattern in [0.2, 0.8] plus Gaussian noise of
    sigma 0.1) as ``in.zarr`` (float32, :data:`CHUNKS`) and ``in.npy``, a slab of chunks at a time."""
    import zarr

    z_arr = zarr.create_array(store=str(work / "in.zarr"), shape=shape, chunks=CHUNKS, dtype="float32")
    npy = np.lib.format.open_memmap(work / "in.npy", mode="w+", dtype=np.float32, shape=shape)
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.arange(shape[1]) / shape[1], np.arange(CHUNKS[2]) / shape[2], indexing="ij")
    for z0 in range(0, shape[0], CHUNKS[0]):
        for x0 in range(0, shape[2], CHUNKS[2]):
            dz, dx = min(CHUNKS[0], shape[0] - z0), min(CHUNKS[2], shape[2] - x0)
            zz = np.arange(z0, z0 + dz, dtype=np.float32)[:, None, None] / shape[0]
            base = 0.5 + 0.3 * np.sin(12 * yy[:, :dx] + 9 * (xx[:, :dx] + x0 / shape[2]) + 5 * zz)
            slab = (base + rng.normal(0, 0.1, (dz, shape[1], dx))).astype(np.float32)
            z_arr[z0 : z0 + dz, :, x0 : x0 + dx] = slab
            npy[z0 : z0 + dz, :, x0 : x0 + dx] = slab
        npy.flush()
    del npy
    return work / "in.zarr", work / "in.npy"


def memmap_child(model_path: str, src: str, dst: str, tile: tuple[int, ...]) -> None:
    """Subprocess body: ``predict_volume`` from a memory-mapped .npy into a .npy; prints JSON."""
    from resprunet.inference import predict_volume
    from resprunet.inference.distributed import worker_model

    model = worker_model(model_path)
    x = np.load(src, mmap_mode="r")
    predict_volume(model, np.array(x[: tile[0], : tile[1], : tile[2]]), tile_shape=tile, overlap=0.0,
                   progress=False)  # trace once
    start = time.perf_counter()
    predict_volume(model, x, tile_shape=tile, overlap=0.0, batch_size=1, out=dst, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def run_memmap(model_path: Path, src: Path, dst: Path, tile: tuple[int, ...]) -> dict[str, Any]:
    # Linux carries a forked process's peak RSS across exec: a small launcher starts the child
    # (as in bench_inference.py), and RSS is sampled, not read from getrusage.
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    command = [sys.executable, __file__, "--memmap-child", str(model_path), str(src), str(dst),
               ",".join(map(str, tile))]
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", launcher, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = None
    while child is None and proc.poll() is None:
        kids = psutil.Process(proc.pid).children()
        child = kids[0].pid if kids else None
        time.sleep(0.05)
    with RssSampler([child] if child else []) as sampler:
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memmap child failed:\n{err[-3000:]}")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return {"path": "memmap (1 process)", "workers": 1, "seconds": round(seconds, 1),
            "peak_rss_mb": [round(max(sampler.peak.values(), default=0) / 2**20)]}


def _load_model(path: str) -> None:
    from resprunet.inference.distributed import worker_model

    worker_model(path)


def run_dask(model_path: Path, src: Path, dst: Path, tile: tuple[int, ...], workers: int,
             limit: int) -> dict[str, Any]:
    import psutil
    import zarr

    from resprunet.inference.cluster import connect
    from resprunet.inference.distributed import predict_distributed

    t0 = time.perf_counter()
    with connect(workers=workers, memory_limit=limit) as client:
        client.run(_load_model, str(model_path))  # every worker loads the model (and TensorFlow)
        startup = time.perf_counter() - t0
        pids = list(client.run(os.getpid).values())
        before = {pid: psutil.Process(pid).memory_info().rss for pid in pids}
        with RssSampler(pids + [os.getpid()]) as sampler:
            start = time.perf_counter()
            out = predict_distributed(model_path, zarr.open_array(str(src), mode="r"), dst, tile_shape=tile,
                                      overlap=0.0, batch_size=1, client=client, progress=False)
            seconds = time.perf_counter() - start
        restarts = len(set(client.run(os.getpid).values()) - set(pids))
    return {"path": f"dask ({workers} worker{'s' if workers > 1 else ''})", "workers": workers,
            "seconds": round(seconds, 1), "startup_seconds": round(startup, 1),
            "peak_rss_mb": [round(sampler.peak[p] / 2**20) for p in pids],
            "idle_rss_mb": [round(before[p] / 2**20) for p in pids],
            "client_peak_rss_mb": round(sampler.peak[os.getpid()] / 2**20), "worker_restarts": restarts,
            "blocks": list(out.chunks)}


def compare(a: Path, b: Path, shape: tuple[int, int, int]) -> float:
    """Max |zarr - npy| over three z slabs of 8 slices (start, middle, end)."""
    import zarr

    z_arr, npy = zarr.open_array(str(a), mode="r"), np.load(b, mmap_mode="r")
    worst = 0.0
    for z in (0, shape[0] // 2 - 4, shape[0] - 8):
        worst = max(worst, float(np.abs(np.asarray(z_arr[z : z + 8]) - npy[z : z + 8]).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-mib", type=int, default=1024, help="memory limit of each Dask worker, MiB")
    parser.add_argument("--factor", type=float, default=4.25, help="volume bytes / worker memory limit")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Dask worker counts")
    parser.add_argument("--tile", default="32,128,128", help="tile Z,Y,X (all runs)")
    parser.add_argument("--quick", action="store_true", help="a 256 MiB volume, 64 x 1024 x 1024 (smoke run)")
    parser.add_argument("--skip-memmap", action="store_true", help="Dask rows only (no single-process row)")
    parser.add_argument("--out", type=Path, help="JSON path (default results/bench_scale_<cpu>_<date>.json)")
    parser.add_argument("--memmap-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memmap_child:
        model_path, src, dst, tile = args.memmap_child
        memmap_child(model_path, src, dst, tuple(int(t) for t in tile.split(",")))
        return 0

    import keras

    from resprunet import models

    cpu = lscpu()
    print(f"CPU: {cpu['model']} ({cpu['cpus']} CPUs)\nflags: {cpu['flags']}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    limit = args.limit_mib * 2**20
    volume_bytes = (256 * 2**20) if args.quick else args.factor * limit
    side = 1024 if args.quick else YX
    shape = (max(CHUNKS[0], int(math.ceil(volume_bytes / (4 * side * side)))), side, side)
    tile = tuple(int(t) for t in args.tile.split(","))
    nbytes = 4 * math.prod(shape)
    print(f"volume {shape} float32 = {nbytes / 2**30:.2f} GiB = {nbytes / limit:.2f} x the worker memory "
          f"limit of {args.limit_mib} MiB; tiles {tile}")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        work = Path(tmp)
        keras.utils.set_random_seed(0)
        model = models.build("convnet", ndim=3, filters=2)
        model.save(work / "model.keras")
        t = time.perf_counter()
        src_zarr, src_npy = make_inputs(work, shape)
        print(f"inputs written in {time.perf_counter() - t:.0f} s")
        if not args.skip_memmap:
            rows.append(run_memmap(work / "model.keras", src_npy, work / "out.npy", tile))
            print(rows[-1])
        for n in args.workers:
            row = run_dask(work / "model.keras", src_zarr, work / f"out_{n}.zarr", tile, n, limit)
            if not args.skip_memmap:
                row["max_abs_diff_vs_memmap"] = compare(work / f"out_{n}.zarr", work / "out.npy", shape)
            rows.append(row)
            print(rows[-1])
            subprocess.run(["rm", "-rf", str(work / f"out_{n}.zarr")], check=False)
    for row in rows:
        row["voxels_per_second"] = round(math.prod(shape) / row["seconds"])
    print(f"\nTiled inference of a {shape} float32 volume ({nbytes / 2**30:.2f} GiB), ConvNet 3D "
          f"(2 filters), tiles {tile}, Dask worker memory limit {args.limit_mib} MiB; {cpu['model']}")
    print(f"{'path':22s} {'seconds':>8s} {'Mvoxels/s':>10s} {'peak RSS per worker (MiB)':>26s} {'start-up s':>10s}"
          f" {'max |diff|':>10s}")
    for r in rows:
        print(f"{r['path']:22s} {r['seconds']:8.1f} {r['voxels_per_second'] / 1e6:10.2f} "
              f"{', '.join(map(str, r['peak_rss_mb'])):>26s} {r.get('startup_seconds', ''):>10} "
              f"{r.get('max_abs_diff_vs_memmap', ''):>10}")
    results = {"cpu": cpu, "shape": shape, "volume_gib": round(nbytes / 2**30, 3), "tile": tile,
               "worker_memory_limit_mib": args.limit_mib, "model": "convnet 3D, 2 filters", "rows": rows,
               "load_average_after": os.getloadavg()[0], "seconds": round(time.perf_counter() - started),
               "versions": versions(), "platform": platform.platform()}
    out = args.out or result_path("scale" + ("-quick" if args.quick else ""), cpu["model"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
