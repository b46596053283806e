"""Rebuild the embedded sample files from the packages that ship the originals.

Run once by a maintainer (``python -m data_pipelines.samples.build_samples``); the library
itself only reads the committed files. Needs nilearn, nibabel, pydicom and pydicom-data.
See README.md in this folder for provenance and licences.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).parent
MNI_FILE = "mni152_t1_2mm.nii.gz"
EPI_FILE = "example4d_epi.nii.gz"
CT_FILE = "ct_slices.npz"
T1_HEAD_FILE = "t1_head_2mm.nii.gz"
CT_SOURCES = ("CT_small.dcm", "eCT_Supplemental.dcm")
CT_SIZE = 128


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor``-wide blocks along every axis (edges cropped)."""
    shape = [s // factor for s in array.shape]
    cropped = array[tuple(slice(0, s * factor) for s in shape)].astype(np.float64)
    blocks = cropped.reshape([v for s in shape for v in (s, factor)])
    return blocks.mean(axis=tuple(range(1, 2 * len(shape), 2)))


def _crop_window(mask_axis: np.ndarray, multiple: int) -> tuple[int, int]:
    """Start/stop of a window holding every True entry, length rounded up to ``multiple``."""
    idx = np.flatnonzero(mask_axis)
    length = -(-(idx[-1] - idx[0] + 1) // multiple) * multiple
    centre_start = idx[0] - (length - (idx[-1] - idx[0] + 1)) // 2
    start = int(np.clip(centre_start, 0, mask_axis.size - length))
    return start, start + length


def build_mni(target: Path) -> tuple[int, ...]:
    """MNI152 2009a T1 (1 mm, nilearn) -> 2 mm block mean cropped to the brain, uint8 NIfTI."""
    import nilearn.datasets

    source = Path(nilearn.datasets.__file__).parent / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    image = nib.load(str(source))
    small = block_mean(np.asarray(image.dataobj), 2)
    mask = small > 1.0
    windows = [_crop_window(mask.any(axis=tuple(a for a in range(3) if a != axis)), 8) for axis in range(3)]
    data = np.rint(small[tuple(slice(a, b) for a, b in windows)]).astype(np.uint8)
    step = np.diag([2.0, 2.0, 2.0, 1.0])
    step[:3, 3] = [2 * a + 0.5 for a, _ in windows]
    affine = image.affine @ step
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    out.set_sform(affine, code=int(image.header["sform_code"]) or 4)
    out.set_qform(affine, code=int(image.header["sform_code"]) or 4)
    out.to_filename(str(target))
    return data.shape


def build_ct(target: Path) -> tuple[int, ...]:
    """Real CT slices from pydicom / pydicom-data, in HU, block-mean reduced to 128 x 128."""
    from pydicom.data import get_testdata_file

    from ..io import read_volume

    planes, subjects, spacings = [], [], []
    for subject, name in enumerate(CT_SOURCES):
        volume = read_volume(get_testdata_file(name))
        factor = volume.shape[1] // CT_SIZE
        for plane in volume.array:
            planes.append(block_mean(plane, factor) if factor > 1 else plane)
            subjects.append(subject)
            spacings.append([volume.spacing[1] * factor, volume.spacing[2] * factor])
    data = np.rint(np.stack(planes)).astype(np.int16)
    np.savez_compressed(target, data=data, subject=np.asarray(subjects, dtype=np.int64),
                        pixel_spacing=np.asarray(spacings, dtype=np.float64),
                        source=np.asarray(CT_SOURCES))
    return data.shape


def build_epi(target: Path) -> tuple[int, ...]:
    """nibabel's example4d.nii.gz, copied unchanged."""
    source = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    shutil.copyfile(source, target)
    return nib.load(str(target)).shape


def build_t1_head(target: Path) -> tuple[int, ...]:
    """nibabel's anatomical.nii (a T1 head, 2 mm), gzip-compressed, data and header unchanged."""
    source = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    nib.save(nib.load(str(source)), str(target))
    return nib.load(str(target)).shape


def main() -> None:
    builders = ((build_mni, MNI_FILE), (build_epi, EPI_FILE), (build_ct, CT_FILE), (build_t1_head, T1_HEAD_FILE))
    for builder, name in builders:
        shape = builder(HERE / name)
        print(f"{name}: shape {shape}, {(HERE / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
