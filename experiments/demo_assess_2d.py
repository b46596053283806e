"""Compare denoisers on the embedded 2D CT slices at 5 % and 10 % Gaussian noise, tuned across scans.

    PYTHONPATH=. python experiments/demo_assess_2d.py [--out out/demo_assess_2d] [--model PATH ...]

Data: ``dp.sample("ct_slices")`` (3 slices, 128 x 128, HU; scan 0 = slice 0, scan 1 = slices 1
and 2), CT window (-1000, 400) HU -> [0, 1]; sigma 0.05 / 0.1 of that range (70 / 140 HU).
Every case gets its own noise realisation. Cross split by scan (:data:`FOLDS`): no reported
case comes from a scan its parameters were tuned on.

- reported "ct scan 0" (slice 0, also the zoo models' evaluation slice): every method without
  a prior, and the trained models; parameters tuned on scan 1 (slice 2);
- reported "ct scan 1" (slice 2, with the neighbour-slice prior from slice 1 of the same noisy
  scan) for every baseline, SPADE included; parameters tuned on scan 0 (slice 0), except
  SPADE's, which need a case with a neighbour-slice prior disjoint from scan 1: they are tuned
  on axial slice z = 40 of ``dp.sample("mni152_t1")`` (percentile-normalised, prior from its
  neighbour slices). Trained models are left out here: the zoo models were trained on scan 1.

Parameters are tuned by PSNR, grids widened when the best value is on an edge. Writes
report.md, report.csv, report.json and figures/ into ``--out``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_pipelines as dp  # noqa: E402
from resprunet.assess import Case, Report, assess, model_methods, tuned_baselines  # noqa: E402
from resprunet.variational import INSTALL_HINT, bm_available  # noqa: E402

from demo_cli import demo_main, parameter_line  # noqa: E402  (experiments/ is sys.path[0])

METRICS = ("psnr", "ssim", "relative_error")
PRIOR = {"size": 9, "decay": 0.04, "include_self": False}
MNI_SLICE = 40  # axial slice of mni152_t1 that tunes SPADE for scan 1
WINDOW = (-1000.0, 400.0)  # CT window (HU) -> [0, 1]


class Fold(NamedTuple):
    """One reported source and the sources its parameters are tuned on (keys of :func:`case`)."""

    report: str
    tune: str  # methods without a prior
    tune_prior: str | None  # methods with a prior (SPADE); None: they are not reported


FOLDS = (
    Fold(report="ct scan 0", tune="ct scan 1", tune_prior=None),
    Fold(report="ct scan 1", tune="ct scan 0", tune_prior="mni152_t1"),
)


def case(source: str, sigma: float, rng: np.random.Generator, name: str) -> Case:
    """The case of ``source``, with noise from ``rng``.

    "ct scan 0": slice 0, no prior (its scan has one slice); "ct scan 1": slice 2 with the
    neighbour-slice prior of scan 1 (built from slice 1); "mni152_t1": axial slice
    :data:`MNI_SLICE` with the prior from its neighbour slices.
    """
    if source == "mni152_t1":
        vol = dp.sample("mni152_t1").array
        slab = dp.Normalizer.percentile(1, 99.8).fit(vol)(vol)[MNI_SLICE - 8:MNI_SLICE + 9].astype(np.float64)
        noisy = dp.GaussianNoise(sigma)(slab, rng)
        return Case(slab[8], noisy[8], dp.neighbour_slice_prior(noisy, **PRIOR)[8], name=name)
    vol = dp.sample("ct_slices")
    x = dp.Normalizer.ct(window=WINDOW)(vol.array).astype(np.float64)
    if source == "ct scan 0":
        return Case(x[0], dp.GaussianNoise(sigma)(x[0], rng), name=name)
    noisy = dp.GaussianNoise(sigma)(x[1:3], rng)
    return Case(x[2], noisy[1], dp.neighbour_slice_prior(noisy, **PRIOR)[1], name=name)


def run(out: Path, model_paths: list[str], use_zoo: bool, sigmas: list[float], seed: int) -> Report:
    """Tune and assess each fold of :data:`FOLDS`, write the report; return it."""
    names = ["tv", "tv_chambolle", "nl_means", "wavelet"]
    if bm_available("bm3d"):
        names.append("bm3d")
    else:
        print(f"BM3D skipped: the optional bm3d package is missing ({INSTALL_HINT})")
    # the cases are in CT-window units: the models map them back to HU and denoise as `resprunet denoise` does
    models = model_methods(model_paths, zoo=use_zoo, ndim=2, normalization="ct",
                           units=dp.Normalizer.ct(window=WINDOW))
    models = [m for m in models if not m.needs_prior]  # no neighbour slices on the held-out scan
    reports, lines = [], []
    for k, sigma in enumerate(sigmas):
        tag = f"s{sigma:g}"
        for f, fold in enumerate(FOLDS):
            rng = [np.random.default_rng([seed, k, f, i]) for i in range(3)]
            methods, params, tuning = tuned_baselines(case(fold.tune, sigma, rng[0], "validation"), sigma, names,
                                                      return_tuning=True)
            lines.append(parameter_line(f"{sigma:g}", f"{fold.tune} (for {fold.report})", params, tuning))
            if fold.tune_prior is not None:
                spade, params, tuning = tuned_baselines(case(fold.tune_prior, sigma, rng[1], "validation"), sigma,
                                                        ["spade"], return_tuning=True)
                lines.append(parameter_line(f"{sigma:g}", f"{fold.tune_prior} (for {fold.report})", params, tuning))
                methods = methods + spade
            test = case(fold.report, sigma, rng[2], f"{fold.report.replace(' ', '_')}_{tag}")
            reports.append(assess(methods + (models if fold.tune_prior is None else []), [test],
                                  metrics=METRICS, progress=True))
    report = Report.concat(reports)
    preamble = "\n".join([
        "# demo_assess_2d: denoisers on the embedded CT slices, tuned across scans\n",
        "Data: `ct_slices` (128 x 128), CT window (-1000, 400) HU -> [0, 1]; Gaussian noise, sigma as a "
        "fraction of that range, one realisation per case. **Cross split by scan**: `ct scan 0` (slice 0; no "
        "neighbour slices, so no SPADE; trained models here only) is reported with parameters tuned on scan 1 "
        "(slice 2); `ct scan 1` (slice 2, neighbour-slice prior from slice 1: size 9, decay 0.04, slice itself "
        f"excluded) is reported with parameters tuned on scan 0, SPADE's on `mni152_t1` axial slice {MNI_SLICE} "
        "with its neighbour-slice prior (no CT scan but scan 1 has neighbour slices). No reported case comes "
        "from a scan used for its tuning. BM3D gets the true sigma.\n",
        "Parameters chosen (by PSNR; grid widening: values added beyond a grid edge when the best value was "
        "on it):\n",
        "| sigma | tuned on | parameters | grid widening |", "|---|---|---|---|", *lines, "",
        "Trained models" + (":" if models else ": none."), *(f"- `{m.name}`: {m.notes}" for m in models), "", "",
    ])
    report.save(out, preamble=preamble, summary=False)
    return report


def main(argv: list[str] | None = None) -> int:
    return demo_main(run, __doc__.splitlines()[0], "out/demo_assess_2d",
                     "a trained 2D .keras model (CT-window normalised input); repeatable", argv)


if __name__ == "__main__":
    raise SystemExit(main())
