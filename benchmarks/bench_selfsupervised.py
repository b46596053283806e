"""Denoisers trained from noisy data alone (N2V, N2V2, DivNoising) against the supervised U-Net
of the same size and budget, BM3D with the true noise and TV tuned elsewhere, in one run.

    python benchmarks/bench_selfsupervised.py                 # both noises, every method
    python benchmarks/bench_selfsupervised.py --epochs 2      # a smoke run
    python benchmarks/bench_selfsupervised.py --noise gaussian --methods n2v2 supervised

Training data (every learned method the same): ``skimage.data.cell()`` rows 0-400 and nine other
grey images bundled with scikit-image (the zoo's ``cell`` split, ``models_zoo/train_zoo.py``);
validation: cell rows 420-500. The supervised U-Net sees the clean images with fresh noise
every epoch (its advantage: it has clean data). N2V, N2V2 and DivNoising see only the noisy
images, each corrupted ONCE (seeded, like one acquisition; ``data.simulate_noise``), and choose
their checkpoint on the noisy validation loss: no clean image enters their training or model
choice. Same U-Net size (``--filters``, depth 3), patches, batch, steps and optimiser for all
U-Nets; DivNoising (a VAE of the same filters, depth 2, 32 latent channels) gets the same
number of steps and the true noise model (what a perfect calibration would give; it still sees
noisy data only), and its output is the MMSE of ``--samples`` posterior samples.

Test images (other sources, never trained on): scikit-image's ``moon`` (512 x 512, a lunar
photograph) and ``hubble_deep_field`` in grey (872 x 1000). Noise in the units of the
percentile normaliser fitted on the clean image: Gaussian sigma 0.1 and Poisson-Gaussian (30
photons at intensity 1, read noise 0.02). Each learned model denoises the noisy image in source
units as ``resprunet denoise`` does; TV and NL-means are tuned on noisy cell rows 0-400 (a
training-side image) with the same noise; BM3D gets the true noise (through the generalised
Anscombe transform for Poisson-Gaussian noise). PSNR at data range 1 and SSIM (2D) in reference
units; seconds of each method's denoising on this machine (models: after a warm-up call).

Prints a table per noise and test image and writes
``benchmarks/results/bench_selfsupervised_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data_pipelines as dp  # noqa: E402  (sets oneDNN on before TensorFlow loads)
from bench_quality import QualityCase, classical, score, skimage_image  # noqa: E402
from bench_training import result_path  # noqa: E402

PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}
NOISES = {
    "gaussian": {"kind": "gaussian", "sigma": 0.1},
    "poisson_gaussian": {"kind": "poisson_gaussian", "photons": 30.0, "sigma": 0.02},
}
LEARNED = ("supervised", "n2v", "n2v2", "divnoising")
TUNE = skimage_image("cell", slice(0, 400))
TESTS = (QualityCase("moon", skimage_image("moon"), TUNE, (), 2, photon_limited=True),
         QualityCase("hubble", skimage_image("hubble_deep_field"), TUNE, (), 2, photon_limited=True))


def train_config(method: str, noise: dict[str, Any], files: dict[str, list[str]], workdir: Path,
                 args: argparse.Namespace) -> Any:
    """The :class:`~resprunet.training.TrainConfig` of one learned method, same budget for all."""
    from resprunet.training import TrainConfig

    data = {"train": files["train"], "val": files["val"], "test": [], "patch_shape": [args.patch, args.patch],
            "normalize": PERCENTILE, "batch_size": args.batch_size, "patches_per_epoch": args.patches,
            "val_patches": 8, "augment": True, "noise": noise}
    values: dict[str, Any] = {
        "method": method, "data": data, "epochs": args.epochs, "loss": "mse", "seed": 0, "precision": "float32",
        "model": {"name": "unet", "ndim": 2, "filters": args.filters, "depth": 3, "batch_norm": False},
        "optimizer": {"learning_rate": 2e-3, "schedule": "cosine", "final_fraction": 0.05},
        "callbacks": {"histogram_freq": 0, "image_panel": False},
        "run": {"root": str(workdir / "runs"), "name": method},
    }
    if method != "supervised":  # noisy data alone: each image corrupted once
        data["simulate_noise"] = noise
    if method in ("n2v", "n2v2"):
        values["blindspot"] = {"fraction": args.fraction, "window": 5, "replacement": args.replacement}
    if method == "divnoising":  # the true noise model: a perfect calibration (noisy data still)
        values["model"] = {"name": "divnoising", "ndim": 2, "filters": args.filters, "depth": 2,
                           "latent_channels": 32}
        values["divnoising"] = {"noise_model": noise, "kl_weight": 1.0, "samples": args.samples}
    return TrainConfig.from_dict(values)


def learned_denoiser(method: str, run_dir: Path, samples: int,
                     tta: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function (1, y, x) source units -> (1, y, x) source units for a trained run (``tta``:
    the mean over the 8 flips and quarter turns, as ``resprunet denoise --tta``; not for
    DivNoising)."""
    from resprunet import zoo
    from resprunet.inference import denoise_array
    from resprunet.training.data import make_normalizer

    normalizer = make_normalizer(PERCENTILE)
    if method == "divnoising":
        from resprunet.divnoising import denoise_divnoising, load_divnoising

        vae, _ = load_divnoising(run_dir)
        return lambda noisy: denoise_divnoising(vae, noisy, normalizer, samples=samples, progress=False)[0]
    model, _ = zoo.load_path(run_dir / "model.keras")
    return lambda noisy: denoise_array(model, noisy, normalizer, progress=False, tta=tta)


