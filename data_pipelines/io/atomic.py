"""Atomic output: write to a temporary sibling, then rename it onto the target.

Every writer in :mod:`data_pipelines.io` (and the CLI, tiled inference, ...) writes through
:func:`atomic_path`, so a failure part-way never leaves a half-written file or folder, and
an existing output is never replaced without ``force``.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExistsError, VolumeWriteError

__all__ = ["atomic_path", "check_writable", "remove_stale_temporaries"]

_TMP_PREFIX = ".tmp-"


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Check that ``path`` may be written, without writing anything.

    Parameters
    ----------
    path : str or os.PathLike
        Output file or folder.
    force : bool
        Allow replacing an existing output.

    Returns
    -------
    pathlib.Path
        ``path`` as a Path.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False.
    VolumeWriteError
        The parent folder does not exist or cannot be written in (a file is created there
        and removed again to find out).
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: output exists; use --force to replace it (force=True in Python)")
    if not path.parent.is_dir():
        raise VolumeWriteError(f"{path}: parent folder {path.parent} does not exist")
    probe = path.parent / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-probe"
    try:  # permissions, read-only mounts, quotas: try what the writer will do
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise VolumeWriteError(
            f"{path}: cannot write in folder {path.parent} ({exc.strerror or exc})"
        ) from exc
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.tmp-<pid>-...`` files and folders of this tool whose process no longer runs.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder to sweep (only its direct entries named by :func:`atomic_path`).

    Returns
    -------
    list of Path
        What was removed.
    """
    removed = []
    for entry in Path(folder).glob(f"{_TMP_PREFIX}*-*"):
        pid = entry.name[len(_TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _remove(entry)
            removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(
    path: str | os.PathLike, force: bool = False, directory: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name is ``.tmp-<pid>-<random>-<name>`` in the same folder, so it keeps the
    target's suffixes (``.nii.gz``, ``.npz``) that format libraries look at, and the final
    :func:`os.replace` is a same-filesystem rename. If the body raises (``KeyboardInterrupt``
    included; the CLI turns SIGTERM into one), the temporary file or folder is removed and the
    exception propagates; the target is left untouched. A process killed outright (SIGKILL)
    cannot clean up: the next :func:`atomic_path` in that folder removes the temporaries of
    processes that no longer run (:func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : str or os.PathLike
        Final output file or folder.
    force : bool
        Replace an existing ``path`` (a folder is replaced as a whole).
    directory : bool
        Create the temporary path as an empty folder (for one-file-per-slice outputs).

    Yields
    ------
    pathlib.Path
        Temporary path to write to.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False (checked before and again after writing).
    VolumeWriteError
        The parent folder does not exist, or the body wrote nothing at the temporary path.

    Examples
    --------
    >>> with atomic_path("out.npy") as tmp:          # doctest: +SKIP
    ...     np.save(tmp, array)
    """
    final = check_writable(path, force)
    remove_stale_temporaries(final.parent)
    tmp = final.parent / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if not tmp.exists():
            raise VolumeWriteError(f"{final}: the writer produced no output at {tmp}")
        _commit(tmp, final, force)
    except BaseException:
        _remove(tmp)
        raise


def _commit(tmp: Path, final: Path, force: bool) -> None:
    """Rename ``tmp`` onto ``final``; an existing folder is moved aside first."""
    if final.exists() and not force:
        raise OutputExistsError(
            f"{final}: output appeared while writing; use --force to replace it (force=True in Python)"
        )
    if final.is_dir() and not final.is_symlink():
        aside = final.parent / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-old-{final.name}"
        os.replace(final, aside)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(aside, final)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        if tmp.is_dir() and final.exists():
            final.unlink()
        os.replace(tmp, final)
