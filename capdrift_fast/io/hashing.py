"""File hashes for run metadata: the sha256 of every file of an adapter (or model) folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def hash_folder(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every regular file under ``path`` (sorted; symlinks to
    files are followed, hidden files included). A single file gives ``{name: sha256}``; a path that
    does not exist (e.g. a hub id) gives ``{}``.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return {root.name: sha256_file(root)}
    if not root.is_dir():
        return {}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in files}
