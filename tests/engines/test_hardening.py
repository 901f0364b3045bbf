"""Hardening (issue #16) on the real CPU engine: one writer per run folder, SIGTERM, a full disk, writes
only inside the run folder, labels as plain text, a failing report that does not fail the run, a label
changed on resume, and the generation time summed over sessions.

Process-level behaviour (lock, signals, exit codes, messages) runs ``capdrift run`` in subprocesses;
folder-level behaviour reuses the session's engine and finished demo run (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.demo import DEMO_ADAPTERS
from capdrift_fast.config import load_config
from capdrift_fast.errors import RunDirError, RunFolderError
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 3
N_PLAN = (1 + len(DEMO_ADAPTERS)) * 4 * LIMIT  # models x tasks x samples


@pytest.fixture(scope="module")
def small_cfg(demo_cfg, tmp_path_factory) -> Path:
    """The demo model and adapters, 3 samples per task, 8 tokens, one shard every 1000 rows / hour (so
    only the end of the run, or an interruption, flushes); no parity guard."""
    raw = json.loads(demo_cfg.model_dump_json())
    for t in raw["tasks"]:
        t.update(limit=LIMIT, max_tokens=8)
    raw["output"] = {"shard_rows": 1000, "shard_seconds": 3600}
    raw["parity"] = {"enabled": False}  # checked elsewhere; each subprocess would load transformers+peft
    path = tmp_path_factory.mktemp("hard") / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def start(cfg: Path, out: Path, fault: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CAPDRIFT_FAULT"}
    if fault:
        env["CAPDRIFT_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "capdrift_fast", "run", str(cfg), "--out", str(out), "-q"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=900)
    return p.returncode, out, err


def capdrift(cfg: Path, out: Path, fault: str | None = None) -> tuple[int, str, str]:
    return finish(start(cfg, out, fault))


def generations(out: Path) -> pl.DataFrame:
    return read_generations(out / "generations").collect()


def assert_exact(out: Path) -> None:
    """Every planned request exactly once."""
    g = generations(out)
    assert g.height == N_PLAN and g.get_column("request_id").is_unique().all()
    assert pl.read_parquet(out / "scores.parquet").height == N_PLAN


def test_two_runs_on_one_folder_second_refused_first_exact_then_sigkill_resumes_at_once(small_cfg, tmp_path):
    out = tmp_path / "run"
    a, b = start(small_cfg, out), start(small_cfg, out)
    (ca, oa, ea), (cb, ob, eb) = finish(a), finish(b)
    codes = sorted([ca, cb])
    assert codes == [0, 2], (ea[-1500:], eb[-1500:])
    loser_err, loser_pid, winner_pid = (eb, b.pid, a.pid) if cb == 2 else (ea, a.pid, b.pid)
    assert "is in use by another capdrift process" in loser_err, loser_err
    assert f"pid {winner_pid} on host " in loser_err and "`capdrift run`" in loser_err and "started " in loser_err
    assert "Traceback" not in loser_err and len(loser_err.strip().splitlines()) == 1
    assert_exact(out)

    # a run SIGKILLed while holding the lock (after its first shard) is resumed at once: no stale lock
    out2 = tmp_path / "killed"
    cfg = yaml.safe_load(small_cfg.read_text())
    cfg["output"] = {"shard_rows": 8}
    killcfg = tmp_path / "kill.yaml"
    killcfg.write_text(yaml.safe_dump(cfg))
    code, _, err = capdrift(killcfg, out2, "after-shards:2")
    assert code == -signal.SIGKILL, err[-1500:]
    assert json.loads((out2 / ".capdrift.lock").read_text())["pid"] > 0  # the dead holder's note stays...
    code, stdout, err = capdrift(killcfg, out2)  # ...but the kernel freed its lock
    assert code == 0, err[-1500:]
    assert "resuming run" in stdout and "in use" not in err
    assert_exact(out2)
    # the killed session's generation time (recorded after each shard) counts in the total
    man = json.loads((out2 / "manifest.json").read_text())
    assert man["sessions"][0]["generation_s"] > 0
    code, stdout, _ = capdrift(killcfg, out2)  # a third session generates nothing
    assert code == 0 and "no engine started" in stdout
    man = json.loads((out2 / "manifest.json").read_text())
    total = sum(s.get("generation_s") or 0 for s in man["sessions"])
    assert man["generation_s"] == pytest.approx(total, abs=0.01) and man["generation_s"] > 0
    assert man["output_tokens_per_s"] is not None and man["output_tokens_per_s"] > 0


def test_sigterm_flushes_buffered_generations_and_exits_143(small_cfg, tmp_path):
    out = tmp_path / "run"
    k = 10
    code, stdout, err = capdrift(small_cfg, out, f"sigterm-after:{k}")  # a real SIGTERM to itself after 10 rows
    assert code == 143, err[-2000:]
    assert "terminated (SIGTERM); finished generations are saved in" in err and "Traceback" not in err
    assert generations(out).height == k  # the whole buffer (shard_rows 1000) was flushed, not lost
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "running" and man["sessions"][0]["generated"] == k
    code, stdout, err = capdrift(small_cfg, out)
    assert code == 0, err[-2000:]
    assert f"{k} of {N_PLAN} generations already done" in stdout
    assert_exact(out)


def test_full_disk_during_generation_and_scoring_one_line_then_exact_resume(small_cfg, tmp_path):
    cfg = yaml.safe_load(small_cfg.read_text())
    cfg["output"] = {"shard_rows": 8}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    code, _, err = capdrift(path, out, "enospc-shard:2")
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if "error" in line.lower()]  # vLLM logs its start on stderr too
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("error: ") and "no space left on the device; free some space, then run the same " \
        "command to resume" in lines[0] and str(out) in lines[0]
    assert generations(out).height == 8  # the first shard is kept
    assert not list(out.rglob("*.tmp"))
    code, _, err = capdrift(path, out, "enospc-scoring")  # resumes generation, then the disk is full at scoring
    assert code == 2 and "scores.parquet: no space left on the device" in err and "Traceback" not in err
    assert not (out / "scores.parquet").exists() and generations(out).height == N_PLAN
    code, stdout, err = capdrift(path, out)
    assert code == 0 and "no engine started" in stdout, err[-2000:]
    assert_exact(out)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".capdrift.lock"))
    return dst


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("model", ["../../../escaped", "/tmp/capdrift-escaped-abs", "not-in-config"])
def test_crafted_scores_parquet_writes_nothing_outside(demo_run, tmp_path, model):
    from typer.testing import CliRunner

    from capdrift_fast.cli import app

    run_dir = _copy(demo_run.run_dir, tmp_path / "a" / "b" / "c" / "run")
    shutil.rmtree(run_dir / "lm_eval")
    s = pl.read_parquet(run_dir / "scores.parquet")
    first = s.get_column("adapter").unique(maintain_order=True).to_list()[1]
    s.with_columns(adapter=pl.when(pl.col("adapter") == first).then(pl.lit(model)).otherwise(pl.col("adapter"))
                   ).write_parquet(run_dir / "scores.parquet")
    before = _listing(tmp_path)
    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 2, res.output
    assert "scores.parquet names model" in res.output and "neither 'base' nor an adapter" in res.output
    assert "Traceback" not in res.output
    after = _listing(tmp_path)
    assert [p for p in after if p not in before and not p.startswith("a/b/c/run/")] == []
    assert not Path("/tmp/capdrift-escaped-abs").exists()
    assert not (run_dir / "lm_eval").exists() or not any((run_dir / "lm_eval").rglob("*.json"))


def test_symlinked_lm_eval_is_refused(demo_run, tmp_path):
    from capdrift_fast.report import write_report

    run_dir = _copy(demo_run.run_dir, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(run_dir / "lm_eval")
    (run_dir / "lm_eval").symlink_to(elsewhere)
    with pytest.raises(RunDirError, match="lm_eval is a symbolic link"):
        write_report([run_dir])
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("sub", ["generations", "quarantine"])
def test_symlinked_generations_or_quarantine_refused_on_resume(demo_run, demo_cfg, engine, tmp_path, sub):
    from capdrift_fast.runner import run

    run_dir = _copy(demo_run.run_dir, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    if sub == "generations":
        shutil.move(str(run_dir / "generations"), str(elsewhere))
    else:
        elsewhere.mkdir()
        shard = sorted((run_dir / "generations").glob("shard-*.arrow"))[-1]
        shard.write_bytes(shard.read_bytes()[:300])  # would be quarantined on resume
    (run_dir / sub).symlink_to(elsewhere, target_is_directory=True)
    before = _listing(elsewhere)
    with pytest.raises(RunDirError, match=f"{sub} is a symbolic link"):
        run(demo_cfg, run_dir, progress=False, engine=engine)
    assert _listing(elsewhere) == before  # nothing written through the link


def test_mathtext_label_renders_literally_and_a_failing_report_does_not_fail_the_run(
        demo_cfg, engine, hf_reference, tmp_path):
    from typer.testing import CliRunner

    from capdrift_fast.cli import app
    from capdrift_fast.runner import run

    raw = json.loads(demo_cfg.model_dump_json())
    for t in raw["tasks"]:
        t.update(limit=2, max_tokens=4)
    raw["parity"] = {"enabled": False}
    raw["adapters"][0]["label"] = "$x^$"  # invalid mathtext: crashed the heatmap before
    raw["adapters"][1]["label"] = "[bold]not markup[/bold] $\\alpha$"
    path = tmp_path / "math.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    out = tmp_path / "run"
    (out / "heatmap.png").mkdir(parents=True)  # the report cannot be written: a folder is in its place
    msgs: list[str] = []
    result = run(cfg, out, progress=False, engine=engine, reference=hf_reference, notify=msgs.append)
    assert result.matrix.height > 0
    assert (out / "scores.parquet").is_file() and (out / "matrix.parquet").is_file()
    warn = [m for m in msgs if m.startswith("warning: the report could not be written")]
    assert len(warn) == 1 and f"capdrift report {out.resolve()}" in warn[0]
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and "heatmap.png" in man["report_error"]

    (out / "heatmap.png").rmdir()
    res = CliRunner().invoke(app, ["report", str(out)])  # redoes it: the labels are drawn as plain text
    assert res.exit_code == 0, res.output
    assert (out / "heatmap.png").stat().st_size > 0
    assert "report_error" not in json.loads((out / "manifest.json").read_text())
    assert "$x^$" in (out / "report.md").read_text()
    assert "[bold]not markup[/bold]" in (out / "report.md").read_text()

    # the label may change on resume (a descriptive field): no refusal, the new label is used
    raw["adapters"][0]["label"] = "instruction"
    path.write_text(yaml.safe_dump(raw))
    result = run(load_config(path), out, progress=False, engine=engine, reference=hf_reference)
    assert result.n_generated == 0
    assert json.loads((out / "config.json").read_text())["adapters"][0]["label"] == "instruction"
    drift = pl.read_parquet(out / "drift.parquet")
    assert drift.filter(pl.col("adapter") == raw["adapters"][0]["name"])["label"].to_list() == ["instruction"]


def test_cli_table_shows_labels_as_plain_text(tmp_path):
    from rich.console import Console

    from capdrift_fast.display import drift_table

    drift = pl.DataFrame({"adapter": ["a"], "label": ["[bold]x[/bold] [/]"], "on_gain": [0.1], "off_gain": [0.0],
                          "drift": [-0.1], "drift_low": [-0.2], "drift_high": [0.0], "label_status": ["supported"],
                          "off_moved": [[]]})
    console = Console(width=200, record=True)
    console.print(drift_table(drift))
    assert "[bold]x[/bold] [/]" in console.export_text()


def test_report_refused_while_a_run_holds_the_folder(demo_run, tmp_path):
    """An in-place `capdrift report` is a writer too: refused while another process holds the folder."""
    run_dir = _copy(demo_run.run_dir, tmp_path / "run")
    hold = ("import sys, time\nfrom capdrift_fast.rundir.lock import run_folder_lock\n"
            "with run_folder_lock(sys.argv[1], 'capdrift run'):\n    print('held', flush=True)\n    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", hold, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        from capdrift_fast.report import write_report

        t0 = time.monotonic()
        with pytest.raises(RunDirError, match=f"in use by another capdrift process \\(pid {p.pid} on host"):
            write_report([run_dir])
        assert time.monotonic() - t0 < 5
    finally:
        p.kill()
        p.wait()
    write_report([run_dir])  # free again


def test_unknown_model_in_scores_is_a_run_folder_error(demo_run, tmp_path):
    from capdrift_fast.report.lm_eval import export_lm_eval
    from capdrift_fast.report.runs import load_run

    run_dir = _copy(demo_run.run_dir, tmp_path / "run")
    s = pl.read_parquet(run_dir / "scores.parquet")
    s.with_columns(adapter=pl.when(pl.col("adapter") == "base").then(pl.lit("..")).otherwise(pl.col("adapter"))
                   ).write_parquet(run_dir / "scores.parquet")
    with pytest.raises(RunFolderError, match="names model '..'"):
        load_run(run_dir)
    good = load_run(demo_run.run_dir)  # the export checks the names too, before writing anything
    bad = replace(good, analysis=replace(good.analysis, matrix=good.analysis.matrix.with_columns(adapter=pl.lit(".."))))
    with pytest.raises(RunFolderError, match="names model '..'"):
        export_lm_eval(bad, tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


def test_over_long_prompt_skipped_with_file_line_and_the_run_completes(demo_cfg, data_dir, engine, tmp_path):
    """`data_errors: skip`: the over-long row is left out before the engine sees it (file:line in
    data_errors.json); every model's request for it is gone from the plan; the rest runs."""
    from capdrift_fast.runner import run

    lines = (data_dir / "ifeval" / "input_data.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    rec = json.loads(lines[1])
    rec["prompt"] = "word " * 40_000
    lines[1] = json.dumps(rec)
    data = tmp_path / "ifeval_long.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = json.loads(demo_cfg.model_dump_json())
    raw["tasks"] = [{"benchmark": "ifeval", "data": str(data), "max_tokens": 4}]
    raw["data_errors"] = "skip"
    raw["parity"] = {"enabled": False}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    msgs: list[str] = []
    result = run(load_config(path), tmp_path / "run", progress=False, engine=engine, notify=msgs.append)
    assert result.n_requests == (1 + len(DEMO_ADAPTERS)) * 2  # every model x the 2 rows that fit
    skipped = json.loads((tmp_path / "run" / "data_errors.json").read_text())["skipped"]
    assert len(skipped) == 1 and skipped[0]["line"] == 2 and skipped[0]["file"] == str(data)
    assert skipped[0]["sample_id"] == str(rec["key"]) and "exceeds max_model_len 2048" in skipped[0]["message"]
    assert any(m.startswith(f"skipped data row: {data}:2: prompt of task 'ifeval' is ") for m in msgs)
    assert str(rec["key"]) not in generations(tmp_path / "run").get_column("sample_id").to_list()
