"""Figures of an assessment: a panel grid per case (images with zoomed insets, SSIM maps, error
maps and a line profile across an edge), a metrics bar chart, and a look at one volume
(orthogonal slices and histogram).

Uses :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI backend); every
function returns the figure and, given ``path``, also saves it as a PNG.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .metrics import error_map, ssim_map
from .report import MEMORY_COLUMN, NOISY_ROW, TIME_COLUMN, column_label
from .views import ORIENTATIONS, Line, display_range, edge_line, orthogonal_slices, zoom_window

if TYPE_CHECKING:  # pragma: no cover
    from .api import Case
    from .report import Report

_ZOOM_COLOUR = "#ffcc00"
_LINE_COLOUR = "#00d0ff"
_SSIM_WIDTH = 11  # the SSIM window: each side of a map's input must be at least this
DPI = 110


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=DPI, format="png")
    return fig


def _panels(case: "Case", outputs: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(key, array) in display order: noisy, prior, the methods, clean."""
    panels = [(NOISY_ROW, outputs.get(NOISY_ROW, case.noisy))]
    if case.prior is not None:
        panels.append(("prior", case.prior))
    panels += [(name, out) for name, out in outputs.items() if name != NOISY_ROW]
    panels.append(("clean", case.clean))
    return panels


def _ssim_view(clean: np.ndarray, estimate: np.ndarray, data_range: float) -> np.ndarray | None:
    """The SSIM map shown for an estimate: of an image, or the xy view of a volume's 3D map
    (per-slice 2D maps when the volume has fewer than 11 slices); None when too small."""
    if min(clean.shape[-2:]) < _SSIM_WIDTH:
        return None
    if clean.ndim == 2 or clean.shape[0] >= _SSIM_WIDTH:
        return orthogonal_slices(ssim_map(clean, estimate, data_range))[0]
    middle = clean.shape[0] // 2
    return ssim_map(clean[middle], estimate[middle], data_range)


