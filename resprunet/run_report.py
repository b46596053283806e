"""A training run summarised for a person without TensorBoard: ``report.png`` and ``report.html``.

>>> from resprunet.run_report import write_run_report      # doctest: +SKIP
>>> write_run_report("runs/unet_2d/20260101T120000Z")        # or: resprunet report RUN_DIR

The summary holds the loss and PSNR curves of ``metrics.csv`` (training and validation, one
point per epoch), the last image panel the run wrote to TensorBoard (``tb/images``), and the
final metrics of ``final_metrics.json`` (PSNR/SSIM of the noisy and the denoised test
volumes) beside the last and best epoch. Neither TensorFlow nor TensorBoard is needed: the
event file is read with its protocol buffer only.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from data_pipelines.io.atomic import atomic_path

__all__ = ["RunReportError", "RunSummary", "curves_figure", "last_panel", "metric_lines", "read_metrics", "read_run",
           "summary_figure", "write_run_report"]

PANEL_TAG = "panel"
DPI = 100


class RunReportError(ValueError):
    """The folder is not a training run, or its files cannot be read (the message says which)."""


@dataclass
class RunSummary:
    """What a run directory holds, read by :func:`read_run`.

    Attributes
    ----------
    run_dir : Path
    history : dict of str to list of float
        ``metrics.csv`` columns (``epoch``, ``loss``, ``psnr``, ``val_psnr``, ...), one value per epoch.
    final : dict
        ``final_metrics.json`` (empty while the run is training or if it was killed).
    config : dict
        ``config.yaml`` (empty when missing).
    panel : np.ndarray or None
        The last image panel, uint8 (height, width, channels): the panel of each validation
        sample stacked top to bottom; None when the run wrote none.
    panel_epoch : int or None
        0-based epoch of ``panel``.
    """

    run_dir: Path
    history: dict[str, list[float]]
    final: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    panel: np.ndarray | None = None
    panel_epoch: int | None = None

    @property
    def epochs(self) -> int:
        """Finished epochs."""
        return len(next(iter(self.history.values()), []))


def read_metrics(csv_path: Path) -> dict[str, list[float]]:
    """The columns of a Keras CSV log (``metrics.csv``) as float lists.

    Unlike :func:`resprunet.training.runs.read_history` (whose package import loads
    TensorFlow) it reads a log that is still being written: a last line cut short is left out.

    Raises
    ------
    RunReportError
        A complete line holds a value that is not a number.
    """
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0]) if rows else []
    complete = [r for r in rows if all(r.get(c) not in (None, "") for c in columns)]
    try:
        return {c: [float(r[c]) for r in complete] for c in columns}
    except ValueError as exc:
        raise RunReportError(f"{csv_path}: not a Keras CSV log of numbers ({exc})") from exc


def _records(path: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (length, its CRC, data, its CRC), CRCs not checked; a
    record cut short (a file still being written) ends the iteration."""
    with path.open("rb") as fh:
        while len(header := fh.read(12)) == 12:
            (length,) = struct.unpack("<Q", header[:8])
            data = fh.read(length)
            if len(data) < length or len(fh.read(4)) < 4:
                return
            yield data


def last_panel(tb_dir: Path) -> tuple[np.ndarray | None, int | None]:
    """The last ``panel`` image summary under ``tb_dir/images``: (uint8 image, epoch) or (None, None).

    Every sample's panel is decoded from PNG and stacked top to bottom (4 px apart).
    """
    from tensorboard.compat.proto import event_pb2  # protocol buffers only, no TensorFlow

    found: tuple[int, list[bytes]] | None = None
    for path in sorted((tb_dir / "images").glob("events.out.tfevents.*")):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.tag == PANEL_TAG and (found is None or event.step >= found[0]):
                    found = (event.step, list(value.tensor.string_val[2:]))  # [width, height, png...]
    if not found or not found[1]:
        return None, None
    images = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in found[1]]
    width = max(im.shape[1] for im in images)
    gap = np.zeros((4, width, 3), np.uint8)
    rows = [np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0))) for im in images]
    stacked = [part for row in rows for part in (row, gap)][:-1]
    return np.concatenate(stacked, axis=0), int(found[0])


