"""The ``resprunet`` command line: ``denoise``, ``train``, ``assess``, ``report`` and ``zoo``.

A thin shell over the library: :func:`data_pipelines.read_volume`/``write_volume``,
:func:`resprunet.inference.denoise_array`, :func:`resprunet.training.train`,
:func:`resprunet.assess.assess` and :mod:`resprunet.zoo`. Expected errors (missing file,
unknown model, wrong dimensionality, prior shape mismatch, existing output) are printed as
one line on stderr with exit status 2; Ctrl-C exits with 130. Outputs are written atomically.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from data_pipelines.tf_env import enable_onednn  # noqa: E402

enable_onednn()  # oneDNN CPU kernels (~7x faster training) unless the user set TF_ENABLE_ONEDNN_OPTS

__all__ = ["main", "build_parser", "CliError"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


class CliError(ValueError):
    """A command-line argument is invalid (the message says which and what was expected)."""


_EXAMPLES_DENOISE = """\
examples:
  resprunet zoo list
  resprunet denoise scan.nii.gz scan_denoised.nii.gz --model unet3d_mri
  resprunet denoise ct_series/ ct_denoised/ --model unet2d_ct          # DICOM series in, new series out
  resprunet denoise stack.tif out.tif --model runs/unet_3d/<time>/model.keras --tile 32,128,128
  resprunet denoise scan.nii.gz out.nii.gz --model respr_unet3d_mri --prior auto
  resprunet denoise noisy.tif mmse.tif --model runs/divnoising_2d/<time> --samples 100 --variance var.tif
"""

_EXAMPLES_MAIN = _EXAMPLES_DENOISE + """\
  resprunet train experiments/configs/unet_3d.yaml --set epochs=2 --set model.filters=16
  resprunet assess --clean clean.nii.gz --noisy noisy.nii.gz --method tv --method bm4d \\
      --model unet3d_mri --out assess_out/
