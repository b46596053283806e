"""The zoo models against TV, NL-means and BM3D/BM4D on real volumes from other sources than
their training data, run through ``resprunet denoise`` on files.

    python benchmarks/bench_quality.py              # every case, sigma 0.05 and 0.1 (+ PG)
    python benchmarks/bench_quality.py --quick      # one sigma, no BM3D/BM4D

Each case is a clean real volume a zoo model never saw in training or checkpoint choice:

===================  ======================================  =================================
case                 source                                  zoo models (their training data)
===================  ======================================  =================================
epi MRI              nibabel example4d (EPI, frame 0), 3D    unet3d_mri, blind_unet3d_mri,
                                                             respr_unet3d_mri (MNI152
                                                             template, t1_head)
CT_small CT (HU)     pydicom CT_small.dcm (GE, 128 x 128)    unet2d_ct, blind_unet2d_ct
head CT (HU)         pydicom J2K_pixelrep_mismatch.dcm       (CQ500 head 693_UNCR and
                     (512 x 512)                             Pancreas-CT explicit_VR-UN)
hubble (photons)     scikit-image hubble_deep_field (gray)   microscopy_unet2d_pg (cell rows
                                                             0-400)
ihc histology (RGB)  scikit-image immunohistochemistry       histology_irunet2d_rgb (rows
                     rows 416-512: the SAME image as the     0-320 of that image; the issue's
                     training rows, never trained on         own test)
===================  ======================================  =================================

The noise is added in the units of the case's normaliser (the first model's card) fitted on
the clean volume: Gaussian with ``sigma`` (0.05, 0.1: 5 %, 10 % of the range), and, for the
photon-limited case, Poisson-Gaussian (30 photons at intensity 1, read noise 0.02) as the
microscopy model was trained with. The noisy volume is written to ``.npy`` in source units and
denoised with ``resprunet denoise`` (in process, ``resprunet.cli.main``), exactly as a user
would. TV's weight and NL-means' ``h`` are tuned on another volume of the same kind with the
same noise (MRI: t1_head; CT: ct_slices subject 1, the NEMA enhanced CT; photons: scikit-image
``cell``) - never on the test case; BM3D (2D, slice by slice) and BM4D (3D) get the true sigma
(through the generalised Anscombe transform for Poisson-Gaussian noise). Scores at data range 1:
PSNR of the whole volume; SSIM 3D for the 3D case, else the mean 2D SSIM of the slices (colour:
averaged over channels); seconds of each method on this machine (a model's: one whole
``resprunet denoise`` call, loading the model and reading and writing the files included, after
an untimed warm-up call that starts TensorFlow; ``--repeat N``: the median of N timed runs of
every method, recorded per case). With ``--tta`` every model is also run with ``resprunet
denoise --tta`` (the mean over the 8 flips and quarter turns of the y-x plane).

Prints a table per case and writes ``benchmarks/results/bench_quality_<cpu>_<date>.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
import tempfile
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
from bench_inference import time_calls  # noqa: E402  (median of timed calls)
from bench_training import result_path  # noqa: E402  (the shared results file name)

PG_PHOTONS, PG_READ = 30.0, 0.02


@dataclass(frozen=True)
class QualityCase:
    """A held-out test volume, the zoo models it is for, and where classical methods are tuned."""

    name: str
    load: Callable[[], np.ndarray]  # clean (z, y, x) in source units
    tune: Callable[[], np.ndarray]  # another clean volume of the same kind
    models: tuple[str, ...]
    ndim: int  # 3: BM4D and 3D SSIM; 2: slice by slice
    photon_limited: bool = False
    sigmas: tuple[float, ...] = ()  # the case's own Gaussian levels (normalised units), else --sigma
    colour: bool = False  # (z, y, x, 3) RGB: TV and NL-means per channel, colour BM3D


def _pydicom(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from pydicom.data import get_testdata_file

        return np.maximum(dp.read_volume(get_testdata_file(name)).array, -1024.0).astype(np.float32)
    return load


def skimage_image(name: str, rows: slice = slice(None)) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import color, data

        image = np.asarray(getattr(data, name)(), np.float32)
        if image.ndim == 3:
            image = color.rgb2gray(image / 255.0).astype(np.float32) * 255.0
        return image[rows][None]
    return load


def _skimage_rgb(name: str, rows: slice) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return np.asarray(getattr(data, name)(), np.float32)[rows][None]  # (1, y, x, 3)
    return load


def _ct_subject(subject: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        volume = dp.sample("ct_slices")
        return volume.array[np.asarray(volume.meta["subject"]) == subject].astype(np.float32)
    return load


CASES = (
    QualityCase("epi MRI", lambda: dp.sample("epi").array.astype(np.float32),
                lambda: dp.sample("t1_head").array.astype(np.float32),
                ("unet3d_mri", "blind_unet3d_mri", "respr_unet3d_mri"), 3),
    QualityCase("CT_small CT", _pydicom("CT_small.dcm"), _ct_subject(1),
                ("unet2d_ct", "blind_unet2d_ct"), 2),
    QualityCase("head CT", _pydicom("J2K_pixelrep_mismatch.dcm"), _ct_subject(1),
                ("unet2d_ct", "blind_unet2d_ct"), 2),
    QualityCase("hubble photons", skimage_image("hubble_deep_field"), skimage_image("cell", slice(0, 400)),
                ("microscopy_unet2d_pg", "blind_unet2d_grey"), 2, photon_limited=True),
    QualityCase("ihc histology", _skimage_rgb("immunohistochemistry", slice(416, 512)),
                _skimage_rgb("immunohistochemistry", slice(0, 96)), ("histology_irunet2d_rgb",), 2,
                sigmas=(10 / 255, 25 / 255, 50 / 255), colour=True),
)


def noise_models(case: QualityCase, sigmas: list[float]) -> dict[str, dp.NoiseModel]:
    noises: dict[str, dp.NoiseModel] = {f"gaussian {s:.4g}": dp.GaussianNoise(s) for s in case.sigmas or sigmas}
    if case.photon_limited:
        noises[f"poisson-gaussian {PG_PHOTONS:g} photons"] = dp.PoissonGaussianNoise(photons=PG_PHOTONS, sigma=PG_READ)
    return noises


def score(clean: np.ndarray, estimate: np.ndarray, ndim: int) -> dict[str, float]:
    """PSNR of all voxels; SSIM 3D or mean 2D of the slices (colour: the mean over channels)."""
    from resprunet.assess.metrics import psnr, ssim_3d, ssim_slicewise

    def structural(x: np.ndarray, y: np.ndarray) -> float:
        return ssim_3d(x, y, 1.0) if ndim == 3 else ssim_slicewise(x, y, 1.0)

    if clean.ndim == 4:
        ssim = float(np.mean([structural(clean[..., c], estimate[..., c]) for c in range(clean.shape[-1])]))
    else:
        ssim = structural(clean, estimate)
    return {"psnr": round(psnr(clean, estimate, 1.0), 3), "ssim": round(ssim, 4)}


def classical(case: QualityCase, reference_tune: dp.Normalizer, noise: dp.NoiseModel,
              sigma: float | None, photons: float | None, bm: bool) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """TV and NL-means tuned on ``case.tune`` with this noise; BM3D/BM4D with the true sigma."""
    from resprunet.assess import Case, tuned_baselines
    from resprunet.variational import bm3d_denoise, bm4d_denoise

    clean = reference_tune(case.tune())
    noisy = noise(clean, np.random.default_rng(7)).astype(np.float32)
    if case.colour:
        return colour_classical(clean, noisy, sigma, bm)
    methods, params = tuned_baselines(Case(clean, noisy, name="tuning"), sigma, ["tv", "nl_means"],
                                      photons=photons)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"tv (weight {params['tv']['weight']:.3g})": methods[0],
        f"nl-means (h {params['nl_means']['h']:.3g})": methods[1],
    }
    if bm and case.ndim == 3:
        out["bm4d (true sigma)"] = lambda f: bm4d_denoise(f, sigma, photons=photons)
    elif bm:
        out["bm3d (true sigma)"] = lambda f: np.stack([bm3d_denoise(s, sigma, photons=photons) for s in f])
    return out


def colour_classical(clean: np.ndarray, noisy: np.ndarray, sigma: float,
                     bm: bool) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """TV and NL-means per channel, tuned on the (1, y, x, 3) ``clean``/``noisy`` pair; colour
    BM3D (``bm3d_rgb``) with the true sigma. The returned methods take and give (1, y, x, 3)."""
    from resprunet.variational import (bm3d_rgb_denoise, nl_means_denoise, per_channel, tune_on_validation,
                                       tv_denoise)

    tv, nl_means = per_channel(tv_denoise), per_channel(nl_means_denoise)
    clean, noisy = clean[0], noisy[0]  # (y, x, 3): the classical methods take one colour image
    weight = tune_on_validation(tv, clean, noisy, {"weight": [sigma * f for f in (0.5, 0.8, 1.2, 1.8)]})["weight"]
    h = tune_on_validation(lambda f, h: nl_means(f, h=h, sigma=sigma), clean, noisy,
                           {"h": [sigma * f for f in (0.4, 0.6, 0.8, 1.0)]})["h"]
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        f"tv per channel (weight {weight:.3g})": lambda f: tv(f[0], weight)[np.newaxis],
        f"nl-means per channel (h {h:.3g})": lambda f: nl_means(f[0], h=h, sigma=sigma)[np.newaxis],
    }
    if bm:
        out["colour bm3d (true sigma)"] = lambda f: bm3d_rgb_denoise(f[0], sigma)[np.newaxis]
    return out


def run_case(case: QualityCase, sigmas: list[float], bm: bool, folder: Path, tta: bool = False,
             repeat: int = 1) -> dict[str, Any]:
    """Every method on ``case`` at each noise level; with ``tta``, each zoo model also with
    ``--tta`` (a row ``<model> + tta``); times are medians of ``repeat`` runs."""
    from resprunet import cli, zoo

    clean_source = case.load()
    reference = zoo.normalizer(zoo.card(case.models[0])).fit(clean_source)
    reference_tune = zoo.normalizer(zoo.card(case.models[0])).fit(case.tune())
    clean = reference(clean_source).astype(np.float32)
    rows: dict[str, Any] = {}
    for label, noise in noise_models(case, sigmas).items():
        photons = getattr(noise, "photons", None)
        sigma = float(getattr(noise, "sigma", 0.0))
        noisy = noise(clean, np.random.default_rng(0)).astype(np.float32)
        table = {"noisy": {**score(clean, noisy, case.ndim), "seconds": 0.0}}
        src = folder / "noisy.npy"
        np.save(src, reference.inverse(noisy).astype(np.float32))
        for name, flag in [(n, f) for n in case.models for f in ([[], ["--tta"]] if tta else [[]])]:
            out = folder / f"{name}.npy"
            argv = ["-q", "denoise", str(src), str(out), "--model", name, "--force", *flag]
            code = cli.main(argv)  # warm-up: TensorFlow start-up and tracing are not timed
            if code != 0:
                raise RuntimeError(f"resprunet denoise with {name} failed ({code})")
            seconds = time_calls(lambda: cli.main(argv), repeat, math.inf, warmup=0)["seconds"]
            estimate = reference(np.load(out)).astype(np.float32)
            table[name + (" + tta" if flag else "")] = {**score(clean, estimate, case.ndim),
                                                        "seconds": round(seconds, 2)}
        for name, method in classical(case, reference_tune, noise, sigma, photons, bm).items():
            kept: dict[str, np.ndarray] = {}
            seconds = time_calls(lambda: kept.update(out=method(noisy)), repeat, math.inf, warmup=0)["seconds"]
            estimate = np.asarray(kept["out"], np.float32).reshape(clean.shape)
            table[name] = {**score(clean, estimate, case.ndim), "seconds": round(seconds, 2)}
        rows[label] = table
        print(f"\n{case.name} {clean.shape}, {label}")
        print(f"{'method':28s} {'PSNR dB':>8s} {'SSIM':>7s} {'seconds':>8s}")
        for method, row in table.items():
            print(f"{method:28s} {row['psnr']:8.2f} {row['ssim']:7.4f} {row['seconds']:8.2f}")
    return {"shape": list(clean.shape), "models": list(case.models), "repeat": repeat, "noise": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--case", action="append", help="only these cases (by name)")
    parser.add_argument("--quick", action="store_true", help="sigma 0.1 only, no BM3D/BM4D")
    parser.add_argument("--tta", action="store_true",
                        help="also run every model with test-time augmentation (resprunet denoise --tta)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time every method N times and report the median (default 1)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: expected at least 1")
    from resprunet.runtime import cpu_info
    from resprunet.variational import bm_available

    sigmas = [0.1] if args.quick else args.sigma
    bm = not args.quick and bm_available("bm3d") and bm_available("bm4d")
    cpu = cpu_info()
    print(f"CPU: {cpu}")
    results: dict[str, Any] = {"cpu": cpu, "date": _dt.date.today().isoformat(), "sigmas": sigmas,
                               "bm3d_bm4d": bm, "cases": {}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = result_path("quality" + ("-quick" if args.quick else ""), str(cpu.get("model", "cpu")))
    if args.case and out.exists():  # rerunning some cases: keep today's others
        results["cases"] = json.loads(out.read_text())["cases"]
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if args.case and case.name not in args.case:
                continue
            results["cases"][case.name] = run_case(case, sigmas, bm, Path(tmp), tta=args.tta,
                                                   repeat=args.repeat)
            out.write_text(json.dumps(results, indent=1))  # after every case: nothing lost
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
