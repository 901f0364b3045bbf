"""Paths the tool writes stay inside their run (or report) folder.

Every folder or file written under a run folder is built with :func:`inside` from the folder and
validated name parts: a part is one plain path component (no separator, not ``.``/``..``, no NUL), and no
existing component between the folder and the target may be a symbolic link (a symlinked
``quarantine/``, ``lm_eval/`` or ``generations/`` would otherwise send the writes elsewhere). The resolved
result must still lie inside the resolved folder. Violations raise :class:`RunDirError` naming the path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from capdrift_fast.errors import RunDirError


def check_part(part: str, what: str = "name") -> str:
    """``part`` when it is one plain path component, else :class:`RunDirError`."""
    if not isinstance(part, str) or not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
        raise RunDirError(f"{what} {part!r} is not a plain file name (no '/', '\\', '..'); refusing to write it")
    return part


def inside(root: str | os.PathLike[str], *parts: str, what: str = "name") -> Path:
    """``root/part/...`` after checking each part (:func:`check_part`), that no existing component below
    ``root`` is a symbolic link, and that the result resolves inside ``root``.

    Raises:
        RunDirError: a bad part, a symlink on the way, or a path outside ``root`` (the message names it).
    """
    root = Path(root).resolve()
    path = root
    for part in parts:
        path = path / check_part(part, what)
        if path.is_symlink():
            raise RunDirError(f"{path} is a symbolic link; capdrift writes only inside {root}. "
                              "Replace the link by a real folder (or remove it) and run again")
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise RunDirError(f"{path} resolves outside {root}; refusing to write there")
    return path


def ensure_dir(folder: Path, what: str = "folder") -> Path:
    """Create ``folder`` (and parents) and return it resolved; a clear error when a file is in the way,
    the location is read-only or the disk is full.

    Raises:
        RunDirError: the folder cannot be created or is no folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunDirError(f"{what} {folder} is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"{what} {folder}: a file is in the way of this folder; give another path") from None
    except NotADirectoryError:
        raise RunDirError(f"{what} {folder}: a parent of this path is a file, not a folder; give another path") from None
    except OSError as exc:
        raise RunDirError(f"{what} {folder}: cannot create the folder ({os_reason(exc)})") from None
    return folder.resolve()


def os_reason(exc: OSError) -> str:
    """A short reason and what to do for an OS error while writing (disk full, read-only, permission)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device; free some space, then run the same command to resume"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded; free some space, then run the same command to resume"
    if exc.errno == errno.EROFS:
        return "read-only file system; give a writable folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; give a folder you can write to"
    return exc.strerror or str(exc)
