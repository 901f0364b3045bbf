"""Numeric match (GSM8K, Cobbe et al. 2021, arXiv:2110.14168) as Polars expressions.

Definition: lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``, version 3.0):

- answer extraction (``filter_list``), lm-eval's ``RegexFilter`` then ``take_first``:

  - ``strict-match``: the first match of ``#### (\\-?[0-9\\.\\,]+)`` (its group), the format the
    GSM8K solutions end with;
  - ``flexible-extract``: the *last* match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (its first non-empty
    group, ``group_select: -1``), i.e. the last number-like token of the response;
  - no match: the fallback ``[invalid]``; the match is ``strip()``-ed.

- comparison: lm-eval's ``exact_match`` (``exact_match_hf_evaluate``) of the extracted answer with
  the full gold solution, both with ``regexes_to_ignore`` removed in order (``,``, ``\\$``,
  ``(?s).*#### `` (everything up to the final-answer marker), ``\\.$`` (a trailing period)) and
  lower-cased (``ignore_case: true``, ``ignore_punctuation: false``).

So ``"$1,234."`` in a response matches a gold ``#### 1234``. The Rust ``regex`` engine behind Polars
and Python's ``re`` agree on these patterns: ASCII classes only, and leftmost-first alternation in
both. One difference is handled explicitly: Python's ``$`` also matches before a final ``\\n``, so
``\\.$`` is written ``\\.(\\n?)$`` -> ``$1`` here (the newline is kept, as ``re.sub`` keeps it).
``tests/metrics/test_numeric_reference.py`` compares every verdict with lm-eval's own
``RegexFilter``/``take_first`` pipeline and ``exact_match`` function, configured from the installed
``gsm8k.yaml``.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "STRICT_RE",
    "FLEXIBLE_RE",
    "IGNORE_RES",
    "INVALID",
    "normalize_number",
    "extract_strict",
    "extract_flexible",
    "numeric_match",
    "score_numeric",
    "numeric_accuracies",
]

#: ``strict-match`` pattern of ``gsm8k.yaml``.
STRICT_RE = r"#### (\-?[0-9\.\,]+)"
#: ``flexible-extract`` pattern of ``gsm8k.yaml``.
FLEXIBLE_RE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
#: ``regexes_to_ignore`` of ``gsm8k.yaml``'s ``exact_match``, in order (Python ``re`` syntax).
IGNORE_RES = (r",", r"\$", r"(?s).*#### ", r"\.$")
#: lm-eval's ``RegexFilter`` fallback when nothing matches.
INVALID = "[invalid]"

# IGNORE_RES for Rust's regex engine: identical except that Python's `$` (no MULTILINE) also matches
# just before a string-final "\n"; the capture puts that newline back.
_IGNORE_POLARS = ((r",", ""), (r"\$", ""), (r"(?s).*#### ", ""), (r"\.(\n?)$", "$1"))


def normalize_number(expr: pl.Expr) -> pl.Expr:
    """lm-eval ``exact_match`` preprocessing with gsm8k.yaml's settings: ``IGNORE_RES`` removed in
    order, then lower-cased. Utf8 -> Utf8, null stays null."""
    for pattern, repl in _IGNORE_POLARS:
        expr = expr.str.replace_all(pattern, repl)
    return expr.str.to_lowercase()


def extract_strict(response: pl.Expr) -> pl.Expr:
    """``strict-match``: group 1 of the first ``STRICT_RE`` match, else ``[invalid]`` (also for a null
    response, which lm-eval treats as ``""``). Utf8 -> Utf8."""
    return response.str.extract(STRICT_RE, 1).fill_null(INVALID)


def extract_flexible(response: pl.Expr) -> pl.Expr:
    """``flexible-extract``: the last ``FLEXIBLE_RE`` match, else ``[invalid]``. Utf8 -> Utf8.

    Each alternative of the pattern is one whole capture group, so the whole match equals lm-eval's
    "first non-empty group of the tuple"; matches hold no whitespace, so its ``strip()`` is a no-op.
    """
    return response.str.extract_all(FLEXIBLE_RE).list.last().fill_null(INVALID)


def numeric_match(extracted: pl.Expr, target: pl.Expr) -> pl.Expr:
    """lm-eval ``exact_match`` of one extracted answer with the gold solution text (Boolean)."""
    return normalize_number(extracted) == normalize_number(target)


def score_numeric(frame: pl.DataFrame | pl.LazyFrame, response: str = "response", target: str = "target") -> pl.DataFrame:
    """Both GSM8K extractions and their numeric match, for every row.

    Args:
        frame: one row per response, with the model's ``response`` (Utf8; null counts as ``""``) and
            the gold solution ``target`` (Utf8, GSM8K's ``answer`` field, ``... #### N``).

    Returns:
        ``frame`` with added columns ``extracted_strict``, ``extracted_flexible`` (Utf8, the filtered
        answers, ``[invalid]`` when none), ``numeric_match_strict`` and ``numeric_match_flexible``
        (Boolean). Row order is kept.

    Raises:
        polars.exceptions.ColumnNotFoundError: a column is missing.
    """
    lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    return (
        lazy.with_columns(
            extracted_strict=extract_strict(pl.col(response)),
            extracted_flexible=extract_flexible(pl.col(response)),
        )
        .with_columns(
            numeric_match_strict=numeric_match(pl.col("extracted_strict"), pl.col(target)),
            numeric_match_flexible=numeric_match(pl.col("extracted_flexible"), pl.col(target)),
        )
        .collect()
    )


def numeric_accuracies(scored: pl.DataFrame) -> dict[str, float]:
    """Mean numeric match of a frame returned by :func:`score_numeric`: ``numeric_match_strict`` and
    ``numeric_match_flexible``, fractions in [0, 1] (lm-eval's ``mean`` aggregation).

    Raises:
        ValueError: the frame is empty.
    """
    if scored.height == 0:
        raise ValueError("numeric_accuracies: no responses")
    return {c: float(scored[c].cast(pl.Float64).mean()) for c in ("numeric_match_strict", "numeric_match_flexible")}
