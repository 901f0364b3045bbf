"""The drift matrix statistics and the drift score: on hand-built paired scores with the real task
specs (known answers), and on the real demo run through the vLLM CPU engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import binomtest, false_discovery_control

from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig
from capdrift_fast.benchmarks.ifeval import IFEvalTaskConfig
from capdrift_fast.config import BASE_NAME, DriftConfig
from capdrift_fast.analysis.drift import DRIFT_SCHEMA, MATRIX_SCHEMA, analyze, drift_metric
from capdrift_fast.errors import ConfigError
from capdrift_fast.benchmarks import build_task


@pytest.fixture(scope="module")
def tasks(data_dir: Path):
    gsm = build_task(GSM8KTaskConfig(benchmark="gsm8k"), data_dir)
    ife = build_task(IFEvalTaskConfig(benchmark="ifeval"), data_dir)
    return {gsm.name: gsm, ife.name: ife}


def _scores(rows: dict[str, dict[str, list[float]]], n_instructions: list[float] | None = None) -> pl.DataFrame:
    """scores.parquet-shaped rows: rows[model][task:metric] = per-item values (same items per model)."""
    frames = []
    for model, metrics in rows.items():
        by_task: dict[str, dict[str, list[float]]] = {}
        for key, values in metrics.items():
            task, metric = key.split(":")
            by_task.setdefault(task, {})[metric] = values
        for task, cols in by_task.items():
            n = len(next(iter(cols.values())))
            data = {"adapter": [model] * n, "task": [task] * n, "sample_id": [str(i) for i in range(n)], **cols}
            if task == "ifeval":
                data["n_instructions"] = n_instructions or [1.0] * n
            frames.append(pl.DataFrame(data))
    return pl.concat(frames, how="diagonal_relaxed")


def test_clear_gain_is_significant_with_a_tight_interval(tasks):
    n = 40
    scores = _scores({
        BASE_NAME: {"gsm8k:numeric_match_strict": [0.0] * n, "gsm8k:numeric_match_flexible": [0.0] * n},
        "math": {"gsm8k:numeric_match_strict": [1.0] * n, "gsm8k:numeric_match_flexible": [0.0] * n},
    })
    res = analyze(scores, {"gsm8k": tasks["gsm8k"]}, DriftConfig(n_boot=500), {"math": "numeric"})
    m = res.matrix
    assert dict(m.schema) == MATRIX_SCHEMA
    strict = m.filter((pl.col("adapter") == "math") & (pl.col("metric") == "numeric_match_strict")).row(0, named=True)
    assert strict["delta"] == 1.0 and strict["ci_low"] == 1.0 and strict["ci_high"] == 1.0
    assert strict["test"] == "mcnemar"
    assert strict["p_value"] == pytest.approx(binomtest(0, n, 0.5).pvalue)
    assert strict["significant"] and strict["on_target"]
    flex = m.filter((pl.col("adapter") == "math") & (pl.col("metric") == "numeric_match_flexible")).row(0, named=True)
    assert flex["delta"] == 0.0 and flex["p_value"] == 1.0 and not flex["significant"]
    base = m.filter(pl.col("adapter") == BASE_NAME)
    assert base["p_value"].null_count() == base.height and base["significant"].null_count() == base.height


def test_weighted_metric_uses_sign_flip_test_and_micro_average(tasks):
    """ILA: per-prompt fractions weighted by n_instructions; the delta is the micro-average difference."""
    rng = np.random.default_rng(0)
    n = 30
    n_inst = rng.integers(1, 4, size=n).astype(float)
    base = (rng.integers(0, 4, size=n) % (n_inst + 1)) / n_inst
    adapter = np.minimum(base + 1 / n_inst * (rng.random(n) < 0.7), 1.0)
    cols = {"pla_strict": [0.0] * n, "pla_loose": [0.0] * n}
    scores = _scores({
        BASE_NAME: {"ifeval:ila_strict": list(base), "ifeval:ila_loose": list(base), **{f"ifeval:{k}": v for k, v in cols.items()}},
        "inst": {"ifeval:ila_strict": list(adapter), "ifeval:ila_loose": list(base), **{f"ifeval:{k}": v for k, v in cols.items()}},
    }, list(n_inst))
    res = analyze(scores, {"ifeval": tasks["ifeval"]}, DriftConfig(n_boot=500, n_perm=2000), {"inst": "instruction"})
    row = res.matrix.filter((pl.col("adapter") == "inst") & (pl.col("metric") == "ila_strict")).row(0, named=True)
    want = (adapter * n_inst).sum() / n_inst.sum() - (base * n_inst).sum() / n_inst.sum()
    assert row["delta"] == pytest.approx(want)
    assert row["test"] == "sign_flip" and row["p_value"] < 0.01
    assert row["ci_low"] > 0 and row["ci_low"] <= want <= row["ci_high"]
    same = res.matrix.filter((pl.col("adapter") == "inst") & (pl.col("metric") == "ila_loose")).row(0, named=True)
    assert same["delta"] == 0 and same["p_value"] == 1.0


def test_interval_narrows_when_there_are_more_items(tasks):
    """The bootstrap resamples items: doubling the item set (same per-item pattern) shrinks the CI ~1/sqrt(2)."""
    pattern_b = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0] * 5
    pattern_a = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0] * 5
    widths = []
    for k in (1, 2):
        scores = _scores({
            BASE_NAME: {"gsm8k:numeric_match_strict": pattern_b * k, "gsm8k:numeric_match_flexible": pattern_b * k},
            "a": {"gsm8k:numeric_match_strict": pattern_a * k, "gsm8k:numeric_match_flexible": pattern_b * k},
        })
        m = analyze(scores, {"gsm8k": tasks["gsm8k"]}, DriftConfig(n_boot=4000)).matrix
        r = m.filter((pl.col("adapter") == "a") & (pl.col("metric") == "numeric_match_strict")).row(0, named=True)
        widths.append(r["ci_high"] - r["ci_low"])
    assert widths[1] / widths[0] == pytest.approx(1 / np.sqrt(2), abs=0.08)


def test_drift_score_contrasts_off_target_with_on_target_gain(tasks):
    n = 30
    z, o = [0.0] * n, [1.0] * n
    half = [1.0, 0.0] * (n // 2)
    ife = {f"ifeval:{m}": z for m in ("pla_strict", "ila_strict", "pla_loose", "ila_loose")}
    scores = _scores({
        BASE_NAME: {"gsm8k:numeric_match_strict": z, "gsm8k:numeric_match_flexible": z, **ife},
        # labelled numeric, but gsm8k stays flat while IFEval ILA rises by 0.5
        "inst-like": {"gsm8k:numeric_match_strict": z, "gsm8k:numeric_match_flexible": z,
                      **ife, "ifeval:ila_strict": half},
        # labelled numeric and gsm8k (flexible, the drift metric) rises by 1
        "math": {"gsm8k:numeric_match_strict": z, "gsm8k:numeric_match_flexible": o, **ife},
    })
    res = analyze(scores, tasks, DriftConfig(n_boot=500, n_perm=1000), {"inst-like": "numeric", "math": "numeric"})
    d = {r["adapter"]: r for r in res.drift.iter_rows(named=True)}
    assert dict(res.drift.schema) == DRIFT_SCHEMA
    assert d["inst-like"]["on_gain"] == 0 and d["inst-like"]["off_gain"] == pytest.approx(0.5)
    assert d["inst-like"]["drift"] == pytest.approx(0.5)
    assert d["inst-like"]["label_status"] == "not supported"
    assert d["inst-like"]["off_moved"] == ["ifeval/ila_strict"]
    assert d["inst-like"]["drift_low"] > 0
    assert d["math"]["drift"] == pytest.approx(-1.0) and d["math"]["label_status"] == "supported"
    assert d["math"]["on_target_tasks"] == ["gsm8k"] and d["math"]["off_target_tasks"] == ["ifeval"]
    assert d["math"]["drift_metrics"] == ["gsm8k:numeric_match_flexible", "ifeval:ila_strict"]


def test_drift_config_targets_and_metrics(tasks):
    cfg = DriftConfig(targets={"numeric": ["ifeval"]}, metrics={"gsm8k": "numeric_match_strict"})
    assert cfg.targets["numeric"] == ("ifeval",) and cfg.targets["instruction"] == ("ifeval",)  # defaults kept
    assert drift_metric(tasks["gsm8k"], cfg) == "numeric_match_strict"
    assert drift_metric(tasks["ifeval"], cfg) == "ila_strict"
    with pytest.raises(ConfigError, match=r"drift\.metrics\.gsm8k.*no metric 'accuracy'.*numeric_match_strict"):
        drift_metric(tasks["gsm8k"], DriftConfig(metrics={"gsm8k": "accuracy"}))


def test_bad_drift_metric_fails_before_the_engine_starts(demo_cfg, tmp_path):
    from capdrift_fast.runner import run

    cfg = demo_cfg.model_copy(update={"drift": DriftConfig(metrics={"superni*": "f1"})})
    with pytest.raises(ConfigError, match=r"drift\.metrics\.superni\*.*'f1'"):
        run(cfg, tmp_path / "run", progress=False)  # engine=None: it would start one; the check comes first
    assert not (tmp_path / "run" / "generations").exists()


@pytest.mark.engine
def test_real_matrix_statistics_agree_with_scipy(demo_run):
    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet")
    assert dict(m.schema) == {**MATRIX_SCHEMA, "suspect": pl.Boolean, "guard": pl.String}  # suspect: the parity guard
    ad = m.filter(pl.col("adapter") != BASE_NAME)
    assert (ad["ci_low"] <= ad["delta"] + 1e-12).all() and (ad["delta"] <= ad["ci_high"] + 1e-12).all()
    # binary metrics get McNemar; the non-binary ones (IFEval ILA fractions, SuperNI ROUGE-L) the sign-flip test
    non_binary = pl.col("metric").str.starts_with("ila") | (pl.col("metric") == "rougeL")
    assert set(ad.filter(non_binary)["test"]) == {"sign_flip"}
    assert set(ad.filter(~non_binary)["test"]) == {"mcnemar"}
    assert np.allclose(ad["q_value"].to_numpy(), false_discovery_control(ad["p_value"].to_numpy(), method="bh"))
    assert (ad["significant"] == (ad["q_value"] <= 0.05)).all()
    # McNemar p-values from the discordant pairs in scores.parquet
    scores = pl.read_parquet(demo_run.run_dir / "scores.parquet")
    base = scores.filter(pl.col("adapter") == BASE_NAME)
    for r in ad.filter(pl.col("test") == "mcnemar").iter_rows(named=True):
        a = scores.filter((pl.col("adapter") == r["adapter"]) & (pl.col("task") == r["task"]))
        j = a.join(base, on=["task", "sample_id"], suffix="_b").select(x=pl.col(r["metric"]), y=pl.col(f"{r['metric']}_b"))
        b, c = int(((j["x"] == 1) & (j["y"] == 0)).sum()), int(((j["x"] == 0) & (j["y"] == 1)).sum())
        assert r["p_value"] == pytest.approx(1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue)


@pytest.mark.engine
def test_real_drift_scores_follow_the_formula(demo_run, demo_cfg):
    m = pl.read_parquet(demo_run.run_dir / "matrix.parquet")
    d = pl.read_parquet(demo_run.run_dir / "drift.parquet")
    assert dict(d.schema) == DRIFT_SCHEMA
    assert set(d["adapter"]) == {a.name for a in demo_cfg.adapters}
    expected_on = {"instruction": ["ifeval"], "numeric": ["gsm8k"], "classification": ["superni_task828", "superni_task363"],
                   "control": []}  # the null demo adapter's label names no task
    for r in d.iter_rows(named=True):
        assert r["on_target_tasks"] == expected_on[r["label"]]
        cells = m.filter((pl.col("adapter") == r["adapter"]) & pl.col("drift_metric"))
        on = cells.filter(pl.col("on_target"))
        off = cells.filter(~pl.col("on_target"))
        if not expected_on[r["label"]]:
            assert r["on_gain"] is None and r["drift"] is None and r["label_status"] == "no on-target task"
            assert r["off_gain"] == pytest.approx(off["delta"].mean())
            continue
        assert r["on_gain"] == pytest.approx(on["delta"].mean())
        assert r["off_gain"] == pytest.approx(off["delta"].mean())
        assert r["drift"] == pytest.approx(r["off_gain"] - r["on_gain"])
        assert r["drift_low"] <= r["drift_high"]
        improved = on.filter(pl.col("significant") & (pl.col("delta") > 0)).height
        assert r["n_on_improved"] == improved
        assert r["label_status"] == ("supported" if improved == on.height else "not supported" if improved == 0 else "partly supported")
