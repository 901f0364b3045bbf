"""Receive the carried pieces on the device (stdlib only: runs before anything is installed).

    python kernels_bench/gpu/pieces.py receive CARRIED_DIR STAGE SITE   # verify + unpack what this call carried
    python kernels_bench/gpu/pieces.py status STAGE                     # which pieces are in

``CARRIED_DIR`` (``kernels_bench/gpu/.wheels/pieces``) holds the piece folder(s) ``pNN/`` this call
carried, each with ``manifest.json`` and xz-compressed tar units (from ``gather_wheels.py``). Every unit
is checked against its sha256, then unpacked into ``SITE`` (the Python packages; ``PYTHONPATH``) or
``STAGE/data`` (the GSM8K prompts) and recorded in ``STAGE/received.json``. Unpacking as each piece
arrives leaves no install step for the last call. Exit status 0 when every piece is in, 3 while some are
missing, 4 on a bad checksum.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path


def _state(stage: Path) -> dict:
    p = stage / "received.json"
    return json.loads(p.read_text()) if p.is_file() else {"pieces": [], "units": {}}


def missing(manifest: dict, state: dict) -> list[str]:
    """Piece folders of ``manifest`` not yet received."""
    return [p["dir"] for p in manifest["pieces"] if p["dir"] not in state["pieces"]]


def receive(carried: Path, stage: Path, site: Path) -> int:
    """Verify and unpack every piece folder under ``carried``; return the exit status (see module doc)."""
    stage.mkdir(parents=True, exist_ok=True)
    site.mkdir(parents=True, exist_ok=True)
    state = _state(stage)
    manifest = None
    for piece in sorted(carried.glob("p[0-9]*")):
        manifest = json.loads((piece / "manifest.json").read_text())
        if piece.name in state["pieces"]:  # left on the warm machine by an earlier call
            print(f"{piece.name}: already received")
            continue
        entry = next(p for p in manifest["pieces"] if p["dir"] == piece.name)
        t0 = time.time()
        for u in entry["units"]:
            f = piece / u["file"]
            if not f.is_file() or f.stat().st_size != u["bytes"] or hashlib.sha256(f.read_bytes()).hexdigest() != u["sha256"]:
                print(f"{piece.name}/{u['file']}: missing or bad checksum")
                return 4
            dest = stage / "data" if u["into"] == "data" else site
            with tarfile.open(f, "r:xz") as tf:
                tf.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(dest)
            state["units"][u["file"]] = u["sha256"]
        state["pieces"] = sorted(set(state["pieces"]) | {piece.name})
        shutil.copy(piece / "manifest.json", stage / "manifest.json")
        (stage / "received.json").write_text(json.dumps(state))
        print(f"{piece.name}: {len(entry['units'])} units, {entry['bytes'] / 2**20:.1f} MiB verified and unpacked "
              f"in {time.time() - t0:.1f} s")
    if manifest is None:
        if not (stage / "manifest.json").is_file():
            print("no piece carried and none received")
            return 3
        manifest = json.loads((stage / "manifest.json").read_text())
    left = missing(manifest, state)
    print(f"received {len(state['pieces'])}/{len(manifest['pieces'])} pieces; missing: {left or 'none'}")
    return 3 if left else 0


def main() -> None:
    """CLI (see module doc)."""
    cmd = sys.argv[1]
    if cmd == "receive":
        raise SystemExit(receive(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])))
    if cmd == "status":
        stage = Path(sys.argv[2])
        if not (stage / "manifest.json").is_file():
            print("nothing received")
            raise SystemExit(3)
        left = missing(json.loads((stage / "manifest.json").read_text()), _state(stage))
        print(f"missing: {left or 'none'}")
        raise SystemExit(3 if left else 0)
    raise SystemExit(f"unknown command {cmd!r}: use receive or status")


if __name__ == "__main__":
    main()
