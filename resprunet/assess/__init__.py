"""Compare denoisers on the same cases: metrics, timing, memory, tables and figures.

>>> from resprunet.assess import assess, Case, Method          # doctest: +SKIP
>>> report = assess([Method.tv(0.08), Method.bm3d(0.1)], [Case(clean, noisy, name="slice")])
>>> print(report.to_markdown())

Importing this package does not import TensorFlow (only :meth:`Method.from_model` does).
"""
from __future__ import annotations

from . import metrics
from .api import AssessError, Case, Method, MissingPriorError, assess, case_name, model_methods
from .baselines import BASELINES, tuned_baselines
from .report import Report

__all__ = [
    "BASELINES",
    "AssessError",
    "Case",
    "Method",
    "MissingPriorError",
    "Report",
    "assess",
    "case_name",
    "metrics",
    "model_methods",
    "tuned_baselines",
]
