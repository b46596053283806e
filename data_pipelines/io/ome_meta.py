"""OME-NGFF ``multiscales`` metadata: read axes and voxel sizes, build them for writing.

Plain-JSON helpers (no Zarr import), for versions 0.3 to 0.5 of the specification:
0.4 keeps ``multiscales`` in the group's attributes, 0.5 under ``attributes["ome"]``; 0.3 has
axis names but no ``coordinateTransformations`` (no voxel size). A dataset's voxel size is its
``scale`` transformation times the multiscale's global ``scale`` (when present), in the unit of
each axis (``"micrometer"``, ``"millimeter"``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AXIS_TYPES", "Multiscale", "find_multiscales", "parse_multiscales", "short_unit", "ngff_unit",
]

#: Axis type by the conventional OME-NGFF axis name.
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}

# our short unit names (``meta["spacing_unit"]``) <-> OME-NGFF unit names
_SHORT = {"millimeter": "mm", "micrometer": "um", "nanometer": "nm", "centimeter": "cm",
          "meter": "m", "angstrom": "A", "picometer": "pm"}
_LONG = {short: long for long, short in _SHORT.items()}
_LONG.update({"µm": "micrometer", "μm": "micrometer", "micron": "micrometer", "microns": "micrometer"})


def short_unit(unit: str | None) -> str | None:
    """``"micrometer"`` -> ``"um"``, ``"millimeter"`` -> ``"mm"``; other names unchanged; None stays None."""
    return None if unit is None else _SHORT.get(unit, unit)


def ngff_unit(unit: str | None) -> str | None:
    """The OME-NGFF name of a spacing unit (``"mm"`` -> ``"millimeter"``), or None when unknown.

    Names already in OME-NGFF form (``"micrometer"``) are returned unchanged.
    """
    if unit is None:
        return None
    if unit in _SHORT:
        return unit
    return _LONG.get(unit)


@dataclass(frozen=True)
class Multiscale:
    """One OME-NGFF multiscale image, as read from a group's attributes.

    Attributes
    ----------
    version : str or None
        OME-NGFF version (``"0.4"``, ``"0.5"``), None when not stated.
    axes : tuple of str
        Axis names in storage order, e.g. ``("c", "z", "y", "x")``.
    units : tuple of (str or None)
        Unit of each axis (OME-NGFF names), None where absent.
    paths : tuple of str
        Array path of each resolution level, finest (level 0) first.
    scales : tuple of (tuple of float or None)
        Voxel size of each level along every axis (in ``units``), None where the metadata has
        no ``scale`` (version 0.3).
    name : str or None
        The image's name.
    """

    version: str | None
    axes: tuple[str, ...]
    units: tuple[str | None, ...]
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...] | None, ...]
    name: str | None = None


def find_multiscales(attrs: dict[str, Any]) -> tuple[list[Any] | None, str | None]:
    """(the ``multiscales`` list, the group-level version) from a group's attributes, or (None, None)."""
    ome = attrs.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"], ome.get("version")
    if "multiscales" in attrs:
        return attrs["multiscales"], None
    return None, None


def _scale(transforms: Any, ndim: int) -> list[float] | None:
    """The ``scale`` of a list of coordinate transformations (the product when there are several)."""
    result = None
    for transform in transforms or []:
        if isinstance(transform, dict) and transform.get("type") == "scale" and "scale" in transform:
            values = [float(v) for v in transform["scale"]]
            if len(values) != ndim:
                raise ValueError(f"a scale of {len(values)} values for {ndim} axes")
            result = values if result is None else [a * b for a, b in zip(result, values)]
    return result


def parse_multiscales(attrs: dict[str, Any], source: str) -> Multiscale | None:
    """Read the first multiscale image of a group's attributes.

    Parameters
    ----------
    attrs : dict
        The group's attributes (``zarr.Group.attrs``).
    source : str
        Store name for error messages.

    Returns
    -------
    Multiscale or None
        None when the attributes hold no OME-NGFF ``multiscales``.

    Raises
    ------
    ValueError
        The metadata is malformed (no datasets, axes of the wrong length, a scale of the wrong
        length); the message names ``source``.
    """
    found, group_version = find_multiscales(attrs)
    if found is None:
        return None
    try:
        first = found[0]
        datasets = first["datasets"]
        if not datasets:
            raise ValueError("no datasets")
        raw_axes = first.get("axes")
        if raw_axes is None:  # 0.1/0.2: 5D (t, c, z, y, x) by definition
            raw_axes = ["t", "c", "z", "y", "x"]
        axes = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in raw_axes)
        units = tuple((a.get("unit") if isinstance(a, dict) else None) for a in raw_axes)
        global_scale = _scale(first.get("coordinateTransformations"), len(axes))
        scales = []
        for dataset in datasets:
            scale = _scale(dataset.get("coordinateTransformations"), len(axes))
            if scale is not None and global_scale is not None:
                scale = [a * b for a, b in zip(scale, global_scale)]
            scales.append(tuple(scale) if scale is not None else None)
        return Multiscale(
            version=str(first.get("version") or group_version) if (first.get("version") or group_version) else None,
            axes=axes, units=units, paths=tuple(str(d["path"]) for d in datasets),
            scales=tuple(scales), name=first.get("name"),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: malformed OME-NGFF multiscales metadata ({exc})") from exc
