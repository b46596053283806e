"""Spectral-CT bins from a CT in HU, the energy-integrated prior, and models of frames (the
"temporal" prior) through training, inference and the CLI."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

import data_pipelines as dp
from data_pipelines.errors import InvalidDataError, ShapeMismatchError
from data_pipelines.spectral import MASS_ATTENUATION, bone_hu, energy_integrated, spectral_bins
from model_helpers import random_head
from resprunet import models
from resprunet.inference import denoise_array

KEV = (40.0, 60.0, 100.0)


def test_bins_follow_the_two_material_model():
    water = [MASS_ATTENUATION[e][0] for e in KEV]
    bone = [1.92 * MASS_ATTENUATION[e][1] for e in KEV]
    hu = np.array([-1000.0, -500.0, 0.0, bone_hu(), 2 * bone_hu()])
    bins = spectral_bins(hu, KEV)
    assert bins.shape == (5, 3) and bins.dtype == np.float32
    np.testing.assert_allclose(bins[0], 0.0)  # air
    np.testing.assert_allclose(bins[1], 0.5 * np.array(water), rtol=1e-6)  # half-density water
    np.testing.assert_allclose(bins[2], water, rtol=1e-6)
    np.testing.assert_allclose(bins[3], bone, rtol=1e-6)  # pure cortical bone
    np.testing.assert_allclose(bins[4], bone, rtol=1e-6)  # capped at pure bone
    # bone's contrast to water falls with energy: the bins are not scaled copies of each other
    ratio = bins[3] / bins[2]
    assert ratio[0] > 4.5 and ratio[2] < 2.2 and np.all(np.diff(ratio) < 0)
    assert bone_hu() == pytest.approx(1935.5, abs=1)


def test_energy_integrated_image_has_sqrt_bins_less_noise():
    rng = np.random.default_rng(0)
    clean = spectral_bins(np.full((64, 64), 40.0), (40.0, 50.0, 60.0, 80.0, 100.0))
    noisy = clean + 0.1 * rng.standard_normal(clean.shape)
    residual = energy_integrated(noisy) - energy_integrated(clean)
    assert np.std(residual) == pytest.approx(0.1 / np.sqrt(5), rel=0.05)


def test_bad_input_is_refused():
    with pytest.raises(InvalidDataError, match="outside the tabulated 40-100 keV"):
        spectral_bins(np.zeros((4, 4)), (30.0, 60.0))
    with pytest.raises(InvalidDataError, match="at least 2 bins"):
        spectral_bins(np.zeros((4, 4)), (60.0,))
    with pytest.raises(InvalidDataError, match="NaN or Inf"):
        spectral_bins(np.array([0.0, np.nan]), KEV)


@pytest.fixture(scope="module")
def frames_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return random_head(models.build("respr_unet", ndim=2, filters=4, depth=1), scale=0.3)


def test_each_frame_is_denoised_beside_the_mean_of_all(frames_model):
    rng = np.random.default_rng(1)
    frames = (1000 + 200 * rng.standard_normal((2, 32, 32, 3))).astype(np.float32)
    norm = dp.Normalizer.percentile(1, 99.8)
    out = denoise_array(frames_model, frames, norm, prior="temporal", progress=False)
    assert out.shape == frames.shape
    fitted = norm.fit(frames)  # one map for all frames
    mean = frames.mean(axis=-1)
    for t in range(3):
        expected = denoise_array(frames_model, frames[..., t], fitted, prior=mean, progress=False)
        np.testing.assert_allclose(out[..., t], expected, atol=1e-3)
    assert np.abs(out - frames).mean() > 5  # the model is not the identity
    # each frame gets the mean of all frames: its own prior would give another result
    own = denoise_array(frames_model, frames[..., 0], fitted, prior=frames[..., 0], progress=False)
    assert np.abs(own - out[..., 0]).mean() > 1
    with pytest.raises(ShapeMismatchError, match=r"frames with t >= 2"):
        denoise_array(frames_model, frames[..., 0], norm, prior="temporal", progress=False)
    with pytest.raises(ShapeMismatchError, match="takes no prior"):
        denoise_array(models.build("unet", ndim=2, filters=2, depth=1), frames, norm,
                      prior="temporal", progress=False)


@pytest.fixture(scope="module")
def ct_paths(tmp_path_factory) -> dict[str, Path]:
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("ct")
    paths = {}
    for name in ("693_UNCR.dcm", "explicit_VR-UN.dcm", "CT_small.dcm"):
        hu = dp.read_volume(get_testdata_file(name)).array
        paths[name] = folder / f"{name[:-4]}.npy"
        np.save(paths[name], np.maximum(hu, -1024).astype(np.float32))
    return paths


@pytest.mark.parametrize("prior", ["temporal", None])
def test_training_on_spectral_bins_and_denoising_them_from_the_cli(ct_paths, tmp_path, capsys, prior):
    from resprunet import cli
    from resprunet.training import load_config, train

    config = load_config(overrides=[
        f"data.train=[{ct_paths['693_UNCR.dcm']}]", f"data.val=[{ct_paths['explicit_VR-UN.dcm']}]",
        f"data.test=[{ct_paths['CT_small.dcm']}]", "data.spectral_kev=[40, 60, 100]",
        f"data.prior={prior or 'null'}", "data.normalize={method: ct, window: [0.0, 1.0]}",
        f"model.name={'respr_unet' if prior else 'unet'}", "model.ndim=2", "model.filters=4",
        "model.depth=1", "data.patch_shape=[32, 32]", "data.batch_size=4",
        "data.patches_per_epoch=8", "data.val_patches=4", "epochs=1", f"run.root={tmp_path}",
        "callbacks.histogram_freq=0",
    ])
    result = train(config, verbose=0)
    (ev,) = result.final_metrics["evaluations"]
    assert ev["shape"] == [1, 128, 128, 3]  # every bin of the test CT is scored
    assert ev["noisy_psnr"] == pytest.approx(20.0, abs=0.3)
    baseline = result.final_metrics["val_baseline"]
    if prior:  # the energy-integrated prior carries information: well above one noisy bin
        assert baseline["prior_psnr"] > baseline["noisy_psnr"] + 2.0
    else:
        assert "prior_psnr" not in baseline
    # the run folder denoises a (z, y, x, bins) file as training saw it
    bins = spectral_bins(np.load(ct_paths["CT_small.dcm"]), (40.0, 60.0, 100.0))
    noisy = bins + 0.1 * np.random.default_rng(0).standard_normal(bins.shape).astype(np.float32)
    np.save(tmp_path / "bins.npy", noisy)
    argv = ["-q", "denoise", str(tmp_path / "bins.npy"), str(tmp_path / "out.npy"),
            "--model", str(result.run_dir)]
    if prior:
        assert cli.main(argv) == 0, capsys.readouterr().err
        model = keras.models.load_model(result.run_dir / "model.keras")
        expected = denoise_array(model, noisy, dp.Normalizer.ct((0.0, 1.0)), prior="temporal",
                                 progress=False)
        np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)
    else:  # a model of single bins is given one bin at a time
        assert cli.main(argv) == 2
        assert "pick one channel or frame first" in capsys.readouterr().err
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["data"]["prior"] == prior


def test_training_with_prior_files(tmp_path, capsys):
    """prior: file - each volume with another scan of the same object (here the volume with 2 %
    noise, standing in for a full-dose scan); validated, evaluated and refused without it."""
    from resprunet import cli
    from resprunet.training import ConfigError, load_config, train

    entries = {}
    rng = np.random.default_rng(0)
    for name in ("mni152_t1", "t1_head", "epi"):
        array = dp.sample(name).array.astype(np.float32)
        spread = np.percentile(array, 99.8) - np.percentile(array, 1)  # the normalised range
        full_dose = array + 0.02 * spread * rng.standard_normal(array.shape).astype(np.float32)
        np.save(tmp_path / f"{name}_prior.npy", full_dose)
        entries[name] = str(tmp_path / f"{name}_prior.npy")
    overrides = [
        "data.prior=file", f"data.prior_files={entries}", "model.name=respr_unet", "model.ndim=3",
        "model.filters=4", "model.depth=1", "data.patch_shape=[12, 24, 24]", "data.val_patch_shape=[12, 24, 24]", "data.batch_size=2",
        "data.patches_per_epoch=4", "data.val_patches=2", "epochs=1", "callbacks.histogram_freq=0",
        f"run.root={tmp_path / 'runs'}",
    ]
    result = train(load_config(overrides=overrides), verbose=0)
    (ev,) = result.final_metrics["evaluations"]
    assert ev["volume"] == "example4d_epi" and ev["denoised_psnr"] > ev["noisy_psnr"] + 2
    baseline = result.final_metrics["val_baseline"]
    assert baseline["prior_psnr"] > baseline["noisy_psnr"] + 3  # the smoothed file is informative
    missing = dict(entries)
    del missing["epi"]
    with pytest.raises(ConfigError, match=r"prior_files for every volume; missing \['epi'\]"):
        train(load_config(overrides=[*overrides, f"data.prior_files={missing}"]), verbose=0)
    np.save(tmp_path / "epi.npy", dp.sample("epi").array.astype(np.float32))
    argv = ["-q", "denoise", str(tmp_path / "epi.npy"), str(tmp_path / "out.npy"), "--model",
            str(result.run_dir)]
    assert cli.main(argv) == 2
    assert "give it with --prior FILE" in capsys.readouterr().err
    assert cli.main([*argv, "--prior", entries["epi"]]) == 0
