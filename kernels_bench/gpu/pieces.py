"""Check and join the wheel pieces on the device (stdlib only: runs before anything is installed).

    python kernels_bench/gpu/pieces.py check STAGE_DIR       # which pieces arrived, each sha256-verified
    python kernels_bench/gpu/pieces.py join STAGE_DIR OUT.tar  # all pieces -> one tar, whole sha256 verified

``STAGE_DIR`` holds ``manifest.json`` (from ``gather_wheels.py``) and the pieces ``wheels.tar.NNN``.
Exit status 0 when complete (check) or joined (join); 3 when pieces are missing; 4 on a bad checksum.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def status(stage: Path) -> tuple[list[str], list[str], list[str]]:
    """(present and verified, missing, corrupt) piece file names."""
    manifest = json.loads((stage / "manifest.json").read_text())
    ok, missing, bad = [], [], []
    for p in manifest["pieces"]:
        f = stage / p["file"]
        if not f.is_file():
            missing.append(p["file"])
        elif f.stat().st_size != p["bytes"] or hashlib.sha256(f.read_bytes()).hexdigest() != p["sha256"]:
            bad.append(p["file"])
        else:
            ok.append(p["file"])
    return ok, missing, bad


def join(stage: Path, out: Path) -> None:
    """Concatenate the pieces in order into ``out``; verify the whole tar's sha256.

    Raises:
        SystemExit: pieces missing (3) or checksum mismatch (4).
    """
    manifest = json.loads((stage / "manifest.json").read_text())
    ok, missing, bad = status(stage)
    if missing or bad:
        print(f"cannot join: missing {missing}, corrupt {bad}")
        raise SystemExit(3 if missing else 4)
    whole = hashlib.sha256()
    with out.open("wb") as f:
        for p in manifest["pieces"]:
            data = (stage / p["file"]).read_bytes()
            whole.update(data)
            f.write(data)
    if whole.hexdigest() != manifest["tar_sha256"]:
        print("joined tar has the wrong sha256")
        raise SystemExit(4)
    print(f"joined {len(manifest['pieces'])} pieces into {out} ({out.stat().st_size / 2**20:.0f} MiB), sha256 ok")


def main() -> None:
    """CLI (see module doc)."""
    cmd, stage = sys.argv[1], Path(sys.argv[2])
    if cmd == "check":
        ok, missing, bad = status(stage)
        print(f"{len(ok)} piece(s) ok; missing: {missing or 'none'}; corrupt: {bad or 'none'}")
        raise SystemExit(0 if not missing and not bad else (4 if bad else 3))
    if cmd == "join":
        join(stage, Path(sys.argv[3]))
        return
    raise SystemExit(f"unknown command {cmd!r}: use check or join")


if __name__ == "__main__":
    main()
