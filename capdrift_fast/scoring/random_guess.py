"""The random-guessing baseline of classification tasks (Kung & Peng 2023, arXiv:2305.11383, §3).

A random guesser answers each instance with a label drawn uniformly from the task's label space
(every gold output of the task file). Its *expected* scores, computed here analytically rather than by
drawing with a seed, are:

- ``exact_match``: ``mean_i |{l in L : norm(l) in norm(gold_i)}| / |L|`` — the share of labels that
  exact-match instance ``i`` under SuperNI's normalisation (for one gold label per instance and
  distinct normalised labels this is ``1 / |L|``);
- ``format_correct``: 1, since every label lies in the label space.

Kept as one small function so that a richer scoring module can take it over.
"""

from __future__ import annotations

import polars as pl

from capdrift_fast.tasks.base import Task


def random_guess_scores(task: Task, samples: pl.DataFrame) -> dict[str, float]:
    """Expected metric values of uniform random guessing over the label space, for ``task``.

    Args:
        task: a task; only classification tasks (samples with ``target`` and ``labels`` list columns,
            i.e. SuperNI) have a label space.
        samples: the task's samples frame (one row per instance).

    Returns:
        ``{metric: expected score}`` — ``exact_match`` and ``format_correct`` for SuperNI tasks;
        ``{}`` for tasks without a label space (IFEval, GSM8K).
    """
    if task.benchmark != "superni" or not {"target", "labels"} <= set(samples.columns) or samples.height == 0:
        return {}
    from capdrift_fast.tasks.superni import normalize_answer

    per_item = (
        samples.select(pl.col("target").list.eval(normalize_answer(pl.element())).alias("gold"), "labels")
        .with_row_index("item")
        .explode("labels")
        .with_columns(hit=pl.col("gold").list.contains(normalize_answer(pl.col("labels"))).cast(pl.Float64))
        .group_by("item")
        .agg(pl.col("hit").mean())
    )
    return {"exact_match": float(per_item["hit"].mean()), "format_correct": 1.0}
