"""What the figures show of an image or a volume: orthogonal slices, a display range, the
most detailed window and a line across the strongest edge. numpy and scipy only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Names of the three orthogonal views of a (z, y, x) volume, in the order of :func:`orthogonal_slices`.
ORIENTATIONS = ("xy (axial, z mid)", "xz (coronal, y mid)", "yz (sagittal, x mid)")


def orthogonal_slices(array: np.ndarray, index: tuple[int, int, int] | None = None) -> list[np.ndarray]:
    """The 2D views of an image or a volume.

    Parameters
    ----------
    array : np.ndarray
        (y, x) image, or (z, y, x) volume.
    index : (int, int, int), optional
        Voxel (z, y, x) the three planes pass through; default the middle of each axis.

    Returns
    -------
    list of np.ndarray
        ``[array]`` for an image; for a volume the planes through ``index``: xy (y, x),
        xz (z, x) and yz (z, y), as :data:`ORIENTATIONS` names them.
    """
    a = np.asarray(array)
    if a.ndim == 2:
        return [a]
    if a.ndim != 3:
        raise ValueError(f"expected a (y, x) image or a (z, y, x) volume, got shape {a.shape}")
    z, y, x = index if index is not None else tuple(n // 2 for n in a.shape)
    return [a[z], a[:, y, :], a[:, :, x]]


def display_range(array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Grey-scale limits (low, high) from percentiles of ``array``, so a few extreme voxels do
    not wash out the image; a constant array gets (value, value + 1)."""
    low, high = (float(v) for v in np.percentile(np.asarray(array, dtype=np.float64), percentiles))
    return (low, high) if high > low else (low, low + 1.0)


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


@dataclass(frozen=True)
class Line:
    """A straight segment across a 2D image, in pixel coordinates (row, column).

    Attributes
    ----------
    start, end : (float, float)
        End points (row, col).
    samples : int
        Points sampled along it, one per pixel of length.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    samples: int

    def coordinates(self) -> np.ndarray:
        """(2, samples) rows and columns of the sample points."""
        return np.stack([np.linspace(self.start[k], self.end[k], self.samples) for k in (0, 1)])

    def distances(self) -> np.ndarray:
        """(samples,) signed distance of each point from the segment's centre, in pixels."""
        half = np.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]) / 2
        return np.linspace(-half, half, self.samples)

    def profile(self, image: np.ndarray) -> np.ndarray:
        """(samples,) values of ``image`` along the segment (bilinear interpolation)."""
        return ndimage.map_coordinates(np.asarray(image, dtype=np.float64), self.coordinates(), order=1,
                                       mode="nearest")


def edge_line(image: np.ndarray, length: int | None = None, smoothing: float = 1.5) -> Line:
    """The segment across the strongest edge of ``image``, along the edge's normal.

    The edge is the pixel of largest gradient magnitude of the Gaussian-smoothed image
    (``smoothing`` pixels) at least half a segment from the border; the segment is centred
    on it and points along its gradient, so a profile along it runs from the dark to the
    bright side.

    Parameters
    ----------
    image : np.ndarray
        (y, x) reference image (the clean one: its edges are the real ones).
    length : int, optional
        Segment length in pixels; default a quarter of the shorter side, at least 8.
    smoothing : float
        Gaussian sigma (pixels) applied before the gradient, so noise does not pick the edge.

    Returns
    -------
    Line
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"edge_line expects a (y, x) image, got shape {img.shape}")
    n = length or max(8, min(img.shape) // 4)
    gy, gx = np.gradient(ndimage.gaussian_filter(img, smoothing))
    magnitude = np.hypot(gy, gx)
    margin = min(n // 2, (min(img.shape) - 1) // 2)
    inner = magnitude[margin : img.shape[0] - margin, margin : img.shape[1] - margin]
    r, c = np.unravel_index(int(np.argmax(inner)), inner.shape)
    r, c = r + margin, c + margin
    norm = magnitude[r, c]
    dy, dx = (gy[r, c] / norm, gx[r, c] / norm) if norm > 0 else (0.0, 1.0)
    half = (n - 1) / 2
    return Line((r - half * dy, c - half * dx), (r + half * dy, c + half * dx), n)
