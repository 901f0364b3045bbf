"""Prompt lengths are checked before any engine starts (issue #16): `capdrift validate` and
`capdrift run` name the over-long row with file:line; under `data_errors: skip` the row is left out with
file:line (the engine-side run of that case is in tests/engines/test_hardening.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def long_prompt_config(demo_cfg, data_dir: Path, tmp_path: Path, policy: str) -> tuple[Path, Path]:
    lines = (data_dir / "ifeval" / "input_data.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    rec = json.loads(lines[2])
    rec["prompt"] = "word " * 40_000  # 200k characters: far beyond the demo's max_model_len 2048
    lines[2] = json.dumps(rec)
    data = tmp_path / "ifeval_long.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = json.loads(demo_cfg.model_dump_json())
    raw["tasks"] = [{"benchmark": "ifeval", "data": str(data), "max_tokens": 8}]
    raw["data_errors"] = policy
    path = tmp_path / f"long-{policy}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, data


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "capdrift_fast", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_validate_names_the_over_long_row(demo_cfg, data_dir, tmp_path, policy):
    cfg, data = long_prompt_config(demo_cfg, data_dir, tmp_path, policy)
    p = cli("validate", str(cfg))
    level = "error" if policy == "fail" else "warning"
    assert f"{level}: data: {data}:3: prompt of task 'ifeval' is " in p.stdout, p.stdout + p.stderr
    assert "exceeds max_model_len 2048" in p.stdout
    assert p.returncode == (2 if policy == "fail" else 0), p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr


def test_run_refuses_before_the_engine_and_writes_no_run_folder(demo_cfg, data_dir, tmp_path):
    cfg, data = long_prompt_config(demo_cfg, data_dir, tmp_path, "fail")
    out = tmp_path / "run"
    t0 = time.monotonic()
    p = cli("run", str(cfg), "--out", str(out), "-q")
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.startswith(f"error: {data}:3: prompt of task 'ifeval' is "), p.stderr
    assert "Traceback" not in p.stderr and "vLLM" not in p.stdout
    assert not out.exists()  # the folder is not tied to the bad config
    assert time.monotonic() - t0 < 120
