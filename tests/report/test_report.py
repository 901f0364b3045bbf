"""The report on real runs through the shared vLLM CPU engine: the files a run ends with, the
lm-eval-shaped export, and `capdrift report` combining runs that differ in seed and configuration."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.config import BASE_NAME
from capdrift_fast.report import write_report
from capdrift_fast.report.render import interval, sgn

pytestmark = pytest.mark.engine


def _sampled(cfg, seed: int):  # type: ignore[no-untyped-def]
    """The demo config sampled at temperature 0.8 with ``seed`` (short generations, for speed)."""
    tasks = [t.model_copy(update={"max_tokens": min(t.max_tokens or 64, 16)}) for t in cfg.tasks]
    sampling = cfg.sampling.model_copy(update={"temperature": 0.8, "seed": seed})
    return cfg.model_copy(update={"run_name": f"seed{seed}", "tasks": tasks, "sampling": sampling})


@pytest.fixture(scope="module")
def seeded_runs(demo_cfg, engine, tmp_path_factory):
    """Two sampled runs (seeds 1 and 2, otherwise identical) through the session engine."""
    from capdrift_fast.runner import run

    root = tmp_path_factory.mktemp("seeds")
    return [run(_sampled(demo_cfg, s), root / f"seed{s}", progress=False, engine=engine, report=False).run_dir
            for s in (1, 2)]


def test_run_ends_with_report_files(demo_run):
    d = demo_run.run_dir
    for name in ("report.md", "report.html", "heatmap.png", "drift.parquet", "breakdown.parquet", "format.parquet"):
        assert (d / name).is_file(), name
    import matplotlib.image as mpimg

    png = mpimg.imread(d / "heatmap.png")
    assert png.shape[0] > 400 and png.shape[1] > 600 and png[..., :3].std() > 0.05  # a drawn figure, not blank


def test_html_is_self_contained_and_holds_the_numbers(demo_run, demo_cfg):
    d = demo_run.run_dir
    html = (d / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html), "the page must not load other files"
    assert not re.search(r"<script[^>]*\bsrc\s*=", html), "scripts are inline"
    assert "Parity guard — " in html and 'id="capdrift-data"' in html  # verdict at the top; the sample browser
    drift = pl.read_parquet(d / "drift.parquet")
    matrix = pl.read_parquet(d / "matrix.parquet")
    for r in drift.iter_rows(named=True):
        assert f"<b>{r['adapter']}</b>" in html and r["label_status"] in html
        assert sgn(r["drift"]) in html and interval(r["drift_low"], r["drift_high"]) in html
    for r in matrix.filter(pl.col("adapter") != BASE_NAME).iter_rows(named=True):
        assert interval(r["ci_low"], r["ci_high"]) in html
    # metadata: model, adapter file hashes, versions, engine settings, timings
    man = json.loads((d / "manifest.json").read_text())
    assert demo_cfg.model.path in html and man["run_id"] in html
    for a in demo_cfg.adapters:
        weights = Path(a.path) / "adapter_model.safetensors"
        assert hashlib.sha256(weights.read_bytes()).hexdigest() in html
    assert f"{man['output_tokens_per_s']:.1f} tokens/s" in html
    assert "max_lora_rank=16" in html and man["versions"]["polars"] in html


def test_flip_counts_in_the_run_reproduce_its_mcnemar_p_values(demo_run):
    """matrix.parquet of a real run: the stored flip table recomputes the stored McNemar p-value."""
    from scipy.stats import binomtest

    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet").filter(pl.col("test") == "mcnemar")
    assert m.height > 0
    for r in m.iter_rows(named=True):
        b, c = r["n_adapter_only"], r["n_base_only"]
        assert r["n_both"] + b + c + r["n_neither"] == r["n"]
        assert (1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue) == pytest.approx(r["p_value"], rel=1e-9)
        assert 0 < r["mde"] <= 1


def test_markdown_report_tables(demo_run):
    md = (demo_run.run_dir / "report.md").read_text()
    for section in ("## How to read this report", "## Findings", "## Drift score per adapter", "## Matrix",
                    "## Off-target cells that moved significantly", "## Run metadata", "![delta heatmap](heatmap.png)",
                    "## Flip table", "## ifeval by group: ila_strict", "## Output-format drift", "**Parity guard — "):
        assert section in md, section
    drift = pl.read_parquet(demo_run.run_dir / "drift.parquet")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    for r in drift.iter_rows(named=True):
        assert any(line.startswith(f"| {r['adapter']} | {r['label']} |") and f"**{sgn(r['drift'])}**" in line for line in rows)
    # the base and random-guess rows: SuperNI classification tasks have a label space (2 labels -> 0.5)
    assert any(line.startswith("| superni_task363 | **exact_match** |") and "| 0.500 |" in line for line in rows)


def test_lm_eval_export_has_lm_eval_shape(demo_run):
    d = demo_run.run_dir
    matrix = pl.read_parquet(d / "matrix.parquet")
    scores = pl.read_parquet(d / "scores.parquet")
    files = sorted((d / "lm_eval").glob("*/results_*.json"))
    assert {f.parent.name for f in files} == set(matrix["adapter"])
    gsm8k, ifeval = "gsm8k_capdrift_0shot", "ifeval_capdrift_0shot"  # the demo's 6 items, 64 tokens: not lm-eval's tasks
    for f in files:
        res = json.loads(f.read_text())
        for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                    "config", "date", "model_name", "model_name_sanitized", "model_source", "lm_eval_version"):
            assert key in res, key
        model = f.parent.name
        cell = matrix.filter((pl.col("adapter") == model) & (pl.col("task") == "gsm8k")
                             & (pl.col("metric") == "numeric_match_strict")).row(0, named=True)
        gsm = res["results"][gsm8k]
        assert gsm["exact_match,strict-match"] == pytest.approx(cell["score"])
        vals = scores.filter((pl.col("adapter") == model) & (pl.col("task") == "gsm8k"))["numeric_match_strict"].to_numpy()
        assert gsm["exact_match_stderr,strict-match"] == pytest.approx(vals.std(ddof=1) / np.sqrt(len(vals)))
        assert res["results"][ifeval]["inst_level_strict_acc_stderr,none"] == "N/A"
        assert "prompt_level_strict_acc,none" in res["results"][ifeval]
        assert res["n-samples"][gsm8k]["effective"] == cell["n"] and res["versions"][gsm8k] == 3.0
        assert res["config"]["model"] == "vllm" and res["higher_is_better"][gsm8k]["exact_match"] is True
        assert (f.parent / f"samples_{gsm8k}_{f.stem.split('_', 1)[1]}.jsonl").is_file()
        if model != BASE_NAME:
            assert "lora_local_path" in res["config"]["model_args"]
            extra = res["capdrift"]["deltas_vs_base"][gsm8k]["exact_match,strict-match"]
            assert extra["delta_vs_base"] == pytest.approx(cell["delta"])


def test_report_combines_two_seeds(seeded_runs, tmp_path):
    """`capdrift report` on two sampled demo runs that differ only in the seed."""
    a, b = seeded_runs
    gens = [pl.scan_ipc(str(r / "generations" / "*.arrow")).select("request_id", "response").collect().sort("request_id")
            for r in seeded_runs]
    assert (gens[0]["response"] != gens[1]["response"]).any(), "different seeds should sample different outputs"
    out = tmp_path / "combined"
    res = CliRunner().invoke(app, ["report", str(a), str(b), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 runs in 1 configuration(s)" in res.output
    for name in ("report.md", "report.html", "heatmap.png"):
        assert (out / name).is_file()
    assert sorted(p.relative_to(out).parts[1] for p in (out / "lm_eval").glob("*/*/results_*.json"))[:2] == ["seed1", "seed1"]
    md = (out / "report.md").read_text()
    assert "## Configuration sensitivity" in md and "`sampling.seed`" in md and "| C1 |" in md

    files = write_report([a, b], out)  # same numbers through the API
    comb = files.combined
    assert comb.varying == ["sampling.seed"] and comb.configurations.height == 1
    cc = comb.config_cells.filter(pl.col("adapter") != BASE_NAME)
    assert (cc["n_seeds"] == 2).all()
    # spread per cell = sd of the two runs' deltas; seed flip = the two deltas have opposite signs
    m1, m2 = (pl.read_parquet(r / "matrix.parquet").select("adapter", "task", "metric", "delta") for r in seeded_runs)
    j = m1.join(m2, on=["adapter", "task", "metric"], suffix="_2").join(
        comb.spread, on=["adapter", "task", "metric"])
    assert np.allclose(j["delta_sd"], np.abs(j["delta"] - j["delta_2"]) / np.sqrt(2))
    flips = ((j["delta"] < 0) & (j["delta_2"] > 0)) | ((j["delta"] > 0) & (j["delta_2"] < 0))
    assert (j["seed_flip"] == flips).all() and not j["config_flip"].any()


def _copy_run(src: Path, dst: Path, seed: int | None = None, model_path: str | None = None) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("generations", "lm_eval", "report.*", "*.png"))
    cfg = json.loads((dst / "config.json").read_text())
    if seed is not None:
        cfg["sampling"]["seed"] = seed
    if model_path is not None:
        cfg["model"]["path"] = model_path
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _set_cell(run_dir: Path, adapter: str, task: str, metric: str, adapter_value: float, base_value: float) -> None:
    s = pl.read_parquet(run_dir / "scores.parquet")
    hit = (pl.col("task") == task)
    s = s.with_columns(pl.when(hit & (pl.col("adapter") == adapter)).then(adapter_value)
                       .when(hit & (pl.col("adapter") == BASE_NAME)).then(base_value)
                       .otherwise(pl.col(metric)).alias(metric))
    s.write_parquet(run_dir / "scores.parquet")
    for stale in ("matrix.parquet", "drift.parquet"):  # the report reads these; without them it analyses the scores
        (run_dir / stale).unlink()


def test_sign_flips_across_seeds_and_configurations_are_marked(demo_run, tmp_path):
    """What-if copies of the real run: the gsm8k strict cell of math-r16 goes up in one seed and down in
    another (seed flip); a third run on another base model goes down too, so the configuration means
    have opposite signs (configuration flip)."""
    src = demo_run.run_dir
    up = _copy_run(src, tmp_path / "up", seed=11)
    down = _copy_run(src, tmp_path / "down", seed=12)
    other = _copy_run(src, tmp_path / "other-base", seed=11, model_path="/models/another-base")
    cell = ("math-r16", "gsm8k", "numeric_match_strict")
    _set_cell(up, *cell, adapter_value=1.0, base_value=0.0)
    _set_cell(down, *cell, adapter_value=0.0, base_value=0.2)
    _set_cell(other, *cell, adapter_value=0.0, base_value=1.0)
    files = write_report([up, down, other], tmp_path / "out")
    comb = files.combined
    assert comb.configurations.height == 2 and "model.path" in comb.varying
    assert comb.run_info["config"].to_list() == ["C1", "C1", "C2"]
    row = comb.spread.filter((pl.col("adapter") == cell[0]) & (pl.col("task") == cell[1]) & (pl.col("metric") == cell[2])).row(0, named=True)
    assert row["seed_flip"]  # +1.0 and -0.2 within C1
    assert row["config_flip"]  # C1 mean +0.4, C2 -1.0
    assert row["delta_min"] == pytest.approx(-1.0) and row["delta_max"] == pytest.approx(1.0)
    per_run = comb.cells.filter((pl.col("adapter") == cell[0]) & (pl.col("task") == cell[1]) & (pl.col("metric") == cell[2]))
    assert row["n_sig_up"] == (per_run["significant"] & (per_run["delta"] > 0)).sum()
    assert row["significant_flip"] == (row["n_sig_up"] > 0 and row["n_sig_down"] > 0)
    # an untouched cell whose delta is the same in all three runs: no spread, no flip
    still = comb.spread.filter((pl.col("adapter") == "cls-r8") & (pl.col("task") == "superni_task828") & (pl.col("metric") == "exact_match")).row(0, named=True)
    assert still["delta_sd"] == 0 and not (still["seed_flip"] or still["config_flip"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "configuration flip" in html and "another-base" in html


def test_report_cli_errors_name_the_folder(tmp_path, demo_run):
    runner = CliRunner()
    missing = tmp_path / "nope"
    res = runner.invoke(app, ["report", str(missing)])
    assert res.exit_code == 2 and str(missing) in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["report", str(demo_run.run_dir), str(demo_run.run_dir), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "more than once" in res.output
    half = _copy_run(demo_run.run_dir, tmp_path / "half")
    (half / "scores.parquet").unlink()
    res = runner.invoke(app, ["report", str(half)])
    assert res.exit_code == 2 and "scores.parquet" in res.output and "finished capdrift run folder" in res.output
    other = _copy_run(demo_run.run_dir, tmp_path / "other")
    res = runner.invoke(app, ["report", str(demo_run.run_dir), str(other)])
    assert res.exit_code == 2 and "--out" in res.output
