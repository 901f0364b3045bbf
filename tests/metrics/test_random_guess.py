"""The random-guess baseline on the real SuperNI files: the analytic expectation equals the mean
exact match of seeded uniform draws from the label space, scored by the task's own scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig
from capdrift_fast.metrics.random_guess import random_guess_scores
from capdrift_fast.benchmarks import build_task
from capdrift_fast.benchmarks.superni import SuperNITask


@pytest.mark.parametrize("name", ["task363_sst2_polarity_classification", "task199_mnli_classification",
                                  "task1612_sick_label_classification"])
def test_expectation_matches_seeded_draws_scored_by_the_task(data_dir: Path, name: str):
    task = SuperNITask(name, data_dir / "superni" / f"{name}.json", limit=200)
    samples = task.samples()
    expected = task.random_baseline(samples)
    assert expected == random_guess_scores(samples)
    labels = task.label_space()
    rng = np.random.default_rng(0)
    draws = 200  # guesses per instance
    picks = rng.integers(0, len(labels), size=(samples.height, draws))
    gens = samples.with_row_index("i").join(
        pl.DataFrame({"i": np.repeat(np.arange(samples.height), draws).astype(np.uint32),
                      "response": [labels[k] for k in picks.ravel()]}), on="i"
    ).with_row_index("request_id").with_columns(pl.col("request_id").cast(pl.Utf8))
    scored = task.score(gens)
    assert scored["format_correct"].mean() == expected["format_correct"] == 1.0
    se = np.sqrt(expected["exact_match"] * (1 - expected["exact_match"]) / scored.height)
    assert abs(scored["exact_match"].mean() - expected["exact_match"]) < 4 * se
    assert expected["exact_match"] == pytest.approx(1 / len(labels), abs=0.02)


def test_no_label_space_no_baseline(data_dir: Path):
    gsm = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=5), data_dir)
    assert gsm.random_baseline(gsm.samples()) == {} and not gsm.has_label_space
    assert random_guess_scores(gsm.samples()) == {}