"""


def _tile(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (or Y,X) positive integers, got {text!r}")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``resprunet`` (subcommands denoise, train, assess, zoo)."""
    parser = argparse.ArgumentParser(
        prog="resprunet",
        description="Denoise 2D and 3D CT and microscopy images with deep and classical methods.",
        epilog=_EXAMPLES_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser(
        "denoise", help="denoise an image or volume file with a zoo model or a .keras file",
        description=textwrap.fill(
            "Denoise IN and write OUT in IN's units and with IN's metadata (a CT in HU comes "
            "back in HU, a NIfTI keeps its affine, a DICOM series is written as a new series). "
            "Formats: NIfTI, DICOM file or series folder, TIFF, PNG, NPY/NPZ, HDF5, (OME-)Zarr. The "
            "normalisation comes from the model's card (zoo) or the card.yaml next to a .keras "
            "file (else the run's config.yaml) and is inverted exactly.", 88),
        epilog=_EXAMPLES_DENOISE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("input", type=Path, metavar="IN", help="input file or DICOM/PNG folder")
    d.add_argument("output", type=Path, metavar="OUT",
                   help="output file (format from the suffix) or folder (no suffix)")
    d.add_argument("--series", metavar="UID",
                   help="SeriesInstanceUID to denoise when the DICOM folder IN holds several series")
    d.add_argument("--key", metavar="NAME",
                   help="array (NPZ) or dataset path (HDF5) to denoise when IN holds several")
    d.add_argument("--level", type=int, metavar="N",
                   help="resolution level of an OME-Zarr input to denoise (0, full resolution, by "
                   "default; the output is written at that level's voxel size)")
    d.add_argument("--model", required=True, metavar="NAME|PATH",
                   help="zoo model name (see 'resprunet zoo list') or a .keras file / run folder")
    d.add_argument("--prior", default="auto", metavar="auto|none|FILE",
                   help="prior for models that need one (ResPr-UNet): 'auto' (default) builds "
                   "the prior the model was trained with from IN: the neighbour-slice prior, or "
                   "for a model of frames (time, spectral bins) the mean of IN's frames, each "
                   "frame denoised; or a FILE of IN's shape and units")
    d.add_argument("--tile", type=_tile, metavar="Z,Y,X",
                   help="tile shape in voxels (Y,X for 2D models); default: the whole volume "
                   "when the model's activations fit 25%% of the available RAM (at most 4 GiB), "
                   "else the largest tiles that fit, overlapping by the receptive field")
    d.add_argument("--overlap", type=_fraction, default=0.25, metavar="F",
                   help="overlap fraction of --tile tiles (default 0.25; raised to the model's "
                   "receptive field, capped where a tile allows; changes are printed); the "
                   "default tiling sets its own")
    d.add_argument("--batch-size", type=int, default=4, metavar="N", help="tiles per model call")
    d.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the model's outputs on the 8 flips and "
                   "quarter turns of the y-x plane (8x the time; usually a little better)")
    d.add_argument("--sigma", type=float, metavar="S",
                   help="noise standard deviation in normalised units (0.05 = 5%% of the "
                   "model's intensity range). A model conditioned on the noise level uses it "
                   "(without it, sigma is estimated from IN); other blind models (card noise "
                   "with a sigma range) ignore it; for a model trained at one sigma a differing "
                   "value only warns, as the model cannot be retuned at inference")
    d.add_argument("--output-dtype", choices=("same", "float32", "uint16"), default="same",
                   help="stored dtype: 'same' as IN (rounded and clipped for integer types), "
                   "float32, or uint16")
    d.add_argument("--force", action="store_true", help="replace OUT if it exists")
    d.add_argument("--workers", type=int, metavar="N",
                   help="denoise a Zarr IN on a local Dask cluster of N worker processes, block by "
                   "block, never loading it whole (needs pip install 'resprunet[dask]')")
    d.add_argument("--scheduler", metavar="ADDRESS",
                   help="denoise a Zarr IN on the running Dask cluster at ADDRESS (tcp://host:8786); "
                   "IN, OUT's folder and the model must be at the same paths on every worker")
    d.add_argument("--memory-limit", default=None, metavar="BYTES",
                   help="memory limit of each --workers process, e.g. 2GiB (default: an equal share "
                   "of the RAM, at most 4 GiB; Dask spills at 60%%, restarts a worker at 95%%)")
    d.add_argument("--samples", type=int, metavar="N",
                   help="DivNoising models only: posterior samples per image whose mean (MMSE) is "
                   "written (default 100); other models are deterministic and refuse it")
    d.add_argument("--variance", type=Path, metavar="VAR_OUT",
                   help="DivNoising models only: also write the per-pixel variance of the samples "
                   "(the posterior's uncertainty, IN's units squared, float32)")
    d.set_defaults(func=_cmd_denoise)

    t = sub.add_parser(
        "train", help="train a model from a YAML config",
        description="Train with resprunet.training.train; the run directory holds "
        "config.yaml, metrics.csv, tb/, model.keras.",
        epilog="example:\n  resprunet train experiments/configs/unet_3d.yaml --set epochs=2 "
        "--set data.noise.sigma=0.05", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("config", type=Path, metavar="CONFIG.yaml")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set model.filters=16")
    t.add_argument("--precision", help="float32, mixed_bfloat16 (CPU) or mixed_float16 (GPU); "
                   "shortcut for --set precision=...")
    t.add_argument("--strategy", help="default, mirrored or multiworker (TF_CONFIG on each worker); "
                   "shortcut for --set strategy=...")
    t.add_argument("--resume", metavar="RUN_DIR|latest",
                   help="continue a killed run from its last completed epoch (uses its config.yaml)")
    t.set_defaults(func=_cmd_train)

    a = sub.add_parser(
        "assess", help="compare denoisers on a clean/noisy pair of files",
        description="Run classical methods and models on NOISY, score them against CLEAN "
        "(PSNR, SSIM with an explicit data range) and write a report to OUT.",
        epilog="example:\n  resprunet assess --clean c.nii.gz --noisy n.nii.gz --method tv "
        "--method bm4d --model unet3d_mri --out report/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--clean", type=Path, required=True, metavar="FILE")
    a.add_argument("--noisy", type=Path, required=True, metavar="FILE")
    a.add_argument("--prior", type=Path, metavar="FILE", help="prior for prior-based methods")
    a.add_argument("--method", action="append", default=[], metavar="NAME",
                   help="classical method (tv, bm3d, bm4d, ...); repeatable")
    a.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="zoo model or .keras file; repeatable")
    a.add_argument("--sigma", type=float, metavar="S",
                   help="true noise sigma in normalised units, for BM3D/BM4D")
    a.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder")
    a.add_argument("--force", action="store_true", help="replace DIR if it exists")
    a.set_defaults(func=_cmd_assess)

    r = sub.add_parser(
        "report", help="summarise a training run as report.png and report.html (no TensorBoard needed)",
        description="Write report.png and report.html for RUN_DIR: loss and PSNR curves from its "
        "metrics.csv, the last image panel from tb/images, and the final metrics. Works while "
        "the run is still training; an earlier report is replaced.",
        epilog="example:\n  resprunet report runs/unet_2d/20260101T120000Z",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory runs/<name>/<UTC time>/")
    r.add_argument("--out", type=Path, metavar="DIR", help="folder for the two files (default: RUN_DIR)")
    r.set_defaults(func=_cmd_report)

    z = sub.add_parser("zoo", help="list the trained models or show a model card")
    zsub = z.add_subparsers(dest="zoo_command", metavar="list|show", required=True)
    zsub.add_parser("list", help="list zoo models").set_defaults(func=_cmd_zoo_list)
    show = zsub.add_parser("show", help="print a model card")
    show.add_argument("name")
    show.set_defaults(func=_cmd_zoo_show)

    e = sub.add_parser(
        "export", help="export a model as ONNX or as a BioImage Model Zoo package",
        description=textwrap.fill(
            "Write MODEL as an ONNX file (tf2onnx; onnxruntime reproduces the Keras output) or as a "
            "BioImage Model Zoo package (rdf.yaml, Keras and ONNX weights, test tensors, cover, the "
            "card's normalisation as pre/post-processing, halo from the receptive field), validated "
            "by bioimageio.spec. OUT ending in .zip gives a zip package, else a folder. Needs "
            "pip install 'resprunet[export]'.", 88),
        epilog="examples:\n  resprunet export unet2d_ct unet2d_ct.onnx --format onnx\n"
        "  resprunet export unet3d_mri unet3d_mri.zip --format bioimageio --author 'Ada Lovelace'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("model", metavar="MODEL", help="zoo model name or a .keras file / run folder")
    e.add_argument("output", type=Path, metavar="OUT", help="output .onnx file, or package folder / .zip")
    e.add_argument("--format", required=True, choices=("bioimageio", "onnx"), help="what to write")
    e.add_argument("--author", action="append", default=[], metavar="NAME",
                   help="package author (repeatable; default: the card's authors, else 'resprunet contributors')")
    e.add_argument("--force", action="store_true", help="replace OUT if it exists")
    e.set_defaults(func=_cmd_export)
    return parser


# model resolution ----------------------------------------------------------------------
def _resolve_model(spec: str) -> tuple[Any, dict[str, Any]]:
    """Load a zoo model by name, or a .keras file / folder with its card (or run config)."""
    from . import zoo

    if spec in zoo.list():
        return zoo.load(spec)
    path = Path(spec)
    if not path.exists():
        raise CliError(
            f"unknown model {spec!r}: not a zoo model ({', '.join(zoo.list()) or 'zoo is empty'}) "
            "and no such file"
        )
    model, card = zoo.load_path(path)
    if card is None:
        raise CliError(f"{path}: no card.yaml or config.yaml next to the model; the normalisation "
                       "the model was trained with is unknown")
    return model, card


def _check_sigma(sigma: float | None, card: dict[str, Any], conditioned: bool) -> None:
    """Check ``--sigma`` and say what it does: a model conditioned on the noise level uses
    it (else estimates sigma), a blind model ignores it, a model of one sigma only warns."""
    if sigma is None:
        return
    if not 0 <= sigma < 1:
        raise CliError(f"--sigma {sigma}: expected a standard deviation in normalised units, in [0, 1)")
    trained = (card.get("noise") or {}).get("sigma")
    log = logging.getLogger("resprunet")
    if conditioned:
        log.info("noise-conditioned model: denoising for sigma %.4g", sigma)
    elif isinstance(trained, (list, tuple)):
        log.info("blind model (trained on sigma in %s): --sigma is ignored", trained)
    elif trained is not None and abs(float(trained) - sigma) > 1e-9:
        log.warning("--sigma %.4g differs from the sigma %.4g this model was trained on; "
                    "results may be worse", sigma, float(trained))


# commands ------------------------------------------------------------------------------
def _cmd_denoise(args: argparse.Namespace) -> int:
    import numpy as np

    import data_pipelines as dp
    from data_pipelines.io.atomic import check_writable

    from . import zoo
    from .inference import denoise_array

    check_writable(args.output, args.force)
    model, card = _resolve_model(args.model)
    from .models import describe

    _check_sigma(args.sigma, card, describe(model).needs_sigma)
    from .divnoising import is_divnoising

    if args.tta and (is_divnoising(model) or args.workers is not None or args.scheduler is not None):
        raise CliError("--tta is for deterministic models run in one process: not with DivNoising "
                       "models (their samples already average) or --workers/--scheduler")
    if is_divnoising(model) or args.samples is not None or args.variance is not None:
        return _denoise_divnoising(args, model, card)
    if args.workers is not None or args.scheduler is not None:
        return _denoise_on_cluster(args, card)
    # a Zarr input is read lazily; it is loaded here, whole (use --workers for block-wise inference)
    volume = dp.read_volume(args.input, key=args.key, series=args.series, level=args.level).load()
    dp.check_output(args.output, like=volume, force=args.force)  # before the long computation
    prior: str | np.ndarray = zoo.prior_argument(card, args.prior)
    if args.prior not in ("auto", "none"):
        prior = dp.read_volume(args.prior).load().array
    denoised = denoise_array(
        model, volume.array, zoo.normalizer(card), prior=prior, prior_options=zoo.prior_options(card),
        tile_shape=args.tile, overlap=args.overlap, batch_size=args.batch_size,
        progress=not args.quiet, sigma=args.sigma, tta=args.tta,
    )
    dtype = None if args.output_dtype == "same" else args.output_dtype
    dp.write_volume(denoised, args.output, like=volume, force=args.force, dtype=dtype)
    print(f"wrote {args.output} ({volume.shape}, model {card.get('name', args.model)})")
    return 0


def _denoise_on_cluster(args: argparse.Namespace, card: dict[str, Any]) -> int:
    """``resprunet denoise --workers N | --scheduler ADDRESS``: a lazy (Zarr) input denoised
    block by block on a Dask cluster (:func:`resprunet.inference.distributed.denoise_distributed`)."""
    import data_pipelines as dp

    from . import zoo
    from .inference.distributed import denoise_distributed

    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: expected at least 1 worker process")
    if args.prior not in ("auto", "none") or zoo.prior_argument(card, args.prior) == "temporal":
        raise CliError("--workers/--scheduler: models with a prior cannot run on a cluster yet")
    volume = dp.read_volume(args.input, key=args.key, series=args.series, level=args.level)
    if not volume.is_lazy:
        raise CliError(f"{args.input}: --workers/--scheduler need a chunked Zarr input (.zarr, .ome.zarr); "
                       f"this {volume.meta.get('format', 'file')} is read whole: run without them")
    dp.check_output(args.output, like=volume, force=args.force)
    model_file = zoo.path(args.model) / zoo.MODEL_FILE if args.model in zoo.list() else Path(args.model)
    if model_file.is_dir():
        model_file = model_file / zoo.MODEL_FILE
    denoise_distributed(model_file, volume, args.output, zoo.normalizer(card), sigma=args.sigma,
                        tile_shape=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                        dtype=None if args.output_dtype == "same" else args.output_dtype, force=args.force,
                        scheduler=args.scheduler, workers=args.workers or 2,
                        memory_limit=args.memory_limit, progress=not args.quiet)
    where = args.scheduler or f"{args.workers or 2} local workers"
    print(f"wrote {args.output} ({volume.shape}, model {card.get('name', args.model)}, on {where})")
    return 0


def _denoise_divnoising(args: argparse.Namespace, model: Any, card: dict[str, Any]) -> int:
    """``resprunet denoise`` with a DivNoising model: the MMSE of ``--samples`` posterior samples
    (:func:`resprunet.divnoising.denoise_divnoising`), and with ``--variance`` their variance."""
    import data_pipelines as dp
    from data_pipelines.io.atomic import check_writable

    from . import zoo
    from .divnoising import DEFAULT_SAMPLES, denoise_divnoising, is_divnoising

    name = card.get("name", args.model)
    if not is_divnoising(model):
        raise CliError(f"--samples/--variance are for DivNoising models; {name} ({model.name}) gives one "
                       "deterministic output: run without them")
    samples = DEFAULT_SAMPLES if args.samples is None else args.samples
    if samples < 1 or (args.variance is not None and samples < 2):
        raise CliError(f"--samples {samples}: expected at least {2 if args.variance else 1} posterior samples")
    if args.workers is not None or args.scheduler is not None or args.prior not in ("auto", "none"):
        raise CliError("a DivNoising model takes no --prior and cannot run on a cluster (--workers/--scheduler)")
    if args.variance is not None:
        check_writable(args.variance, args.force)
    volume = dp.read_volume(args.input, key=args.key, series=args.series, level=args.level).load()
    for out in (args.output, args.variance):
        if out is not None:
            dp.check_output(out, like=volume, force=args.force)
    mmse, variance = denoise_divnoising(
        model, volume.array, zoo.normalizer(card), samples=samples, variance=args.variance is not None,
        tile_shape=args.tile, overlap=args.overlap, batch_size=args.batch_size, progress=not args.quiet,
    )
    dtype = None if args.output_dtype == "same" else args.output_dtype
    dp.write_volume(mmse, args.output, like=volume, force=args.force, dtype=dtype)
    print(f"wrote {args.output} (MMSE of {samples} samples, {volume.shape}, model {name})")
    if variance is not None:
        dp.write_volume(variance, args.variance, like=volume, force=args.force, dtype="float32")
        print(f"wrote {args.variance} (posterior variance, units squared)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import train
    from .training.script import resolve, shortcut_overrides

    if not args.config.is_file():
        raise CliError(f"{args.config}: no such config file")
    overrides = args.overrides + shortcut_overrides(args.precision, args.strategy)
    config, run_dir = resolve(args.config, overrides, args.resume)
    train(config, run_dir=run_dir)  # prints the test metrics and, last, the run directory
    return 0


_TV_WEIGHTS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24)


def _classical_method(name: str, noisy: Any, sigma: float | None) -> Any:
    """A classical :class:`~resprunet.assess.Method`: BM3D/BM4D get ``sigma`` (normalised
    units; estimated from the data when None), TV's weight is calibrated on the noisy input
    by J-invariance (self-supervised, never on the clean reference)."""
    from .assess import Method
    from .variational import calibrate_j_invariance, tv_denoise

    if name == "tv":
        best = calibrate_j_invariance(tv_denoise, noisy, {"weight": _TV_WEIGHTS})
        return Method.tv(best["weight"], name=f"tv (weight {best['weight']:g})")
    if name in ("bm3d", "bm4d"):
        return getattr(Method, name)(sigma)
    raise CliError(f"unknown --method {name!r}; expected tv, bm3d or bm4d (or use --model)")


def _cmd_assess(args: argparse.Namespace) -> int:
    from data_pipelines.io.atomic import atomic_path, check_writable

    from . import zoo
    from .assess import Case, Method, assess

    if not args.method and not args.model:
        raise CliError("give at least one --method or --model to assess")
    from .variational.bm3d import require_bm  # optional packages first, before TensorFlow loads

    for name in args.method:
        if name in ("bm3d", "bm4d"):
            require_bm(name)
    check_writable(args.out, args.force)
    loaded = [_resolve_model(spec) for spec in args.model]
    # metrics in the first model's normalised units (or percentile 1-99.8 of the clean file)
    norm = zoo.normalizer(loaded[0][1]) if loaded else None
    if norm is None:
        from data_pipelines import Normalizer

        norm = Normalizer.percentile(1.0, 99.8)
    case = Case.from_files(args.clean, args.noisy, args.prior, normalizer=norm)
    methods = [_classical_method(name, case.noisy, args.sigma) for name in args.method]
    # each model runs as `resprunet denoise` runs it: its own normaliser fitted on the noisy file
    methods += [Method.from_model(model, name=card.get("name", spec), normalizer=zoo.normalizer(card),
                                  units=case.units)
                for spec, (model, card) in zip(args.model, loaded)]
    report = assess(methods, [case], progress=not args.quiet)
    with atomic_path(args.out, force=args.force, directory=True) as tmp:
        (tmp / "report.md").write_text(report.to_markdown())
        report.to_json(tmp / "report.json")
        report.to_csv(tmp / "report.csv")
        report.plot(tmp)
    print(report.to_markdown())
    print(f"wrote {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .run_report import RunReportError, write_run_report

    try:
        paths = write_run_report(args.run_dir, args.out)
    except RunReportError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {paths['png']} and {paths['html']}")
    return 0


def _cmd_zoo_list(args: argparse.Namespace) -> int:
    from . import zoo

    names = zoo.list()
    if not names:
        print(f"the zoo at {zoo.root()} holds no models")
    for name in names:
        c = zoo.card(name)
        print(f"{name:24s} {c.get('summary', '')}")
    return 0


def _cmd_zoo_show(args: argparse.Namespace) -> int:
    from . import zoo

    print(yaml.safe_dump(zoo.card(args.name), sort_keys=False).rstrip())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from data_pipelines.io.atomic import check_writable

    from . import zoo
    from .export import export_bioimageio, save_onnx

    check_writable(args.output, args.force)
    if args.format == "onnx" and args.model not in zoo.list() and Path(args.model).exists():
        model = zoo.load_path(Path(args.model))[0]  # ONNX needs no card
    else:
        model, card = _resolve_model(args.model)
    if args.format == "onnx":
        save_onnx(model, args.output, force=args.force)
    else:
        export_bioimageio(model, card, args.output, authors=args.author or None, force=args.force)
    print(f"wrote {args.output} ({args.format}, model {args.model})")
    return 0


#: Where the expected error classes are defined: (module, class name).
_EXPECTED_ERRORS = (
    ("data_pipelines.errors", "DataPipelineError"),
    ("resprunet.zoo", "ZooError"),
    ("resprunet.assess.api", "AssessError"),
    ("resprunet.training.config", "ConfigError"),
    ("resprunet.variational.bm3d", "BMPackageMissingError"),
    ("resprunet.export.errors", "ExportError"),
)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The errors printed as one line: those of the modules this run has imported (an error
    cannot come from a module that was never loaded, and importing one here, after the fact,
    could load TensorFlow just to print a message)."""
    classes: list[type[BaseException]] = [CliError, OSError, MemoryError]
    for module, name in _EXPECTED_ERRORS:
        if module in sys.modules:
            classes.append(getattr(sys.modules[module], name))
    return tuple(classes)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM (``kill``, a scheduler's time limit) like Ctrl-C while the block runs:
    a ``KeyboardInterrupt`` that removes every temporary output on its way out."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resprunet`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="resprunet: %(levelname)s: %(message)s", level=logging.INFO)
    try:
        with sigterm_as_interrupt():
            return int(args.func(args))
    except KeyboardInterrupt:
        print("resprunet: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _expected_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"resprunet {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
