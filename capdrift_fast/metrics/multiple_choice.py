"""Multiple-choice accuracy from per-choice log-likelihoods, as lm-evaluation-harness defines it.

Source: lm-evaluation-harness 0.4.13, ``lm_eval/api/task.py`` ``ConfigurableTask.process_results``
(``output_type: multiple_choice``), aggregated with ``mean`` (``lm_eval/api/metrics.py``), as in task YAMLs such
as ``lm_eval/tasks/arc/arc_easy.yaml`` (``metric_list: acc, acc_norm`` with ``aggregation: mean``):

- ``acc``: ``argmax_i ll_i`` is a gold choice (``ll_i`` the summed log-probability of choice ``i``'s
  continuation given the context);
- ``acc_norm``: ``argmax_i ll_i / len(choice_i)``, the length in *characters* of the choice text (without the
  target delimiter) -- what lm-eval 0.4.13 computes, although its docs speak of bytes;
- ``acc_bytes``: ``argmax_i ll_i / len(choice_i.encode("utf-8"))``.

``argmax`` takes the first of equal values (``numpy.argmax``). A sample may have several gold choices (lm-eval's
``multiple_target``): the prediction is right when it is any of them.

Frame columns read (one row per log-likelihood record joined with its sample): ``choice_logprobs``
(List[Float64]), ``choices`` (List[Utf8], the choice texts) and ``gold`` (List[Int32], gold choice indices).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

NORMALISATIONS = ("none", "chars", "bytes")


def predictions(frame: pl.DataFrame, norm: Literal["none", "chars", "bytes"] = "none") -> pl.Series:
    """The predicted choice index per row (Int32; null where the row has no log-likelihoods).

    Raises:
        ValueError: a row's log-likelihoods and choices differ in number, or ``norm`` is unknown.
    """
    if norm not in NORMALISATIONS:
        raise ValueError(f"norm must be one of {NORMALISATIONS}, got {norm!r}")
    out: list[int | None] = []
    for lls, choices in zip(frame["choice_logprobs"].to_list(), frame["choices"].to_list(), strict=True):
        if lls is None:
            out.append(None)
            continue
        if len(lls) != len(choices):
            raise ValueError(f"{len(lls)} log-likelihoods for {len(choices)} choices")
        v = np.asarray(lls, dtype=np.float64)
        if norm == "chars":
            v = v / np.array([float(len(c)) for c in choices])
        elif norm == "bytes":
            v = v / np.array([float(len(c.encode("utf-8"))) for c in choices])
        out.append(int(np.argmax(v)))
    return pl.Series("pred", out, dtype=pl.Int32)


def choice_accuracy(frame: pl.DataFrame, norm: Literal["none", "chars", "bytes"] = "none") -> pl.Series:
    """1.0 where the (normalised) argmax choice is a gold choice, else 0.0 (also without log-likelihoods)."""
    pred = predictions(frame, norm)
    hit = [float(p is not None and p in (g or [])) for p, g in zip(pred.to_list(), frame["gold"].to_list())]
    return pl.Series("acc", hit, dtype=pl.Float64)


def random_choice_expectation(samples: pl.DataFrame) -> float | None:
    """Expected accuracy of picking a choice uniformly at random: ``mean_i |gold_i| / k_i`` (``1/k`` per item
    with one gold choice); None without ``choices``/``gold`` columns or rows."""
    if not {"choices", "gold"} <= set(samples.columns) or samples.height == 0:
        return None
    vals = [len(set(g or [])) / len(c) for c, g in zip(samples["choices"].to_list(), samples["gold"].to_list()) if c]
    return float(np.mean(vals)) if vals else None
