"""Every output file is written atomically: the package writes files only through capdrift_fast.rundir.atomic
(temporary file in the same folder, fsync, rename), so a crash never leaves a partial file under a final name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from capdrift_fast.rundir.atomic import atomic_write_text

PKG = Path(__file__).resolve().parents[1] / "capdrift_fast"
# direct writes: Path.write_text/bytes, open(..., "w"/"a"/"x"), polars/pyarrow writers on a final path
DIRECT = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wax]b?['\"]|\.write_parquet\(|\.write_ipc\(|"
                    r"\.save_pretrained\(|pa\.OSFile\(")
# allowed: the atomic writer itself; writers that receive the temporary path of atomic_write (a `tmp`
# argument); demo.py builds its assets inside a temporary folder that is renamed into place as a whole;
# distributed/data_parallel.py appends each replica's console log (a stream, not a result file)
ALLOWED_FILES = {"io/atomic.py", "demo.py", "distributed/data_parallel.py"}


def test_package_writes_only_through_atomic_write():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel in ALLOWED_FILES:
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if DIRECT.search(line) and "tmp" not in line and '"rb"' not in line:
                offenders.append(f"{rel}:{no}: {line.strip()}")
    assert offenders == []


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    from capdrift_fast.rundir.atomic import atomic_write

    def half(tmp: Path) -> None:
        tmp.write_text("partial")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
