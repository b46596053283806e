"""BioImage Model Zoo package of a denoising model: rdf.yaml (spec 0.5), weights, tests, cover.

The package holds:

* ``weights.keras``: the Keras 3 model as it is (weights format ``keras_v3``, the format the
  spec has for Keras 3; ``keras_hdf5`` is the legacy Keras 2 file and a TensorFlow SavedModel
  written by Keras 3 is an inference-only export), and ``weights.onnx`` converted from it by
  tf2onnx (format ``onnx``, ``parent: keras_v3``), which runs without TensorFlow;
* one input tensor per model input (``noisy``; ``prior`` and ``sigma`` where the model takes
  them); ``noisy``'s spatial axes take any multiple of the divisor from ``2 halo + divisor``
  on (the spec wants a tile larger than its two halos), the other inputs refer to them;
  the output ``denoised`` with the halo of the receptive field
  (:func:`resprunet.inference.tiles.model_halo`);
* the card's normalisation as pre/post-processing (:mod:`resprunet.export.processing`);
* test tensors (``test_<id>.npy``): a crop of the card's held-out case
  (:mod:`resprunet.export.samples`) and the model's output on it after the package's own
  pre/post-processing; the same arrays as sample tensors (``sample_<id>.tif``, batch axis dropped);
* ``cover.png`` (noisy | denoised) and ``README.md`` (card, choices, licences, validation).

The description is validated by ``bioimageio.spec`` (with its file checks: hashes, test
tensor shapes against the axes) before anything is written.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .documentation import citations, readme, write_cover
from .errors import ExportError, require
from .onnx import OPSET, to_onnx
from .processing import apply, postprocessing, preprocessing
from .samples import test_case

if TYPE_CHECKING:
    from ..models import ModelInfo

__all__ = ["DEFAULT_AUTHOR", "DEFAULT_LICENSE", "build_rdf", "export_bioimageio"]

#: Author of a package whose card names none.
DEFAULT_AUTHOR = "resprunet contributors"
#: Licence (SPDX) of the weights when the card states none: the package's own.
DEFAULT_LICENSE = "MIT"
_SUPPORTED_INPUTS = ("noisy", "prior", "sigma")


def _channel_names(channels: int) -> list[str]:
    named = {1: ["grey"], 3: ["red", "green", "blue"]}
    return named.get(channels, [f"c{i}" for i in range(channels)])


def _axes(ndim: int, channel_names: list[str], size: Any, halo: int = 0) -> list[dict[str, Any]]:
    """Axes (batch, [z,] y, x, channel); ``size(axis_id)`` gives each spatial size."""
    spatial = ["z", "y", "x"][3 - ndim:]
    axes: list[dict[str, Any]] = [{"type": "batch"}]
    for axis in spatial:
        axes.append({"type": "space", "id": axis, "size": size(axis), **({"halo": halo} if halo else {})})
    return axes + [{"type": "channel", "channel_names": channel_names}]


def least_size(divisor: int, halo: int) -> int:
    """The least spatial size of the package's input (voxels): the spec wants a tile larger
    than its two halos, and every size a multiple of the divisor."""
    return 2 * halo + divisor


def package_name(name: str) -> str:
    """A name the spec accepts (5 to 128 letters, digits, ``_+- ()``): a run card's name is its
    folder ``runs/<name>/<time>``, which becomes ``<name>_<time>``."""
    name = "_".join(Path(name).parts[-2:]) if "/" in name or os.sep in name else name
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "_", name)[:128]
    return name if len(name) >= 5 else f"model_{name}"


def _input_descriptions(card: dict[str, Any], info: ModelInfo) -> dict[str, str]:
    """One line per model input (the tensor description is at most 128 characters)."""
    prior = card.get("prior") or {}
    lines = {"noisy": "noisy image in source units (e.g. HU for CT)"}
    if info.needs_prior:
        lines["prior"] = (f"{prior.get('kind', '?')} prior, noisy's shape and units: mean of {prior.get('size', '?')} "
                          f"slices around each, weights exp(-{prior.get('decay', '?')}|k-i|)"
                          + ("" if prior.get("include_self") else ", self excluded"))
    if info.needs_sigma:
        lines["sigma"] = "noise standard deviation map in normalised units (0.05 = 5 % of the range)"
    return lines


def build_rdf(model: Any, card: dict[str, Any], *, halo: int, authors: list[str], keras_version: str,
              tensorflow_version: str) -> dict[str, Any]:
    """The rdf.yaml content (a plain dict) of ``model`` with its card.

    Tensor ``t`` has its test tensor in ``test_<t>.npy`` and its sample in ``sample_<t>.tif``
    (see :func:`export_bioimageio`).

    Parameters
    ----------
    halo : int
        Voxels to crop from each side of an output tile.
    authors : list of str
        Author names.
    """
    from bioimageio.spec.model.v0_5 import ModelDescr

    from .. import zoo
    from ..models import describe

    info = describe(model)
    normalizer = zoo.normalizer(card)
    spatial = ["z", "y", "x"][3 - info.ndim:]
    names = _channel_names(info.channels)
    descriptions = _input_descriptions(card, info)

    def free(axis: str) -> dict[str, int]:
        return {"min": least_size(info.divisor, halo), "step": info.divisor}

    def like_noisy(axis: str) -> dict[str, str]:
        return {"tensor_id": "noisy", "axis_id": axis}

    def files(tensor: str) -> dict[str, dict[str, str]]:
        return {"test_tensor": {"source": f"test_{tensor}.npy"}, "sample_tensor": {"source": f"sample_{tensor}.tif"}}

    inputs = [{"id": "noisy", "description": descriptions["noisy"], "axes": _axes(info.ndim, names, free),
               **files("noisy"), "preprocessing": preprocessing(normalizer, [*spatial, "channel"])}]
    if info.needs_prior:
        inputs.append({"id": "prior", "description": descriptions["prior"], "axes": _axes(info.ndim, names, like_noisy),
                       **files("prior"),
                       "preprocessing": preprocessing(normalizer, [*spatial, "channel"], reference="noisy")})
    if info.needs_sigma:
        inputs.append({"id": "sigma", "description": descriptions["sigma"],
                       "axes": _axes(info.ndim, ["sigma"], like_noisy), **files("sigma")})
    outputs = [{"id": "denoised", "description": "denoised image (units: see the documentation)",
                "axes": _axes(info.ndim, names, like_noisy, halo), **files("denoised"),
                "postprocessing": postprocessing(normalizer)}]
    training = card.get("training") or {}
    optimizer = training.get("optimizer") or {}
    name = package_name(str(card.get("name", model.name)))
    return {
        "format_version": ModelDescr.implemented_format_version,
        "type": "model",
        "name": name,
        "description": str(card.get("summary", f"{info.name} denoising model"))[:1024],
        "authors": [{"name": a} for a in authors],
        "cite": citations(card, info.needs_sigma),
        "license": str(card.get("license", DEFAULT_LICENSE)),
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "tags": ["denoising", f"{info.ndim}d", info.name.replace("_", "-"), "resprunet", "keras", "onnx"],
        "inputs": inputs,
        "outputs": outputs,
        "weights": {
            "keras_v3": {"source": "weights.keras", "keras_version": keras_version,
                         "backend": ["tensorflow", tensorflow_version], "authors": [{"name": a} for a in authors]},
            "onnx": {"source": "weights.onnx", "opset_version": OPSET, "parent": "keras_v3",
                     "comment": "converted from weights.keras by tf2onnx"},
        },
        "config": {
            "bioimageio": {
                "task": "denoising",
                "architecture_type": info.name,
                "model_parameter_count": int(model.count_params()),
                "training": {k: v for k, v in {
                    "training_epochs": training.get("epochs"),
                    "training_batch_size": training.get("batch_size"),
                    "initial_learning_rate": optimizer.get("learning_rate"),
                    "learning_rate_schedule": optimizer.get("schedule"),
                    "loss_function": training.get("loss"),
                    "training_duration": None if training.get("seconds") is None else training["seconds"] / 3600.0,
                }.items() if v is not None},
            },
            # the whole card, keys as strings (YAML allows float keys, the spec's YAML values do not)
            "resprunet": {"card": json.loads(json.dumps(card)), "divisor": info.divisor,
                          "receptive_field": info.receptive_field, "halo": halo},
        },
    }


def _validate(rdf: dict[str, Any], root: Path) -> Any:
    """Build the description with the spec's file checks; raise :class:`ExportError` if invalid."""
    from bioimageio.spec import ValidationContext, build_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    with ValidationContext(root=root, file_name="rdf.yaml", perform_io_checks=True):
        descr = build_description(rdf)
    if not isinstance(descr, ModelDescr):
        errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in descr.validation_summary.errors)
        raise ExportError(f"the BioImage Model Zoo description of {rdf['name']!r} is not valid: {errors}")
    return descr


