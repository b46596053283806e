"""`resprunet report RUN_DIR` and the labelled TensorBoard image panel it shows."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resprunet import cli
from resprunet.run_report import curves_figure, last_panel, read_run, write_run_report

HISTORY = {
    "epoch": [0, 1, 2],
    "loss": [0.02, 0.011, 0.0083],
    "psnr": [17.1, 19.6, 20.8],
    "val_loss": [0.018, 0.012, 0.0101],
    "val_psnr": [17.4, 21.37, 20.95],
}
FINAL = {
    "test_volumes": ["epi"],
    "evaluations": [{"volume": "epi", "shape": [24, 96, 128], "noise": {"kind": "gaussian", "sigma": 0.1},
                     "noisy_psnr": 19.99, "noisy_ssim": 0.381, "denoised_psnr": 27.22, "denoised_ssim": 0.647,
                     "psnr_gain": 7.23, "ssim_kind": "3D SSIM"}],
    "train_seconds": 246.4,
}


def _write_csv(path: Path, history: dict[str, list[float]], tail: str = "") -> None:
    lines = [",".join(history)] + [",".join(str(history[k][i]) for k in history) for i in range(len(history["epoch"]))]
    path.write_text("\n".join(lines) + "\n" + tail)


def _write_panel(tb_dir: Path, with_prior: bool, epochs: int = 2) -> None:
    """Panels written by the training callback itself, for a tiny 2D model."""
    import keras

    from resprunet import models
    from resprunet.training.callbacks import ImagePanel

    name = "respr_unet" if with_prior else "unet"
    model = models.build(name, ndim=2, filters=2, depth=1)
    rng = np.random.default_rng(0)
    clean = rng.random((2, 24, 24, 1)).astype(np.float32)
    noisy = clean + 0.1 * rng.standard_normal(clean.shape).astype(np.float32)
    inputs = {"noisy": noisy, "prior": clean} if with_prior else noisy
    callback = ImagePanel(tb_dir, inputs, clean)
    callback.set_model(model)
    for epoch in range(epochs):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "unet_2d" / "20260101T120000Z"
    (run / "tb").mkdir(parents=True)
    _write_csv(run / "metrics.csv", HISTORY)
    (run / "final_metrics.json").write_text(json.dumps(FINAL))
    (run / "config.yaml").write_text("model: {name: unet, ndim: 2}\ndata: {noise: {kind: gaussian, sigma: 0.1}}\n")
    _write_panel(run / "tb", with_prior=False)
    return run


def _description(tb_dir: Path) -> str:
    from tensorboard.compat.proto import event_pb2

    from resprunet.run_report import _records

    for path in (tb_dir / "images").glob("events.out.tfevents.*"):
        for record in _records(path):
            for value in event_pb2.Event.FromString(record).summary.value:
                if value.tag == "panel":
                    return value.metadata.summary_description
    raise AssertionError("no panel")


def test_the_panel_has_labels_and_promises_a_prior_only_with_one(run_dir, tmp_path):
    from resprunet.training.callbacks import LABEL_HEIGHT, labelled_panel, panel_image

    assert _description(run_dir / "tb") == "noisy | denoised | clean, one image per validation sample"
    _write_panel(tmp_path, with_prior=True, epochs=1)
    assert _description(tmp_path).startswith("noisy | prior | denoised | clean")

    panel, epoch = last_panel(run_dir / "tb")
    assert epoch == 1 and panel.dtype == np.uint8
    # two samples, each: a label strip over the 24 x 24 tiles enlarged 3x (26-px columns -> 78 px)
    assert panel.shape == (2 * (LABEL_HEIGHT + 26 * 3) + 4, 3 * 26 * 3, 3)
    strip = panel[:LABEL_HEIGHT, :, 0]
    for column in range(3):  # text over every column
        assert strip[:, column * 78 : (column + 1) * 78].max() > 200

    rng = np.random.default_rng(1)
    a3 = [rng.random((12, 16, 20, 1)).astype(np.float32) for _ in range(2)]
    image = labelled_panel(a3, ["noisy", "clean"])
    plain = panel_image(a3)
    scale = 3  # 22-px columns -> 66 >= 64
    assert image.shape == (LABEL_HEIGHT + scale * plain.shape[0], 16 + scale * plain.shape[1], 1)
    body = image[LABEL_HEIGHT:, 16:]
    np.testing.assert_array_equal(body[::scale, ::scale], plain)  # the panel itself, enlarged
    assert image[LABEL_HEIGHT:, :16].max() > 0.5  # the row names xy, xz, yz
    with pytest.raises(ValueError, match="2 labels for 3 columns"):
        labelled_panel(a3 + a3[:1], ["noisy", "clean"])


def test_report_writes_a_png_and_an_html_with_the_metrics(run_dir, tmp_path):
    paths = write_run_report(run_dir, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.png"]
    with Image.open(paths["png"]) as im:
        assert im.size == (1200, 750)  # 12 x 7.5 in at 100 dpi, with a panel
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50
    text = paths["html"].read_text()
    for expected in ("<th>best val_psnr</th><td>21.37 dB at epoch 2</td>",
                     "<th>last epoch val_psnr</th><td>20.95</td>",
                     "<th>last epoch loss</th><td>0.0083</td>",
                     "<th>test epi PSNR noisy -&gt; denoised</th><td>19.99 -&gt; 27.22 dB (+7.23 dB)</td>",
                     "0.3810 -&gt; 0.6470 (3D SSIM)", "<th>training time</th><td>246 s</td>",
                     "<th>epochs finished</th><td>3</td>", "unet 2D"):
        assert expected in text, expected
    embedded = text.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(embedded) == paths["png"].read_bytes()


def test_curves_are_the_csv_columns(run_dir):
    fig = curves_figure(read_run(run_dir).history)
    loss_ax, psnr_ax = fig.axes
    lines = {(ax.get_ylabel(), line.get_label()): line for ax in (loss_ax, psnr_ax) for line in ax.get_lines()}
    np.testing.assert_allclose(lines[("PSNR (dB)", "validation")].get_ydata(), HISTORY["val_psnr"])
    np.testing.assert_allclose(lines[("loss", "training")].get_ydata(), HISTORY["loss"])
    np.testing.assert_array_equal(lines[("loss", "training")].get_xdata(), [1, 2, 3])
    assert loss_ax.get_yscale() == "log"


def test_a_run_still_training_is_reported_without_final_metrics(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write_csv(run / "metrics.csv", HISTORY, tail="3,0.007,21.")  # a line being written
    summary = read_run(run)
    assert summary.epochs == 3 and summary.panel is None and summary.final == {}
    paths = write_run_report(run)
    assert paths["png"].parent == run
    with Image.open(paths["png"]) as im:
        assert im.size == (1200, 550)
    assert "none yet" in paths["html"].read_text()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p / "missing", "missing: no such run directory"),
    (lambda p: p, "not a training run with a finished epoch (no metrics.csv)"),
    (lambda p: (p / "metrics.csv").write_text("epoch,loss\n") and p, "metrics.csv: no finished epoch yet"),
    (lambda p: (p / "metrics.csv").write_text("epoch,loss\n0,abc\n") and p, "not a Keras CSV log of numbers"),
])
def test_bad_run_dirs_are_one_line_errors(tmp_path, capsys, make, message):
    run = make(tmp_path)
    assert cli.main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("resprunet report: error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "report.png").exists()


def test_the_command_line_reports_and_fails_cleanly(run_dir, tmp_path):
    command = [sys.executable, "-m", "resprunet.cli", "report"]
    done = subprocess.run(command + [str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("nowhere: no such run directory")
    done = subprocess.run(command + [str(run_dir), "--out", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "report.png").is_file() and "report.html" in done.stdout
