"""The CLI: instant help, clear errors without tracebacks, example configs that validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_help_is_instant_and_imports_no_engine():
    code = "import sys, capdrift_fast.cli; assert 'vllm' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0 and "demo" in out.output and "run" in out.output and "score-file" in out.output


def test_bad_config_is_one_clear_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {path: x}\ntasks: [{benchmark: ifevl}]\n")
    out = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2
    assert "bad.yaml" in out.output and "Did you mean 'ifeval'" in out.output
    assert "Traceback" not in out.output


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path):
    cfg = load_config(path)
    assert cfg.tasks