def read_run(run_dir: str | os.PathLike) -> RunSummary:
    """Read a run directory written by :func:`resprunet.training.train`.

    Raises
    ------
    RunReportError
        No such directory, no ``metrics.csv`` (not a run, or one that never finished an
        epoch), an empty or unreadable ``metrics.csv``, or an unreadable ``final_metrics.json``.
    """
    import yaml

    folder = Path(run_dir)
    if not folder.is_dir():
        raise RunReportError(f"{folder}: no such run directory")
    csv_path = folder / "metrics.csv"
    if not csv_path.is_file():
        raise RunReportError(
            f"{folder}: not a training run with a finished epoch (no metrics.csv); expected a folder "
            "runs/<name>/<UTC time>/ written by 'resprunet train' or resprunet.training.train"
        )
    history = read_metrics(csv_path)
    if not history or not next(iter(history.values())):
        raise RunReportError(f"{csv_path}: no finished epoch yet")
    final: dict[str, Any] = {}
    if (folder / "final_metrics.json").is_file():
        try:
            final = json.loads((folder / "final_metrics.json").read_text())
        except json.JSONDecodeError as exc:
            raise RunReportError(f"{folder / 'final_metrics.json'}: not valid JSON ({exc})") from exc
    config: dict[str, Any] = {}
    if (folder / "config.yaml").is_file():
        loaded = yaml.safe_load((folder / "config.yaml").read_text())
        config = loaded if isinstance(loaded, dict) else {}
    panel, epoch = last_panel(folder / "tb")
    return RunSummary(folder, history, final, config, panel, epoch)


def _epochs(history: dict[str, list[float]]) -> np.ndarray:
    """1-based epoch numbers of the history's rows."""
    n = len(next(iter(history.values()), []))
    return np.asarray(history["epoch"], dtype=int) + 1 if "epoch" in history else np.arange(1, n + 1)


def _plot_curves(loss_ax: Axes, psnr_ax: Axes, history: dict[str, list[float]]) -> None:
    epochs = _epochs(history)
    for ax, key, label in ((loss_ax, "loss", "loss"), (psnr_ax, "psnr", "PSNR (dB)")):
        for prefix, style, name in (("", "-o", "training"), ("val_", "-s", "validation")):
            if prefix + key in history:
                ax.plot(epochs, history[prefix + key], style, markersize=3, label=name)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if all(v > 0 for k in ("loss", "val_loss") for v in history.get(k, [])):
        loss_ax.set_yscale("log")
    loss_ax.set_title("loss per epoch", fontsize=9)
    psnr_ax.set_title("PSNR per epoch (validation: chooses best.keras)", fontsize=9)


def curves_figure(history: dict[str, list[float]], path: str | os.PathLike | None = None) -> Figure:
    """Loss (log scale) and PSNR per epoch, training and validation, side by side.

    Parameters
    ----------
    history : dict
        ``metrics.csv`` columns, as :func:`read_metrics` returns them.
    path : str or os.PathLike, optional
        PNG file to write.
    """
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    _plot_curves(*fig.subplots(1, 2), history)
    if path is not None:
        fig.savefig(path, dpi=DPI, format="png")
    return fig


