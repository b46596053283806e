"""One API to compare denoisers on the same cases: :class:`Method`, :class:`Case`, :func:`assess`.

A :class:`Method` is a name and a function ``fn(noisy, prior=None) -> denoised``; factories
wrap every variational method and any Keras model. A :class:`Case` is a clean reference, its
noisy version and optionally a prior. :func:`assess` runs every method on every case and
returns a :class:`~resprunet.assess.report.Report` with the metrics, the run time and the
peak memory of each run.

TensorFlow is imported only by :meth:`Method.from_model` / :meth:`Method.from_zoo`.
"""
from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from data_pipelines.errors import InvalidDataError, ShapeMismatchError

from .. import variational as var
from .metrics import METRICS
from .report import NOISY_ROW, Report

MaskSpec = np.ndarray | Callable[[np.ndarray], np.ndarray] | None


class AssessError(ValueError):
    """An assessment request is inconsistent (bad metric, duplicate name, missing prior)."""


class MissingPriorError(AssessError):
    """A method needs a prior and a case has none."""


@dataclass(frozen=True)
class Method:
    """A named denoiser: ``fn(noisy, prior=None) -> denoised``, same shape as ``noisy``.

    Attributes
    ----------
    name : str
        Row name in reports (must not be ``"noisy"``).
    fn : callable
        ``fn(noisy, prior=None)``; ``noisy`` is (y, x) or (z, y, x) in the case's units.
    needs_prior : bool
        Whether ``fn`` must get a prior; :func:`assess` refuses cases without one up front.
    notes : str
        Provenance shown in reports (for a zoo model: what it was trained on).
    """

    name: str
    fn: Callable[..., np.ndarray]
    needs_prior: bool = False
    notes: str = ""

    def __call__(self, noisy: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
        """Denoise ``noisy`` (with ``prior`` when the method uses one)."""
        if self.needs_prior and prior is None:
            raise MissingPriorError(f"method {self.name!r} needs a prior; none was given")
        return self.fn(noisy, prior=prior)

    # ---- variational and classical methods ---------------------------------------------
    @classmethod
    def tv(cls, weight: float, *, isotropic: bool = True, axes: Sequence[int] | None = None,
           name: str = "tv", **kwargs: Any) -> "Method":
        """Split Bregman TV (:func:`resprunet.variational.tv_denoise`); weight in data units."""
        return cls(name, lambda noisy, prior=None: var.tv_denoise(noisy, weight, isotropic=isotropic, axes=axes, **kwargs))

    @classmethod
    def spade(cls, weight: float, alpha: float, *, isotropic: bool = True, axes: Sequence[int] | None = None,
              name: str = "spade", **kwargs: Any) -> "Method":
        """Prior-based sparse TV (:func:`resprunet.variational.spade_denoise`); needs a prior."""
        return cls(
            name,
            lambda noisy, prior=None: var.spade_denoise(
                noisy, prior, weight=weight, alpha=alpha, isotropic=isotropic, axes=axes, **kwargs
            ),
            needs_prior=True,
        )

    @classmethod
    def bm3d(cls, sigma: float | None = None, *, photons: float | None = None, name: str = "bm3d",
             **kwargs: Any) -> "Method":
        """BM3D, slice-wise on volumes (:func:`resprunet.variational.bm3d_denoise`); sigma in data units.

        With ``photons`` (expected count at intensity 1) the noise is Poisson-Gaussian, ``sigma``
        its Gaussian part in normalised units (0 for pure Poisson), and BM3D runs on the
        generalised Anscombe transform of the data.
        """
        return cls(name, lambda noisy, prior=None: var.bm3d_denoise(noisy, sigma, photons=photons, **kwargs))

    @classmethod
    def bm4d(cls, sigma: float | None = None, *, photons: float | None = None, name: str = "bm4d",
             **kwargs: Any) -> "Method":
        """BM4D on volumes (:func:`resprunet.variational.bm4d_denoise`); sigma in data units.

        ``photons`` as for :meth:`bm3d` (Poisson-Gaussian noise, through the Anscombe transform).
        """
        return cls(name, lambda noisy, prior=None: var.bm4d_denoise(noisy, sigma, photons=photons, **kwargs))

    @classmethod
    def tv_chambolle(cls, weight: float, *, name: str = "tv_chambolle", **kwargs: Any) -> "Method":
        """skimage's Chambolle TV (:func:`resprunet.variational.tv_chambolle_denoise`)."""
        return cls(name, lambda noisy, prior=None: var.tv_chambolle_denoise(noisy, weight, **kwargs))

    @classmethod
    def nl_means(cls, h: float, *, sigma: float = 0.0, name: str = "nl_means", **kwargs: Any) -> "Method":
        """skimage's non-local means (:func:`resprunet.variational.nl_means_denoise`)."""
        return cls(name, lambda noisy, prior=None: var.nl_means_denoise(noisy, h, sigma=sigma, **kwargs))

    @classmethod
    def wavelet(cls, sigma: float | None = None, *, name: str = "wavelet", **kwargs: Any) -> "Method":
        """skimage's BayesShrink wavelet denoising (:func:`resprunet.variational.wavelet_denoise`)."""
        return cls(name, lambda noisy, prior=None: var.wavelet_denoise(noisy, sigma, **kwargs))

    # ---- trained models ------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, name: str | None = None, tile_shape: tuple[int, ...] | None = None,
                   overlap: float = 0.25, notes: str = "", *, normalizer: Any = None,
                   units: Any = None, samples: int | None = None, tta: bool = False) -> "Method":
        """Wrap a Keras denoising model.

        A 2D model runs slice by slice on a volume, a 3D model on the whole volume or on
        tiles of ``tile_shape`` voxels blended with ``overlap``; a model with a ``"prior"``
        input gets the case's prior (and the method then needs one). A DivNoising model
        (inputs ``"noisy"`` and ``"eps"``) gives the MMSE of ``samples`` posterior samples
        (:class:`resprunet.divnoising.PosteriorMean`).

        Parameters
        ----------
        model : keras.Model
            A model from :func:`resprunet.models.build` or the zoo.
        name : str, optional
            Row name; default the model's name.
        tile_shape : tuple of int, optional
            Tile in voxels; None for the default of :func:`resprunet.inference.predict_volume`.
        overlap : float
            Tile overlap fraction.
        notes : str
            Provenance for reports.
        normalizer : data_pipelines.Normalizer, optional
            The model's own normalisation (from its card). Given: the model runs exactly as
            ``resprunet denoise`` runs it (:func:`resprunet.inference.denoise_array`, the
            normaliser fitted on the noisy input), so an assessment reports what a user gets.
            None: the case is taken to be in the model's units already (input in [0, 1]) and
            goes straight to :func:`~resprunet.inference.predict_volume`.
        units : data_pipelines.Normalizer, optional
            With ``normalizer``: the fitted map from source units to the case's units
            (:attr:`Case.units`); the noisy input (and prior) are mapped back to source units
            before denoising and the output forward again. None: the case's units are taken
            as source units (exact for percentile and min-max normalisers, which give the
            same model input for any affine rescaling of the data; a ``ct`` window needs it).
        samples : int, optional
            DivNoising models only: posterior samples per image (default
            :data:`resprunet.divnoising.DEFAULT_SAMPLES`); given for another model, an error.
        tta : bool
            Test-time augmentation: the mean of the outputs on the 8 flips and quarter turns of
            the y-x plane (``resprunet denoise --tta``); not for DivNoising models.

        Raises
        ------
        ValueError
            ``samples`` for a model that is not DivNoising, ``samples < 1``, or ``tta`` for a
            DivNoising model.
        """
        from ..divnoising import DEFAULT_SAMPLES, PosteriorMean, is_divnoising
        from ..inference import denoise_array, predict_volume
        from ..models import describe

        if is_divnoising(model):
            if tta:
                raise ValueError("tta: DivNoising models average posterior samples; test-time "
                                 "augmentation is for deterministic models")
            model = PosteriorMean(model, DEFAULT_SAMPLES if samples is None else samples)
        elif samples is not None:
            raise ValueError(f"samples={samples!r}: only DivNoising models draw posterior samples; "
                             f"{model.name!r} is deterministic")
        info = describe(model)

        def run(noisy: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
            x = np.asarray(noisy, dtype=np.float32)
            p = None if prior is None or not info.needs_prior else np.asarray(prior, dtype=np.float32)
            if normalizer is None:
                return predict_volume(model, x, prior=p, tile_shape=tile_shape, overlap=overlap, progress=False,
                                      tta=tta)
            to_source = (lambda a: a) if units is None else units.inverse
            image = x.ndim == 2
            source = to_source(x[np.newaxis] if image else x)
            source_prior = None if p is None else to_source(p[np.newaxis] if image else p)
            out = denoise_array(model, source, normalizer, prior="auto" if source_prior is None else source_prior,
                                tile_shape=tile_shape, overlap=overlap, progress=False, tta=tta)
            out = out if units is None else units(out)
            return out[0] if image else out

        return cls(name or model.name, run, needs_prior=info.needs_prior, notes=notes)

    @classmethod
    def from_zoo(cls, name: str, **kwargs: Any) -> "Method":
        """Load zoo model ``name`` (:func:`resprunet.zoo.load`); ``kwargs`` go to :meth:`from_model`
        (``normalizer`` defaults to the card's: the model runs as ``resprunet denoise`` runs it)."""
        from .. import zoo

        model, card = zoo.load(name)
        kwargs.setdefault("name", name)
        kwargs.setdefault("notes", _card_notes(card))
        kwargs.setdefault("normalizer", zoo.normalizer(card))
        return cls.from_model(model, **kwargs)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs: Any) -> "Method":
        """Load a ``.keras`` file or model folder (:func:`resprunet.zoo.load_path`); ``kwargs`` go to
        :meth:`from_model` (``normalizer`` defaults to the card's when the folder has one)."""
        from .. import zoo

        model, card = zoo.load_path(path)
        kwargs.setdefault("name", os.path.basename(os.path.normpath(os.fspath(path))))
        kwargs.setdefault("notes", _card_notes(card) if card else f"model file {os.fspath(path)}")
        if card and card.get("normalization"):
            kwargs.setdefault("normalizer", zoo.normalizer(card))
        return cls.from_model(model, **kwargs)