def run_noise(label: str, noise_spec: dict[str, Any], methods: list[str], files: dict[str, list[str]],
              workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train every learned method with this noise, then score all methods on the test images."""
    from resprunet.training import train

    denoisers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    training: dict[str, float] = {}
    for method in methods:
        start = time.perf_counter()
        result = train(train_config(method, noise_spec, files, workdir / label, args), verbose=2)
        training[method] = round(time.perf_counter() - start, 1)
        denoisers[method] = learned_denoiser(method, result.run_dir, args.samples)
        if args.tta and method != "divnoising":
            denoisers[f"{method} + tta"] = learned_denoiser(method, result.run_dir, args.samples, tta=True)
    noise = dp.NoiseModel.from_dict(noise_spec)
    sigma, photons = float(noise_spec["sigma"]), noise_spec.get("photons")
    out: dict[str, Any] = {"training_seconds": training, "images": {}}
    for case in TESTS:
        source = case.load()
        reference = dp.Normalizer.percentile(PERCENTILE["low"], PERCENTILE["high"]).fit(source)
        clean = reference(source).astype(np.float32)
        noisy = noise(clean, np.random.default_rng(0)).astype(np.float32)
        noisy_source = reference.inverse(noisy).astype(np.float32)
        table = {"noisy": {**score(clean, noisy, 2), "seconds": 0.0}}
        for method, denoise in denoisers.items():
            denoise(noisy_source)  # warm-up: tracing is not timed
            start = time.perf_counter()
            estimate = reference(denoise(noisy_source)).astype(np.float32)
            table[method] = {**score(clean, estimate, 2), "seconds": round(time.perf_counter() - start, 2)}
        tune_reference = dp.Normalizer.percentile(PERCENTILE["low"], PERCENTILE["high"]).fit(case.tune())
        for name, method in classical(case, tune_reference, noise, sigma, photons, not args.no_bm).items():
            start = time.perf_counter()
            estimate = np.asarray(method(noisy), np.float32).reshape(clean.shape)
            table[name] = {**score(clean, estimate, 2), "seconds": round(time.perf_counter() - start, 2)}
        out["images"][case.name] = {"shape": list(clean.shape), "methods": table}
        print(f"\n{case.name} {clean.shape}, {noise.describe()}")
        print(f"{'method':28s} {'PSNR dB':>8s} {'SSIM':>7s} {'seconds':>8s} {'training s':>11s}")
        for name, row in table.items():
            trained = f"{training[name]:11.0f}" if name in training else ""
            print(f"{name:28s} {row['psnr']:8.2f} {row['ssim']:7.4f} {row['seconds']:8.2f} {trained}")
    return out


def merged(earlier: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` results of one noise with the learned methods of ``earlier`` (same data, noise and
    budget, trained in an earlier run today) that ``new`` did not train kept beside them."""
    if earlier is None:
        return new
    out = {"training_seconds": {**earlier["training_seconds"], **new["training_seconds"]}, "images": {}}
    for image, result in new["images"].items():
        kept = {m: row for m, row in earlier["images"][image]["methods"].items() if m in earlier["training_seconds"]}
        out["images"][image] = {**result, "methods": {**kept, **result["methods"]}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", choices=sorted(NOISES), default=sorted(NOISES))
    parser.add_argument("--methods", nargs="+", choices=LEARNED, default=list(LEARNED))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=256, help="training patches per epoch")
    parser.add_argument("--patch", type=int, default=64, help="side of the square training patches")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--filters", type=int, default=16, help="U-Net filters at the top level (depth 3)")
    parser.add_argument("--fraction", type=float, default=0.005, help="N2V/N2V2 masked fraction per patch")
    parser.add_argument("--replacement", choices=("random", "median"), default="random",
                        help="what N2V/N2V2 show at a masked pixel: a random neighbour or the neighbours' median")
    parser.add_argument("--samples", type=int, default=32, help="DivNoising posterior samples for the MMSE")
    parser.add_argument("--no-bm", action="store_true", help="skip BM3D")
    parser.add_argument("--tta", action="store_true",
                        help="also score the U-Nets with test-time augmentation (rows 'METHOD + tta')")
    parser.add_argument("--tag", help="suffix of the results file (a run with another budget keeps today's)")
    args = parser.parse_args(argv)
    from models_zoo.train_zoo import split_files
    from resprunet.runtime import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu}")
    results: dict[str, Any] = {"cpu": cpu, "date": _dt.date.today().isoformat(), "settings": dict(vars(args)),
                               "noises": {}}  # a copy: merging below must not change the methods trained
    out = result_path("selfsupervised" + (f"-{args.tag}" if args.tag else ""), str(cpu.get("model", "cpu")))
    earlier = json.loads(out.read_text()) if out.exists() else {}
    same_budget = {k: v for k, v in vars(args).items() if k not in ("methods", "noise", "tag")}
    if {k: v for k, v in earlier.get("settings", {}).items() if k not in ("methods", "noise", "tag")} == same_budget:
        results["noises"] = earlier["noises"]  # today's run of other methods with the same budget: kept
        for key in ("methods", "noise"):
            results["settings"][key] = sorted(set(earlier["settings"][key]) | set(getattr(args, key)))
    with tempfile.TemporaryDirectory(prefix="bench_selfsupervised-") as tmp:
        files = split_files(Path(tmp), "cell")
        for label in args.noise:
            new = run_noise(label, NOISES[label], args.methods, files, Path(tmp), args)
            results["noises"][label] = merged(results["noises"].get(label), new)
            out.write_text(json.dumps(results, indent=1))  # after every noise: nothing lost
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
