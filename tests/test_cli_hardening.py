"""Bad input gets one line and exit 2, never a traceback (issue #16): `--out` a file, a read-only `--out`,
a non-UTF-8 config, adapter names `base` in any case and names differing only in case, unbounded labels.
(A merge into a folder in use: tests/integration/test_sharded_merge.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.config import MAX_LABEL, load_config
from capdrift_fast.errors import ConfigError


def write_cfg(demo_cfg, path: Path, **changes) -> Path:
    raw = json.loads(demo_cfg.model_dump_json())
    for t in raw["tasks"]:
        t.update(limit=2, max_tokens=4)
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw))
    return path


def invoke(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit), res.output
    return res


def test_out_is_a_file(demo_cfg, tmp_path):
    cfg = write_cfg(demo_cfg, tmp_path / "c.yaml")
    target = tmp_path / "file"
    target.write_text("x")
    res = invoke("run", str(cfg), "--out", str(target))
    assert res.exit_code == 2
    assert res.output.strip() == f"error: --out {target} is a file, not a folder; give a folder path"
    assert target.read_text() == "x"


@pytest.fixture
def read_only_dir():
    """A read-only folder: a read-only tmpfs when running as root (root ignores permissions), else a 0555
    folder."""
    if os.geteuid() != 0:
        with tempfile.TemporaryDirectory() as d:
            ro = Path(d) / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            yield ro, "permission denied"
            ro.chmod(0o755)
        return
    d = Path(tempfile.mkdtemp(prefix="capdrift-ro-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)], capture_output=True).returncode:
        d.rmdir()
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    try:
        yield d, "read-only file system"
    finally:
        subprocess.run(["umount", str(d)], check=False)
        d.rmdir()


def test_read_only_out(demo_cfg, tmp_path, read_only_dir):
    ro, reason = read_only_dir
    cfg = write_cfg(demo_cfg, tmp_path / "c.yaml")
    for out in (ro, ro / "new-run"):
        res = invoke("run", str(cfg), "--out", str(out))
        assert res.exit_code == 2, res.output
        assert res.output.startswith(f"error: --out {out}: cannot ") and len(res.output.strip().splitlines()) == 1, res.output
        assert reason in res.output.lower(), res.output


def test_non_utf8_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"run_name: x\nmodel:\n  path: caf\xe9\n")
    res = invoke("validate", str(path))
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {path}:3: not UTF-8 text (byte 0xe9"), res.output


@pytest.mark.parametrize("name", ["base", "BASE", "Base", "bAsE"])
def test_base_in_any_case_is_reserved(demo_cfg, tmp_path, name):
    raw = json.loads(demo_cfg.model_dump_json())
    raw["adapters"][0]["name"] = name
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"field adapters\.0\.name: .*'base' \(in any case\) is reserved"):
        load_config(path)


def test_names_differing_in_case_and_trailing_newline_refused(demo_cfg, tmp_path):
    raw = json.loads(demo_cfg.model_dump_json())
    raw["adapters"][1]["name"] = raw["adapters"][0]["name"].upper()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="unique, ignoring case"):
        load_config(path)
    raw = json.loads(demo_cfg.model_dump_json())
    raw["adapters"][0]["name"] = "ok-name\n"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="field adapters.0.name"):
        load_config(path)


def test_huge_label_refused_quickly(demo_cfg, tmp_path):
    raw = json.loads(demo_cfg.model_dump_json())
    raw["adapters"][0]["label"] = "x" * 10_000_000
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, width=1 << 30))
    t0 = time.monotonic()
    res = invoke("validate", str(path), "--no-data")
    assert res.exit_code == 2
    assert "field adapters.0.label" in res.output and f"at most {MAX_LABEL} characters" in res.output
    assert time.monotonic() - t0 < 30
    raw["adapters"][0]["label"] = "y" * MAX_LABEL
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).adapters[0].label == "y" * MAX_LABEL

