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


def changed_files(before: dict, now: dict) -> tuple[str | None, list[str]] | None:
    """Compare two ``files`` records of run manifests (``{"model": {"sha256": {...}}, "adapters": {name:
    {"sha256": {...}}}}``): the first model (``None``) or adapter name whose file hashes differ, with
    the differing file names (sorted); ``None`` when nothing differs. A side without hashes (a hub id,
    an adapter only one side serves) is not compared."""
    def sha(record: dict | None) -> dict:
        return (record or {}).get("sha256") or {}

    pairs: list[tuple[str | None, dict, dict]] = [(None, sha(before.get("model")), sha(now.get("model")))]
    old_adapters, new_adapters = before.get("adapters") or {}, now.get("adapters") or {}
    pairs += [(name, sha(old_adapters.get(name)), sha(new_adapters.get(name)))
              for name in sorted(set(old_adapters) | set(new_adapters))]
    for name, a, b in pairs:
        if a and b and a != b:
            return name, sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return None
