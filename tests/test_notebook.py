"""notebooks/denoise_your_data.ipynb runs headless, top to bottom, with small parameters, and
writes what it promises: figures, a trained model that beats the noisy input, denoised files
with their metadata, an exported model with its card."""
from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import data_pipelines as dp
from resprunet.assess.metrics import psnr

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "denoise_your_data.ipynb"
# small enough for CI: a narrow 2D U-Net for 3 epochs of 32 steps on 32 x 32 patches (+4.7 dB on
# the EPI at sigma 0.1), the quality control on a 12 x 32 x 48 crop of the EPI against TV (BM3D costs
# about a second per slice whatever its size, NL-means' tuning 10 s: the defaults run them)
SMALL = {
    "EPOCHS": 3,
    "PATCHES_PER_EPOCH": 256,
    "PATCH": 32,
    "FILTERS": 8,
    "QC_CROP": [[6, 18], [32, 64], [40, 88]],
    "BASELINES": ["tv"],
}


def _with_parameters(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell of overrides after the cell tagged "parameters", as papermill does."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, injected)
    return nb


def test_the_committed_notebook_has_one_parameter_cell_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "DATA =" in tagged[0].source and "NOISE_SIGMA =" in tagged[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert headings == ["## 1. Parameters", "## 2. Check the machine", "## 3. Load and look at your data",
                        "## 4. Train", "## 5. Quality control", "## 6. Denoise your files",
                        "## 7. Export the model and its card", "## 8. What was written"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, Path, float]:
    work = tmp_path_factory.mktemp("notebook")
    out = work / "out"
    nb = _with_parameters(nbformat.read(NOTEBOOK, as_version=4), {**SMALL, "OUTPUT": str(out)})
    start = time.perf_counter()
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    return nb, out, time.perf_counter() - start


def test_the_notebook_runs_and_writes_its_figures(executed):
    nb, out, seconds = executed
    print(f"notebook executed in {seconds:.1f} s")
    figures = out / "figures"
    for name in ("data_training.png", "data_validation.png", "data_test.png", "training_curves.png",
                 "quality_control/example4d_epi.png", "quality_control/metrics.png",
                 "noisy_test_denoised_input.png", "noisy_test_denoised_denoised.png"):
        assert (figures / name).is_file() and (figures / name).stat().st_size > 10_000, name
    run = next((out / "runs" / "notebook_unet_2d").iterdir())
    assert (run / "report.png").is_file() and "best val_psnr" in (run / "report.html").read_text()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "CPU:" in text and "chosen: precision" in text and "exported" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 9  # data x3, curve, run summary, quality control x2, denoised file x2


def test_the_trained_model_beats_the_noisy_input_and_the_files_keep_their_metadata(executed):
    _, out, _ = executed
    rows = json.loads((out / "quality_control.json").read_text())["rows"]
    scores = {r["method"]: r["psnr"] for r in rows}
    assert set(scores) == {"noisy", "trained model", "tv"}
    assert scores["trained model"] > scores["noisy"] + 1.0 and scores["tv"] > scores["noisy"] + 1.0, scores

    epi = dp.sample("epi")
    noisy, denoised = dp.read_volume(out / "noisy_test.nii.gz"), dp.read_volume(out / "denoised" / "noisy_test_denoised.nii.gz")
    assert denoised.shape == epi.shape and denoised.spacing == epi.spacing
    np.testing.assert_allclose(denoised.meta["affine"], epi.meta["affine"])
    reference = dp.Normalizer.percentile(1.0, 99.8).fit(epi.array)
    clean = reference(epi.array)
    assert psnr(clean, reference(denoised.array), 1.0) > psnr(clean, reference(noisy.array), 1.0) + 1.0

    card = (out / "model" / "card.yaml").read_text()
    assert "normalization:" in card and "sigma: 0.1" in card and (out / "model" / "model.keras").is_file()


def test_the_notebook_trains_n2v2_from_noisy_data_alone(tmp_path):
    """METHOD = "n2v2": the training data are the noisy samples (noise added once), the model is
    an N2V2 U-Net trained on masked pixels, and the rest of the notebook runs with it."""
    out = tmp_path / "out"
    values = {**SMALL, "METHOD": "n2v2", "EPOCHS": 12, "FILTERS": 16, "BASELINES": [], "OUTPUT": str(out)}
    nb = _with_parameters(nbformat.read(NOTEBOOK, as_version=4), values)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    run = next((out / "runs" / "notebook_n2v2_2d").iterdir())
    config = (run / "config.yaml").read_text()
    assert "method: n2v2" in config and "simulate_noise:" in config
    rows = json.loads((out / "quality_control.json").read_text())["rows"]
    scores = {r["method"]: r["psnr"] for r in rows}
    assert set(scores) == {"noisy", "trained model"}
    assert scores["trained model"] > scores["noisy"] + 1.0, scores
    assert "N2V2 from noisy data alone" in (out / "model" / "card.yaml").read_text()
