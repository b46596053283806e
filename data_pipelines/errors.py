"""Exceptions raised by :mod:`data_pipelines`.

Every message names the file, shape or value that is wrong and what was expected.
All derive from :class:`DataPipelineError`, and from the matching built-in
(``ValueError``, ``FileNotFoundError``, ...) so that generic handlers still work.
"""
from __future__ import annotations


class DataPipelineError(Exception):
    """Base class of every error raised by data_pipelines."""


class VolumeReadError(DataPipelineError, ValueError):
    """A file or folder could not be read as a volume (corrupt, truncated, empty, ambiguous)."""


class UnsupportedFormatError(VolumeReadError):
    """The file suffix names no supported format."""


class VolumeWriteError(DataPipelineError, ValueError):
    """A volume could not be written (bad array, missing metadata, unsupported dtype)."""


class OutputExistsError(DataPipelineError, FileExistsError):
    """The output path exists and ``force`` was not given."""


class InvalidDataError(DataPipelineError, ValueError):
    """Array content is unusable: NaN/Inf voxels, wrong dimensionality, empty."""


class ShapeMismatchError(DataPipelineError, ValueError):
    """Two arrays that must have the same shape (image and prior, noisy and clean) do not."""


class PatchSizeError(DataPipelineError, ValueError):
    """The requested patch is larger than a volume along an axis."""