def case_figure(case: "Case", outputs: dict[str, np.ndarray], titles: dict[str, str], data_range: float,
                path: str | os.PathLike | None = None) -> Figure:
    """The panel grid of one case: one column per panel (noisy, prior, methods, clean).

    Rows, top to bottom: the images on one grey scale with a zoomed inset of the most detailed
    region (a volume: its xy, xz and yz middle slices); the local SSIM map against the clean
    image (:func:`~resprunet.assess.metrics.ssim_map`; a volume's 3D map, shown in the xy
    slice); the error map (:func:`~resprunet.assess.metrics.error_map`, percent of the clean
    image's RMS, whose RMS is the relative error of the table), on one colour scale for all
    columns; and the profiles of every panel along a line across the clean image's strongest
    edge (:func:`~resprunet.assess.views.edge_line`, drawn in cyan on the clean xy view).

    Parameters
    ----------
    case : Case
        Clean, noisy and prior arrays, (y, x) or (z, y, x).
    outputs : dict
        Method name -> output of the case's shape (``"noisy"`` may be among them).
    titles : dict
        Method name -> panel title (e.g. with PSNR/SSIM); missing names use the key.
    data_range : float
        Range of the data, for the SSIM map. The grey scale runs from the clean image's 0.5th
        to 99.5th percentile.
    path : str or os.PathLike, optional
        PNG file to write.

    Returns
    -------
    matplotlib.figure.Figure
    """
    panels = _panels(case, outputs)
    clean = np.asarray(case.clean, dtype=np.float64)
    low, high = display_range(clean)
    views = [orthogonal_slices(np.asarray(a, dtype=np.float32)) for _, a in panels]
    clean_views = orthogonal_slices(clean)
    windows = [zoom_window(v) for v in clean_views]
    ssim_views = [None if key == "clean" else _ssim_view(clean, np.asarray(a, np.float64), data_range)
                  for key, a in panels]
    error_views = [None if key == "clean" else orthogonal_slices(error_map(clean, a))[0] for key, a in panels]
    n_views, n_cols = len(clean_views), len(panels)
    map_rows = [("SSIM map", ssim_views)] if any(v is not None for v in ssim_views) else []
    map_rows.append(("error, % of RMS", error_views))
    ratios = [v.shape[0] / v.shape[1] for v in clean_views]
    xy_ratio = ratios[0]
    height_ratios = ratios + [xy_ratio] * len(map_rows) + [0.9]
    size = 2.6 if n_cols <= 6 else 2.1
    fig = Figure(figsize=(size * n_cols + 1.2, size * sum(height_ratios) + 0.45 * len(height_ratios)),
                 layout="constrained")
    grid = fig.add_gridspec(len(height_ratios), n_cols, height_ratios=height_ratios)
    line = edge_line(clean_views[0])
    for p, (key, _) in enumerate(panels):
        for v, (view, window) in enumerate(zip(views[p], windows)):
            ax = fig.add_subplot(grid[v, p])
            origin = "upper" if v == 0 else "lower"  # slices through z: head up
            _show(ax, view, window, low, high, origin)
            if v == 0:
                ax.set_title(titles.get(key, key), fontsize=8)
            if v == 0 and key == "clean":
                ax.plot(*line.coordinates()[::-1], color=_LINE_COLOUR, linewidth=1.2)
            if p == 0 and n_views > 1:
                _row_label(ax, ORIENTATIONS[v])
    # one scale for every column, set by the methods (the noisy input's errors may saturate)
    scored = [e for (key, _), e in zip(panels, error_views) if e is not None and key not in (NOISY_ROW, "prior")]
    error_high = max(float(np.percentile(e, 99.5)) for e in scored or [error_views[0]]) or 1.0
    for r, (label, maps) in enumerate(map_rows):
        row_axes, image = [], None
        for p, view in enumerate(maps):
            ax = fig.add_subplot(grid[n_views + r, p])
            ax.set_axis_off()
            if view is None:
                continue
            if label == "SSIM map":
                image = ax.imshow(view, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                image = ax.imshow(view, cmap="magma", vmin=0.0, vmax=error_high, interpolation="nearest")
            row_axes.append(ax)
            if p == 0:
                _row_label(ax, label + (" (xy)" if n_views > 1 else ""))
        if image is not None:
            fig.colorbar(image, ax=row_axes, shrink=0.9, pad=0.01).ax.tick_params(labelsize=7)
    _profiles(fig.add_subplot(grid[-1, :]), line, panels, [v[0] for v in views])
    fig.suptitle(f"{case.name}  (grey scale {round(low, 6):.3g} to {round(high, 6):.3g}; yellow box: zoomed region; "
                 "cyan line: profile)", fontsize=9)
    return _save(fig, path)


def _row_label(ax: Axes, text: str) -> None:
    ax.text(-0.04, 0.5, text, rotation=90, va="center", ha="right", transform=ax.transAxes, fontsize=8)


def _profiles(ax: Axes, line: Line, panels: list[tuple[str, np.ndarray]], xy_views: list[np.ndarray]) -> None:
    """Every panel's values along ``line``: clean in black, noisy in grey, the others in colour."""
    distance = line.distances()
    for k, ((key, _), view) in enumerate(zip(panels, xy_views)):
        style = {"clean": {"color": "black", "linewidth": 2.0},
                 NOISY_ROW: {"color": "0.6", "linewidth": 1.0},
                 "prior": {"color": "0.3", "linewidth": 1.0, "linestyle": "--"}}.get(
            key, {"color": f"C{k % 10}", "linewidth": 1.2})
        ax.plot(distance, line.profile(view), label=key, **style)
    ax.set_xlabel("distance along the cyan line, across the strongest edge of the clean image (pixels)",
                  fontsize=8)
    ax.set_ylabel("intensity", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=min(len(panels), 6), loc="best")


def _show(ax: Axes, view: np.ndarray, window: tuple[int, int, int, int], low: float, high: float,
          origin: str) -> None:
    """One panel: the view, the zoom box and an inset of the zoomed region in a free corner."""
    ax.set_axis_off()
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


def metrics_chart(report: "Report", path: str | os.PathLike | None = None) -> Figure:
    """Grouped bars of every metric and the run time: cases on x, one bar per method.

    Every y-axis starts at zero (or below it for a negative value), so bar lengths compare.
    """
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
        finite = [v for v in (report.value(c, m, column, default=np.nan) for c in cases for m in methods)
                  if np.isfinite(v)]
        if finite and column != MEMORY_COLUMN:
            ax.set_ylim(min(0.0, min(finite)), max(finite) * 1.08 if max(finite) > 0 else 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    return _save(fig, path)


def volume_figure(array: np.ndarray, spacing: Sequence[float] | None = None, title: str = "",
                  percentiles: tuple[float, float] = (0.5, 99.5),
                  path: str | os.PathLike | None = None) -> Figure:
    """A first look at an image or volume: its orthogonal slices and its histogram.

    Parameters
    ----------
    array : np.ndarray
        (y, x), (z, y, x) or (1, y, x) (a 2D image as read by :func:`data_pipelines.read_volume`).
    spacing : (float, float, float), optional
        Voxel size (z, y, x) in mm (or the file's unit): the slices are drawn to scale. None:
        square voxels, said in the title.
    title : str
        First line of the title (e.g. the file name).
    percentiles : (float, float)
        Display range of the grey scale (:func:`~resprunet.assess.views.display_range`),
        marked on the histogram.
    path : str or os.PathLike, optional
        PNG file to write.

    Returns
    -------
    matplotlib.figure.Figure
        The xy, xz and yz slices through the middle (one panel for an image) and the
        histogram of all values (log counts) with the display range dashed.
    """
    a = np.asarray(array, dtype=np.float32)
    a = a[0] if a.ndim == 3 and a.shape[0] == 1 else a
    low, high = display_range(a, percentiles)
    views = orthogonal_slices(a)
    dz, dy, dx = spacing if spacing is not None else (1.0, 1.0, 1.0)
    aspects = [dy / dx, dz / dx, dz / dy][: len(views)]
    widths = [v.shape[1] for v in views] + [max(v.shape[1] for v in views)]
    fig = Figure(figsize=(2.8 * len(widths), 3.2), layout="constrained")
    axes = fig.subplots(1, len(widths), gridspec_kw={"width_ratios": widths})
    for v, (ax, view, aspect) in enumerate(zip(axes, views, aspects)):
        ax.imshow(view, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest",
                  origin="upper" if v == 0 else "lower")
        ax.set_title(ORIENTATIONS[v] if len(views) > 1 else "image", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    hist = axes[-1]
    hist.hist(a.ravel(), bins=128, color="0.35", log=True)
    for edge in (low, high):
        hist.axvline(edge, color="C3", linestyle="--", linewidth=1.0)
    hist.set_title(f"histogram; dashed: display range\n(percentiles {percentiles[0]:g} and {percentiles[1]:g})",
                   fontsize=8)
    hist.set_xlabel("value", fontsize=8)
    hist.set_ylabel("voxels (log)", fontsize=8)
    hist.tick_params(labelsize=7)
    size = "voxel size " + ("x".join(f"{s:g}" for s in spacing) + " (z, y, x)" if spacing is not None
                            else "unknown (shown as square voxels)")
    fig.suptitle(f"{title}\nshape {a.shape}, {size}, display {low:.4g} to {high:.4g}".strip(), fontsize=9)
    return _save(fig, path)
