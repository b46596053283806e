"""Score zoo models, or candidates for them, on their recipe's validation data: the numbers that
choose between recipes (never the card's held-out case, which is test data).

    PYTHONPATH=. python models_zoo/validate.py blind_unet3d_mri histology_irunet2d_rgb
    PYTHONPATH=. python models_zoo/validate.py blind_unet3d_mri --folder /tmp/candidate --tta

Validation cases (Gaussian noise, fixed seeds; the model denoises the whole noisy source as
``resprunet denoise`` does, noise-conditioned models estimating sigma; PSNR in dB at data range
1 in reference units: the card's normaliser fitted on the clean source):

- MRI recipes, two volumes, sigma 0.05 and 0.1, PSNR of the whole volume:
  ``emri``: pydicom's ``emri_small.dcm``, an enhanced-MR head volume of
  another subject, scanner and source than anything trained on (10 x 64 x 64). It carries its
  own scanner noise, about 0.03-0.04 of the normalised range by scikit-image's
  ``estimate_sigma``, so its PSNR is against a noisy reference: capped near 29 dB, and a model
  that also removes the scanner noise loses for it. It ranks candidates; it does not measure
  absolute quality. And
  ``template``: nilearn's 1 mm MNI152 template (the validation volume of training), every second
  voxel along each axis. The template is the training template at another resolution, so it
  rewards fitting that template: a 240-epoch model it preferred was worse on the EPI test
  volume (see the README), and ``emri`` ranked that model below the shipped one too (24.36
  against 25.31 dB, mean of both sigmas). Neither volume is enough alone.
- The grey recipe (``blind_unet2d_grey``), sigma 0.05 and 0.1, PSNR of the whole image: rows
  420-500 of scikit-image's ``cell`` (the validation rows of training) and two photographs of
  other sources that nothing trains or tests on, ``astronaut`` and ``rocket`` in grey
  (``rgb2gray`` x 255).
- The histology recipe: rows 336-400 of scikit-image's immunohistochemistry image (the
  validation rows of training), sigma 10, 25 and 50 of 255.

A candidate replaces the shipped model only when it is better on the mean of every volume.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_zoo import SPECS, _ihc_recipe, _mri_files  # noqa: E402

SIGMAS = (0.05, 0.1)  # Gaussian, normalised units (MRI and grey recipes)
IHC_SIGMAS_255 = (10, 25, 50)


def _mri_volumes() -> dict[str, np.ndarray]:
    """The MRI validation volumes by name, (z, y, x) float32 in scanner units."""
    import data_pipelines as dp
    from pydicom.data import get_testdata_file

    return {"emri": dp.read_volume(get_testdata_file("emri_small.dcm")).array.astype(np.float32),
            "template": dp.read_volume(_mri_files()["val"][0]).array.astype(np.float32)[::2, ::2, ::2]}


def _grey_volumes() -> dict[str, np.ndarray]:
    """The grey validation images by name, (1, y, x) float32 in 0-255 grey levels."""
    from skimage import data as skdata
    from skimage.color import rgb2gray

    volumes = {"cell": np.asarray(skdata.cell(), np.float32)[np.newaxis, 420:500]}
    for name in ("astronaut", "rocket"):
        volumes[name] = (rgb2gray(getattr(skdata, name)()) * 255.0).astype(np.float32)[np.newaxis]
    return volumes


def _gaussian_scores(model: Any, card: dict[str, Any], volumes: dict[str, np.ndarray],
                     tta: bool) -> dict[str, float]:
    """PSNR (dB, data range 1) of ``model`` on each volume at each of :data:`SIGMAS`, keyed
    ``"<volume> <sigma>"``: the card's normaliser fitted on the clean volume, seeded Gaussian
    noise added in its units, the model denoising the noisy volume in source units."""
    from resprunet import zoo
    from resprunet.assess.metrics import psnr
    from resprunet.inference import denoise_array

    scores = {}
    for volume_name, volume in volumes.items():
        reference = zoo.normalizer(card).fit(volume)
        clean = reference(volume).astype(np.float32)
        for index, sigma in enumerate(SIGMAS):
            noise = np.random.default_rng(7 + index).standard_normal(clean.shape).astype(np.float32)
            denoised = reference(denoise_array(model, reference.inverse(clean + sigma * noise),
                                               zoo.normalizer(card), progress=False, tta=tta))
            scores[f"{volume_name} {sigma:g}"] = round(psnr(clean, denoised, 1.0), 3)
    return scores


def _ihc_scores(model: Any, card: dict[str, Any]) -> dict[str, float]:
    from resprunet import zoo

    return {f"gaussian {s}/255": zoo.evaluate(model, {**card, "evaluation": _ihc_recipe([336, 400], s, 3000 + s)})
            ["model"]["psnr"] for s in IHC_SIGMAS_255}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=[n for n, s in SPECS.items() if s["train_files"] == "mri"]
                        + ["blind_unet2d_grey", "histology_irunet2d_rgb"])
    parser.add_argument("--folder", type=Path, help="a candidate's folder (model.keras, card.yaml) "
                        "instead of the zoo's; one name only")
    parser.add_argument("--tta", action="store_true", help="with test-time augmentation (MRI and grey models)")
    args = parser.parse_args(argv)
    if args.folder and len(args.names) != 1:
        parser.error("--folder scores one candidate: give one name")
    if args.tta and "histology_irunet2d_rgb" in args.names:
        parser.error("--tta: the histology validation runs without test-time augmentation")
    from resprunet import zoo

    for name in args.names:
        model, card = zoo.load_path((args.folder or zoo.path(name)) / zoo.MODEL_FILE)
        if name == "histology_irunet2d_rgb":
            values = _ihc_scores(model, card)
        else:
            volumes = _grey_volumes() if name == "blind_unet2d_grey" else _mri_volumes()
            values = _gaussian_scores(model, card, volumes, args.tta)
        groups: dict[str, list[float]] = {}
        for key, value in values.items():  # "emri 0.05" -> group "emri"
            groups.setdefault(key.rsplit(" ", 1)[0], []).append(value)
        print(f"{name} ({args.folder or 'zoo'}{', tta' if args.tta else ''}): "
              + ", ".join(f"{k} {v:.2f} dB" for k, v in values.items()) + "; mean "
              + ", ".join(f"{group} {np.mean(group_values):.2f} dB" for group, group_values in groups.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
