"""Score zoo models, or candidates for them, on their recipe's validation data: the numbers that
choose between recipes (never the card's held-out case, which is test data).

    PYTHONPATH=. python models_zoo/validate.py blind_unet3d_mri histology_irunet2d_rgb
    PYTHONPATH=. python models_zoo/validate.py blind_unet3d_mri --folder /tmp/candidate --tta

Validation cases (Gaussian noise, fixed seeds; the model denoises the whole noisy source as
``resprunet denoise`` does, noise-conditioned models estimating sigma; PSNR in dB at data range
1 in reference units: the card's normaliser fitted on the clean source):

- MRI recipes: nilearn's 1 mm MNI152 template (the validation volume of training), every
  second voxel along each axis, sigma 0.05 and 0.1; PSNR of the whole volume. It is the
  training template at another resolution, so it rewards fitting that template: a 240-epoch
  model it preferred was worse on the EPI test volume (see the README).
- The histology recipe: rows 336-400 of scikit-image's immunohistochemistry image (the
  validation rows of training), sigma 10, 25 and 50 of 255.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_zoo import SPECS, _ihc_recipe, _mri_files  # noqa: E402

MRI_SIGMAS = (0.05, 0.1)
IHC_SIGMAS_255 = (10, 25, 50)


def _mri_scores(model: Any, card: dict[str, Any], tta: bool) -> dict[str, float]:
    import data_pipelines as dp
    from resprunet import zoo
    from resprunet.assess.metrics import psnr
    from resprunet.inference import denoise_array

    volume = dp.read_volume(_mri_files()["val"][0]).array.astype(np.float32)[::2, ::2, ::2]
    reference = zoo.normalizer(card).fit(volume)
    clean = reference(volume).astype(np.float32)
    scores = {}
    for index, sigma in enumerate(MRI_SIGMAS):
        noisy = clean + sigma * np.random.default_rng(7 + index).standard_normal(clean.shape).astype(np.float32)
        denoised = reference(denoise_array(model, reference.inverse(noisy), zoo.normalizer(card),
                                           progress=False, tta=tta))
        scores[f"gaussian {sigma:g}"] = round(psnr(clean, denoised, 1.0), 3)
    return scores


def _ihc_scores(model: Any, card: dict[str, Any]) -> dict[str, float]:
    from resprunet import zoo

    return {f"gaussian {s}/255": zoo.evaluate(model, {**card, "evaluation": _ihc_recipe([336, 400], s, 3000 + s)})
            ["model"]["psnr"] for s in IHC_SIGMAS_255}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=[n for n, s in SPECS.items() if s["train_files"] in
                                                     ("mri", "ihc")])
    parser.add_argument("--folder", type=Path, help="a candidate's folder (model.keras, card.yaml) "
                        "instead of the zoo's; one name only")
    parser.add_argument("--tta", action="store_true", help="with test-time augmentation (MRI only)")
    args = parser.parse_args(argv)
    if args.folder and len(args.names) != 1:
        parser.error("--folder scores one candidate: give one name")
    if args.tta and any(SPECS[name]["train_files"] != "mri" for name in args.names):
        parser.error("--tta: only the MRI validation runs with test-time augmentation")
    from resprunet import zoo

    for name in args.names:
        model, card = zoo.load_path((args.folder or zoo.path(name)) / zoo.MODEL_FILE)
        values = (_mri_scores(model, card, args.tta) if SPECS[name]["train_files"] == "mri"
                  else _ihc_scores(model, card))
        print(f"{name} ({args.folder or 'zoo'}{', tta' if args.tta else ''}): "
              + ", ".join(f"{k} {v:.2f} dB" for k, v in values.items())
              + f"; mean {np.mean(list(values.values())):.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
