"""Command-line front end shared by ``experiments/train_2d.py`` and ``experiments/train_3d.py``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from .config import PRECISIONS, STRATEGIES, ConfigError, TrainConfig, load_config
from .runs import TrainResult, latest_run_dir
from .train import train


def parser(description: str, default_config: Path) -> argparse.ArgumentParser:
    """Arguments: ``--config``, ``--set KEY=VALUE`` (repeatable), ``--precision``,
    ``--strategy``, ``--resume RUN_DIR|latest``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", type=Path, default=default_config,
                   help=f"YAML config (default: {default_config})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.filters=16 (repeatable)")
    p.add_argument("--precision", choices=PRECISIONS, help="shortcut for --set precision=...")
    p.add_argument("--strategy", choices=STRATEGIES, help="shortcut for --set strategy=...")
    p.add_argument("--resume", metavar="RUN_DIR|latest",
                   help="continue a killed run from its last completed epoch (uses its config.yaml)")
    return p


def main(argv: Sequence[str] | None, description: str, default_config: Path) -> TrainResult:
    """Parse ``argv``, load the config (or a run's saved one with ``--resume``) and train.

    A bad config value or a missing file exits with the usage line and one error line.
    """
    cli = parser(description, default_config)
    args = cli.parse_args(argv)
    # the runtime summary (CPU, oneDNN, XLA, precision) and the samples/s + ETA lines are INFO logs
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    overrides = list(args.overrides) + shortcut_overrides(args.precision, args.strategy)
    try:
        config, run_dir = resolve(args.config, overrides, args.resume)
    except (ConfigError, FileNotFoundError) as err:
        cli.error(str(err))
    return train(config, run_dir=run_dir)


def shortcut_overrides(precision: str | None, strategy: str | None) -> list[str]:
    """``--precision``/``--strategy`` as ``KEY=VALUE`` overrides (validated with the config)."""
    return [f"{key}={value}" for key, value in (("precision", precision), ("strategy", strategy)) if value]


def resolve(config_path: Path, overrides: list[str], resume: str | None) -> tuple[TrainConfig, Path | None]:
    """The config to train with and the run directory to resume (None: a new run).

    ``resume`` is a run directory (its saved ``config.yaml`` is used) or ``"latest"`` (the
    newest run of ``config_path``'s ``run.root``/``run.name``).
    """
    if not resume:
        return load_config(config_path, overrides), None
    if resume == "latest":
        base = load_config(config_path, overrides)
        run_dir = latest_run_dir(base.run.root, base.run.name)
    else:
        run_dir = Path(resume)
    return load_config(run_dir / "config.yaml", overrides), run_dir
