"""Known answers: the demo's trained adapters carry planted behaviours (capdrift_fast.demo, README "What the
demo finds"), and the whole pipeline — real vLLM CPU engine, real scorers on the real shared prompts, paired
tests with BH, drift scores, parity guard — must find exactly them, at the demo's own size (``capdrift demo``'s
default ``limit``), on prompts the adapters were never trained on."""

from __future__ import annotations

import inspect
import json

import numpy as np
import polars as pl
import pytest
import yaml

from capdrift_fast.analysis.breakdown import breakdown_table
from capdrift_fast.analysis.stats import mcnemar_exact
from capdrift_fast.config import BASE_NAME, load_config
from capdrift_fast.demo import DEMO_ADAPTERS, TRAIN_OFFSET, demo_config
from capdrift_fast.metrics.classification import random_guess_expectation
from capdrift_fast.rundir import read_generations

pytestmark = pytest.mark.engine

DEMO_LIMIT = inspect.signature(demo_config).parameters["limit"].default
PLANTED_TYPES = ("change_case:english_lowercase", "punctuation:no_comma", "startend:quotation",
                 "detectable_format:json_format", "detectable_format:title")
"""IFEval instruction types that instruct-r8's planted answer (demo.LOWERCASE_ANSWER) always passes."""


@pytest.fixture(scope="module")
def known_run(demo_assets, data_dir, engine, hf_reference, tmp_path_factory):
    """The demo run exactly as ``capdrift demo`` configures it, on the shared engine."""
    from capdrift_fast.runner import run

    assert DEMO_LIMIT <= TRAIN_OFFSET  # evaluated prompts are not training prompts
    path = tmp_path_factory.mktemp("cfg") / "demo.yaml"
    path.write_text(yaml.safe_dump(demo_config(demo_assets, data_dir)))
    cfg = load_config(path)
    result = run(cfg, tmp_path_factory.mktemp("run") / "known", progress=False, engine=engine,
                 reference=hf_reference, report=False)
    return cfg, result


def _matrix(known_run) -> pl.DataFrame:
    return pl.read_parquet(known_run[1].run_dir / "matrix.parquet")


def _cell(m: pl.DataFrame, adapter: str, task: str, metric: str) -> dict:
    (row,) = m.filter((pl.col("adapter") == adapter) & (pl.col("task") == task) & (pl.col("metric") == metric)).rows(named=True)
    return row


def test_every_labelled_adapter_moves_a_cell_and_the_null_adapter_none(known_run):
    m = _matrix(known_run).filter(pl.col("adapter") != BASE_NAME)
    for spec in DEMO_ADAPTERS:
        sig = m.filter((pl.col("adapter") == spec.name) & pl.col("significant"))
        if spec.behaviour == "null":
            assert sig.height == 0, sig
            mine = m.filter(pl.col("adapter") == spec.name)
            assert (mine["delta"] == 0).all() and (mine["n_adapter_only"].fill_null(0) == 0).all()
            assert (mine["n_base_only"].fill_null(0) == 0).all()  # zero flips
        else:
            assert sig.height >= 1, f"{spec.name}: no significant cell"


def test_null_adapter_generates_exactly_the_base(known_run):
    g = read_generations(known_run[1].run_dir / "generations").collect()
    tok = {(r["adapter"], r["task"], r["sample_id"]): r["output_token_ids"] for r in g.iter_rows(named=True)}
    nulls = [a.name for a in DEMO_ADAPTERS if a.behaviour == "null"]
    keys = [k for k in tok if k[0] == BASE_NAME]
    assert nulls and len(keys) == 4 * DEMO_LIMIT
    for n in nulls:
        assert all(tok[(n, t, s)] == tok[k] for k in keys for (_, t, s) in [k])


