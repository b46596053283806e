"""Throughput of ``make_dataset`` and the input-wait share of a small 3D U-Net training step.

Compares, on the same volume, patch shape (32, 64, 64), batch 4, Gaussian noise (sigma =
0.05 of the normalised range) and random flips:

* ``make_dataset``: the real pipeline (cached normalised volume, parallel stateless crops,
  noise and flips, shuffle, batch, prefetch);
* a plain Python generator doing the same crops, noise and flips with numpy through
  ``tf.data.Dataset.from_generator``;
* the original ResPr-UNet layout: crop + noise, then ``.cache()``, then batch, then shuffle.
  It is fast after the first epoch only because it replays the first epoch's patches: the
  noise is frozen (checked below), which is wrong (design science note 1).

Then the time per training step of ``build("unet", ndim=3, filters=8, depth=2)`` fed by the
real pipeline vs by pre-made in-memory tensors; the difference is the input wait (it
includes the CPU time the pipeline takes from the model). The time the loop spends blocked
in ``next(iterator)`` is reported too.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_pipeline.py [--quick]``.
Writes ``benchmarks/results/bench_pipeline.json``. Ratios are measured in one run, on
one (possibly shared) machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import data_pipelines as dp  # noqa: E402

PATCH = (32, 64, 64)
BATCH = 4
SIGMA = 0.05
RESULTS = Path(__file__).resolve().parent / "results" / "bench_pipeline.json"


def load_volume() -> tuple[np.ndarray, str]:
    """The MNI152 sample, percentile-normalised (a smooth phantom if samples are missing)."""
    try:
        vol = dp.sample("mni152_t1")
        name = "sample mni152_t1"
        array = vol.array
    except (dp.DataPipelineError, LookupError, OSError) as err:  # no samples: fall back, say so
        rng = np.random.default_rng(0)
        from scipy import ndimage

        array = ndimage.gaussian_filter(rng.random((100, 112, 96)), 3.0)
        name = f"smooth random phantom (sample unavailable: {err})"
    return dp.Normalizer.percentile(1, 99.8).fit(array)(array), name


def throughput(datasets: dict[str, tf.data.Dataset], batches: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median patches/s and process CPU ms per patch of each dataset, in alternating rounds.

    Each round opens a fresh iterator (so no dataset fills its buffers while another is
    timed), discards two warm-up batches, then times ``batches`` batches. Alternating the
    datasets spreads the load of a shared machine evenly over them; CPU time per patch
    does not depend on that load.
    """
    rates: dict[str, list[float]] = {name: [] for name in datasets}
    cpu: dict[str, list[float]] = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, ds in datasets.items():
            iterator = iter(ds)
            next(iterator)
            next(iterator)
            wall, proc = time.perf_counter(), time.process_time()
            for _ in range(batches):
                next(iterator)
            rates[name].append(batches * BATCH / (time.perf_counter() - wall))
            cpu[name].append(1000 * (time.process_time() - proc) / (batches * BATCH))
            del iterator
    return {n: {"patches_per_s": float(np.median(rates[n])), "cpu_ms_per_patch": float(np.median(cpu[n]))}
            for n in datasets}


def generator_dataset(volume: np.ndarray, seed: int) -> tf.data.Dataset:
    """Baseline (a): the same crops, noise and flips in numpy, one Python thread.

    Written as such loaders usually are: ``rng.standard_normal`` in float64, then a cast.
    """

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            z, y, x = (int(rng.integers(0, s - p + 1)) for s, p in zip(volume.shape, PATCH))
            clean = volume[z : z + PATCH[0], y : y + PATCH[1], x : x + PATCH[2]]
            for axis in range(3):
                if rng.random() < 0.5:
                    clean = np.flip(clean, axis)
            clean = np.rot90(clean, int(rng.integers(4)), axes=(1, 2))
            noisy = clean + SIGMA * rng.standard_normal(clean.shape)
            yield noisy[..., None].astype(np.float32), np.ascontiguousarray(clean[..., None], np.float32)

    spec = tf.TensorSpec((*PATCH, 1), tf.float32)
    return tf.data.Dataset.from_generator(generate, output_signature=(spec, spec)).batch(BATCH).prefetch(2)


