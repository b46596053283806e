"""The :class:`Report` of an assessment: rows of metrics, tables, CSV/JSON files and figures."""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import METRICS

if TYPE_CHECKING:  # pragma: no cover
    from .api import Case

NOISY_ROW = "noisy"
TIME_COLUMN = "time_s"
MEMORY_COLUMN = "peak_mb"
MEMORY_NOTE = (
    "peak_mb: peak growth of Python/numpy heap memory during the call, in MiB, measured with "
    "tracemalloc (memory that TensorFlow allocates in C++ is not counted); time_s: wall time in seconds"
)
_LABELS = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "ssim_2d": "SSIM 2D",
    "ssim_3d": "SSIM 3D",
    "ssim_slicewise": "SSIM (mean of 2D slices)",
    "nrmse": "NRMSE",
    "relative_error": "rel. error (%)",
    TIME_COLUMN: "time (s)",
    MEMORY_COLUMN: "peak mem (MiB)",
}
_FORMATS = {"psnr": "{:.2f}", "relative_error": "{:.2f}", TIME_COLUMN: "{:.2f}", MEMORY_COLUMN: "{:.1f}"}


def column_label(column: str) -> str:
    """Human-readable column title with its unit."""
    return _LABELS.get(column, column)


def _fmt(column: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "inf" if value == math.inf else "-"
    return _FORMATS.get(column, "{:.4f}").format(value)


@contextmanager
def _atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Write to a temporary sibling and rename it onto ``path`` (replacing an old report)."""
    from data_pipelines.io.atomic import atomic_path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, force=True) as tmp:
        yield tmp


@dataclass
class Report:
    """Results of :func:`resprunet.assess.assess`.

    Attributes
    ----------
    metrics : tuple of str
        Metric names, in column order.
    data_range : float
        Data range the metrics used.
    cases : list of Case
        The assessed cases (for figures).
    masks : dict
        Case name -> metric mask (or None).
    rows : list of dict
        One per (case, method), in run order: ``case``, ``method``, each metric, ``time_s``
        (seconds) and ``peak_mb`` (MiB, see :data:`MEMORY_NOTE`). The first row of each case
        is ``"noisy"``, the input itself.
    outputs : dict
        Case name -> method name -> denoised array (when kept).
    """

    metrics: tuple[str, ...]
    data_range: float
    cases: list["Case"] = field(default_factory=list)
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        """Value columns of each row: the metrics, then time and memory."""
        return (*self.metrics, TIME_COLUMN, MEMORY_COLUMN)

    @property
    def methods(self) -> list[str]:
        """Method names in the order they were run (``"noisy"`` first)."""
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def case(self, name: str) -> "Case":
        """The case called ``name``."""
        for c in self.cases:
            if c.name == name:
                return c
        raise KeyError(f"no case {name!r} in this report; cases: {[c.name for c in self.cases]}")

    def add(self, case_name: str, method: str, output: np.ndarray, *, seconds: float, peak_mb: float,
            keep: bool = True) -> dict[str, Any]:
        """Score ``output`` against the case's clean image and append the row."""
        case = self.case(case_name)
        mask = self.masks.get(case_name)
        row: dict[str, Any] = {"case": case_name, "method": method}
        for name in self.metrics:
            row[name] = float(METRICS[name].fn(case.clean, output, self.data_range, mask))
        row[TIME_COLUMN] = float(seconds)
        row[MEMORY_COLUMN] = float(peak_mb)
        self.rows.append(row)
        if keep:
            self.outputs.setdefault(case_name, {})[method] = output
        return row

    def value(self, case: str, method: str, column: str, default: float | None = None) -> float:
        """One cell of the table; ``default`` (when given) for a method not run on ``case``."""
        for r in self.rows:
            if r["case"] == case and r["method"] == method:
                return r[column]
        if default is not None:
            return default
        raise KeyError(f"no row for case {case!r} and method {method!r}")

    def summary(self) -> list[dict[str, Any]]:
        """Mean of every column over the cases each method ran on, one row per method (``case`` = "mean")."""
        out = []
        for method in self.methods:
            rows = [r for r in self.rows if r["method"] == method]
            out.append({"case": "mean", "method": method,
                        **{c: float(np.mean([r[c] for r in rows])) for c in self.columns}})
        return out

    def best(self, case: str, metric: str) -> str:
        """Name of the best method (the noisy input excluded) on ``case`` for ``metric``."""
        rows = [r for r in self.rows if r["case"] == case and r["method"] != NOISY_ROW]
        pick = max if METRICS[metric].higher_is_better else min
        return pick(rows, key=lambda r: r[metric])["method"]

    @classmethod
    def concat(cls, reports: "list[Report]") -> "Report":
        """One report holding the cases and rows of several (same metrics and data range).

        Use it when each case was assessed with its own methods, e.g. baselines tuned per
        noise level. Case names must differ across the reports.
        """
        if not reports:
            raise ValueError("concat needs at least one report")
        first = reports[0]
        for r in reports[1:]:
            if r.metrics != first.metrics or r.data_range != first.data_range:
                raise ValueError(
                    f"cannot concat reports with metrics/data_range {r.metrics}/{r.data_range} and "
                    f"{first.metrics}/{first.data_range}"
                )
        names = [c.name for r in reports for c in r.cases]
        if len(set(names)) != len(names):
            raise ValueError(f"case names repeat across the reports: {names}")
        out = cls(first.metrics, first.data_range)
        for r in reports:
            out.cases += r.cases
            out.masks.update(r.masks)
            out.rows += r.rows
            out.outputs.update(r.outputs)
        return out

    # ---- tables and files ---------------------------------------------------------------------
    def _markdown_table(self, rows: list[dict[str, Any]]) -> list[str]:
        header = ["case", "method", *(column_label(c) for c in self.columns)]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * len(self.columns)]
        best: dict[tuple[str, str], float] = {}
        for m in self.metrics:
            for case in dict.fromkeys(r["case"] for r in rows):
                values = [r[m] for r in rows if r["case"] == case and r["method"] != NOISY_ROW]
                if values:
                    best[(case, m)] = max(values) if METRICS[m].higher_is_better else min(values)
        for r in rows:
            cells = [r["case"], r["method"]]
            for c in self.columns:
                text = _fmt(c, r[c])
                is_best = r["method"] != NOISY_ROW and best.get((r["case"], c)) == r[c]
                cells.append(f"**{text}**" if is_best else text)
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def to_markdown(self, summary: bool = True) -> str:
        """Markdown tables: every (case, method) row, then (``summary``) the mean over cases
        when there are several.

        The best value of each metric per case (the noisy input excluded) is in bold.
        """
        lines = self._markdown_table(self.rows)
        if summary and len({r["case"] for r in self.rows}) > 1:
            lines += ["", "Mean over cases:", ""] + self._markdown_table(self.summary())
        lines += ["", f"data_range = {self.data_range:g}; {MEMORY_NOTE}."]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one line per (case, method) with every column; returns the path."""
        with _atomic(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["case", "method", *self.columns])
            writer.writeheader()
            writer.writerows(self.rows)
        return Path(path)

    def to_dict(self) -> dict[str, Any]:
        """Everything :meth:`to_json` writes (non-finite numbers become None)."""
        def clean(row: dict[str, Any]) -> dict[str, Any]:
            return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}

        return {
            "data_range": self.data_range,
            "metrics": list(self.metrics),
            "units": {c: column_label(c) for c in self.columns},
            "memory": MEMORY_NOTE,
            "cases": [{"name": c.name, "shape": list(c.clean.shape), "prior": c.prior is not None,
                       "mask": self.masks.get(c.name) is not None} for c in self.cases],
            "rows": [clean(r) for r in self.rows],
            "summary": [clean(r) for r in self.summary()],
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON; returns the path."""
        with _atomic(path) as tmp, open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2, allow_nan=False)
        return Path(path)

    def plot(self, folder: str | os.PathLike) -> list[Path]:
        """Save a PNG per case and a bar chart of the metrics (``metrics.png``) into ``folder``.

        A case figure (:func:`~resprunet.assess.figures.case_figure`) shows the noisy input,
        the prior (when the case has one), each method's output and the clean reference on
        one grey scale, each with a zoomed inset of the most detailed region (for a volume,
        the middle slices in three orientations), then per column the SSIM map and the error
        map against the clean image, and the profiles along a line across an edge. The bar
        chart's axes start at zero.

        Returns
        -------
        list of Path
            The case figures (``<case>.png``, in case order), then ``metrics.png``.
        """
        from .figures import case_figure, metrics_chart

        base = Path(folder)
        base.mkdir(parents=True, exist_ok=True)
        paths = []
        for case in self.cases:
            if case.name not in self.outputs:
                raise ValueError(f"no outputs kept for case {case.name!r}; run assess(..., keep_outputs=True)")
            path = base / f"{_file_stem(case.name)}.png"
            with _atomic(path) as tmp:
                case_figure(case, self.outputs[case.name], self._titles(case.name), self.data_range, tmp)
            paths.append(path)
        path = base / "metrics.png"
        with _atomic(path) as tmp:
            metrics_chart(self, tmp)
        return paths + [path]

    def save(self, folder: str | os.PathLike, preamble: str = "", summary: bool = True) -> dict[str, Path]:
        """Write ``report.md`` (``preamble`` + :meth:`to_markdown`), ``report.csv``,
        ``report.json`` and the figures of :meth:`plot` (in ``figures/``) into ``folder``.

        Returns
        -------
        dict
            "markdown", "csv", "json" -> path, and "figures" -> the folder.
        """
        base = Path(folder)
        base.mkdir(parents=True, exist_ok=True)
        with _atomic(base / "report.md") as tmp:
            tmp.write_text(preamble + self.to_markdown(summary=summary))
        paths = {"markdown": base / "report.md", "csv": self.to_csv(base / "report.csv"),
                 "json": self.to_json(base / "report.json")}
        self.plot(base / "figures")
        return {**paths, "figures": base / "figures"}

    def _titles(self, case: str) -> dict[str, str]:
        """Method -> panel title with its PSNR/SSIM on ``case``."""
        shown = [m for m in self.metrics if m in ("psnr",) or m.startswith("ssim")][:2]
        titles = {}
        for r in self.rows:
            if r["case"] == case:
                parts = [f"{column_label(m).split(' (')[0]} {_fmt(m, r[m])}" for m in shown]
                titles[r["method"]] = r["method"] + ("\n" + ", ".join(parts) if parts else "")
        return titles


def _file_stem(name: str) -> str:
    """``name`` made safe as a file name."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "case"