def _check_inputs(model: Any) -> None:
    for tensor in model.inputs:
        if tensor.name not in _SUPPORTED_INPUTS:
            raise ExportError(
                f"model {model.name!r} has input {tensor.name!r}, which the BioImage Model Zoo export does "
                f"not support (supported: {', '.join(_SUPPORTED_INPUTS)}); --format onnx exports any inputs"
            )


def export_bioimageio(model: Any, card: dict[str, Any], out: str | os.PathLike, *,
                      authors: list[str] | None = None, force: bool = False) -> Path:
    """Write a BioImage Model Zoo package of ``model``: a folder, or a ``.zip`` when ``out``
    ends in ``.zip``; atomically (nothing at ``out`` unless the package validated).

    Parameters
    ----------
    model : keras.Model
        A denoising model (inputs ``"noisy"``, optionally ``"prior"`` and ``"sigma"``).
    card : dict
        Its card (zoo ``card.yaml``, or a run's minimal card): normalisation, training data
        and licences, metrics, held-out recipe.
    out : path
        Output folder or ``.zip`` file.
    authors : list of str, optional
        Author names; default: the card's ``authors``, else :data:`DEFAULT_AUTHOR`.
    force : bool
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ExportError
        An input the export does not support, a layer ONNX cannot express (named), a missing
        optional package, or a description that does not validate.
    """
    require("bioimageio.spec")
    import keras
    import tensorflow as tf
    import tifffile
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    from data_pipelines.io.atomic import atomic_path, check_writable

    from .. import zoo
    from ..inference.tiles import model_halo
    from ..models import describe

    out = Path(out)
    check_writable(out, force)
    _check_inputs(model)
    info = describe(model)
    halo = model_halo(info.divisor, info.receptive_field)
    proto = to_onnx(model)
    case = test_case(model, card, min_size=least_size(info.divisor, halo))
    normalizer = zoo.normalizer(card)
    axis_ids = ["batch", *["z", "y", "x"][3 - info.ndim:], "channel"]
    pre = {"noisy": preprocessing(normalizer, axis_ids[1:]),
           "prior": preprocessing(normalizer, axis_ids[1:], reference="noisy"), "sigma": []}
    model_in = {name: apply(pre[name], x, axis_ids, case.inputs) for name, x in case.inputs.items()}
    normalised_out = np.asarray(model.predict_on_batch(model_in if len(model_in) > 1 else model_in["noisy"]),
                                np.float32)
    denoised = apply(postprocessing(normalizer), normalised_out, axis_ids)
    authors = authors or [str(a.get("name", a)) if isinstance(a, dict) else str(a) for a in card.get("authors") or []] \
        or [DEFAULT_AUTHOR]
    with tempfile.TemporaryDirectory(prefix="resprunet-export-") as staging_dir:
        staging = Path(staging_dir)
        model.save(staging / "weights.keras")
        (staging / "weights.onnx").write_bytes(proto.SerializeToString())
        for name, array in [*case.inputs.items(), ("denoised", denoised)]:
            np.save(staging / f"test_{name}.npy", array)
            tifffile.imwrite(staging / f"sample_{name}.tif", array[0])
        write_cover(staging / "cover.png", model_in["noisy"], normalised_out, info.ndim)
        rdf = build_rdf(model, card, halo=halo, authors=authors,
                        keras_version=keras.__version__, tensorflow_version=tf.__version__)
        text = readme(card, info, halo, _input_descriptions(card, info), rdf["outputs"][0]["postprocessing"],
                      case.source)
        (staging / "README.md").write_text(text)
        descr = _validate(rdf, staging)
        zipped = out.suffix.lower() == ".zip"
        with atomic_path(out, force=force, directory=not zipped) as tmp:
            if zipped:
                save_bioimageio_package(descr, output_path=tmp)
            else:
                save_bioimageio_package_as_folder(descr, output_path=tmp)
    return out
