"""Figure of a noise model: the density p(observation | signal) over a grid, and slices of it.

Uses :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI backend).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from data_pipelines.io.atomic import atomic_path

from .base import NoiseModel

__all__ = ["plot_noise_model"]

DPI = 110
_GRID = 200  # grid points along each axis of the density image
_SPREAD = 4.0  # the observation axis reaches this many standard deviations beyond the signal range


def _axes_ranges(model: NoiseModel, signal_values: np.ndarray,
                 pairs: tuple[np.ndarray, np.ndarray] | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """Signal and observation ranges of the image: the chosen signals (and the pairs' signals),
    and the model's mean +- 4 std over them (and the pairs' 0.1st to 99.9th percentile)."""
    low, high = float(signal_values.min()), float(signal_values.max())
    if pairs is not None:
        low, high = min(low, float(pairs[0].min())), max(high, float(pairs[0].max()))
    if low == high:
        low, high = low - 0.5, high + 0.5
    grid = np.linspace(low, high, _GRID)
    std = np.sqrt(model.variance(grid))
    observed = (float(np.min(grid - _SPREAD * std)), float(np.max(grid + _SPREAD * std)))
    if pairs is not None:
        lo, hi = np.percentile(pairs[1], [0.1, 99.9])
        observed = (min(observed[0], float(lo)), max(observed[1], float(hi)))
    return (low, high), observed


def plot_noise_model(model: NoiseModel, signal_values: Sequence[float] | np.ndarray,
                     path: str | os.PathLike | None = None,
                     pairs: tuple[np.ndarray, np.ndarray] | None = None, title: str | None = None) -> Figure:
    """Plot p(observation | signal): an image over (signal, observation), and slices at chosen signals.

    Left: the density as an image (signal on x, observation on y; dashed lines at
    ``signal_values``). Right: p(observation | s) against the observation for each chosen s,
    with, when ``pairs`` are given, the normalised histogram of the observations whose signal
    lies within 1 % of the signal range of s.

    Parameters
    ----------
    model : NoiseModel
        The model to show.
    signal_values : sequence of float
        Signals of the slices (a few, e.g. 3 to 5), in the model's units; with ``pairs`` they
        also set the image's signal axis, which spans both.
    path : str or os.PathLike, optional
        PNG file to write (atomically; an existing file is replaced).
    pairs : (np.ndarray, np.ndarray), optional
        (signal, observation) calibration pairs, e.g. from
        :func:`~resprunet.noise_models.calibration_pairs`.
    title : str, optional
        Figure title (default: the model's kind).

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = np.asarray(signal_values, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"signal_values must be finite numbers, at least one, got {signal_values!r}")
    if pairs is not None:
        pairs = (np.asarray(pairs[0], dtype=np.float64).ravel(), np.asarray(pairs[1], dtype=np.float64).ravel())
    (s_low, s_high), (x_low, x_high) = _axes_ranges(model, values, pairs)
    signal_grid = np.linspace(s_low, s_high, _GRID)
    observation_grid = np.linspace(x_low, x_high, _GRID)
    density = np.exp(model.log_likelihood(observation_grid[:, None], signal_grid[None, :]))

    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    image_ax, slice_ax = fig.subplots(1, 2)
    image = image_ax.imshow(density, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                            extent=(s_low, s_high, x_low, x_high))
    fig.colorbar(image, ax=image_ax, label="p(observation | signal)")
    image_ax.set_xlabel("signal s")
    image_ax.set_ylabel("observation x")
    for k, s in enumerate(values):
        colour = f"C{k % 10}"
        image_ax.axvline(s, color=colour, linestyle="--", linewidth=1.0)
        slice_ax.plot(observation_grid, np.exp(model.log_likelihood(observation_grid, np.full_like(observation_grid, s))),
                      color=colour, linewidth=1.5, label=f"s = {s:.4g}")
        if pairs is not None:
            near = np.abs(pairs[0] - s) <= 0.01 * (s_high - s_low)
            if near.sum() > 1:
                slice_ax.hist(pairs[1][near], bins=40, density=True, color=colour, alpha=0.3,
                              label=f"data, {int(near.sum())} pairs")
    slice_ax.set_xlabel("observation x")
    slice_ax.set_ylabel("density")
    slice_ax.legend(fontsize=7)
    fig.suptitle(title or f"noise model: {model.kind}", fontsize=10)
    if path is not None:
        with atomic_path(path, force=True) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    return fig
