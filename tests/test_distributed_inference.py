"""Distributed tiled inference on a Dask LocalCluster: same output as one process, a killed
worker's tasks rerun, an unreachable scheduler fails fast, small chunks are re-chunked, the CLI."""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
distributed = pytest.importorskip("distributed")

import data_pipelines as dp  # noqa: E402
from resprunet.inference import predict_volume  # noqa: E402
from resprunet.inference.cluster import SchedulerUnreachableError, connect  # noqa: E402
from resprunet.inference.distributed import predict_distributed  # noqa: E402

TILE = (20, 40, 40)  # the U-Net below: receptive field 18, divisor 2, halo 10
SHAPE = (20, 72, 96)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny U-Net (depth 1, 4 filters) whose weights are perturbed so that it is far from
    the identity it starts as."""
    import keras

    from resprunet import models

    keras.utils.set_random_seed(0)
    model = models.build("unet", ndim=3, filters=4, depth=1)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()])
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    (folder / "card.yaml").write_text("name: tiny\nnormalization:\n  kind: percentile\n  params: [1.0, 99.8]\n"
                                      "noise: {sigma: 0.1}\n")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def client():
    with connect(workers=2, memory_limit="1.5GiB") as c:
        yield c


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(1)
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in SHAPE], indexing="ij")
    return (0.5 + 0.3 * np.sin(6 * y + 4 * x + 2 * z) + rng.normal(0, 0.1, SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(model_file, volume) -> np.ndarray:
    from resprunet.inference.distributed import worker_model

    return predict_volume(worker_model(model_file), volume, tile_shape=TILE, progress=False)


def _zarr_input(path: Path, data: np.ndarray, chunks: tuple[int, ...]):
    array = zarr.create_array(store=str(path), shape=data.shape, chunks=chunks, dtype="float32")
    array[...] = data
    return zarr.open_array(str(path), mode="r")


def test_two_workers_give_the_single_process_result(tmp_path, model_file, client, volume, reference):
    x = _zarr_input(tmp_path / "in.zarr", volume, (10, 24, 24))
    y = predict_distributed(model_file, x, tmp_path / "out.zarr", tile_shape=TILE, client=client, progress=False)
    assert np.abs(reference - volume).max() > 0.1  # the model is no identity
    blocks = y.chunks
    assert blocks == (20, 48, 48)
    # tiles start at 0, 16, 32 along y and 0, 20?, ... along x: some tile spans a block border
    from resprunet.inference.distributed import worker_model
    from resprunet.inference.predict import plan_grid

    grid, _ = plan_grid(worker_model(model_file), SHAPE, TILE)
    assert any(s // b != (s + t - 1) // b for starts, t, b in zip(grid.starts[1:], TILE[1:], blocks[1:])
               for s in starts)
    assert np.abs(np.asarray(y) - reference).max() <= 1e-5
    assert workers_used(client) == 2


def workers_used(client) -> int:
    return len(client.scheduler_info()["workers"])


class KillOnce(distributed.WorkerPlugin):
    """Kills its worker process (SIGKILL) when the first tile task's result is in memory,
    once per marker file; the nanny restarts the worker."""

    name = "resprunet-test-kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "memory" and str(key).startswith("resprunet-tiles") and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_changes_nothing(tmp_path, model_file, client, volume, reference):
    x = _zarr_input(tmp_path / "in.zarr", volume, (10, 24, 24))
    marker = tmp_path / "killed"
    client.register_plugin(KillOnce(str(marker)))
    try:
        y = predict_distributed(model_file, x, tmp_path / "out.zarr", tile_shape=TILE, client=client,
                                progress=False)
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert marker.is_file()  # a worker died holding a tile task's result
    assert np.abs(np.asarray(y) - reference).max() <= 1e-5


def test_chunks_smaller_than_the_halo_are_rechunked(tmp_path, model_file, client, volume, reference, caplog):
    x = _zarr_input(tmp_path / "in.zarr", volume, (4, 8, 8))
    with caplog.at_level(logging.INFO, logger="resprunet.inference.distributed"):
        y = predict_distributed(model_file, x, tmp_path / "out.zarr", tile_shape=TILE, client=client,
                                progress=False)
    assert any("smaller than the halo" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    assert y.chunks == (20, 40, 40)
    assert np.abs(np.asarray(y) - reference).max() <= 1e-5


def test_an_unreachable_scheduler_fails_within_seconds():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    with pytest.raises(SchedulerUnreachableError, match=f"tcp://127.0.0.1:{port}"), \
            connect(f"tcp://127.0.0.1:{port}", connect_timeout=2):
        pass
    assert time.perf_counter() - t < 10


def test_cli_on_a_cluster_equals_the_single_process_cli(tmp_path, model_file, client, capsys):
    from resprunet.cli import main

    rng = np.random.default_rng(2)
    counts = (1000 + 400 * rng.random(SHAPE)).astype(np.uint16)
    counts[3, 30, 30] = 60000  # a hot pixel: kept out of the model, restored unchanged
    dp.write_volume(dp.Volume(counts, spacing=(2.0, 0.5, 0.5), meta={"spacing_unit": "um"}),
                    tmp_path / "in.ome.zarr")
    tile = ",".join(map(str, TILE))
    common = ["--model", str(model_file), "--tile", tile, "--output-dtype", "float32"]
    assert main(["-q", "denoise", str(tmp_path / "in.ome.zarr"), str(tmp_path / "one.ome.zarr"), *common]) == 0
    assert main(["-q", "denoise", str(tmp_path / "in.ome.zarr"), str(tmp_path / "many.ome.zarr"), *common,
                 "--scheduler", client.scheduler.address]) == 0
    one, many = dp.read_volume(tmp_path / "one.ome.zarr"), dp.read_volume(tmp_path / "many.ome.zarr")
    assert many.spacing == pytest.approx((2.0, 0.5, 0.5)) and many.meta["levels"] == one.meta["levels"]
    a, b = one.load().array, many.load().array
    assert b[3, 30, 30] == 60000
    assert np.abs(a - b).max() <= 1e-5 * 400  # 1e-5 of the normalised range, in counts
    assert main(["denoise", str(tmp_path / "in.ome.zarr"), str(tmp_path / "x.ome.zarr"), "--model",
                 str(model_file), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "no Dask scheduler answered" in capsys.readouterr().err