def original_layout_dataset(volume: np.ndarray, n: int, seed: int) -> tf.data.Dataset:
    """Baseline (b): crop + noise, then cache, then batch, then shuffle (noise frozen)."""
    tf.random.set_seed(seed)
    vol = tf.constant(volume)
    limits = [s - p + 1 for s, p in zip(volume.shape, PATCH)]

    def crop_and_noise(_: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        corner = [tf.random.uniform([], 0, m, tf.int32) for m in limits]
        clean = tf.slice(vol, corner, PATCH)[..., None]
        if tf.random.uniform([]) < 0.5:
            clean = tf.reverse(clean, [2])
        return clean + tf.random.normal(tf.shape(clean), stddev=SIGMA), clean

    ds = tf.data.Dataset.range(n).map(crop_and_noise, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache().batch(BATCH).shuffle(8).prefetch(2)


def noise_is_frozen(ds: tf.data.Dataset) -> bool:
    """True when two epochs hold the same noisy patches (compared as a set of sums)."""
    sums = [sorted(np.round(n.numpy().sum(axis=(1, 2, 3, 4)), 3).tolist() for n, _ in ds) for _ in range(2)]
    return sorted(sum(sums[0], [])) == sorted(sum(sums[1], []))


def step_times(model, pipeline: tf.data.Dataset, premade: tuple, steps: int, rounds: int) -> dict[str, float]:
    """Training-step times fed by the pipeline and by pre-made in-memory tensors.

    Alternating rounds of ``steps`` ``train_on_batch`` calls (after a warm-up that traces
    and compiles), so the load of a shared machine hits both alike. Returns the median step
    time of each, and the share of the pipeline steps spent blocked in ``next(iterator)``.
    """
    iterator = iter(pipeline)
    for _ in range(2):
        model.train_on_batch(*premade)
        model.train_on_batch(*next(iterator))
    in_memory, fed, blocked = [], [], 0.0
    for _ in range(rounds):
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(*premade)
            in_memory.append(time.perf_counter() - start)
        for _ in range(steps):
            start = time.perf_counter()
            batch = next(iterator)
            got = time.perf_counter()
            model.train_on_batch(*batch)
            fed.append(time.perf_counter() - start)
            blocked += got - start
    return {"in_memory": float(np.median(in_memory)), "pipeline": float(np.median(fed)),
            "blocked_share": blocked / sum(fed)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and steps (a smoke run)")
    args = parser.parse_args(argv)
    batches, steps, rounds = (8, 3, 1) if args.quick else (25, 3, 8)
    load_start = os.getloadavg()[0]
    volume, source = load_volume()

    def pipeline() -> tf.data.Dataset:
        return dp.make_dataset(
            [volume], patch_shape=PATCH, noise=dp.GaussianNoise(SIGMA), batch_size=BATCH, seed=0,
            patches_per_epoch=100_000,
        )

    results: dict = {"volume": source, "volume_shape": list(volume.shape), "patch_shape": list(PATCH),
                     "batch_size": BATCH, "noise": dp.GaussianNoise(SIGMA).describe(), "quick": args.quick}
    speed = throughput({"make_dataset": pipeline(), "generator": generator_dataset(volume, 0)}, batches, rounds)
    for name, values in speed.items():
        results[f"{name}_patches_per_s"] = values["patches_per_s"]
        results[f"{name}_cpu_ms_per_patch"] = values["cpu_ms_per_patch"]
    original = original_layout_dataset(volume, n=rounds * batches * BATCH, seed=0)
    start = time.perf_counter()
    for _ in original:
        pass
    results["original_first_epoch_patches_per_s"] = rounds * batches * BATCH / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in original:
        pass
    results["original_cached_epoch_patches_per_s"] = rounds * batches * BATCH / (time.perf_counter() - start)
    results["original_noise_frozen_across_epochs"] = noise_is_frozen(original)
    results["make_dataset_noise_frozen_across_epochs"] = noise_is_frozen(
        dp.make_dataset([volume], patch_shape=PATCH, batch_size=BATCH, seed=0, patches_per_epoch=8)
    )
    results["speedup_vs_generator"] = results["make_dataset_patches_per_s"] / results["generator_patches_per_s"]

    from resprunet.models import build

    model = build("unet", ndim=3, filters=8, depth=2)
    model.compile(optimizer="adam", loss="mse")
    premade = next(iter(pipeline()))
    times = step_times(model, pipeline(), premade, steps, rounds)
    results["step_s_in_memory"], results["step_s_pipeline"] = times["in_memory"], times["pipeline"]
    results["blocked_in_next_share"] = times["blocked_share"]
    wait = max(0.0, results["step_s_pipeline"] - results["step_s_in_memory"])
    results["input_wait_share"] = wait / results["step_s_pipeline"]
    results["machine"] = {
        "cpu_count": os.cpu_count(),
        "load_average_1min_start": load_start,
        "load_average_1min_end": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    results["targets"] = {"speedup_vs_generator_min": 3.0, "input_wait_share_max": 0.05}
    report(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {RESULTS}")
    return results


def report(r: dict) -> None:
    """Print the results table."""
    rows = [
        ("make_dataset", f"{r['make_dataset_patches_per_s']:.1f} patches/s",
         f"noise frozen across epochs = {r['make_dataset_noise_frozen_across_epochs']}; "
         f"{r['make_dataset_cpu_ms_per_patch']:.1f} CPU ms/patch"),
        ("(a) Python generator", f"{r['generator_patches_per_s']:.1f} patches/s",
         f"make_dataset is {r['speedup_vs_generator']:.2f}x faster (target >= 3x); "
         f"{r['generator_cpu_ms_per_patch']:.1f} CPU ms/patch"),
        ("(b) original, 1st epoch", f"{r['original_first_epoch_patches_per_s']:.1f} patches/s", ""),
        ("(b) original, cached", f"{r['original_cached_epoch_patches_per_s']:.1f} patches/s",
         f"WRONG: noise frozen across epochs = {r['original_noise_frozen_across_epochs']}"),
        ("U-Net step, in-memory", f"{r['step_s_in_memory'] * 1000:.0f} ms", ""),
        ("U-Net step, pipeline", f"{r['step_s_pipeline'] * 1000:.0f} ms",
         f"input wait {100 * r['input_wait_share']:.1f} % of the step (target <= 5 %); "
         f"blocked in next() {100 * r['blocked_in_next_share']:.1f} %"),
    ]
    m = r["machine"]
    print(f"volume: {r['volume']} {tuple(r['volume_shape'])}; patch {tuple(r['patch_shape'])}, batch {r['batch_size']}")
    print(f"machine: {m['cpu_count']} CPUs, load average {m['load_average_1min_start']:.1f} -> "
          f"{m['load_average_1min_end']:.1f}, TensorFlow {m['tensorflow']}")
    for name, value, note in rows:
        print(f"  {name:<26} {value:>18}   {note}")


if __name__ == "__main__":
    main()
