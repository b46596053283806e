"""The error of the exports (one class, so the command line prints it in one line)."""
from __future__ import annotations


class ExportError(ValueError):
    """A model cannot be exported: a layer or input the format cannot express, a missing
    optional package, or a package that does not validate (the message says which)."""


def require(module: str) -> None:
    """Import ``module`` or raise :class:`ExportError` saying which extra installs it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"exporting needs the package {module!r} ({exc}); install it with "
            "pip install 'resprunet[export]'"
        ) from exc
