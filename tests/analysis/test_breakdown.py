"""IFEval per instruction type (the task's breakdown hook + analysis.breakdown) and the format-drift panel,
on the committed 0.1.0 demo run (real generations of the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from capdrift_fast.analysis.breakdown import breakdown_table, item_breakdown
from capdrift_fast.analysis.format_drift import format_drift
from capdrift_fast.analysis.stats import benjamini_hochberg
from capdrift_fast.config import BASE_NAME, RunConfig
from capdrift_fast.pipeline.plan import build_plan
from capdrift_fast.rundir import read_generations

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_0_1_0"


@pytest.fixture(scope="module")
def fixture_run(data_dir: Path):
    cfg = json.loads((FIXTURE / "config.json").read_text())
    cfg["data_dir"] = str(data_dir)
    plan = build_plan(RunConfig.model_validate(cfg))
    gens = read_generations(FIXTURE / "generations").collect()
    return plan, gens


def test_per_type_accuracies_sum_back_to_the_overall_ila(fixture_run):
    plan, gens = fixture_run
    long = item_breakdown(gens, plan.tasks, plan.samples)
    assert set(long["task"].unique()) == {"ifeval"}  # only IFEval declares a breakdown
    table = breakdown_table(long)
    matrix = pl.read_parquet(FIXTURE / "matrix.parquet")
    for metric in ("ila_strict", "ila_loose"):
        for a in matrix["adapter"].unique().to_list():
            rows = table.filter((pl.col("adapter") == a) & (pl.col("metric") == metric))
            assert rows.height >= 5
            n = rows["n"].cast(pl.Float64)
            summed = float((rows["score"] * n).sum() / n.sum())
            stored = matrix.filter((pl.col("adapter") == a) & (pl.col("task") == "ifeval") & (pl.col("metric") == metric))
            assert summed == pytest.approx(stored["score"][0], abs=1e-12), (a, metric)
            if a != BASE_NAME:  # the McNemar table covers every unit; Δ per type = score − base on the same units
                assert (rows["n_both"] + rows["n_adapter_only"] + rows["n_base_only"] + rows["n_neither"] == rows["n"]).all()
                d = float((rows["delta"] * n).sum() / n.sum())
                assert d == pytest.approx(stored["delta"][0], abs=1e-12)
    # BH across the rows of one task x metric
    strict = table.filter((pl.col("adapter") != BASE_NAME) & (pl.col("metric") == "ila_strict"))
    assert strict["q_value"].to_numpy() == pytest.approx(benjamini_hochberg(strict["p_value"].to_numpy()))


def test_format_drift_panel(fixture_run):
    plan, gens = fixture_run
    fd = format_drift(gens, plan.tasks)
    assert fd.height == gens.select("adapter", "task").unique().height
    for r in fd.iter_rows(named=True):
        g = gens.filter((pl.col("adapter") == r["adapter"]) & (pl.col("task") == r["task"]))
        assert r["n"] == g.height
        assert r["truncated"] == pytest.approx((g["finish_reason"] == "length").mean())
        assert r["tokens_median"] == pytest.approx(g["output_tokens"].median())
        assert r["empty"] == pytest.approx((g["response"].str.strip_chars() == "").mean())
        assert 0 <= r["off_language"] <= 1 if r["judged"] else r["off_language"] is None
        if r["adapter"] == BASE_NAME:
            assert r["d_truncated"] is None
        else:
            b = fd.filter((pl.col("adapter") == BASE_NAME) & (pl.col("task") == r["task"]))
            assert r["d_truncated"] == pytest.approx(r["truncated"] - b["truncated"][0])
    # off_language recomputed for one cell straight from langdetect (seeded)
    from langdetect import DetectorFactory, detect

    r = fd.filter(pl.col("judged") > 0).row(0, named=True)
    texts = [t for t in gens.filter((pl.col("adapter") == r["adapter"]) & (pl.col("task") == r["task"]))["response"]
             if sum(ch.isalpha() for ch in t) >= 20]
    DetectorFactory.seed = 0
    assert r["judged"] == len(texts)
    assert r["off_language"] == pytest.approx(sum(detect(t) != "en" for t in texts) / len(texts))


def test_format_drift_sees_an_other_language_and_truncation():
    from capdrift_fast.benchmarks.base import MetricSpec

    class T:
        name, benchmark, language = "t", "x", "en"
        metrics = (MetricSpec("m", "m"),)

    en = "The quick brown fox jumps over the lazy dog near the river bank today."
    de = "Der schnelle braune Fuchs springt heute über den faulen Hund am Flussufer."
    g = pl.DataFrame({"adapter": [BASE_NAME] * 2 + ["a"] * 2, "task": ["t"] * 4, "response": [en, en, de, ""],
                      "output_tokens": [10, 12, 64, 0], "finish_reason": ["stop", "stop", "length", "stop"]})
    fd = format_drift(g, {"t": T()})
    a = fd.filter(pl.col("adapter") == "a").row(0, named=True)
    assert a["off_language"] == 1.0 and a["judged"] == 1 and a["empty"] == 0.5 and a["truncated"] == 0.5
    assert a["d_off_language"] == 1.0 and a["d_tokens_median"] == 32 - 11
