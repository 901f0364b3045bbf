"""Classification metrics for Super-NaturalInstructions tasks, as Polars expressions.

- ``exact_match``: SuperNI's official metric (``eval/automatic/evaluation.py`` of
  allenai/natural-instructions, copied in Tk-Instruct's ``src/compute_metrics.py``): the prediction
  equals any gold output after ``normalize_answer`` -- lower-case, delete ASCII punctuation
  (``string.punctuation``), collapse whitespace (``' '.join(text.split())``). Unlike SQuAD's
  normaliser it keeps articles ("adapted from Squad v1.1 evaluation, without removing the articles").
- ``format_correct``: format correctness (Kung & Peng 2023, "Do Models Really Learn to Follow
  Instructions? An Empirical Study of Instruction Tuning", ACL 2023, arXiv:2305.11383): the
  normalised prediction lies in the task's label space (the normalised gold outputs of all instances).
- :func:`random_guess_baseline`: Kung & Peng's random baseline for classification -- each instance
  answered with a label drawn uniformly from the label space -- and
  :func:`random_guess_expectation`, its analytic expected exact match.

Frames use ``target`` (List[Utf8], the instance's gold outputs) and ``labels`` (List[Utf8], the
task's label space as written), the columns of :meth:`capdrift_fast.benchmarks.superni.SuperNITask.samples`.
"""

from __future__ import annotations

import string

import numpy as np
import polars as pl

from capdrift_fast.metrics.ifeval.pycompat import WS, py_lower

__all__ = [
    "normalize_answer",
    "normalized_set",
    "score_classification",
    "classification_accuracies",
    "random_guess_baseline",
    "random_guess_probabilities",
    "random_guess_expectation",
]

_PUNCT_CLASS = "[" + "".join("\\" + c if c in "\\[]^-&~" else c for c in string.punctuation) + "]"


def normalize_answer(expr: pl.Expr) -> pl.Expr:
    """SuperNI's ``normalize_answer`` as a Polars expression (Utf8 -> Utf8, null stays null).

    ``white_space_fix(remove_punc(lower(s)))``: Python's ``str.lower`` (see
    :func:`~capdrift_fast.metrics.ifeval.pycompat.py_lower`), every ``string.punctuation`` character
    deleted, runs of Python whitespace (``str.split()``) made one space, ends stripped.
    """
    expr = py_lower(expr).str.replace_all(_PUNCT_CLASS, "")
    return expr.str.replace_all(WS + "+", " ").str.strip_chars(" ")


def normalized_set(expr: pl.Expr) -> pl.Expr:
    """A List[Utf8] expression normalised element-wise, deduplicated and sorted (a set of answers)."""
    return expr.list.eval(normalize_answer(pl.element())).list.unique().list.sort()


def score_classification(
    frame: pl.DataFrame | pl.LazyFrame, response: str = "response", target: str = "target", labels: str = "labels"
) -> pl.DataFrame:
    """Exact match and format correctness of every response.

    Args:
        frame: one row per response: ``response`` (Utf8; null counts as ``""``), ``target``
            (List[Utf8], at least one gold output) and ``labels`` (List[Utf8], the label space).

    Returns:
        ``frame`` plus ``prediction`` (the normalised response), ``exact_match`` and
        ``format_correct`` (Boolean). Row order is kept.
    """
    lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    return (
        lazy.with_columns(prediction=normalize_answer(pl.col(response).fill_null("")))
        .with_columns(
            exact_match=pl.col(target).list.eval(normalize_answer(pl.element())).list.contains(pl.col("prediction")),
            format_correct=pl.col(labels).list.eval(normalize_answer(pl.element())).list.contains(pl.col("prediction")),
        )
        .collect()
    )


def classification_accuracies(scored: pl.DataFrame) -> dict[str, float]:
    """Means over responses of the Boolean metric columns of :func:`score_classification` (and
    ``rougeL`` when present), fractions in [0, 1] (SuperNI reports them x 100).

    Raises:
        ValueError: the frame is empty.
    """
    if scored.height == 0:
        raise ValueError("classification_accuracies: no responses")
    cols = [c for c in ("exact_match", "format_correct", "rougeL") if c in scored.columns]
    return {c: float(scored[c].cast(pl.Float64).mean()) for c in cols}


def random_guess_baseline(samples: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Kung & Peng (2023)'s random baseline: answer each instance with a label drawn uniformly from
    the label space, then score it with SuperNI's exact match.

    Args:
        samples: one row per instance with ``target`` (List[Utf8]) and ``labels`` (List[Utf8]).
        seed: seed of the ``numpy.random.default_rng`` stream; the same seed and samples give the same
            guesses.

    Returns:
        One row per instance (same order): ``guess`` (Utf8, a normalised label; the label space is the
        set of distinct normalised labels, sorted, so spellings of one label count once) and
        ``exact_match`` (Float64, 1.0/0.0). Its mean is an unbiased draw around
        :func:`random_guess_expectation`.

    Raises:
        ValueError: a row has an empty label space.
    """
    space = samples.select(space=normalized_set(pl.col("labels")))["space"]
    sizes = space.list.len()
    if samples.height and int(sizes.min()) == 0:  # type: ignore[arg-type]
        raise ValueError("random_guess_baseline: a row has an empty label space")
    draws = np.random.default_rng(seed).random(samples.height)
    index = pl.Series("index", np.floor(draws * sizes.to_numpy()).astype(np.int64))
    guesses = pl.DataFrame({"space": space, "index": index}).select(guess=pl.col("space").list.get(pl.col("index")))
    return guesses.with_columns(
        exact_match=samples.select(gold=normalized_set(pl.col("target")))["gold"]
        .list.contains(guesses["guess"])
        .cast(pl.Float64)
    )


def random_guess_probabilities(samples: pl.DataFrame) -> pl.Series:
    """Per instance, the probability that a uniform guess from the label space is an exact match:
    ``|normalised gold outputs ∩ normalised label space| / |normalised label space|`` (Float64)."""
    sets = samples.select(gold=normalized_set(pl.col("target")), space=normalized_set(pl.col("labels")))
    return sets.select(p=pl.col("gold").list.set_intersection(pl.col("space")).list.len()
                       / pl.col("space").list.len())["p"]


def random_guess_expectation(samples: pl.DataFrame) -> float:
    """Expected exact match of :func:`random_guess_baseline` (any seed): the mean over instances of
    :func:`random_guess_probabilities` (e.g. 0.5 for a two-label task with one gold label each).

    Raises:
        ValueError: no samples.
    """
    if samples.height == 0:
        raise ValueError("random_guess_expectation: no samples")
    return float(random_guess_probabilities(samples).mean())  # type: ignore[arg-type]
