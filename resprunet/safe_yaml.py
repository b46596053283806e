"""Reading YAML files from users (configs, run folders, model cards) with bounded work.

``yaml.safe_load`` constructs no Python objects, but it expands aliases: a 1 KB "billion
laughs" document (each level a list of aliases to the one before) becomes billions of nodes
once merged or copied. :func:`load_yaml` composes the document first (aliases stay shared
references, which is cheap), counts the nodes as they would be expanded, stopping at
:data:`MAX_NODES`, and only then constructs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_BYTES", "MAX_NODES", "YamlLimitError", "load_yaml"]

#: Largest file accepted, bytes (configs and cards are a few KB).
MAX_BYTES = 1 << 20
#: Largest number of nodes after alias expansion.
MAX_NODES = 100_000


class YamlLimitError(ValueError):
    """A YAML file is too large, expands too far, is empty, or is not YAML."""


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """Nodes in ``node`` with every alias expanded, counted up to ``limit`` + 1."""
    count, stack = 0, [node]
    while stack:
        current = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))
    return count


def load_yaml(path: str | Path, *, allow_empty: bool = False) -> Any:
    """Read a YAML file safely: size and alias expansion bounded, no Python tags.

    Parameters
    ----------
    path : str or Path
        The file.
    allow_empty : bool
        Return None for an empty document instead of refusing it.

    Returns
    -------
    Any
        The document (plain dicts, lists, strings, numbers).

    Raises
    ------
    YamlLimitError
        Larger than :data:`MAX_BYTES`, more than :data:`MAX_NODES` nodes once aliases are
        expanded, empty (unless ``allow_empty``), or not valid (safe) YAML; the message names
        the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise YamlLimitError(f"{path}: {size:,} bytes; a YAML config or card may hold at most {MAX_BYTES:,}")
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise YamlLimitError(f"{path}: not valid YAML: {exc}") from exc
    if node is None:
        if allow_empty:
            return None
        raise YamlLimitError(f"{path}: the file is empty; write the settings to use (an empty file is refused "
                             "rather than silently meaning 'all defaults')")
    if _expanded_size(node, MAX_NODES) > MAX_NODES:
        raise YamlLimitError(f"{path}: more than {MAX_NODES:,} YAML nodes once its aliases are expanded "
                             "(a 'billion laughs' document?); refused")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a !!python tag
        raise YamlLimitError(f"{path}: not safe YAML: {exc}") from exc