def _card_notes(card: dict[str, Any]) -> str:
    """One line of provenance from a model card: its summary and training data."""
    trained = card.get("training_data", {})
    train = trained.get("train") if isinstance(trained, dict) else trained
    return f"{card.get('summary', card.get('name', 'model'))}; trained on: {train or 'not stated'}"


def model_methods(
    paths: Sequence[str | os.PathLike] = (),
    *,
    zoo: bool = True,
    ndim: int | None = None,
    normalization: str | None = None,
    units: Any = None,
) -> list[Method]:
    """Methods for trained models: the given ``.keras`` files and the matching zoo models.

    Parameters
    ----------
    paths : sequence of path
        Model files or folders (each becomes a method named after the file).
    zoo : bool
        Also add the models of :func:`resprunet.zoo.list` whose card matches ``ndim`` and
        ``normalization`` (a zoo without models adds nothing).
    ndim : int, optional
        Keep zoo models of this dimensionality (card ``architecture.ndim``).
    normalization : str, optional
        Keep zoo models whose card's ``normalization.kind`` is this ("ct", "percentile", ...),
        so the models see data normalised the way they were trained.
    units : data_pipelines.Normalizer, optional
        The fitted map from source units to the cases' units, for models with a card (see
        :meth:`Method.from_model`); needed when the cases are in a ``ct`` window's units.

    Returns
    -------
    list of Method
    """
    methods = [Method.from_path(p, units=units) for p in paths]
    if zoo:
        from .. import zoo as model_zoo

        for name in model_zoo.list():
            card = model_zoo.card(name)
            if ndim is not None and card.get("architecture", {}).get("ndim") != ndim:
                continue
            if normalization is not None and card.get("normalization", {}).get("kind") != normalization:
                continue
            methods.append(Method.from_zoo(name, units=units))
    return methods


