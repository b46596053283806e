"""Small real volumes shipped with the package: ``sample(name)`` and ``list_samples()``.

The files live next to this module and are read from here (never from nilearn, nibabel or
pydicom at run time). Provenance, processing and licences: README.md in this folder; the
files are rebuilt with :mod:`data_pipelines.samples.build_samples`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataPipelineError
from ..io.nifti import read_nifti
from ..volume import Volume

__all__ = ["UnknownSampleError", "list_samples", "sample", "sample_path"]

_HERE = Path(__file__).parent
_FILES = {
    "mni152_t1": "mni152_t1_2mm.nii.gz",
    "epi": "example4d_epi.nii.gz",
    "epi_4d": "example4d_epi.nii.gz",
    "ct_slices": "ct_slices.npz",
    "t1_head": "t1_head_2mm.nii.gz",
}
_DESCRIPTIONS = {
    "mni152_t1": "MNI152 2009a symmetric T1 brain template (nilearn), 2 mm, (z, y, x) = (80, 96, 80) "
                 "uint8 intensities; default 3D training volume",
    "epi": "real EPI head volume (nibabel example4d, frame 0), (z, y, x) = (24, 96, 128), "
           "2.2 x 2 x 2 mm, int16 scanner units; default 3D test volume (never trained on or used for selection)",
    "epi_4d": "the same EPI with both time frames as channels, (24, 96, 128, 2), for the temporal-mean prior",
    "t1_head": "real T1-weighted MR head (nibabel anatomical.nii, another subject), (z, y, x) = (25, 41, 33), "
               "2 mm, int16; default 3D validation volume",
    "ct_slices": "3 real 2D CT slices in HU, (3, 128, 128), from 2 subjects (meta['subject'] = [0, 1, 1]): "
                 "NEMA CT1 spine (pydicom) and a NEMA enhanced-CT head perfusion map (pydicom-data)",
}


class UnknownSampleError(DataPipelineError, LookupError):
    """No embedded sample has the requested name."""


def list_samples() -> dict[str, str]:
    """Names of the embedded samples mapped to a one-line description."""
    return dict(_DESCRIPTIONS)


def sample_path(name: str) -> Path:
    """Path of the file that holds sample ``name`` (several samples may share one file)."""
    if name not in _FILES:
        raise UnknownSampleError(f"no sample {name!r}; available: {', '.join(_FILES)}")
    return _HERE / _FILES[name]


def _ct_slices(path: Path) -> Volume:
    with np.load(path, allow_pickle=False) as archive:
        data, subject = archive["data"], archive["subject"]
        meta = {
            "format": "npz",
            "dtype": data.dtype.name,
            "key": "data",
            "subject": subject.astype(np.int64),
            "pixel_spacing": archive["pixel_spacing"],
            "subject_sources": [str(s) for s in archive["source"]],
        }
    return Volume(data.astype(np.float32), spacing=None, meta=meta, source=str(path))


def sample(name: str) -> Volume:
    """Load an embedded sample volume.

    Parameters
    ----------
    name : str
        One of :func:`list_samples`: ``"mni152_t1"`` (3D training volume), ``"t1_head"``
        (3D validation volume), ``"epi"`` (3D test volume), ``"epi_4d"`` (two EPI frames as
        channels), ``"ct_slices"`` (2D CT slices in HU).

    Returns
    -------
    Volume
        ``mni152_t1``: (80, 96, 80), spacing (2, 2, 2) mm. ``epi``: (24, 96, 128),
        spacing (2.2, 2, 2) mm. ``t1_head``: (25, 41, 33), spacing (2, 2, 2) mm. ``epi_4d``: (24, 96, 128, 2). ``ct_slices``: (3, 128, 128)
        in HU with ``spacing`` None (the slices are not contiguous), ``meta["subject"]``
        (int array, one entry per slice: which scan it comes from) and
        ``meta["pixel_spacing"]`` ((n, 2) mm).

    Raises
    ------
    UnknownSampleError
        ``name`` is not a sample (the message lists them).
    """
    path = sample_path(name)
    if name == "ct_slices":
        return _ct_slices(path)
    volume = read_nifti(path)
    if name == "epi":
        return Volume(volume.array[..., 0], spacing=volume.spacing, meta=dict(volume.meta), source=volume.source)
    return volume
