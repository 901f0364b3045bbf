"""A Hugging Face hub cache folder built from local model/adapter folders, laid out as huggingface_hub
writes it (``models--ORG--NAME/{blobs,snapshots/COMMIT,refs/main}``), so a run can be pointed at hub ids
with ``HF_HUB_OFFLINE=1`` and ``HF_HOME`` — as a container job with a mounted model cache is."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def add_to_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> Path:
    """Put every file of ``folder`` into ``hf_home/hub`` as the snapshot of model repo ``repo_id``
    (``org/name``) on branch ``main``; returns the snapshot folder."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    commit = hashlib.sha1("".join(f.name for f in files).encode() + repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in files:
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / f.name
        if not link.exists():
            os.symlink(os.path.relpath(blob, snap), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap
