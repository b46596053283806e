"""Compare denoisers on the embedded 2D CT slices at 5 % and 10 % Gaussian noise.

    PYTHONPATH=. python experiments/demo_assess_2d.py [--out out/demo_assess_2d] [--model PATH ...]

Data: ``dp.sample("ct_slices")`` (3 slices, 128 x 128, HU), CT window (-1000, 400) HU -> [0, 1];
sigma 0.05 / 0.1 of that range (70 / 140 HU). Split by scan:

- validation: scan 1, slice 1 (all parameters are tuned here, by PSNR);
- test "held-out scan": scan 0, slice 0 (also the zoo models' evaluation slice): every method
  without a prior, and the trained models;
- test "with prior": scan 1, slice 2, with the neighbour-slice prior (slice 1 of the same
  noisy stack) for SPADE; trained models are left out here because the zoo models were
  trained on scan 1.

Writes report.md, report.csv, report.json and figures/ into ``--out``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data_pipelines as dp  # noqa: E402
from resprunet.assess import Case, Report, assess, model_methods, tuned_baselines  # noqa: E402
from resprunet.variational import INSTALL_HINT, bm_available  # noqa: E402

from demo_cli import demo_main  # noqa: E402  (experiments/ is sys.path[0])

METRICS = ("psnr", "ssim", "nrmse", "relative_error")
VALIDATION, HELD_OUT, WITH_PRIOR = 1, 0, 2  # slice indices in ct_slices


def run(out: Path, model_paths: list[str], use_zoo: bool, sigmas: list[float], seed: int) -> Report:
    """Tune on the validation slice, assess on the test slices, write the report; return it."""
    vol = dp.sample("ct_slices")
    x = dp.Normalizer.ct(window=(-1000, 400)).fit(vol.array)(vol.array).astype(np.float64)
    subject = np.asarray(vol.meta["subject"])
    scan1 = np.flatnonzero(subject == subject[VALIDATION])  # slices of the validation/prior scan
    names = ["tv", "spade", "tv_chambolle", "nl_means", "wavelet"]
    if bm_available("bm3d"):
        names.append("bm3d")
    else:
        print(f"BM3D skipped: the optional bm3d package is missing ({INSTALL_HINT})")
    models = model_methods(model_paths, zoo=use_zoo, ndim=2, normalization="ct")
    models = [m for m in models if not m.needs_prior]  # no neighbour slices on the held-out scan
    reports, lines = [], []
    for k, sigma in enumerate(sigmas):
        noise = dp.GaussianNoise(sigma)
        val_noisy = noise(x, np.random.default_rng([seed, k, 0]))  # validation noise realisation
        test_noisy = noise(x, np.random.default_rng([seed, k, 1]))  # independent test noise
        val_prior = dp.neighbour_slice_prior(val_noisy[scan1], size=9, decay=0.04, include_self=False)
        test_prior = dp.neighbour_slice_prior(test_noisy[scan1], size=9, decay=0.04, include_self=False)
        where = {int(s): i for i, s in enumerate(scan1)}
        validation = Case(x[VALIDATION], val_noisy[VALIDATION], val_prior[where[VALIDATION]], name="validation")
        methods, params = tuned_baselines(validation, sigma, names)
        lines.append(f"| {sigma:g} ({sigma * 1400:g} HU) | " + "; ".join(
            f"{n}: " + ", ".join(f"{p}={v:.3g}" for p, v in ps.items()) for n, ps in params.items()) + " |")
        tag = f"s{sigma:g}"
        held_out = Case(x[HELD_OUT], test_noisy[HELD_OUT], name=f"scan0_slice{HELD_OUT}_{tag}")
        with_prior = Case(x[WITH_PRIOR], test_noisy[WITH_PRIOR], test_prior[where[WITH_PRIOR]],
                          name=f"scan1_slice{WITH_PRIOR}_prior_{tag}")
        no_prior_methods = [m for m in methods if not m.needs_prior] + models
        reports.append(assess(no_prior_methods, [held_out], metrics=METRICS, progress=True))
        reports.append(assess(methods, [with_prior], metrics=METRICS, progress=True))
    report = Report.concat(reports)
    preamble = "\n".join([
        "# demo_assess_2d: denoisers on the embedded CT slices\n",
        "Data: `ct_slices` (128 x 128), CT window (-1000, 400) HU -> [0, 1]; Gaussian noise, sigma as a "
        "fraction of that range. Validation (tuning): scan 1 slice 1. Tests: scan 0 slice 0 (held-out scan; "
        "no neighbour slices, so no SPADE; trained models here only) and scan 1 slice 2 with the "
        "neighbour-slice prior (size 9, decay 0.04, slice itself excluded). BM3D gets the true sigma.\n",
        "Parameters chosen on the validation slice:\n",
        "| sigma | parameters |", "|---|---|", *lines, "",
        "Trained models" + (":" if models else ": none."), *(f"- `{m.name}`: {m.notes}" for m in models), "", "",
    ])
    report.save(out, preamble=preamble, summary=False)
    return report


def main(argv: list[str] | None = None) -> int:
    return demo_main(run, __doc__.splitlines()[0], "out/demo_assess_2d",
                     "a trained 2D .keras model (CT-window normalised input); repeatable", argv)


if __name__ == "__main__":
    raise SystemExit(main())
