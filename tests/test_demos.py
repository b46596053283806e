"""The demo_assess scripts run end to end (2D, one noise level) and report real gains."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_assess_2d_writes_a_report_where_every_method_gains(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "demo_assess_2d.py"), "--out", str(tmp_path),
         "--sigmas", "0.1", "--no-zoo"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert {"report.md", "report.csv", "report.json"} <= {p.name for p in tmp_path.iterdir()}
    assert len(list((tmp_path / "figures").glob("*.png"))) == 3  # two cases and the bar chart
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    for case in {r["case"] for r in rows}:
        psnr = {r["method"]: float(r["psnr"]) for r in rows if r["case"] == case}
        assert psnr["noisy"] < 21.0
        assert all(v > psnr["noisy"] + 3.0 for m, v in psnr.items() if m != "noisy"), psnr
