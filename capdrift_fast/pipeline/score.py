"""Scoring: generations -> one row per generation with its metric values.

Each task scores its own generations (see :mod:`capdrift_fast.benchmarks`) with the metric families here,
each checked against its reference implementation in ``tests/metrics/``:

- :mod:`.ifeval`: IFEval checkers, strict/loose, prompt/instruction level (google-research, lm-eval);
- :mod:`.numeric`: GSM8K numeric match, lm-eval's ``strict-match`` and ``flexible-extract``;
- :mod:`.classification`: SuperNI exact match, format correctness, random-guess baseline (Kung & Peng);
- :mod:`.rouge`: SuperNI's ROUGE-L (rouge-score, stemmed);
- :mod:`.external`: ``capdrift score-file``, scoring response files produced elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from capdrift_fast.benchmarks.base import Task

ID_COLUMNS = ("request_id", "adapter", "task", "sample_id")


def score_generations(
    generations: pl.LazyFrame | pl.DataFrame, tasks: Mapping[str, Task], samples: Mapping[str, pl.DataFrame]
) -> pl.DataFrame:
    """Score every generation with its task's scorer.

    Args:
        generations: rows of ``GENERATION_SCHEMA`` (at least the ID columns and ``response``).
        tasks, samples: the plan's tasks and their samples frames, by task name.

    Returns:
        One row per generation: ``ID_COLUMNS``, ``finish_reason``, ``output_tokens`` and the metric
        (and weight) columns of its task; metrics of other tasks are null (Float64).
    """
    gens = generations.lazy() if isinstance(generations, pl.DataFrame) else generations
    gens = gens.select(*ID_COLUMNS, "response", "finish_reason", "output_tokens").collect()
    parts = []
    for name, task in tasks.items():
        sub = gens.filter(pl.col("task") == name)
        if sub.height == 0:
            continue
        joined = sub.join(samples[name].drop("prompt"), on="sample_id", how="left")
        metrics = task.score(joined)
        parts.append(sub.drop("response").join(metrics, on="request_id", how="left"))
    if not parts:
        return gens.drop("response").head(0)
    return pl.concat(parts, how="diagonal_relaxed").sort("task", "adapter", "sample_id")
