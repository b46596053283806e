"""The human-readable parts of a BioImage Model Zoo package: README.md, cover image, citations."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..models import ModelInfo

#: References by architecture (and feature); a card's own ``cite`` list comes first.
CITATIONS = {
    "unet": {"text": "Ronneberger, Fischer and Brox, U-Net: convolutional networks for biomedical "
                     "image segmentation, MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"},
    "respr_unet": {"text": "J. F. P. J. Abascal et al., ResPr-UNet: residual U-Net with a prior image "
                           "(original code)", "url": "https://github.com/jabascal"},
    "noise_map": {"text": "Zhang, Zuo and Zhang, FFDNet: toward a fast and flexible solution for "
                          "CNN-based image denoising, IEEE TIP 27(9) 2018 (noise-level map input)",
                  "doi": "10.1109/TIP.2018.2839891"},
    "percentile": {"text": "Weigert et al., Content-aware image restoration: pushing the limits of "
                           "fluorescence microscopy, Nature Methods 2018 (percentile normalisation)",
                   "doi": "10.1038/s41592-018-0216-7"},
}
#: Pixels of the cover's shorter side (small images are enlarged by pixel repetition).
COVER_HEIGHT = 256


def citations(card: dict[str, Any], needs_sigma: bool) -> list[dict[str, str]]:
    """The card's ``cite`` entries, then the references of its architecture and features."""
    keys = ["unet"]
    if (card.get("architecture") or {}).get("name") == "respr_unet":
        keys.append("respr_unet")
    if needs_sigma:
        keys.append("noise_map")
    if (card.get("normalization") or {}).get("kind") == "percentile":
        keys.append("percentile")
    return list(card.get("cite") or []) + [CITATIONS[k] for k in keys]


def _display(x: np.ndarray, ndim: int) -> np.ndarray:
    """(1, [z,] y, x, c) normalised -> a (y, x) or (y, x, 3) uint8 image of its middle slice."""
    image = x[0, x.shape[1] // 2] if ndim == 3 else x[0]
    image = image if image.shape[-1] == 3 else image[..., 0]
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_cover(path: Path, noisy: np.ndarray, denoised: np.ndarray, ndim: int) -> None:
    """Write a 2:1 PNG: the noisy input (left) and the model's output (right).

    Parameters
    ----------
    noisy, denoised : np.ndarray
        (1, [z,] y, x, c) in normalised units (the model's input and output); 3D shows the
        middle z slice; the central square of each image is shown.
    """
    from PIL import Image

    left, right = _display(noisy, ndim), _display(denoised, ndim)
    side = min(left.shape[:2])
    y0, x0 = (left.shape[0] - side) // 2, (left.shape[1] - side) // 2
    pair = np.concatenate([left[y0:y0 + side, x0:x0 + side], right[y0:y0 + side, x0:x0 + side]], axis=1)
    scale = max(1, -(-COVER_HEIGHT // side))
    pair = np.repeat(np.repeat(pair, scale, axis=0), scale, axis=1)
    Image.fromarray(pair).save(path)


def _metrics_table(card: dict[str, Any]) -> str:
    rows = [f"| {method} | {m.get('psnr', '')} | {m.get('ssim', '')} |"
            for method, m in (card.get("metrics") or {}).items() if isinstance(m, dict)]
    if not rows:
        return "No held-out metrics in the card."
    return "| method | PSNR (dB) | SSIM |\n| --- | --- | --- |\n" + "\n".join(rows)


def readme(card: dict[str, Any], info: ModelInfo, halo: int, inputs: dict[str, str], post: list[dict[str, Any]],
           test_source: str) -> str:
    """The package's README.md (Markdown) from the card and the export's choices.

    Parameters
    ----------
    info : resprunet.models.ModelInfo
        The model's geometry (divisor, receptive field).
    halo : int
        Voxels cropped from each side of an output tile.
    inputs : dict of str to str
        Input tensor id -> one-line description.
    post : list of dict
        The output's postprocessing steps (empty: the output stays normalised).
    """
    norm = card.get("normalization") or {}
    data = card.get("training_data") or {}
    training = card.get("training") or {}
    evaluation = card.get("evaluation") or {}
    if post:
        output_units = "the input's units (the normalisation is inverted exactly by `scale_linear`)"
    else:
        output_units = (
            "normalised units (0 and 1 at the input's percentiles): the spec cannot express the "
            "inverse of a map whose bounds are statistics of the input. To get source units, map "
            "back with `low + y * (high - low)`, `low`/`high` the percentiles of the noisy input, "
            "as `resprunet denoise` does")
    lines = [
        f"# {card.get('name', info.name)}",
        "",
        str(card.get("summary", "")),
        "",
        "Exported by `resprunet export` (the resprunet package). "
        "Weights: the Keras 3 model (`keras_v3`) and its ONNX conversion (tf2onnx, `onnx`).",
        "",
        "## Inputs and output",
        "",
        *[f"- `{name}`: {text}" for name, text in inputs.items()],
        f"- `denoised`: the denoised image, in {output_units}.",
        "",
        *([f"In bioimageio.core use the ONNX weights: its Keras backend (0.11) passes several inputs to "
           "`model.predict` positionally, which Keras reads as `batch_size`.", ""] if len(inputs) > 1 else []),
        f"Normalisation of the card: `{norm}`. " + (
            "The spec's `scale_range` takes plain percentiles of each image; resprunet takes them of a "
            "winsorised, 5-voxel box-smoothed copy, which noise and hot pixels move less, so on very "
            "noisy images the two maps differ slightly. " if not post else "")
        + "Beyond the spec, `resprunet denoise` replaces isolated extremes (hot pixels) by their "
        "neighbours' median before the model and clips the output to the input's range.",
        "",
        f"Every spatial size must be a multiple of {info.divisor}. Receptive field: "
        f"{info.receptive_field} voxels per axis; halo: {halo} voxels cropped from each side of a "
        "tile (half the receptive field, rounded up to the divisor), so tiled prediction equals "
        "whole-image prediction.",
        "",
        "## Training",
        "",
        f"- Data: {data.get('train', 'see the card')}",
        f"- Noise: {(card.get('noise') or {}).get('description', card.get('noise'))}",
        f"- Epochs {training.get('epochs', '?')}, patches {training.get('patch_shape', '?')}, "
        f"batch {training.get('batch_size', '?')}, loss {training.get('loss', '?')}, "
        f"{training.get('seconds', '?')} s on {training.get('machine', '?')}.",
        "",
        "## Licences",
        "",
        "The weights carry the package's licence (see `license`). Training and test data: "
        f"{data.get('licence', 'not stated in the card')}",
        "",
        "## Validation",
        "",
        f"Held-out data: {evaluation.get('source', 'none in the card')}. "
        f"Recipe: {card.get('evaluation_notes', 'see the card')}",
        "",
        _metrics_table(card),
        "",
        f"Test tensors: {test_source}" + (f"; held-out recipe `{evaluation}`." if evaluation else "."),
        "",
    ]
    return "\n".join(lines)
