"""Adapter preflight on real files: the demo model and adapters, and a folder of broken copies of them.
No engine starts here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from broken_adapters import build_broken
from capdrift_fast.pipeline.preflight import adapters_in_dir, check_adapter, inspect_model, preflight
from capdrift_fast.config import AdapterConfig, load_config
from capdrift_fast.demo import DEMO_ADAPTERS
from capdrift_fast.errors import PreflightError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def broken(demo_assets, tmp_path_factory) -> tuple[Path, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("broken") / "adapters"
    return root, build_broken(root, demo_assets)


@pytest.fixture(scope="module")
def base(demo_cfg):
    info, problems = inspect_model(demo_cfg.model)
    assert problems == []
    return info


def cfg_with(demo_cfg, tmp_path: Path, **changes) -> Path:
    raw = json.loads(demo_cfg.model_dump_json())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_demo_model_and_adapters_pass(demo_cfg, base):
    assert base.modules["model.layers.0.mlp.down_proj"] == (256, 512)  # (out, in) from the safetensors header
    assert base.vocab_size == 512 and base.dtype == "float32"
    report = preflight(demo_cfg)
    assert report.problems == []
    assert [c.max_rank for c in report.checks] == [a.r for a in DEMO_ADAPTERS]
    assert report.apply(demo_cfg).adapters == demo_cfg.adapters


def test_each_broken_adapter_gets_one_clear_problem(broken, base, demo_cfg):
    root, expect = broken
    adapters, folder_problems = adapters_in_dir(root)
    assert [p.subject for p in folder_problems] == ["adapter folder 'bad name!'"]
    assert expect["bad name!"] in folder_problems[0].message
    by_name = {a.name: check_adapter(a, base, demo_cfg.engine) for a in adapters}
    assert set(by_name) == {n for n in expect if n != "bad name!"}
    for name, check in by_name.items():
        if expect[name] is None:
            assert check.problems == [], (name, check.problems)
            continue
        assert len(check.problems) == 1, (name, [str(p) for p in check.problems])
        p = check.problems[0]
        assert p.level == "error" and p.adapter == name
        assert expect[name] in p.message, (name, p.message)
        assert str(p).startswith(f"error: adapter {name!r} ({root / name}): ")


def test_pickle_only_needs_allow_pickle(broken, base, demo_cfg):
    root, _ = broken
    a = AdapterConfig(name="pk", path=str(root / "pickle-only"))
    assert not check_adapter(a, base, demo_cfg.engine).ok
    allowed = check_adapter(a, base, demo_cfg.engine, allow_pickle=True)
    assert allowed.ok and allowed.max_rank == 8  # shapes read from the pickle with weights_only


def test_rank_raised_only_when_allowed(broken, demo_cfg, tmp_path):
    root, _ = broken
    big = AdapterConfig(name="big", path=str(root / "rank64"))
    report = preflight(demo_cfg, extra=[big])
    assert report.bad_adapters == ["big"] and report.max_lora_rank == 16
    raised = load_config(cfg_with(demo_cfg, tmp_path, engine={"raise_max_lora_rank": True}))
    report = preflight(raised, extra=[big])
    assert report.problems == [] and report.max_lora_rank == 64
    assert report.apply(raised).engine.max_lora_rank == 64


def test_check_base_model_can_be_waived(broken, base, demo_cfg):
    root, _ = broken
    a = AdapterConfig(name="wb", path=str(root / "wrong-base"), check_base_model=False)
    assert check_adapter(a, base, demo_cfg.engine).ok


def test_on_bad_adapter_fail_or_skip(broken, demo_cfg, tmp_path):
    root, _ = broken
    bad = {"name": "dora", "path": str(root / "dora"), "label": "x"}
    adapters = [json.loads(a.model_dump_json()) for a in demo_cfg.adapters] + [bad]
    failing = load_config(cfg_with(demo_cfg, tmp_path, adapters=adapters))
    with pytest.raises(PreflightError) as exc:
        preflight(failing).apply(failing)
    assert "adapter 'dora'" in str(exc.value) and "DoRA" in str(exc.value)
    assert "on_bad_adapter: skip" in str(exc.value)
    skipping = load_config(cfg_with(demo_cfg, tmp_path, adapters=adapters, on_bad_adapter="skip"))
    report = preflight(skipping)
    assert report.bad_adapters == ["dora"]
    assert [a.name for a in report.apply(skipping).adapters] == [a.name for a in demo_cfg.adapters]


def test_run_stops_before_any_engine(broken, demo_cfg, tmp_path):
    from capdrift_fast.runner import run

    root, _ = broken
    adapters = [json.loads(a.model_dump_json()) for a in demo_cfg.adapters]
    cfg = load_config(cfg_with(demo_cfg, tmp_path, adapters=adapters + [{"name": "t", "path": str(root / "truncated")}]))
    with pytest.raises(PreflightError, match="adapter 't'"):
        run(cfg, tmp_path / "out", progress=False)  # no engine given: one would be started after the preflight
    assert not (tmp_path / "out").exists()


def test_validate_cli_on_a_folder_of_broken_adapters(broken, demo_cfg, tmp_path):
    """`capdrift validate CONFIG --adapters-dir DIR`: one line per problem, exit 2, and neither vLLM nor
    torch is imported (so no engine can have started)."""
    root, expect = broken
    cfg = cfg_with(demo_cfg, tmp_path)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from capdrift_fast.cli import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(cfg)!r}, '--adapters-dir', {str(root)!r}, '--no-data'])\n"
        "print(r.output)\n"
        "print('EXIT', r.exit_code, 'vllm' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "EXIT 2 False False" in out
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    broken_names = [n for n, needle in expect.items() if needle is not None]
    assert len(lines) == len(broken_names)
    for name in broken_names:
        mine = [line for line in lines if f"{name!r}" in line]
        assert len(mine) == 1 and expect[name] in mine[0], (name, mine)
    assert not any("embed-lm-head" in line for line in lines)
    n_ok = len(DEMO_ADAPTERS) + 1  # the demo adapters + embed-lm-head; 'bad name!' is no adapter
    assert f"adapters: {n_ok} of {n_ok + len(broken_names) - 1} OK" in out
    assert "Traceback" not in out


def test_validate_cli_ok_config(demo_cfg, tmp_path):
    from typer.testing import CliRunner

    from capdrift_fast.cli import app

    out = CliRunner().invoke(app, ["validate", str(cfg_with(demo_cfg, tmp_path))])
    assert out.exit_code == 0, out.output
    n = len(DEMO_ADAPTERS)
    assert f"adapters: {n} of {n} OK" in out.output and "OK: ready to run." in out.output
