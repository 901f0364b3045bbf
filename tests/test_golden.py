"""Golden: the demo run made by the code before the restructuring (capdrift_fast 0.1.0, committed in
tests/fixtures/run_0_1_0: config, plan, generations, scores, matrix, drift, manifest) is scored, analysed,
reported and resumed by this code with identical results."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from capdrift_fast.analysis.drift import analyze, mark_suspect
from capdrift_fast.benchmarks import build_tasks
from capdrift_fast.config import RunConfig
from capdrift_fast.pipeline.plan import build_plan, with_plan_columns
from capdrift_fast.pipeline.score import score_generations
from capdrift_fast.rundir import read_generations

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_0_1_0"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/demo_v1.py


def _portable_copy(tmp_path: Path, data_dir: Path, assets: Path | None = None) -> Path:
    """The fixture folder with its absolute paths (data, model, adapters) pointed at this machine's."""
    run = tmp_path / "run_0_1_0"
    shutil.copytree(FIXTURE, run)
    cfg = json.loads((run / "config.json").read_text())
    old_root = str(Path(cfg["model"]["path"]).parent)
    new_root = str(assets) if assets else old_root
    text = (run / "config.json").read_text().replace(cfg["data_dir"], str(data_dir)).replace(old_root, new_root)
    (run / "config.json").write_text(text)
    man = json.loads((run / "manifest.json").read_text().replace(old_root, new_root).replace(cfg["data_dir"], str(data_dir)))
    if assets is not None:  # demo assets are rebuilt per machine: weights are byte-identical, but each adapter's
        # adapter_config.json / README name the base model's absolute path, so record this machine's hashes
        from capdrift_fast.rundir.hashing import hash_folder

        files = man["files"]
        files["model"]["sha256"] = hash_folder(files["model"]["path"])
        for entry in files["adapters"].values():
            entry["sha256"] = hash_folder(entry["path"])
    (run / "manifest.json").write_text(json.dumps(man))
    return run


def test_scores_and_matrix_equal_the_0_1_0_run(tmp_path: Path, data_dir: Path):
    run = _portable_copy(tmp_path, data_dir)
    cfg = RunConfig.model_validate_json((run / "config.json").read_text())
    plan = build_plan(cfg)
    # same prompts, same ids (a 0.1.0 plan has no continuations column: it reads as nulls)
    assert_frame_equal(plan.requests, with_plan_columns(pl.read_parquet(run / "plan.parquet")))
    scores = score_generations(read_generations(run / "generations"), plan.tasks, plan.samples)
    assert_frame_equal(scores, pl.read_parquet(run / "scores.parquet"))
    analysis = analyze(scores, build_tasks(cfg), cfg.drift, {a.name: a.label for a in cfg.adapters})
    parity = json.loads((run / "parity.json").read_text())
    suspect = {m: v["suspect"] for m, v in parity["models"].items()} if "models" in parity else None
    old = pl.read_parquet(run / "matrix.parquet")
    matrix = mark_suspect(analysis.matrix, suspect) if suspect is not None else analysis.matrix
    assert_frame_equal(matrix.select(old.columns), old)
    assert_frame_equal(analysis.drift, pl.read_parquet(run / "drift.parquet"))


def test_0_1_0_folder_reports_and_shows_suspects(tmp_path: Path, data_dir: Path):
    from capdrift_fast.report import write_report

    run = _portable_copy(tmp_path, data_dir)
    files = write_report([run])
    assert "instruct-r8" in files.markdown.read_text()
    assert "SUSPECT" not in files.markdown.read_text()  # the guard passed every model in this run
    # the parity guard marks a model suspect: the report says so (it used to look clean)
    m = pl.read_parquet(run / "matrix.parquet")
    m.with_columns(suspect=pl.col("adapter") == "math-r16").write_parquet(run / "matrix.parquet")
    parity = json.loads((run / "parity.json").read_text())
    parity["models"]["math-r16"].update(suspect=True, guard="SUSPECT")
    (run / "parity.json").write_text(json.dumps(parity))
    files = write_report([run])
    for page in (files.markdown, files.html):
        text = page.read_text()
        assert "guard: SUSPECT" in text and "on their canaries): math-r16" in text
        assert text.count("guard: SUSPECT") == 1  # only math-r16's column
        # the verdict at the top (before the how-to box), and on every cell of the suspect model
        assert text.index("Parity guard — SUSPECT: math-r16") < text.index("How to read this report")
    html = files.html.read_text()
    n_cells = m.filter(pl.col("adapter") == "math-r16").height
    assert len(re.findall(r'<td class="cell[^"]* suspect" data-cell="math-r16/', html)) == n_cells
    assert not re.search(r'<td class="cell[^"]* suspect" data-cell="(instruct-r8|cls-r8)/', html)
    assert files.markdown.read_text().count("⚠ SUSPECT") == n_cells


@pytest.mark.engine  # loads the 0.1.0 demo model and adapters (the parity guard); starts no vLLM engine
def test_0_1_0_folder_resumes_without_an_engine(tmp_path: Path, data_dir: Path):
    from capdrift_fast.runner import run as run_job
    from demo_v1 import build_demo_v1_assets  # the 0.1.0 run's own (random) adapters, not today's trained ones

    run = _portable_copy(tmp_path, data_dir, build_demo_v1_assets(data_dir, tmp_path / "demo-v1"))
    cfg = RunConfig.model_validate_json((run / "config.json").read_text())
    old_scores, old_matrix = pl.read_parquet(run / "scores.parquet"), pl.read_parquet(run / "matrix.parquet")
    result = run_job(cfg, run, progress=False, engine=None, report=True)
    assert result.n_generated == 0 and result.state is not None and result.state.resumed
    assert_frame_equal(pl.read_parquet(run / "scores.parquet"), old_scores)
    new_matrix = pl.read_parquet(run / "matrix.parquet")
    assert_frame_equal(new_matrix.select(old_matrix.columns), old_matrix)  # (+ the guard's status column)
    assert (run / "report.md").is_file()
