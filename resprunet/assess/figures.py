"""Figures of an assessment: a panel grid per case (with zoomed insets) and a metrics bar chart.

Uses :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI backend).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import ndimage

from .report import MEMORY_COLUMN, NOISY_ROW, TIME_COLUMN, column_label

if TYPE_CHECKING:  # pragma: no cover
    from .api import Case
    from .report import Report

_ZOOM_COLOUR = "#ffcc00"
_ORIENTATIONS = ("axial (z mid)", "coronal (y mid)", "sagittal (x mid)")


def zoom_window(image: np.ndarray, fraction: float = 0.25) -> tuple[int, int, int, int]:
    """The most detailed window of a 2D image: (row, col, height, width), in pixels.

    The window is ``fraction`` of each side (at least 8 pixels) and maximises the mean
    gradient magnitude of ``image`` (the most edges and texture).
    """
    h, w = image.shape
    wh, ww = max(8, int(h * fraction)), max(8, int(w * fraction))
    wh, ww = min(wh, h), min(ww, w)
    img = image.astype(np.float64)
    detail = ndimage.uniform_filter(np.hypot(*np.gradient(img)), (wh, ww), mode="nearest")
    # centres whose window lies inside the image
    r0, c0 = wh // 2, ww // 2
    inner = detail[r0 : h - (wh - r0) + 1, c0 : w - (ww - c0) + 1]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(r), int(c), wh, ww


def _views(volume: np.ndarray) -> list[np.ndarray]:
    """The 2D views shown for an array: itself (2D) or its three middle slices (3D)."""
    if volume.ndim == 2:
        return [volume]
    z, y, x = (n // 2 for n in volume.shape)
    return [volume[z], volume[:, y, :], volume[:, :, x]]


def _panels(case: "Case", outputs: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(key, array) in display order: noisy, prior, the methods, clean."""
    panels = [(NOISY_ROW, outputs.get(NOISY_ROW, case.noisy))]
    if case.prior is not None:
        panels.append(("prior", case.prior))
    panels += [(name, out) for name, out in outputs.items() if name != NOISY_ROW]
    panels.append(("clean", case.clean))
    return panels


def case_figure(case: "Case", outputs: dict[str, np.ndarray], titles: dict[str, str], data_range: float,
                path: str | os.PathLike) -> None:
    """Save the panel grid of one case as a PNG.

    Parameters
    ----------
    case : Case
        Clean, noisy and prior arrays, (y, x) or (z, y, x).
    outputs : dict
        Method name -> output of the case's shape.
    titles : dict
        Method name -> panel title (e.g. with PSNR/SSIM); missing names use the key.
    data_range : float
        Range of the data. The grey scale runs from the clean image's 0.5th to 99.5th
        percentile (or over ``data_range`` from the former when the image is constant).
    path : str or os.PathLike
        PNG file to write.
    """
    panels = _panels(case, outputs)
    low, high = np.percentile(case.clean, [0.5, 99.5])
    if not high > low:
        high = low + data_range
    views_per_panel = [_views(np.asarray(a, dtype=np.float32)) for _, a in panels]
    windows = [zoom_window(v) for v in _views(np.asarray(case.clean, dtype=np.float32))]
    n_rows, n_cols = len(windows), len(panels)
    if n_rows == 1 and n_cols > 5:  # wrap a 2D case into rows of at most 5 panels
        n_cols = 5
    grid_rows = n_rows if n_rows > 1 else -(-len(panels) // n_cols)
    # row heights follow the views' aspect ratios (thin coronal/sagittal views of a slab)
    ratios = [v.shape[0] / v.shape[1] for v in views_per_panel[0]] if n_rows > 1 else [1.0] * grid_rows
    fig = Figure(figsize=(2.6 * n_cols, 2.6 * sum(ratios) + 0.5 * grid_rows), layout="constrained")
    axes = fig.subplots(grid_rows, n_cols, squeeze=False, gridspec_kw={"height_ratios": ratios})
    for ax in axes.ravel():
        ax.set_axis_off()
    for p, ((key, _), views) in enumerate(zip(panels, views_per_panel)):
        for v, (view, window) in enumerate(zip(views, windows)):
            ax = axes[v, p] if n_rows > 1 else axes[p // n_cols, p % n_cols]
            origin = "upper" if v == 0 else "lower"  # slices through z: head up
            _show(ax, view, window, low, high, origin)
            title = titles.get(key, key)
            if n_rows > 1:
                title = title if v == 0 else ""
                if p == 0:
                    ax.text(-0.04, 0.5, _ORIENTATIONS[v], rotation=90, va="center", ha="right",
                            transform=ax.transAxes, fontsize=8)
            ax.set_title(title, fontsize=8)
    fig.suptitle(f"{case.name}  (grey scale {low:.3g} to {high:.3g}; yellow box: zoomed region)", fontsize=9)
    fig.savefig(path, dpi=110, format="png")


def _show(ax, view: np.ndarray, window: tuple[int, int, int, int], low: float, high: float, origin: str) -> None:
    """One panel: the view, the zoom box and an inset of the zoomed region in a free corner."""
    r, c, h, w = window
    ax.imshow(view, cmap="gray", vmin=low, vmax=high, origin=origin, interpolation="nearest")
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor=_ZOOM_COLOUR, linewidth=0.8))
    # inset in the bottom corner away from the box (in display coordinates)
    box_right = (c + w / 2) > view.shape[1] / 2
    box_low_on_screen = ((r + h / 2) > view.shape[0] / 2) == (origin == "upper")
    x0 = 0.0 if box_right else 0.58
    y0 = 0.58 if box_low_on_screen else 0.0
    inset = ax.inset_axes([x0, y0, 0.42, 0.42])
    inset.imshow(view[r : r + h, c : c + w], cmap="gray", vmin=low, vmax=high, origin=origin, interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor(_ZOOM_COLOUR)
        spine.set_linewidth(1.0)


def metrics_chart(report: "Report", path: str | os.PathLike) -> None:
    """Save grouped bars of every metric and the run time: cases on x, one bar per method."""
    columns = [*report.metrics, TIME_COLUMN]
    cases = [c.name for c in report.cases]
    methods = report.methods
    colours = [f"C{i % 10}" for i in range(len(methods))]
    width = 0.8 / len(methods)
    n_cols = min(3, len(columns))
    n_rows = -(-len(columns) // n_cols)
    panel_width = max(3.5, 0.5 * len(cases) * max(1.0, len(methods) / 4) + 1.5)
    fig = Figure(figsize=(panel_width * n_cols + 1.5, 3.4 * n_rows), layout="constrained")
    grid = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in grid[len(columns):]:
        ax.set_axis_off()
    axes = grid[: len(columns)]
    x = np.arange(len(cases))
    for ax, column in zip(axes, columns):
        for k, (method, colour) in enumerate(zip(methods, colours)):
            values = [report.value(case, method, column, default=np.nan) for case in cases]
            values = [v if np.isfinite(v) else np.nan for v in values]
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, values, width, label=method, color=colour)
        ax.set_xticks(x, cases, rotation=30, ha="right", fontsize=7)
        ax.set_title(column_label(column), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        finite = [report.value(c, m, column, default=np.nan) for c in cases for m in methods]
        finite = [v for v in finite if np.isfinite(v)]
        if column not in (TIME_COLUMN, MEMORY_COLUMN) and finite:
            span = max(finite) - min(finite)
            ax.set_ylim(min(finite) - 0.15 * span - 1e-9, max(finite) + 0.1 * span + 1e-9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    fig.savefig(path, dpi=110, format="png")
