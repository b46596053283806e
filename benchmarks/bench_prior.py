"""Does a prior with independent information help? ResPr-UNet against U-Net, SPADE against TV,
on simulated spectral CT made from real CTs in HU, beside BM3D with the true sigma.

    python benchmarks/bench_prior.py                      # 2 x ~12 min of training on 2 cores
    python benchmarks/bench_prior.py --epochs 2 --quick   # smoke run

The published ResPr-UNet denoised one energy bin of a spectral CT with the energy-integrated
image as its prior: the same anatomy with about sqrt(bins) less noise and a contrast of its
own. Here the bins come from :mod:`data_pipelines.spectral` (a documented two-material model,
40/50/60/80/100 keV) applied to real CT slices shipped with pydicom-data, each bin gets
independent Gaussian noise of ``sigma`` (normalised units: the window 0-1 /cm maps to 0-1), and
the prior of every method that takes one is the mean of the noisy bins.

Roles (disjoint, and the test CTs come from other scanners and sources than the training ones):

- train: ``693_UNCR.dcm`` (head, CQ500) and ``explicit_VR-UN.dcm`` (abdomen, Pancreas-CT);
- validation: ``J2K_pixelrep_mismatch.dcm`` (another head): chooses the networks' checkpoint
  and tunes TV's and SPADE's parameters (PSNR against its clean bins);
- test: ``CT_small.dcm`` (GE, 128 x 128) and ``eCT_Supplemental.dcm`` (NEMA enhanced CT, 2
  slices of 512 x 512): only reported.

Both networks are 2D, 16 filters, depth 3, no batch norm, residual, trained with the same
recipe and number of steps; the U-Net sees single bins (no prior), ResPr-UNet a bin and the
prior. Scores: PSNR (data range 1) of all test voxels of all bins, and the mean 2D SSIM of
every (slice, bin) image. Prints a table and writes
``benchmarks/results/bench_prior_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data_pipelines as dp  # noqa: E402  (sets oneDNN on before TensorFlow loads)

BINS_KEV = (40.0, 50.0, 60.0, 80.0, 100.0)
WINDOW = (0.0, 1.0)  # 1/cm -> [0, 1]
TRAIN = ("693_UNCR.dcm", "explicit_VR-UN.dcm")
VAL = "J2K_pixelrep_mismatch.dcm"
TEST = ("CT_small.dcm", "eCT_Supplemental.dcm")


def ct_files(folder: Path) -> dict[str, Path]:
    """Every CT of the benchmark as a .npy in HU (values below -1024, outside the field of
    view, raised to -1024), so that a training config can name it."""
    from pydicom.data import get_testdata_file

    paths = {}
    for name in (*TRAIN, VAL, *TEST):
        hu = dp.read_volume(get_testdata_file(name)).array
        paths[name] = folder / f"{name.removesuffix('.dcm')}.npy"
        np.save(paths[name], np.maximum(hu, -1024.0).astype(np.float32))
    return paths


def train_network(name: str, paths: dict[str, Path], sigma: float, args: argparse.Namespace,
                  root: Path) -> tuple[Any, dict[str, Any]]:
    """Train ``unet`` (single bins) or ``respr_unet`` (bin + energy-integrated prior)."""
    from resprunet.training import load_config, train

    overrides = [
        f"data.train=[{', '.join(str(paths[n]) for n in TRAIN)}]",
        f"data.val=[{paths[VAL]}]", "data.test=[]", "data.test_fraction=0.0",
        f"data.spectral_kev=[{', '.join(str(e) for e in BINS_KEV)}]",
        f"data.prior={'temporal' if name == 'respr_unet' else 'null'}",
        f"data.normalize={{method: ct, window: [{WINDOW[0]}, {WINDOW[1]}]}}",
        f"data.noise={{kind: gaussian, sigma: {sigma}}}",
        f"model.name={name}", "model.ndim=2", f"model.filters={args.filters}",
        f"model.depth={args.depth}", "model.batch_norm=false", "model.residual=true",
        f"data.patch_shape=[{args.patch}, {args.patch}]", "data.batch_size=8",
        f"data.patches_per_epoch={args.patches}", "data.val_patches=32", "data.foreground=0.3",
        f"epochs={args.epochs}", "optimizer.learning_rate=1e-3", "optimizer.schedule=cosine",
        "callbacks.image_panel=false", "callbacks.histogram_freq=0",
        f"run.root={root}", f"run.name={name}_sigma{sigma}",
    ]
    if name == "respr_unet":
        overrides.remove("model.residual=true")  # its skip is the prior
    result = train(load_config(overrides=overrides), verbose=2)
    import keras

    return keras.models.load_model(result.run_dir / "model.keras", compile=False), {
        "train_seconds": result.final_metrics["train_seconds"],
        "val_psnr_last": result.history["val_psnr"][-1],
        "val_baseline": result.final_metrics["val_baseline"],
        "steps": args.epochs * -(-args.patches // 8),
    }


def bins_of(path: Path) -> np.ndarray:
    """(z, y, x, bins) attenuation, normalised by the fixed window (so in [0, ~1.3])."""
    from data_pipelines.spectral import spectral_bins

    return (spectral_bins(np.load(path), BINS_KEV) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])


def noisy_of(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return (clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)).astype(np.float32)


def per_image(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], noisy: np.ndarray,
              prior: np.ndarray) -> np.ndarray:
    """Apply a 2D method ``fn(image, prior_image)`` to every (slice, bin) image."""
    out = np.empty_like(noisy)
    for z in range(noisy.shape[0]):
        for b in range(noisy.shape[-1]):
            out[z, ..., b] = fn(noisy[z, ..., b], prior[z])
    return out


def scores(cleans: list[np.ndarray], estimates: list[np.ndarray]) -> dict[str, float]:
    """PSNR (data range 1) of all voxels of all (z, y, x, bins) test CTs together, and the
    mean 2D SSIM of every (slice, bin) image."""
    from resprunet.assess.metrics import ssim_2d

    squared = sum(float(np.sum((c - e) ** 2, dtype=np.float64)) for c, e in zip(cleans, estimates))
    mse = squared / sum(c.size for c in cleans)
    ssims = [ssim_2d(c[z, ..., b], e[z, ..., b], 1.0) for c, e in zip(cleans, estimates)
             for z in range(c.shape[0]) for b in range(c.shape[-1])]
    return {"psnr": round(10 * np.log10(1.0 / mse), 3), "ssim": round(float(np.mean(ssims)), 4)}


def tune_classical(paths: dict[str, Path], sigma: float) -> dict[str, dict[str, float]]:
    """TV's weight and SPADE's (weight, alpha), tuned on the validation CT's 60 keV bin."""
    from resprunet.variational import spade_denoise, tune_on_validation, tv_denoise

    clean = bins_of(paths[VAL])
    noisy = noisy_of(clean, sigma, seed=1)
    prior = noisy.mean(axis=-1)
    b = BINS_KEV.index(60.0)
    tv = tune_on_validation(tv_denoise, clean[0, ..., b], noisy[0, ..., b],
                            {"weight": [sigma * f for f in (0.5, 0.8, 1.2, 1.8)]})
    spade = tune_on_validation(spade_denoise, clean[0, ..., b], noisy[0, ..., b],
                               {"weight": [sigma * f for f in (0.8, 1.2, 1.8)],
                                "alpha": [0.2, 0.4, 0.6, 0.8]},
                               prior=prior[0], bounds={"alpha": (0.0, 1.0)})
    return {"tv": tv, "spade": spade}