@dataclass
class Case:
    """One test case: clean reference, noisy input, optional prior and mask.

    Attributes
    ----------
    clean, noisy : np.ndarray
        (y, x) or (z, y, x), same shape, same units (normalised [0, 1] for ``data_range=1``).
    prior : np.ndarray, optional
        Prior image of the same shape (e.g. a neighbour-slice prior of the noisy stack).
    name : str
        Row name in reports; unique within one :func:`assess` call.
    mask : np.ndarray of bool, optional
        Region the metrics are computed on (overrides the ``mask`` given to :func:`assess`).
    units : data_pipelines.Normalizer, optional
        The fitted map from the source files' units to the case's units (set by
        :meth:`from_files`); models given to :meth:`Method.from_model` with ``units`` use
        it to denoise in source units, as ``resprunet denoise`` does.
    """

    clean: np.ndarray
    noisy: np.ndarray
    prior: np.ndarray | None = None
    name: str = "case"
    mask: np.ndarray | None = field(default=None, repr=False)
    units: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.clean = _as_image(self.clean, f"case {self.name!r}: clean")
        self.noisy = _as_image(self.noisy, f"case {self.name!r}: noisy")
        _check_shape(self, self.noisy, "noisy")
        if self.prior is not None:
            self.prior = _as_image(self.prior, f"case {self.name!r}: prior")
            _check_shape(self, self.prior, "prior")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            _check_shape(self, self.mask, "mask")

    @classmethod
    def from_files(cls, clean: str | os.PathLike, noisy: str | os.PathLike, prior: str | os.PathLike | None = None,
                   *, name: str | None = None, normalizer: Any = None) -> "Case":
        """Read a case with :func:`data_pipelines.read_volume` (any supported format).

        A 2D file (read as (1, y, x)) becomes a (y, x) image; a single channel is dropped.

        Parameters
        ----------
        clean, noisy, prior : str or os.PathLike
            Files of the same shape.
        name : str, optional
            Case name; default :func:`case_name` of the noisy file: its name without suffix
            (the image that was denoised, e.g. ``ct_noisy``), or its folder's name when the
            file's name only says its role (``liver/noisy.png`` -> ``liver``).
        normalizer : data_pipelines.Normalizer, optional
            Fitted on the clean volume and applied unchanged to all three, so the metrics
            are in normalised units (use ``data_range=1``); kept as :attr:`units`. None:
            source units.
        """
        import data_pipelines as dp

        clean_vol, noisy_vol = dp.read_volume(clean).load(), dp.read_volume(noisy).load()  # Zarr: lazy -> memory
        arrays = [clean_vol.array, noisy_vol.array] + ([dp.read_volume(prior).load().array] if prior else [])
        fitted = None
        if normalizer is not None:
            fitted = normalizer.fit(clean_vol.array)
            arrays = [fitted(a) for a in arrays]
        arrays = [_squeeze_image(a) for a in arrays]
        return cls(arrays[0], arrays[1], arrays[2] if prior else None, name=name or case_name(noisy_vol), units=fitted)

    @property
    def ndim(self) -> int:
        """2 for an image, 3 for a volume."""
        return self.clean.ndim


