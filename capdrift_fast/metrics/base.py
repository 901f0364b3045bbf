"""The metric interface: a registered name, options (a pydantic model) and a vectorised scorer.

A metric scores a frame of generations joined with their references, one row per generation:

- ``response`` (Utf8): the model's output (null counts as ``""``);
- ``target`` (List[Utf8]): the acceptable gold answers (at least one);
- ``labels`` (List[Utf8]): the task's label space, present for tasks that declare one.

:meth:`Metric.score` returns one Float64 value per row, in row order (1.0/0.0 for binary metrics).
Metrics know no benchmark; tasks declared in YAML (:mod:`capdrift_fast.benchmarks.template`) name
them with their options, and plugins add their own through the ``capdrift_fast.metrics`` entry-point group.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict


class Metric(BaseModel):
    """Base class of registered metrics: subclass fields are the metric's options.

    Class attributes:
        binary: values are 0/1 (the drift statistics then use McNemar's test).
        needs_labels: the metric reads the ``labels`` column (a task without a label space cannot use it).
        loglikelihood: the metric scores multiple-choice log-likelihoods (``choice_logprobs``, ``choices``,
            ``gold``; :mod:`capdrift_fast.metrics.multiple_choice`), not a response: only for tasks with
            ``output_type: multiple_choice``, which take no other metric.
        description: one line with the metric's source.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    binary: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = False
    loglikelihood: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """One Float64 value per row of ``frame`` (columns in the module docstring)."""
        raise NotImplementedError


def any_target(frame: pl.DataFrame, matches: "callable[[pl.Expr, pl.Expr], pl.Expr]") -> pl.Series:  # type: ignore[valid-type]
    """1.0 where ``matches(response, target)`` holds for at least one of the row's targets, else 0.0.

    Args:
        frame: ``response`` (Utf8) and ``target`` (List[Utf8]) columns.
        matches: builds a Boolean expression from the response and one target (both Utf8 expressions).
    """
    long = (
        frame.select(pl.col("response").fill_null(""), "target")
        .with_row_index("_row")
        .explode("target")
        .with_columns(_hit=matches(pl.col("response"), pl.col("target").fill_null("")).fill_null(False))
    )
    hits = long.group_by("_row", maintain_order=True).agg(pl.col("_hit").any()).sort("_row")
    return hits["_hit"].cast(pl.Float64)