def evaluate(models: dict[str, Any], params: dict[str, dict[str, float]], paths: dict[str, Path],
             sigma: float, bm3d: bool) -> dict[str, dict[str, float]]:
    """Every method on every test CT (all bins); scores over all test images."""
    from resprunet.inference import denoise_array
    from resprunet.variational import bm3d_denoise, spade_denoise, tv_denoise

    norm = dp.Normalizer.ct(WINDOW)
    outputs: dict[str, list[np.ndarray]] = {}
    cleans: list[np.ndarray] = []
    seconds: dict[str, float] = {}
    for i, name in enumerate(TEST):
        clean = bins_of(paths[name])
        noisy = noisy_of(clean, sigma, seed=100 + i)
        prior = noisy.mean(axis=-1)
        cleans.append(clean)
        methods: dict[str, Callable[[], np.ndarray]] = {
            "noisy": lambda: noisy,
            "prior (mean of bins)": lambda: np.repeat(prior[..., None], noisy.shape[-1], -1),
            "tv": lambda: per_image(lambda f, p: tv_denoise(f, **params["tv"]), noisy, prior),
            "spade (prior)": lambda: per_image(lambda f, p: spade_denoise(f, p, **params["spade"]),
                                               noisy, prior),
        }
        if bm3d:
            methods["bm3d (true sigma)"] = lambda: per_image(lambda f, p: bm3d_denoise(f, sigma),
                                                             noisy, prior)
        if "unet" in models:
            methods["unet"] = lambda: np.stack(
                [denoise_array(models["unet"], noisy[..., b], norm, progress=False)
                 for b in range(noisy.shape[-1])], axis=-1)
        if "respr_unet" in models:
            methods["respr_unet (prior)"] = lambda: denoise_array(
                models["respr_unet"], noisy, norm, prior="temporal", progress=False)
        for method, run in methods.items():
            start = time.perf_counter()
            outputs.setdefault(method, []).append(np.asarray(run(), np.float32))
            seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - start
    return {method: {**scores(cleans, outs), "seconds": round(seconds[method], 2)}
            for method, outs in outputs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.1])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=256, help="training patches per epoch")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="no BM3D, small networks")
    args = parser.parse_args(argv)
    if args.quick:
        args.filters, args.depth, args.patches = 4, 2, 32
    from resprunet.runtime import cpu_info
    from resprunet.variational import bm_available

    cpu = cpu_info()
    print(f"CPU: {cpu}")
    results: dict[str, Any] = {"cpu": cpu, "date": _dt.date.today().isoformat(), "args": vars(args),
                               "bins_kev": BINS_KEV, "train": TRAIN, "val": VAL, "test": TEST,
                               "sigmas": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = ct_files(Path(tmp))
        for sigma in args.sigma:
            trained, training = {}, {}
            for name in ("unet", "respr_unet"):
                trained[name], training[name] = train_network(name, paths, sigma, args, Path(tmp) / "runs")
            params = tune_classical(paths, sigma)
            table = evaluate(trained, params, paths, sigma, bm3d=bm_available("bm3d") and not args.quick)
            results["sigmas"][str(sigma)] = {"training": training, "classical_params": params,
                                             "table": table}
            print(f"\nsigma {sigma} (normalised; window 0-1 /cm), test {', '.join(TEST)}, all bins")
            print(f"{'method':24s} {'PSNR dB':>8s} {'SSIM':>7s} {'seconds':>8s}")
            for method, row in table.items():
                print(f"{method:24s} {row['psnr']:8.2f} {row['ssim']:7.4f} {row['seconds']:8.1f}")
            print("training:", json.dumps(training))
    RESULTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", str(cpu.get("model", "cpu")).lower()).strip("-")
    out = RESULTS / f"bench_prior_{slug}_{results['date']}{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
