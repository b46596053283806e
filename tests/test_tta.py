"""Test-time augmentation: the 8 y-x symmetries are a group whose inverses undo them, and
``tta=True`` averages what a model does to each turned copy, turned back."""
from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from resprunet.assess import Method
from resprunet.cli import main
from resprunet.inference import denoise_array, predict_volume
from resprunet.inference.tta import yx_symmetries


def test_symmetries_are_the_eight_distinct_elements_and_inverses_undo_them():
    a = np.random.default_rng(0).random((2, 5, 5, 1)).astype(np.float32)
    images = []
    for forward, inverse in yx_symmetries():
        turned = forward(a)
        assert np.array_equal(inverse(turned), a)
        images.append(turned.tobytes())
    assert np.array_equal(yx_symmetries()[0][0](a), a)  # the first is the identity
    assert len(set(images)) == 8
    b = np.zeros((1, 3, 4, 1), np.float32)
    assert {yx_symmetries()[k][0](b).shape for k in range(8)} == {(1, 3, 4, 1), (1, 4, 3, 1)}


def _shift_model(ndim: int) -> keras.Model:
    """A model that is not symmetric: each voxel takes the value of its right (+x) neighbour."""
    conv = keras.layers.Conv2D if ndim == 2 else keras.layers.Conv3D
    noisy = keras.Input((None,) * ndim + (1,), name="noisy")
    out = conv(1, 3, padding="same", use_bias=False, name="output_conv")(noisy)
    model = keras.Model(noisy, out, name="shift")
    kernel = np.zeros((3,) * ndim + (1, 1), np.float32)
    kernel[(1,) * (ndim - 1) + (2,)] = 1.0
    model.get_layer("output_conv").set_weights([kernel])
    return model


@pytest.mark.parametrize("ndim", [2, 3])
def test_tta_is_the_mean_of_the_turned_back_outputs(ndim, caplog):
    # the shift to the right, seen through the 8 symmetries, is a shift in each of the 4
    # directions twice: the mean is the mean of the 4 neighbours (zero beyond the border).
    # A wrong inverse (or none) gives another shift mixture and fails.
    x = np.random.default_rng(1).random((3, 12, 10)).astype(np.float32)
    model = _shift_model(ndim)
    plain = predict_volume(model, x, progress=False)
    assert np.allclose(plain[:, :, :-1], x[:, :, 1:], atol=1e-6)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    expected = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]) / 4
    with caplog.at_level(logging.INFO, logger="resprunet.inference.predict"):
        averaged = predict_volume(model, x, progress=False, tta=True)
    plans = [r.getMessage() for r in caplog.records if "default tiling" in r.getMessage()]
    assert len(plans) == 2 and {"(3, 12, 10)" in m or "(1, 12, 10)" in m for m in plans} == {True, False}
    assert averaged.shape == x.shape
    assert np.abs(averaged - expected).max() < 1e-5
    if ndim == 2:  # a (y, x) image in, a (y, x) image out
        image = predict_volume(model, x[0], progress=False, tta=True)
        assert image.shape == x[0].shape and np.abs(image - expected[0]).max() < 1e-5


def test_tta_reaches_out_files_denoise_array_assess_and_the_cli(tmp_path, capsys):
    import yaml

    import data_pipelines as dp

    from scipy import ndimage

    # smooth (white noise has 'isolated extremes', which denoise_array keeps out of the model)
    x = ndimage.gaussian_filter(np.random.default_rng(2).random((2, 8, 8)), 1.5).astype(np.float32)
    model = _shift_model(2)
    expected = predict_volume(model, x, progress=False, tta=True)
    written = predict_volume(model, x, progress=False, tta=True, out=tmp_path / "out.npy")
    assert np.array_equal(np.asarray(written), expected)
    assert np.abs(Method.from_model(model, tta=True)(x) - expected).max() < 1e-6

    source = (100.0 + 50.0 * x).astype(np.float32)
    fitted = dp.Normalizer.minmax().fit(source)
    reference = np.clip(fitted.inverse(predict_volume(model, fitted(source), progress=False, tta=True)),
                        source.min(), source.max())
    through = denoise_array(model, source, dp.Normalizer.minmax(), progress=False, tta=True)
    assert np.abs(through - reference).max() < 1e-3
    assert np.abs(denoise_array(model, source, dp.Normalizer.minmax(), progress=False) - reference).max() > 1

    folder = tmp_path / "shift"
    folder.mkdir()
    model.save(folder / "model.keras")
    (folder / "card.yaml").write_text(yaml.safe_dump(
        {"name": "shift", "normalization": dp.Normalizer.minmax().to_dict()}))
    np.save(tmp_path / "in.npy", source)
    assert main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "tta.npy"), "--model", str(folder),
                 "--tta"]) == 0
    assert np.abs(np.load(tmp_path / "tta.npy") - reference).max() < 1e-3


def test_tta_with_workers_is_a_one_line_error_that_writes_nothing(tmp_path, capsys):
    import yaml

    import data_pipelines as dp

    folder = tmp_path / "shift"
    folder.mkdir()
    _shift_model(2).save(folder / "model.keras")
    (folder / "card.yaml").write_text(yaml.safe_dump(
        {"name": "shift", "normalization": dp.Normalizer.minmax().to_dict()}))
    np.save(tmp_path / "in.npy", np.random.default_rng(3).random((2, 8, 8)).astype(np.float32))
    code = main(["denoise", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--model", str(folder),
                 "--tta", "--workers", "2"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tta" in err[0]
    assert not (tmp_path / "out.npy").exists()