def _best(history: dict[str, list[float]]) -> tuple[int, float] | None:
    """(1-based epoch, value) of the best finite validation PSNR."""
    values = history.get("val_psnr", [])
    finite = [(v, k) for k, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return None
    value, k = max(finite)
    return int(_epochs(history)[k]), value


def metric_lines(summary: RunSummary) -> list[tuple[str, str]]:
    """(name, value) pairs of the summary: last and best epoch, then each test volume."""
    h = summary.history
    last = {k: v[-1] for k, v in h.items() if k != "epoch"}
    lines = [("epochs finished", str(summary.epochs))]
    lines += [(f"last epoch {key}", f"{last[key]:.4g}") for key in
              ("loss", "val_loss", "psnr", "val_psnr", "ssim", "val_ssim") if key in last]
    best = _best(h)
    if best:
        lines.append(("best val_psnr", f"{best[1]:.2f} dB at epoch {best[0]}"))
    for ev in summary.final.get("evaluations", []):
        lines.append((f"test {ev['volume']} PSNR noisy -> denoised",
                      f"{ev['noisy_psnr']:.2f} -> {ev['denoised_psnr']:.2f} dB ({ev['psnr_gain']:+.2f} dB)"))
        lines.append((f"test {ev['volume']} SSIM noisy -> denoised",
                      f"{ev['noisy_ssim']:.4f} -> {ev['denoised_ssim']:.4f} ({ev['ssim_kind']})"))
    if "train_seconds" in summary.final:
        lines.append(("training time", f"{summary.final['train_seconds']:.0f} s"))
    if summary.epochs and not summary.final:
        lines.append(("final metrics", "none yet (final_metrics.json is written when training ends)"))
    return lines


def _title(summary: RunSummary) -> str:
    """``<model> <n>D, <noise in words>  —  <run dir>`` from the run's config."""
    from data_pipelines.errors import DataPipelineError
    from data_pipelines.noise import NoiseModel

    model = summary.config.get("model", {})
    noise = summary.config.get("data", {}).get("noise")
    what = f"{model.get('name', 'model')} {model.get('ndim', '?')}D" if model else "run"
    if noise:
        try:
            what += ", " + NoiseModel.from_dict(noise).describe()
        except (DataPipelineError, ValueError, TypeError, KeyError):
            what += f", noise {noise}"
    return f"{what}  —  {summary.run_dir}"


def summary_figure(summary: RunSummary, path: str | os.PathLike | None = None) -> Figure:
    """Curves, the last image panel (when there is one) and the metrics as text, one figure."""
    has_panel = summary.panel is not None
    fig = Figure(figsize=(12, 7.5 if has_panel else 5.5), layout="constrained")
    grid = fig.add_gridspec(2, 3, height_ratios=[1.0, 1.3 if has_panel else 0.9], width_ratios=[1, 1, 1.1])
    _plot_curves(fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), summary.history)
    text = fig.add_subplot(grid[0, 2])
    text.set_axis_off()
    text.text(0.0, 1.0, "\n".join(f"{k}: {v}" for k, v in metric_lines(summary)), va="top", ha="left",
              fontsize=7.5, family="monospace", transform=text.transAxes, wrap=True)
    bottom = fig.add_subplot(grid[1, :])
    bottom.set_axis_off()
    if has_panel:
        bottom.imshow(summary.panel, interpolation="nearest")
        bottom.set_title(f"image panel of epoch {summary.panel_epoch + 1} (validation samples)", fontsize=9)
    else:
        bottom.text(0.5, 0.5, "no image panel (callbacks.image_panel was off)", ha="center", va="center")
    fig.suptitle(_title(summary), fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=DPI, format="png")
    return fig


def _html(summary: RunSummary, png: bytes) -> str:
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in metric_lines(summary))
    data = base64.b64encode(png).decode("ascii")
    title = html.escape(_title(summary))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>resprunet run report: {html.escape(summary.run_dir.name)}</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}</style>"
        f"</head><body>\n<h1>Training run</h1>\n<p>{title}</p>\n"
        f"<table>\n{rows}\n</table>\n"
        f"<p><img alt=\"loss and PSNR curves, image panel and metrics\" src=\"data:image/png;base64,{data}\"></p>\n"
        "<p>Curves from metrics.csv; image panel from tb/images (noisy | [prior |] denoised | clean); "
        "test metrics from final_metrics.json (volumes never used for training or checkpoint choice).</p>\n"
        "</body></html>\n"
    )


def write_run_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``report.png`` (:func:`summary_figure`) and a self-contained ``report.html`` (the
    metrics as a table and the figure embedded) for a training run.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run directory (``runs/<name>/<UTC time>/``); it may still be training.
    out : str or os.PathLike, optional
        Folder for the two files (created); default ``run_dir``. Earlier reports there are
        replaced (each file written atomically).

    Returns
    -------
    dict
        ``"png"`` and ``"html"`` -> path.

    Raises
    ------
    RunReportError
        See :func:`read_run`.
    """
    summary = read_run(run_dir)
    folder = Path(out) if out is not None else summary.run_dir
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    summary_figure(summary).savefig(buffer, dpi=DPI, format="png")
    png = buffer.getvalue()
    paths = {"png": folder / "report.png", "html": folder / "report.html"}
    with atomic_path(paths["png"], force=True) as tmp:
        tmp.write_bytes(png)
    with atomic_path(paths["html"], force=True) as tmp:
        tmp.write_text(_html(summary, png), encoding="utf-8")
    return paths
