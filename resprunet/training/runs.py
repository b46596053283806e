"""Run directories and results: create or resume ``<root>/<name>/<UTC timestamp>/``, read the
CSV history, write and print the final metrics."""
from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras

from data_pipelines.io.atomic import atomic_path

from .config import NOISY_ONLY_METHODS, TrainConfig, save_config
from .data import TrainingData
from .evaluate import evaluate_volume

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    run_dir : Path
        The run directory.
    history : dict of str to list of float
        Per-epoch values from ``metrics.csv`` (all epochs, including those before a resume).
    final_metrics : dict
        ``evaluations`` (one dict per test volume, see
        :func:`~resprunet.training.evaluate.evaluate_volume`) and ``train_seconds``.
    """

    run_dir: Path
    history: dict[str, list[float]] = field(default_factory=dict)
    final_metrics: dict[str, Any] = field(default_factory=dict)


def new_run_dir(config: TrainConfig) -> Path:
    """Create ``<root>/<name>/<UTC timestamp>/`` (suffixed ``-1``, ``-2``... if taken)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(config.run.root) / config.run.name
    base.mkdir(parents=True, exist_ok=True)
    run_dir, n = base / stamp, 0
    while True:
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base / f"{stamp}-{n}"


def latest_run_dir(root: str | Path, name: str) -> Path:
    """The most recent run directory of ``<root>/<name>`` (for ``--resume latest``).

    Raises
    ------
    FileNotFoundError
        When there is none.
    """
    runs = sorted(p for p in (Path(root) / name).glob("*") if (p / "config.yaml").is_file() and started(p))
    if not runs:
        raise FileNotFoundError(f"no run directory that started training under {Path(root) / name}")
    return runs[-1]


def started(run_dir: Path) -> bool:
    """Whether a run directory got as far as training (a CSV log, a backup or a model)."""
    return any((run_dir / name).exists() for name in ("metrics.csv", "backup", "model.keras"))


@contextmanager
def discard_on_failure(run_dir: Path, discard: bool) -> Iterator[None]:
    """Remove ``run_dir`` if the block fails and ``discard`` (a run directory this call created):
    a run whose data or model is invalid leaves no folder behind for ``--resume latest``."""
    try:
        yield
    except BaseException:
        if discard:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def prepare_run_dir(config: TrainConfig, run_dir: str | Path | None) -> Path:
    """A new run directory with ``config.yaml``, or the given one (resume) keeping its config."""
    if run_dir is None:
        run_dir = new_run_dir(config)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    if not (run_dir / "config.yaml").exists():
        save_config(config, run_dir / "config.yaml")
    return run_dir


def read_history(csv_path: Path) -> dict[str, list[float]]:
    """Columns of a Keras CSV log as float lists (empty dict when the file is missing)."""
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in (rows[0] if rows else {})}


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as indented JSON, atomically, replacing ``path``."""
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def format_evaluation(ev: dict[str, Any]) -> str:
    """One line: ``<volume>: noisy PSNR .. dB SSIM .. -> denoised PSNR .. dB SSIM .. (+gain dB)``."""
    return (
        f"{ev['volume']} {tuple(ev['shape'])} noise {ev['noise']}: noisy PSNR {ev['noisy_psnr']:.2f} dB "
        f"SSIM {ev['noisy_ssim']:.4f} -> denoised PSNR {ev['denoised_psnr']:.2f} dB "
        f"SSIM {ev['denoised_ssim']:.4f} ({ev['psnr_gain']:+.2f} dB; {ev['ssim_kind']})"
    )


#: How far (dB) the last epoch's validation PSNR may fall below the best before a run is said
#: to have diverged or collapsed.
COLLAPSE_DB = 1.0


def collapse_warning(history: dict[str, list[float]], noisy_psnr: float | None = None) -> str | None:
    """Say whether training fell apart: the last ``val_psnr`` more than :data:`COLLAPSE_DB`
    below the best epoch's (a divergence, or every unit dead so that the network returns its
    input), else None.

    Parameters
    ----------
    history : dict of str to list of float
        Per-epoch Keras history (``val_psnr`` in dB; other keys are ignored).
    noisy_psnr : float, optional
        The validation PSNR of the noisy input; a last epoch within 0.1 dB of it is named a
        collapse to the input.
    """
    scores = history.get("val_psnr") or []
    if len(scores) < 2:
        return None
    best = max(range(len(scores)), key=scores.__getitem__)
    last = scores[-1]
    if scores[best] - last <= COLLAPSE_DB:
        return None
    what = ("collapsed to returning its input" if noisy_psnr is not None and abs(last - noisy_psnr) < 0.1
            else "diverged")
    return (f"training {what}: the final model's validation PSNR is {last:.2f} dB, {scores[best] - last:.2f} dB "
            f"below epoch {best + 1}'s {scores[best]:.2f} dB; checkpoints/best.keras holds that epoch "
            "(or train again with a lower optimizer.learning_rate)")


def finish(model: keras.Model, config: TrainConfig, run_dir: Path, data: TrainingData,
           seconds: float) -> TrainResult:
    """Save ``model.keras``, evaluate the test volumes, print and save the metrics.

    ``model.keras`` holds the architecture and weights without the training state (loss,
    metrics, optimizer), so a plain ``keras.models.load_model`` opens it without importing
    resprunet's custom metrics. It is reloaded that way for the evaluation: that checks the
    file, and the reloaded model lives outside any distribution strategy (a multi-worker
    model would wait for its peers). The test volumes played no part in training,
    checkpoint choice or early stopping; ``final_metrics.json`` names them (``test_volumes``)
    and keeps the validation baseline (``val_baseline``: the noisy input's and the prior's
    PSNR on the validation patches, beside the history's ``val_psnr``). A DivNoising run saves
    its inference model and ``noise_model.json`` and is scored by the MMSE of
    ``divnoising.samples`` posterior samples.
    """
    test_volumes = data.test_volumes
    scoring = config.data
    if config.method in NOISY_ONLY_METHODS:  # test volumes are clean references; data.noise is unused
        scoring = replace(scoring, eval_noise=scoring.eval_noise or scoring.simulate_noise)
    if config.method == "divnoising":  # model.keras + noise_model.json; scored by its MMSE
        from ..divnoising.run import save_and_reload

        saved = save_and_reload(model, config, run_dir)
    else:
        keras.Model(model.input, model.output, name=model.name).save(run_dir / "model.keras")
        saved = keras.models.load_model(run_dir / "model.keras")
    evaluations = [
        evaluate_volume(saved, vol, scoring, config.model.ndim, config.seed + 2)
        for vol in test_volumes
    ]
    history = read_history(run_dir / "metrics.csv")
    final = {"test_volumes": [vol.name for vol in test_volumes], "evaluations": evaluations,
             "val_baseline": data.val_baseline, "train_seconds": round(seconds, 1)}
    collapse = collapse_warning(history, (data.val_baseline or {}).get("noisy_psnr"))
    if collapse:
        final["training_warning"] = collapse
        log.warning(collapse)
    write_json(final, run_dir / "final_metrics.json")
    print(f"training took {seconds:.0f} s")
    if not test_volumes:
        log.warning("no test volumes (data.test is empty and data.test_fraction is 0): no held-out metrics; "
                    "validation scores chose the checkpoint and are not an unbiased estimate")
    for ev in evaluations:
        print("test " + format_evaluation(ev))
    print(f"run directory: {run_dir}")
    return TrainResult(run_dir, history, final)
