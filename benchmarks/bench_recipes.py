"""2D, 2.5D and 3D U-Nets trained alike, scored on a volume from another source.

    python benchmarks/bench_recipes.py            # 3 x ~4 min of training on 2 cores
    python benchmarks/bench_recipes.py --quick    # smoke run

Training on ``mni152_t1`` (the MNI152 template at 2 mm), checkpoint chosen on ``t1_head``
(another T1 head), test on the whole ``epi`` sample (a real EPI, another subject, contrast and
resolution), Gaussian noise sigma 0.1, percentile normalisation: the shipped configs' roles.
Rows: a 2D U-Net (slices), the same with ``context=2`` (2.5D: two noisy slices on each side as
channels), and a 3D U-Net; 16 filters, depth 2, no batch norm, residual, Adam 2e-3 with a
cosine schedule, the same number of epochs; the table gives each one's training time. The test
scores come from the run's ``final_metrics.json`` (``resprunet denoise``'s path). Prints a table
and writes ``benchmarks/results/bench_recipes_<cpu>_<date>.json``.
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

import data_pipelines  # noqa: E402,F401  (sets oneDNN on before TensorFlow loads)
from bench_training import result_path  # noqa: E402  (the shared results file name)

RECIPES: dict[str, list[str]] = {
    "2D U-Net": ["model.ndim=2", "data.patch_shape=[64, 64]", "data.val_patch_shape=[32, 32]",
                 "data.batch_size=8"],
    "2.5D U-Net (context 2)": ["model.ndim=2", "model.context=2", "data.patch_shape=[64, 64]",
                               "data.val_patch_shape=[32, 32]", "data.batch_size=8"],
    "3D U-Net": ["model.ndim=3", "data.patch_shape=[16, 48, 48]", "data.val_patch_shape=[16, 32, 32]",
                 "data.batch_size=4"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.patches, args.filters = 1, 16, 4
    from resprunet.runtime import cpu_info
    from resprunet.training import load_config, train

    cpu = cpu_info()
    print(f"CPU: {cpu}")
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in RECIPES.items():
            config = load_config(overrides=[
                "model.name=unet", f"model.filters={args.filters}", "model.depth=2",
                "model.batch_norm=false", "model.residual=true", f"epochs={args.epochs}",
                f"data.patches_per_epoch={args.patches}", "data.val_patches=16",
                "optimizer.learning_rate=2e-3", "optimizer.schedule=cosine",
                "callbacks.image_panel=false", "callbacks.histogram_freq=0",
                f"run.root={tmp}", *overrides,
            ])
            result = train(config, verbose=2)
            (ev,) = result.final_metrics["evaluations"]
            rows[name] = {"train_seconds": result.final_metrics["train_seconds"],
                          "noisy_psnr": round(ev["noisy_psnr"], 3), "psnr": round(ev["denoised_psnr"], 3),
                          "ssim": round(ev["denoised_ssim"], 4), "ssim_kind": ev["ssim_kind"]}
    print(f"\n{'recipe':26s} {'train s':>8s} {'PSNR dB':>8s} {'SSIM':>7s}  (test: epi, noisy "
          f"{next(iter(rows.values()))['noisy_psnr']:.2f} dB)")
    for name, row in rows.items():
        print(f"{name:26s} {row['train_seconds']:8.0f} {row['psnr']:8.2f} {row['ssim']:7.4f}  {row['ssim_kind']}")
    results = {"cpu": cpu, "date": _dt.date.today().isoformat(), "args": vars(args), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = result_path("recipes" + ("-quick" if args.quick else ""), str(cpu.get("model", "cpu")))
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