def test_instruct_lifts_ifeval_on_the_planted_instruction_types(known_run):
    m = _matrix(known_run)
    ila = _cell(m, "instruct-r8", "ifeval", "ila_strict")
    assert ila["significant"] and ila["delta"] > 0 and ila["on_target"]
    bd = breakdown_table(pl.read_parquet(known_run[1].run_dir / "breakdown.parquet"))
    mine = bd.filter((pl.col("adapter") == "instruct-r8") & (pl.col("metric") == "ila_strict"))
    rows = mine.filter(pl.col("group").is_in(PLANTED_TYPES))
    assert {"change_case:english_lowercase", "punctuation:no_comma"} <= set(rows["group"])
    for r in rows.iter_rows(named=True):  # every unit of the planted types passes; none the base passed is lost
        assert r["score"] == 1.0 and r["n_base_only"] == 0, r
    lower = rows.filter(pl.col("group") == "change_case:english_lowercase").row(0, named=True)
    assert lower["delta"] > 0 and lower["base_score"] == 0.0
    assert not mine.filter(~pl.col("group").is_in(PLANTED_TYPES))["significant"].any()  # nothing else moved
    # pooled over the planted types, the gain is significant at the demo size (each type alone has only a
    # handful of instructions in the first DEMO_LIMIT prompts: 4 lower-case, 4 no-comma)
    a, b = int(rows["n_adapter_only"].sum()), int(rows["n_base_only"].sum())
    p = mcnemar_exact(np.array([[1.0] * a + [0.0] * b]), np.array([[0.0] * a + [1.0] * b]),
                      np.ones((1, a + b), dtype=bool))[0]
    assert p < 0.05, (a, b, p)


def test_cls_learns_the_format_not_the_task(known_run):
    cfg, result = known_run
    from capdrift_fast.pipeline.plan import build_plan

    plan = build_plan(cfg)
    m = _matrix(known_run)
    superni = [t for t in plan.tasks if t.startswith("superni")]
    assert len(superni) == 2
    for task in superni:
        fmt = _cell(m, "cls-r8", task, "format_correct")
        assert fmt["significant"] and fmt["delta"] > 0 and fmt["score"] >= 0.5, fmt
        em = _cell(m, "cls-r8", task, "exact_match")
        chance = random_guess_expectation(plan.samples[task])
        # exact match sits at the random-guess baseline: chance lies inside the adapter's interval
        assert em["base_score"] + em["ci_low"] <= chance <= em["base_score"] + em["ci_high"], (em, chance)


def test_math_moves_format_not_numbers(known_run):
    m = _matrix(known_run)
    for metric in ("numeric_match_strict", "numeric_match_flexible"):
        c = _cell(m, "math-r16", "gsm8k", metric)
        assert not c["significant"] and abs(c["delta"]) <= 0.1, c
    ila = _cell(m, "math-r16", "ifeval", "ila_strict")
    assert ila["significant"] and ila["delta"] > 0


def test_drift_verdicts(known_run):
    d = {r["adapter"]: r for r in pl.read_parquet(known_run[1].run_dir / "drift.parquet").iter_rows(named=True)}
    assert d["instruct-r8"]["label_status"] == "supported" and d["instruct-r8"]["drift"] < 0
    assert d["math-r16"]["label_status"] == "not supported"
    assert d["math-r16"]["drift"] > 0 and d["math-r16"]["drift_low"] > 0  # nominal-vs-realized mismatch
    assert "ifeval/ila_strict" in d["math-r16"]["off_moved"]
    # the classification label is "supported" by a gain over the base — which the random-guess baseline
    # (previous test) shows to be format alone (Kung & Peng 2023)
    assert d["cls-r8"]["label_status"] == "supported"
    assert d["null-r8"]["label_status"] == "no on-target task" and d["null-r8"]["off_moved"] == []


def test_parity_guard_passes_every_demo_adapter(known_run):
    parity = json.loads((known_run[1].run_dir / "parity.json").read_text())
    assert parity["status"] == "ok"
    assert {m: v["suspect"] for m, v in parity["models"].items()} == dict.fromkeys(
        [BASE_NAME] + [a.name for a in DEMO_ADAPTERS], False)
