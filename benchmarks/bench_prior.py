"""Does a prior with independent information help? ResPr-UNet against U-Net, SPADE against TV,
beside BM3D with the true sigma, on two kinds of data where the prior carries information:

    python benchmarks/bench_prior.py                       # both datasets, ~25 min on 2 cores
    python benchmarks/bench_prior.py --data epi --epochs 2 --quick   # smoke run

``spectral`` - simulated spectral CT made from real CTs in HU. The published ResPr-UNet denoised
one energy bin with the energy-integrated image as its prior: the same anatomy with about
sqrt(bins) less noise and a contrast of its own. The bins come from
:mod:`data_pipelines.spectral` (a documented two-material model, 40/50/60/80/100 keV) applied
to CT slices shipped with pydicom-data; the normalisation is the fixed window 0-1 /cm. Roles
(disjoint; the test CTs come from other scanners and sources than the training ones):

- train: ``693_UNCR.dcm`` (head, CQ500) and ``explicit_VR-UN.dcm`` (abdomen, Pancreas-CT);
- validation: ``J2K_pixelrep_mismatch.dcm`` (another head);
- test: ``CT_small.dcm`` (GE, 128 x 128) and ``eCT_Supplemental.dcm`` (NEMA enhanced CT, 2
  slices of 512 x 512).

``epi`` - the temporal mean of a 4D series: nibabel's real EPI (fMRI) head series, 24 slices x
2 frames, percentile-normalised. In-domain (one subject), by disjoint slices: train 0-13,
validation 14-17, test 18-23.

Each frame or bin gets independent Gaussian noise of ``sigma`` (normalised units); the prior of
every method that takes one is the mean of the noisy frames or bins. The validation data
chooses the networks' checkpoint and tunes TV's weight and SPADE's (weight, alpha) by PSNR;
the test data is only reported. Both networks are 2D (``--ndim 3``: 3D, EPI only), 16
filters, depth 3, no batch norm, trained with the same recipe and number of steps; the U-Net
sees single frames (no prior), ResPr-UNet a frame and the prior. Scores, in the units of the normaliser fitted on the clean
test data (data range 1): PSNR of all test voxels of all frames, and the mean 2D SSIM of every
(slice, frame) image. Prints a table per dataset and writes
``benchmarks/results/bench_prior_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import data_pipelines as dp  # noqa: E402  (sets oneDNN on before TensorFlow loads)
from bench_training import result_path  # noqa: E402  (the shared results file name)
from resprunet.training.data import make_normalizer  # noqa: E402

BINS_KEV = (40.0, 50.0, 60.0, 80.0, 100.0)
SPECTRAL_CT = {"train": ("693_UNCR.dcm", "explicit_VR-UN.dcm"), "val": ("J2K_pixelrep_mismatch.dcm",),
               "test": ("CT_small.dcm", "eCT_Supplemental.dcm")}
EPI_SLICES = {"train": (0, 14), "val": (14, 18), "test": (18, 24)}


@dataclass
class PriorData:
    """Files of one dataset by role, and how the training configs read them.

    ``frames`` / ``stacks``: (z, y, x) single-frame files for the U-Net and (z, y, x, t)
    files for ResPr-UNet (the same data); ``test``: clean (z, y, x, t) arrays in source units.
    """

    name: str
    normalize: dict[str, Any]
    frames: dict[str, list[str]]
    stacks: dict[str, list[str]]
    test: list[np.ndarray]
    val: np.ndarray
    overrides: list[str]


def spectral_data(folder: Path) -> PriorData:
    """CT slices in HU as files; the configs make their bins (``data.spectral_kev``)."""
    from pydicom.data import get_testdata_file

    from data_pipelines.spectral import spectral_bins

    files: dict[str, list[str]] = {}
    for role, names in SPECTRAL_CT.items():
        for name in names:
            path = folder / f"{name.removesuffix('.dcm')}.npy"
            np.save(path, np.maximum(dp.read_volume(get_testdata_file(name)).array, -1024.0).astype(np.float32))
            files.setdefault(role, []).append(str(path))
    return PriorData(
        "spectral", {"method": "ct", "window": [0.0, 1.0]}, files, files,
        [spectral_bins(np.load(p), BINS_KEV) for p in files["test"]],
        spectral_bins(np.load(files["val"][0]), BINS_KEV),
        [f"data.spectral_kev=[{', '.join(str(e) for e in BINS_KEV)}]"],
    )


def epi_data(folder: Path) -> PriorData:
    """The EPI series cut into slabs of slices, as frame files and as 4D files."""
    series = dp.sample("epi_4d").array.astype(np.float32)
    frames: dict[str, list[str]] = {}
    stacks: dict[str, list[str]] = {}
    for role, (z0, z1) in EPI_SLICES.items():
        part = series[z0:z1]
        np.save(folder / f"epi_{role}.npy", part)
        stacks[role] = [str(folder / f"epi_{role}.npy")]
        for t in range(part.shape[-1]):
            np.save(folder / f"epi_{role}_frame{t}.npy", part[..., t])
            frames.setdefault(role, []).append(str(folder / f"epi_{role}_frame{t}.npy"))
    z0, z1 = EPI_SLICES["test"]
    v0, v1 = EPI_SLICES["val"]
    return PriorData("epi", {"method": "percentile", "low": 1.0, "high": 99.8}, frames, stacks,
                     [series[z0:z1]], series[v0:v1], [])


@dataclass
class TestCase:
    """One test array with its noise: clean and noisy in reference units (z, y, x, t), the
    noisy array in source units (the file a user has), the mean of the noisy frames."""

    clean: np.ndarray
    noisy: np.ndarray
    noisy_source: np.ndarray
    prior: np.ndarray
    reference: Any


def test_cases(data: PriorData, sigma: float, seed: int = 0) -> list[TestCase]:
    """The test arrays of ``data`` with Gaussian noise of ``sigma`` (seeded per array and by
    ``seed``)."""
    cases = []
    for i, source in enumerate(data.test):
        reference = make_normalizer(data.normalize).fit(source)
        clean = reference(source).astype(np.float32)
        noisy = (clean + sigma * np.random.default_rng(100 + i + 1000 * seed).standard_normal(clean.shape)).astype(np.float32)
        cases.append(TestCase(clean, noisy, reference.inverse(noisy), noisy.mean(axis=-1), reference))
    return cases


def network_output(name: str, model: Any, case: TestCase, data: PriorData, tta: bool = False) -> np.ndarray:
    """A network's output on a test case, in reference units, as `resprunet denoise` runs it
    (``tta``: as ``resprunet denoise --tta`` runs it)."""
    from resprunet.inference import denoise_array

    norm = make_normalizer(data.normalize)
    if name == "respr_unet":
        out = denoise_array(model, case.noisy_source, norm, prior="temporal", progress=False, tta=tta)
    else:
        out = np.stack([denoise_array(model, case.noisy_source[..., t], norm, progress=False, tta=tta)
                        for t in range(case.noisy.shape[-1])], axis=-1)
    return case.reference(out)


def curve_callback(name: str, data: PriorData, sigma: float, every: int, seed: int) -> Any:
    """A Keras callback that scores the network on the test data every ``every`` epochs:
    ``.points`` lists (epoch, seconds of training so far, test PSNR, SSIM); the scoring time
    is not counted as training."""
    import keras

    cases = test_cases(data, sigma, seed)

    class TestCurve(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.points: list[dict[str, float]] = []
            self.start, self.scoring = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if (epoch + 1) % every:
                return
            begin = time.perf_counter()
            score = scores([c.clean for c in cases], [network_output(name, self.model, c, data) for c in cases])
            self.points.append({"epoch": epoch + 1, "train_seconds": round(begin - self.start - self.scoring, 1),
                                **score})
            self.scoring += time.perf_counter() - begin
            print(f"curve {name}: {self.points[-1]}", flush=True)

    return TestCurve()


def train_network(name: str, data: PriorData, sigma: float, args: argparse.Namespace,
                  root: Path) -> tuple[Any, dict[str, Any]]:
    """Train ``unet`` (single frames) or ``respr_unet`` (a frame + the mean of the frames)."""
    from resprunet.training import load_config, train

    files = data.stacks if name == "respr_unet" else data.frames
    overrides = [
        f"data.train=[{', '.join(files['train'])}]", f"data.val=[{', '.join(files['val'])}]",
        "data.test=[]", "data.test_fraction=0.0",
        f"data.prior={'temporal' if name == 'respr_unet' else 'null'}",
        f"data.normalize={json.dumps(data.normalize)}",
        f"data.noise={{kind: gaussian, sigma: {sigma}}}",
        f"model.name={name}", f"model.ndim={args.ndim}", f"model.filters={args.filters}",
        f"model.depth={args.depth}", "model.batch_norm=false",
        f"data.patch_shape=[{'' if args.ndim == 2 else f'{args.patch_depth}, '}{args.patch}, {args.patch}]",
        "data.batch_size=8",
        f"data.patches_per_epoch={args.patches}", "data.val_patches=32", "data.foreground=0.3",
        f"epochs={args.epochs}", f"seed={args.seed}", "optimizer.learning_rate=1e-3", "optimizer.schedule=cosine",
        "callbacks.image_panel=false", "callbacks.histogram_freq=0",
        f"run.root={root}", f"run.name={data.name}_{name}_sigma{sigma}", *data.overrides,
    ]
    if name == "unet":
        overrides.append("model.residual=true")  # ResPr-UNet's skip is its prior
    curve = [curve_callback(name, data, sigma, args.curve_every, args.seed)] if args.curve_every else []
    result = train(load_config(overrides=overrides), verbose=2, callbacks=curve)
    import keras

    return keras.models.load_model(result.run_dir / "model.keras", compile=False), {
        "train_seconds": result.final_metrics["train_seconds"],
        "val_psnr_last": result.history["val_psnr"][-1],
        "val_baseline": result.final_metrics["val_baseline"],
        "steps": args.epochs * -(-args.patches // 8),
        **({"test_curve": curve[0].points} if curve else {}),
    }


def per_image(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], noisy: np.ndarray,
              prior: np.ndarray) -> np.ndarray:
    """Apply a 2D method ``fn(image, prior_image)`` to every (slice, frame) image."""
    out = np.empty_like(noisy)
    for z in range(noisy.shape[0]):
        for t in range(noisy.shape[-1]):
            out[z, ..., t] = fn(noisy[z, ..., t], prior[z])
    return out


def scores(cleans: list[np.ndarray], estimates: list[np.ndarray]) -> dict[str, float]:
    """PSNR (data range 1) of all voxels of all (z, y, x, t) test arrays together, and the
    mean 2D SSIM of every (slice, frame) image."""
    from resprunet.assess.metrics import ssim_2d

    squared = sum(float(np.sum((c - e) ** 2, dtype=np.float64)) for c, e in zip(cleans, estimates))
    mse = squared / sum(c.size for c in cleans)
    ssims = [ssim_2d(c[z, ..., t], e[z, ..., t], 1.0) for c, e in zip(cleans, estimates)
             for z in range(c.shape[0]) for t in range(c.shape[-1])]
    return {"psnr": round(float(10 * np.log10(1.0 / mse)), 3), "ssim": round(float(np.mean(ssims)), 4)}


def tune_classical(data: PriorData, sigma: float) -> dict[str, dict[str, float]]:
    """TV's weight and SPADE's (weight, alpha), tuned on one validation image and frame."""
    from resprunet.variational import spade_denoise, tune_on_validation, tv_denoise

    reference = make_normalizer(data.normalize).fit(data.val)
    clean = reference(data.val).astype(np.float32)
    noisy = (clean + sigma * np.random.default_rng(1).standard_normal(clean.shape)).astype(np.float32)
    prior = noisy.mean(axis=-1)
    z, t = clean.shape[0] // 2, clean.shape[-1] // 2
    tv = tune_on_validation(tv_denoise, clean[z, ..., t], noisy[z, ..., t],
                            {"weight": [sigma * f for f in (0.5, 0.8, 1.2, 1.8)]})
    spade = tune_on_validation(spade_denoise, clean[z, ..., t], noisy[z, ..., t],
                               {"weight": [sigma * f for f in (0.8, 1.2, 1.8)],
                                "alpha": [0.2, 0.4, 0.6, 0.8]},
                               prior=prior[z], bounds={"alpha": (0.0, 1.0)})
    return {"tv": tv, "spade": spade}


def evaluate(models: dict[str, Any], params: dict[str, dict[str, float]], data: PriorData,
             sigma: float, bm3d: bool, tta: bool = False, seed: int = 0) -> dict[str, dict[str, float]]:
    """Every method on every test array (all frames), with the test noise of ``seed``; scores
    over all of them. BM4D (each frame a volume) where the test arrays have at least 4
    slices; the networks in ``models`` (with ``tta`` also with test-time augmentation, rows
    ``... + tta``)."""
    from resprunet.variational import bm3d_denoise, bm4d_denoise, spade_denoise, tv_denoise

    outputs: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    cases = test_cases(data, sigma, seed)
    volumes = min(c.clean.shape[0] for c in cases) >= 4
    for case in cases:
        noisy, prior = case.noisy, case.prior

        def model_output(name: str, tta: bool = False) -> np.ndarray:
            return network_output(name, models[name], case, data, tta)

        methods: dict[str, Callable[[], np.ndarray]] = {
            "noisy": lambda: noisy,
            "prior (mean of frames)": lambda: np.repeat(prior[..., None], noisy.shape[-1], -1),
            "tv": lambda: per_image(lambda f, p: tv_denoise(f, **params["tv"]), noisy, prior),
            "spade (prior)": lambda: per_image(lambda f, p: spade_denoise(f, p, **params["spade"]),
                                               noisy, prior),
        }
        for name, row in (("unet", "unet"), ("respr_unet", "respr_unet (prior)")):
            if name in models:
                methods[row] = lambda name=name: model_output(name)
                if tta:
                    methods[f"{row} + tta"] = lambda name=name: model_output(name, True)
        if bm3d:
            methods["bm3d (true sigma)"] = lambda: per_image(lambda f, p: bm3d_denoise(f, sigma),
                                                             noisy, prior)
            if volumes:
                methods["bm4d (true sigma)"] = lambda: np.stack(
                    [bm4d_denoise(noisy[..., t], sigma) for t in range(noisy.shape[-1])], axis=-1)
        for method, run in methods.items():
            start = time.perf_counter()
            outputs.setdefault(method, []).append(np.asarray(run(), np.float32))
            seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - start
    cleans = [c.clean for c in cases]
    return {method: {**scores(cleans, outs), "seconds": round(seconds[method], 2)}
            for method, outs in outputs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("spectral", "epi"), action="append")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.1])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patches", type=int, default=256, help="training patches per epoch")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--ndim", type=int, choices=(2, 3), default=2,
                        help="2D networks (slices) or 3D networks (epi only: the frames are volumes)")
    parser.add_argument("--patch-depth", type=int, default=8, help="slices per 3D training patch")
    parser.add_argument("--tta", action="store_true",
                        help="also score the networks with test-time augmentation (8 y-x symmetries)")
    parser.add_argument("--quick", action="store_true", help="no BM3D, small networks")
    parser.add_argument("--curve-every", type=int, default=0, metavar="EPOCHS",
                        help="score the networks on the test data every EPOCHS epochs (PSNR against "
                             "training time, in the JSON)")
    parser.add_argument("--seed", type=int, default=0, help="training seed and test noise (0: the recorded runs')")
    parser.add_argument("--networks", nargs="+", choices=("unet", "respr_unet"), default=["unet", "respr_unet"])
    parser.add_argument("--name", default="prior", help="results file stem (bench_<name>_<cpu>_<date>.json)")
    args = parser.parse_args(argv)
    if args.ndim == 3 and (args.data is None or "spectral" in args.data):
        parser.error("--ndim 3 needs --data epi (the spectral CT test data are single slices)")
    if args.quick:
        args.filters, args.depth, args.patches = 4, 2, 32
    from resprunet.runtime import cpu_info
    from resprunet.variational import bm_available

    cpu = cpu_info()
    print(f"CPU: {cpu}")
    results: dict[str, Any] = {"cpu": cpu, "date": _dt.date.today().isoformat(), "args": vars(args),
                               "bins_kev": BINS_KEV, "spectral_ct": SPECTRAL_CT,
                               "epi_slices": EPI_SLICES, "datasets": {}}
    builders = {"spectral": spectral_data, "epi": epi_data}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.data or list(builders):
            folder = Path(tmp) / kind
            folder.mkdir()
            data = builders[kind](folder)
            for sigma in args.sigma:
                trained, training = {}, {}
                for name in args.networks:
                    trained[name], training[name] = train_network(name, data, sigma, args, folder / "runs")
                params = tune_classical(data, sigma)
                table = evaluate(trained, params, data, sigma, bm3d=bm_available("bm3d") and not args.quick,
                                 tta=args.tta, seed=args.seed)
                results["datasets"].setdefault(kind, {})[str(sigma)] = {
                    "training": training, "classical_params": params, "table": table}
                print(f"\n{kind}, sigma {sigma} (normalised units), test data, all frames")
                print(f"{'method':24s} {'PSNR dB':>8s} {'SSIM':>7s} {'seconds':>8s}")
                for method, row in table.items():
                    print(f"{method:24s} {row['psnr']:8.2f} {row['ssim']:7.4f} {row['seconds']:8.1f}")
                print("training:", json.dumps(training), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = result_path(args.name + ("-quick" if args.quick else ""), str(cpu.get("model", "cpu")))
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
