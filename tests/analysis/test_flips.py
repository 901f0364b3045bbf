"""The flip table in the matrix (McNemar's 2x2) and the minimum detectable effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import binomtest

from capdrift_fast.analysis.drift import analyze
from capdrift_fast.analysis.stats import mde_mcnemar, mde_paired
from capdrift_fast.benchmarks import build_tasks
from capdrift_fast.config import BASE_NAME, RunConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "run_0_1_0"


def _fixture_analysis(data_dir: Path):
    cfg = json.loads((FIXTURE / "config.json").read_text())
    cfg["data_dir"] = str(data_dir)
    cfg = RunConfig.model_validate(cfg)
    scores = pl.read_parquet(FIXTURE / "scores.parquet")
    return analyze(scores, build_tasks(cfg), cfg.drift, {a.name: a.label for a in cfg.adapters}), scores


def test_flip_counts_reproduce_the_stored_mcnemar_p_values(data_dir: Path):
    analysis, scores = _fixture_analysis(data_dir)
    stored = pl.read_parquet(FIXTURE / "matrix.parquet")  # written by 0.1.0, before flip counts existed
    m = analysis.matrix.filter(pl.col("test") == "mcnemar").join(
        stored.select("adapter", "task", "metric", stored_p="p_value"), on=["adapter", "task", "metric"])
    assert m.height >= 20
    for r in m.iter_rows(named=True):
        b, c = r["n_adapter_only"], r["n_base_only"]
        assert r["n_both"] + b + c + r["n_neither"] == r["n"]
        p = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue  # exact two-sided McNemar, from the counts
        assert p == pytest.approx(r["stored_p"], rel=1e-9, abs=1e-12), r
        # and the counts are the items' own: recount from scores.parquet
        a_v = scores.filter((pl.col("adapter") == r["adapter"]) & (pl.col("task") == r["task"])).select("sample_id", a=r["metric"])
        b_v = scores.filter((pl.col("adapter") == BASE_NAME) & (pl.col("task") == r["task"])).select("sample_id", b=r["metric"])
        j = a_v.join(b_v, on="sample_id")
        assert r["n_adapter_only"] == j.filter((pl.col("a") == 1) & (pl.col("b") == 0)).height
        assert r["n_base_only"] == j.filter((pl.col("a") == 0) & (pl.col("b") == 1)).height
    graded = analysis.matrix.filter(pl.col("test") == "sign_flip")
    assert graded.height and graded["n_both"].is_null().all() and graded["mde"].is_not_null().all()


def test_mde_has_80_percent_power_by_simulation():
    """At the MDE, a simulated exact McNemar test at 0.05 rejects in ~80% of runs (Connor's formula is a
    normal approximation, so 70-90%); at half the MDE far fewer."""
    rng = np.random.default_rng(0)
    n, psi = 200, 0.3
    mde = float(mde_mcnemar(np.array([n]), np.array([psi * n]))[0])
    assert 0.05 < mde < psi

    def power(delta: float) -> float:
        p10, p01 = (psi + delta) / 2, (psi - delta) / 2
        draws = rng.multinomial(n, [p10, p01, 1 - psi], size=2000)
        b, c = draws[:, 0], draws[:, 1]
        from scipy.stats import binom
        p = np.minimum(1, 2 * binom.cdf(np.minimum(b, c), b + c, 0.5))
        return float((p <= 0.05).mean())

    assert 0.7 <= power(mde) <= 0.9
    assert power(mde / 2) < 0.45
    # no flips at all: only an effect of about (z_a + z_b)^2 / n is detectable, not "0"
    assert mde_mcnemar(np.array([24]), np.array([0]))[0] == pytest.approx(0.30, abs=0.03)
    assert 0.9 > mde_mcnemar(np.array([24]), np.array([0]))[0] > mde_mcnemar(np.array([200]), np.array([0]))[0]
    # graded: the z formula, smaller with more items
    d = rng.normal(0, 1, size=(1, 400))
    assert mde_paired(d, np.ones(400))[0] == pytest.approx(2.8016 * d.std() / 20, rel=0.01)
    assert mde_paired(d[:, :100], np.ones(100))[0] > mde_paired(d, np.ones(400))[0]