#: File names that only say a file's role in a case; such a case is named after the folder.
ROLE_NAMES = frozenset({"noisy", "noise", "input", "in", "image", "img", "data", "volume", "low_dose", "lowdose"})


def case_name(noisy: Any) -> str:
    """The name of a case read from files: after its noisy file, the image that was denoised.

    Parameters
    ----------
    noisy : data_pipelines.Volume
        The noisy volume as read (its ``source`` is the file or folder).

    Returns
    -------
    str
        The file's name without suffixes (``scan_noisy.nii.gz`` -> ``scan_noisy``), or, when
        that name is only a role (one of :data:`ROLE_NAMES`, any case), the name of the folder
        holding it (``liver/noisy.png`` -> ``liver``).
    """
    name = noisy.name.removesuffix(".png")  # Volume.name keeps a PNG file's suffix
    if name.lower() in ROLE_NAMES and noisy.source:
        return Path(noisy.source).resolve().parent.name or name
    return name


def _squeeze_image(array: np.ndarray) -> np.ndarray:
    """Drop a single channel and a single slice: (1, y, x) -> (y, x), (z, y, x, 1) -> (z, y, x)."""
    a = array[..., 0] if array.ndim == 4 and array.shape[-1] == 1 else array
    return a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def _as_image(array: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim not in (2, 3) or a.size == 0:
        raise InvalidDataError(f"{what} must be a (y, x) image or a (z, y, x) volume, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise InvalidDataError(f"{what} must hold finite numbers (dtype {a.dtype})")
    return a


def _check_shape(case: Case, array: np.ndarray, what: str) -> None:
    if array.shape != case.clean.shape:
        raise ShapeMismatchError(
            f"case {case.name!r}: {what} has shape {array.shape}, expected the clean image's {case.clean.shape}"
        )


def _check_request(methods: Sequence[Method], cases: Sequence[Case], metrics: Sequence[str]) -> None:
    """Every problem that would stop the run, raised before any denoising starts."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise AssessError(f"unknown metric(s) {unknown}; available: {sorted(METRICS)}")
    names = [m.name for m in methods]
    if len(set(names)) != len(names) or NOISY_ROW in names:
        raise AssessError(f"method names must be unique and not {NOISY_ROW!r}, got {names}")
    case_names = [c.name for c in cases]
    if len(set(case_names)) != len(case_names) or not cases:
        raise AssessError(f"give at least one case, with unique names; got {case_names}")
    missing = [(m.name, c.name) for m in methods if m.needs_prior for c in cases if c.prior is None]
    if missing:
        pairs = ", ".join(f"{m!r} on case {c!r}" for m, c in missing)
        raise MissingPriorError(f"methods need a prior that their case lacks: {pairs}; give Case(prior=...)")


def _case_mask(case: Case, mask: MaskSpec) -> np.ndarray | None:
    if case.mask is not None:
        return case.mask
    if mask is None:
        return None
    m = np.asarray(mask(case.clean) if callable(mask) else mask, dtype=bool)
    if m.shape != case.clean.shape:
        raise ShapeMismatchError(f"case {case.name!r}: mask has shape {m.shape}, expected {case.clean.shape}")
    return m


def _timed(method: Method, case: Case) -> tuple[np.ndarray, float, float]:
    """Run ``method`` on ``case``: (output, seconds, peak MiB of Python/numpy allocations)."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    out = method(case.noisy, case.prior)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    out = np.asarray(out)
    if out.shape != case.noisy.shape:
        raise ShapeMismatchError(
            f"method {method.name!r} returned shape {out.shape} on case {case.name!r}; expected {case.noisy.shape}"
        )
    return out, seconds, max(peak - before, 0) / 2**20


def assess(
    methods: Sequence[Method],
    cases: Sequence[Case],
    metrics: Sequence[str] = ("psnr", "ssim", "relative_error"),
    mask: MaskSpec = None,
    data_range: float = 1.0,
    progress: bool = True,
    keep_outputs: bool = True,
) -> Report:
    """Run every method on every case and measure quality, time and memory.

    Parameters
    ----------
    methods : sequence of Method
        Denoisers to compare (unique names). A row ``"noisy"`` (the input itself, time 0)
        is added first for every case.
    cases : sequence of Case
        Test cases (unique names), images and volumes may be mixed.
    metrics : sequence of str
        Names in :data:`resprunet.assess.metrics.METRICS`: "psnr" (dB), "ssim" (2D SSIM of
        an image, true 3D SSIM of a volume), "ssim_2d", "ssim_3d", "ssim_slicewise", "nrmse",
        "relative_error" (%). The default leaves out "nrmse": with its default (Euclidean)
        normalisation it is "relative_error" / 100, the same number twice.
    mask : array, callable or None
        Region for the metrics when a case has no mask of its own: a bool array of the
        cases' shape, or ``mask(clean) -> bool array``.
    data_range : float
        Range of the data for PSNR/SSIM (1.0 for normalised data).
    progress : bool
        Show a progress bar over the runs (one per method and case), labelled with the
        method and case running now, so a slow method (BM4D) is seen as such.
    keep_outputs : bool
        Keep each denoised array in the report (needed by :meth:`Report.plot`).

    Returns
    -------
    Report
        One row per (case, method): the metrics, ``time_s`` (wall time of the call, seconds)
        and ``peak_mb`` (peak growth of Python/numpy heap memory during the call, MiB,
        measured with :mod:`tracemalloc`; memory TensorFlow allocates in C++ is not seen).

    Raises
    ------
    MissingPriorError
        A method needs a prior and a case has none (raised before any work).
    AssessError
        Unknown metric, duplicate or reserved names.
    """
    methods, cases, metrics = list(methods), list(cases), tuple(metrics)
    _check_request(methods, cases, metrics)
    masks = {c.name: _case_mask(c, mask) for c in cases}
    report = Report(metrics=metrics, data_range=float(data_range), cases=cases, masks=masks)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        with tqdm(total=len(cases) * len(methods), desc="assess", unit="run", disable=not progress) as bar:
            for case in cases:
                report.add(case.name, NOISY_ROW, case.noisy, seconds=0.0, peak_mb=0.0, keep=keep_outputs)
                for method in methods:
                    bar.set_description_str(f"assess {method.name} on {case.name}")
                    out, seconds, peak_mb = _timed(method, case)
                    report.add(case.name, method.name, out, seconds=seconds, peak_mb=peak_mb, keep=keep_outputs)
                    bar.update()
    finally:
        if started:
            tracemalloc.stop()
    return report
