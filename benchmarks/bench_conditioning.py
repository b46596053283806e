"""Does telling a blind model the noise level help? Two blind 2D U-Nets trained alike on CT, one
with the noise-level map as a second input (``noise_map``), tested across noise levels on CTs
from other sources.

    python benchmarks/bench_conditioning.py            # 2 x ~5 min of training on 2 cores
    python benchmarks/bench_conditioning.py --quick    # smoke run

Training: ``693_UNCR.dcm`` (head, CQ500) and ``explicit_VR-UN.dcm`` (abdomen, Pancreas-CT) in
HU, window -1000..400 HU -> 0..1, Gaussian sigma drawn per patch from (0, 0.2); validation
(checkpoint): ``ct_slices`` subject 1 (the NEMA enhanced CT). Both U-Nets: 16 filters, depth 3,
no batch norm, residual, the same steps and recipe. Test (never seen): ``CT_small.dcm`` (GE,
128 x 128) and ``J2K_pixelrep_mismatch.dcm`` (a head, 512 x 512) at sigma 0.02, 0.05, 0.1 and
0.15, denoised as ``resprunet denoise`` does (``denoise_array``); the conditioned model once
with the true sigma (``--sigma``) and once with sigma estimated from the input (the default).
PSNR (data range 1) over both test images, mean 2D SSIM. Prints a table and writes
``benchmarks/results/bench_conditioning_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data_pipelines as dp  # noqa: E402  (sets oneDNN on before TensorFlow loads)
from bench_training import result_path  # noqa: E402  (the shared results file name)

TRAIN = ("693_UNCR.dcm", "explicit_VR-UN.dcm")
TEST = ("CT_small.dcm", "J2K_pixelrep_mismatch.dcm")
WINDOW = (-1000.0, 400.0)
SIGMAS = (0.02, 0.05, 0.1, 0.15)


def hu(name: str) -> np.ndarray:
    from pydicom.data import get_testdata_file

    return np.maximum(dp.read_volume(get_testdata_file(name)).array, -1024.0).astype(np.float32)


def train_blind(conditioned: bool, folder: Path, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import keras

    from resprunet.training import load_config, train

    train_files = []
    for name in TRAIN:
        np.save(folder / f"{name[:-4]}.npy", hu(name))
        train_files.append(str(folder / f"{name[:-4]}.npy"))
    val = dp.sample("ct_slices")
    np.save(folder / "val.npy", val.array[np.asarray(val.meta["subject"]) == 1].astype(np.float32))
    overrides = [
        f"data.train=[{', '.join(train_files)}]", f"data.val=[{folder / 'val.npy'}]", "data.test=[]",
        f"data.normalize={{method: ct, window: [{WINDOW[0]}, {WINDOW[1]}]}}",
        "data.noise={kind: gaussian, sigma: [0.0, 0.2]}", "model.name=unet", "model.ndim=2",
        f"model.filters={args.filters}", f"model.depth={args.depth}", "model.batch_norm=false",
        "model.residual=true", f"model.noise_map={str(conditioned).lower()}",
        f"data.patch_shape=[{args.patch}, {args.patch}]", "data.batch_size=8",
        f"data.patches_per_epoch={args.patches}", "data.val_patches=32", "data.foreground=0.3",
        f"epochs={args.epochs}", "optimizer.learning_rate=1e-3", "callbacks.image_panel=false",
        "callbacks.histogram_freq=0", f"run.root={folder / 'runs'}",
        f"run.name=blind_{'conditioned' if conditioned else 'plain'}",
    ]
    result = train(load_config(overrides=overrides), verbose=2)
    model = keras.models.load_model(result.run_dir / "model.keras", compile=False)
    return model, {"train_seconds": result.final_metrics["train_seconds"],
                   "val_psnr_last": result.history["val_psnr"][-1],
                   "steps": args.epochs * -(-args.patches // 8)}


def evaluate(models: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    from resprunet.assess.metrics import ssim_2d
    from resprunet.inference import denoise_array

    norm = dp.Normalizer.ct(WINDOW)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for sigma in SIGMAS:
        squared: dict[str, float] = {}
        ssims: dict[str, list[float]] = {}
        voxels = 0
        for i, name in enumerate(TEST):
            clean = norm(hu(name))
            noisy = (clean + sigma * np.random.default_rng(10 + i).standard_normal(clean.shape)).astype(np.float32)
            source = norm.inverse(noisy)
            outputs = {
                "noisy": noisy,
                "blind U-Net": norm(denoise_array(models["plain"], source, norm, progress=False)),
                "conditioned, true sigma": norm(denoise_array(models["conditioned"], source, norm,
                                                              sigma=sigma, progress=False)),
                "conditioned, sigma estimated": norm(denoise_array(models["conditioned"], source, norm,
                                                                   progress=False)),
            }
            voxels += clean.size
            for method, out in outputs.items():
                squared[method] = squared.get(method, 0.0) + float(np.sum((out - clean) ** 2, dtype=np.float64))
                ssims.setdefault(method, []).extend(ssim_2d(clean[z], out[z], 1.0) for z in range(len(clean)))
        table[str(sigma)] = {m: {"psnr": round(10 * np.log10(voxels / squared[m]), 3),
                                 "ssim": round(float(np.mean(ssims[m])), 4)} for m in squared}
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.filters, args.depth, args.patches = 1, 4, 2, 32
    from resprunet.runtime import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu}")
    with tempfile.TemporaryDirectory() as tmp:
        trained, training = {}, {}
        for key, conditioned in (("plain", False), ("conditioned", True)):
            folder = Path(tmp) / key
            folder.mkdir()
            trained[key], training[key] = train_blind(conditioned, folder, args)
        table = evaluate(trained)
    print(f"\n{'sigma':>6s} {'method':30s} {'PSNR dB':>8s} {'SSIM':>7s}")
    for sigma, rows in table.items():
        for method, row in rows.items():
            print(f"{sigma:>6s} {method:30s} {row['psnr']:8.2f} {row['ssim']:7.4f}")
    print("training:", json.dumps(training))
    results = {"cpu": cpu, "date": _dt.date.today().isoformat(), "args": vars(args), "train": TRAIN,
               "test": TEST, "training": training, "table": table}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = result_path("conditioning" + ("-quick" if args.quick else ""), str(cpu.get("model", "cpu")))
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
