"""The command line shared by ``demo_assess_2d.py`` and ``demo_assess_3d.py``."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from resprunet.assess import Report
from resprunet.variational import TuningResult

RunDemo = Callable[[Path, list[str], bool, list[float], int], Report]


def parameter_line(sigma: str, tuned_on: str, params: dict[str, dict[str, Any]],
                    tuning: dict[str, TuningResult]) -> str:
    """One markdown row ``| sigma | tuned on | parameters | grid widening |`` for a report preamble.

    ``params`` and ``tuning`` are what :func:`resprunet.assess.tuned_baselines` returns; the
    last column names each grid widened beyond its edge or whose best value is still on it.
    """
    chosen = "; ".join(f"{n}: " + ", ".join(f"{p}={v:.3g}" for p, v in ps.items()) for n, ps in params.items())
    widening = "; ".join(f"{n}: {t.describe_widening()}" for n, t in tuning.items() if t.describe_widening())
    return f"| {sigma} | {tuned_on} | {chosen} | {widening or 'none'} |"


def demo_main(run: RunDemo, description: str, default_out: str, model_help: str,
              argv: list[str] | None = None) -> int:
    """Parse ``--out``, ``--model`` (repeatable), ``--no-zoo``, ``--sigmas``, ``--seed``; run the
    demo; print its table and where the report went. Returns the exit status (0)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="output folder")
    parser.add_argument("--model", action="append", default=[], metavar="PATH", help=model_help)
    parser.add_argument("--no-zoo", action="store_true", help="do not add the matching models_zoo models")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1],
                        help="noise sigmas, fractions of the normalised range (default 0.05 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = run(args.out, args.model, not args.no_zoo, args.sigmas, args.seed)
    print(report.to_markdown(summary=False))
    print(f"wrote {args.out}/report.md, report.csv, report.json, figures/ in {time.perf_counter() - start:.0f} s")
    return 0
