"""Resume after a crash, on the real CPU engine: the CLI is SIGKILLed at three points (after some shards,
in the middle of writing a shard, after generation but before scoring), a finished shard is truncated
on top, and the same command then finishes the run. The result must equal an uninterrupted run's:
same request ids, same greedy tokens and responses, same matrix; nothing lost, nothing doubled.

Three subprocesses start an engine (each ~10-30 s); the last resume finds every generation on disk and
starts none. The kill points use ``CAPDRIFT_FAULT`` (see ``capdrift_fast/rundir/faults.py``), so the
test does not depend on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.demo import DEMO_ADAPTERS
from capdrift_fast.config import load_config
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
SHARD_ROWS = 4


@pytest.fixture(scope="module")
def kill_cfg(demo_cfg, tmp_path_factory) -> Path:
    """The demo engine and adapters, 4 samples per task, 8 tokens, a shard every 4 generations; the demo's four
    generation tasks plus COPA as multiple choice (log-likelihood requests)."""
    raw = json.loads(demo_cfg.model_dump_json())
    for t in raw["tasks"]:
        t.update(limit=4, max_tokens=8)
    # a multiple-choice task: log-likelihood requests mixed with the generations in the same shards
    raw["tasks"].append({"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
                         "output_type": "multiple_choice", "limit": 4})
    raw["output"] = {"shard_rows": SHARD_ROWS}
    path = tmp_path_factory.mktemp("kill") / "kill.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def capdrift_run(cfg: Path, out: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CAPDRIFT_FAULT"}
    if fault:
        env["CAPDRIFT_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "capdrift_fast", "run", str(cfg), "--out", str(out), "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def shards(out: Path) -> list[Path]:
    return sorted((out / "generations").glob("shard-*.arrow"))


def test_killed_three_times_then_resumed_equals_uninterrupted(kill_cfg, engine, hf_reference, tmp_path):
    from capdrift_fast.runner import run

    cfg = load_config(kill_cfg)
    n_plan = (1 + len(DEMO_ADAPTERS)) * 5 * 4  # models x tasks (4 generation + 1 multiple-choice) x samples
    out = tmp_path / "run"

    # 1. killed right after the 2nd shard is in place (base requests, mid-generation)
    p = capdrift_run(kill_cfg, out, "after-shards:2")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert len(shards(out)) == 2 and not (out / "matrix.parquet").exists()
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    # 2. resumed, killed while writing its 3rd shard: a half-written temporary file is left behind
    p = capdrift_run(kill_cfg, out, "in-shard-write:3")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert f"resuming run {run_id}: {2 * SHARD_ROWS} of {n_plan} generations already done" in p.stdout
    assert len(shards(out)) == 4
    tmp = list((out / "generations").glob(".shard-00004.arrow.*.tmp"))
    assert len(tmp) == 1
    # ...and a finished shard truncated on top (a non-atomic copy, a full disk)
    last = shards(out)[-1]
    last.write_bytes(last.read_bytes()[:300])

    # 3. resumed: sets the bad files aside, generates the rest, killed before scoring
    p = capdrift_run(kill_cfg, out, "before-scoring")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert f"of {n_plan} generations already done" in p.stdout
    assert f"removed partial shard {tmp[0].name}" in p.stdout
    assert f"set aside shard {last.name}: unreadable" in p.stdout
    assert not (out / "matrix.parquet").exists()
    assert read_generations(out / "generations").collect().height == n_plan

    # 4. resumed: nothing left to generate, no engine; parity guard, scores, matrix
    p = capdrift_run(kill_cfg, out, None)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "every planned generation is already on disk; no engine started" in p.stdout
    assert "Drift matrix" in p.stdout

    # the uninterrupted run of the same config, through the session engine
    ref = run(cfg, tmp_path / "ref", progress=False, engine=engine, reference=hf_reference)

    got = read_generations(out / "generations").collect().sort("request_id")
    want = read_generations(ref.run_dir / "generations").collect().sort("request_id")
    assert got.get_column("request_id").is_unique().all()
    assert got.get_column("request_id").to_list() == want.get_column("request_id").to_list()
    assert got.height == n_plan
    for col in ("output_token_ids", "response", "finish_reason", "prompt", "choice_tokens", "choice_greedy"):
        assert got.get_column(col).to_list() == want.get_column(col).to_list(), col
    # the log-likelihood records: every one once, with the uninterrupted run's per-choice log-probabilities
    ll = got.filter(pl.col("finish_reason") == "loglikelihood")
    assert ll.height == (1 + len(DEMO_ADAPTERS)) * 4 and ll.get_column("task").unique().to_list() == ["superni_task828.mc"]
    want_ll = want.filter(pl.col("finish_reason") == "loglikelihood")
    for a, b in zip(ll.get_column("choice_logprobs").to_list(), want_ll.get_column("choice_logprobs").to_list()):
        assert len(a) == len(b) == 2 and max(abs(x - y) for x, y in zip(a, b)) < 1e-4
    assert got.filter(pl.col("finish_reason") != "loglikelihood").get_column("choice_logprobs").is_null().all()
    assert got.get_column("run_id").unique().to_list() == [run_id]  # one run id across four processes

    cols = ["adapter", "task", "metric", "score", "base_score", "delta", "n", "suspect"]
    resumed_m = pl.read_parquet(out / "matrix.parquet").select(cols).sort("adapter", "task", "metric")
    ref_m = pl.read_parquet(ref.run_dir / "matrix.parquet").select(cols).sort("adapter", "task", "metric")
    assert resumed_m.equals(ref_m)
    assert not resumed_m.get_column("suspect").any()

    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["run_id"] == run_id
    sessions = man["sessions"]
    assert [s["resumed"] for s in sessions] == [False, True, True, True]
    assert [s["found_done"] for s in sessions][:2] == [0, 2 * SHARD_ROWS]
    assert sessions[2]["removed_tmp"] == [tmp[0].name] and len(sessions[2]["quarantined"]) == 1
    assert sessions[-1]["generated"] == 0
    assert len(list((out / "quarantine").iterdir())) == 1
    assert not list(out.rglob("*.tmp"))


def test_changed_config_is_refused_on_resume(kill_cfg, tmp_path):
    """The same folder with another config: a clear error naming the field, nothing touched."""
    from typer.testing import CliRunner

    from capdrift_fast.cli import app
    from capdrift_fast.rundir.resume import open_run
    from capdrift_fast.pipeline.plan import build_plan

    cfg = load_config(kill_cfg)
    open_run(tmp_path / "run", cfg, build_plan(cfg).requests)
    raw = yaml.safe_load(kill_cfg.read_text())
    raw["sampling"]["max_tokens"] = 32
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw))
    out = CliRunner().invoke(app, ["run", str(other), "--out", str(tmp_path / "run")])
    assert out.exit_code == 2
    assert "started with another config" in out.output and "field sampling.max_tokens: was 64, now 32" in out.output
    assert "Traceback" not in out.output
