"""SHA-256 of every file in a folder, for the run manifest (which model and adapter files a run used)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of one file, read in ``chunk``-byte pieces (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_folder(path: str | Path) -> dict[str, str]:
    """``{relative POSIX path: hex SHA-256}`` of every regular file under ``path`` (recursively,
    symlinks followed, sorted by path). A single file gives ``{file name: hash}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if root.is_file():
        return {root.name: hash_file(root)}
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hash_file(p) for p in files}
