"""The random-guessing baseline of classification tasks (Kung & Peng 2023, arXiv:2305.11383, §3).

A random guesser answers each instance with a label drawn uniformly from the task's label space
(every gold output of the task file). Its *expected* scores, computed here analytically rather than by
drawing with a seed, are:

- ``exact_match``: ``mean_i |norm(gold_i) ∩ norm(L)| / |norm(L)|`` — the share of the (normalised)
  label space that exact-matches instance ``i`` under SuperNI's normalisation
  (:func:`capdrift_fast.metrics.classification.random_guess_expectation`; for one gold label per
  instance this is ``1 / |norm(L)|``);
- ``format_correct``: 1, since every label lies in the label space.
"""

from __future__ import annotations

import polars as pl

from capdrift_fast.metrics.classification import random_guess_expectation


def random_guess_scores(samples: pl.DataFrame) -> dict[str, float]:
    """Expected metric values of uniform random guessing over the label space.

    Args:
        samples: a task's samples frame (one row per instance) with ``target`` (List[Utf8] gold outputs) and
            ``labels`` (List[Utf8], the label space) columns.

    Returns:
        ``{"exact_match": expectation, "format_correct": 1.0}``; ``{}`` when the frame has no label space
        (no ``target``/``labels`` list columns) or no rows.
    """
    if not {"target", "labels"} <= set(samples.columns) or samples.height == 0:
        return {}
    if samples.schema["labels"] != pl.List(pl.Utf8) or samples.schema["target"] != pl.List(pl.Utf8):
        return {}
    return {"exact_match": random_guess_expectation(samples), "format_correct": 1.0}
