"""Split Bregman solver shared by :func:`tv_denoise` and :func:`spade_denoise`.

It minimises, over images ``u`` of the shape of ``f``,

    E(u) = 1/2 ||u - f||_2^2 + sum_k w_k R(grad u - g_k)

where ``grad`` is the forward-difference gradient along ``axes`` with Neumann boundaries
(the difference past the last voxel is zero, grid spacing 1 voxel), ``g_k`` a fixed vector
field (zero for plain TV, ``grad p`` for a prior ``p``) and ``R`` the isotropic
(``sum_i sqrt(sum_d v_d,i^2)``) or anisotropic (``sum_i sum_d |v_d,i|``) l1 norm.

Each term gets an auxiliary ``d_k = grad u - g_k`` enforced by a Bregman variable ``b_k``
(Goldstein & Osher 2009). The ``u`` step is the linear system
``(I + penalty * K * grad^T grad) u = f + penalty * sum_k grad^T (d_k + g_k - b_k)``,
solved exactly with a type-II DCT (which diagonalises the Neumann Laplacian); the ``d`` step
is a (vector) soft shrinkage by ``w_k / penalty``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft


@dataclass(frozen=True)
class BregmanInfo:
    """What one split Bregman run did.

    Attributes
    ----------
    objective : np.ndarray
        E(u) after each outer iteration, shape (n_iter,), in squared data units (empty
        when not recorded).
    n_iter : int
        Outer iterations run.
    converged : bool
        Whether the relative change ``||u_k - u_(k-1)|| / ||u_(k-1)||`` fell below ``tol``.
    """

    objective: np.ndarray
    n_iter: int
    converged: bool


def normalise_axes(ndim: int, axes: Sequence[int] | None) -> tuple[int, ...]:
    """Return ``axes`` as sorted non-negative ints (all axes when None); reject bad ones."""
    if axes is None:
        return tuple(range(ndim))
    out = sorted({int(a) % ndim if -ndim <= int(a) < ndim else -1 for a in axes})
    if not out or out[0] < 0:
        raise ValueError(f"axes {tuple(axes)!r} are not valid axes of a {ndim}-D array")
    return tuple(out)


def gradient(u: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Forward differences of ``u`` along ``axes``, zero past the last voxel.

    Returns an array of shape ``(len(axes),) + u.shape``.
    """
    g = np.zeros((len(axes),) + u.shape, dtype=u.dtype)
    for i, ax in enumerate(axes):
        n = u.shape[ax]
        lead = [slice(None)] * u.ndim
        lead[ax] = slice(0, n - 1)
        g[(i, *lead)] = np.diff(u, axis=ax)
    return g


def gradient_adjoint(p: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Adjoint of :func:`gradient` (minus the divergence): ``<grad u, p> = <u, grad^T p>``."""
    out = np.zeros(p.shape[1:], dtype=p.dtype)
    for i, ax in enumerate(axes):
        n = out.shape[ax]
        comp = np.moveaxis(p[i], ax, 0)[: n - 1]
        acc = np.moveaxis(out, ax, 0)  # a view: writes go into ``out``
        acc[: n - 1] -= comp
        acc[1:] += comp
    return out


def l1_norm(v: np.ndarray, isotropic: bool) -> float:
    """Isotropic (sum of Euclidean lengths) or anisotropic (sum of |.|) norm of a field."""
    if isotropic:
        return float(np.sqrt(np.sum(v * v, axis=0)).sum())
    return float(np.abs(v).sum())


def shrink(v: np.ndarray, threshold: float, isotropic: bool) -> np.ndarray:
    """Proximal map of ``threshold * R`` (vector soft shrinkage when isotropic)."""
    if isotropic:
        length = np.sqrt(np.sum(v * v, axis=0, keepdims=True))
        scale = np.maximum(length - threshold, 0.0) / np.maximum(length, 1e-300)
        return v * scale
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


class _NeumannSolver:
    """Solves ``(I + c * grad^T grad) u = rhs`` exactly with a DCT-II along ``axes``."""

    def __init__(self, shape: tuple[int, ...], axes: tuple[int, ...], c: float) -> None:
        self.axes = axes
        denom = np.ones(shape)
        for ax in axes:
            n = shape[ax]
            eig = 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)
            view = [1] * len(shape)
            view[ax] = n
            denom = denom + c * eig.reshape(view)
        self.denom = denom

    def __call__(self, rhs: np.ndarray) -> np.ndarray:
        coeffs = fft.dctn(rhs, type=2, axes=self.axes, norm="ortho")
        return fft.idctn(coeffs / self.denom, type=2, axes=self.axes, norm="ortho")


def objective(
    u: np.ndarray, f: np.ndarray, terms: Sequence[tuple[float, np.ndarray | None]],
    axes: tuple[int, ...], isotropic: bool,
) -> float:
    """E(u) of the module docstring."""
    grad_u = gradient(u, axes)
    value = 0.5 * float(np.sum((u - f) ** 2))
    for weight, offset in terms:
        value += weight * l1_norm(grad_u if offset is None else grad_u - offset, isotropic)
    return value


def split_bregman(
    f: np.ndarray,
    terms: Sequence[tuple[float, np.ndarray | None]],
    *,
    axes: tuple[int, ...],
    isotropic: bool,
    penalty: float,
    max_iter: int,
    tol: float,
    record: bool = True,
) -> tuple[np.ndarray, BregmanInfo]:
    """Minimise E(u) of the module docstring; float64 throughout.

    Parameters
    ----------
    f : np.ndarray
        Noisy data, any shape, float64.
    terms : sequence of (weight, offset)
        ``weight >= 0`` in data units; ``offset`` None (zero) or a field of shape
        ``(len(axes),) + f.shape``. Terms of weight 0 are dropped.
    axes, isotropic, penalty, max_iter, tol
        See :func:`resprunet.variational.tv_denoise`.
    record : bool
        Evaluate E(u) after every outer iteration (costs about a third of an iteration).

    Returns
    -------
    u : np.ndarray
        The minimiser estimate, shape of ``f``.
    info : BregmanInfo
    """
    active = [(float(w), g) for w, g in terms if w > 0]
    if not active:
        return f.copy(), BregmanInfo(np.array([objective(f, f, terms, axes, isotropic)]), 0, True)
    solve = _NeumannSolver(f.shape, axes, penalty * len(active))
    u = f.copy()
    zeros = np.zeros((len(axes),) + f.shape)
    d = [zeros.copy() for _ in active]
    b = [zeros.copy() for _ in active]
    history: list[float] = []
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        rhs_field = sum(dk - bk + (0.0 if g is None else g) for (_, g), dk, bk in zip(active, d, b))
        u_new = solve(f + penalty * gradient_adjoint(rhs_field, axes))
        grad_u = gradient(u_new, axes)
        for k, (w, g) in enumerate(active):
            target = grad_u if g is None else grad_u - g
            d[k] = shrink(target + b[k], w / penalty, isotropic)
            b[k] = b[k] + target - d[k]
        if record:
            history.append(objective(u_new, f, active, axes, isotropic))
        change = np.linalg.norm(u_new - u) / max(np.linalg.norm(u), 1e-12)
        u = u_new
        if change < tol:
            converged = True
            break
    return u, BregmanInfo(np.asarray(history), n_iter, converged)
