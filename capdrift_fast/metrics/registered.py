"""The built-in metrics a task declared in YAML can name (``metrics: [exact_match, ...]``).

Each is registered by name in :data:`capdrift_fast.registry.metrics`; the options are the class fields.

- ``exact_match``: lm-evaluation-harness's ``exact_match`` (``lm_eval/api/metrics.py``,
  ``exact_match_hf_evaluate``) with its options ``ignore_case``, ``ignore_punctuation`` and
  ``regexes_to_ignore`` (each regex removed from response and target before comparing; Rust ``regex``
  syntax, i.e. Python's without look-around), against any of the targets;
- ``normalized_exact_match``: SuperNI's exact match (``compute_metrics.py``: lower-case, ASCII punctuation
  removed, whitespace collapsed; articles kept) -- :mod:`capdrift_fast.metrics.classification`;
- ``numeric_match``: lm-eval's GSM8K answer extraction, ``extract: strict`` (``#### N``) or ``flexible``
  (last number), compared with the first target after gsm8k.yaml's ``regexes_to_ignore`` --
  :mod:`capdrift_fast.metrics.numeric`;
- ``regex_match``: the first match of ``pattern`` (group ``group``) in the response, then ``exact_match``
  with the same options (``[invalid]`` when nothing matches, as lm-eval's regex filter);
- ``rougeL``: SuperNI's ROUGE-L F-measure (rouge-score, stemmed), max over targets -- :mod:`.rouge`;
- ``format_correct``: the normalised response lies in the label space (Kung & Peng 2023) -- needs ``choices``;
- ``contains``: a target occurs in the response (``ignore_case``);
- ``acc``, ``acc_norm``, ``acc_bytes``: multiple-choice accuracy from per-choice log-likelihoods, lm-eval's
  definitions (``lm_eval/api/task.py`` ``process_results``) -- :mod:`capdrift_fast.metrics.multiple_choice`;
  only for ``output_type: multiple_choice`` tasks;
- ``letter_acc``: the one generated answer letter is a gold letter (``output_type: multiple_choice_letters``;
  MMLU's format, lm-eval's ``mmlu_generative``) -- :mod:`capdrift_fast.metrics.letter_choice`.
"""

from __future__ import annotations

import string
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from capdrift_fast.metrics.base import Metric, any_target
from capdrift_fast.metrics.letter_choice import letter_accuracy
from capdrift_fast.metrics.multiple_choice import choice_accuracy
from capdrift_fast.metrics.classification import _PUNCT_CLASS, score_classification
from capdrift_fast.metrics.ifeval.pycompat import py_lower
from capdrift_fast.metrics.numeric import INVALID, extract_flexible, extract_strict, numeric_match
from capdrift_fast.metrics.rouge import score_rouge_l
from capdrift_fast.registry import register_metric

_ = string  # punctuation class built in classification (string.punctuation, escaped)


class _Normalising(Metric):
    """lm-eval's ``exact_match`` options."""

    ignore_case: bool = False
    ignore_punctuation: bool = False
    regexes_to_ignore: list[str] = Field(default_factory=list)

    def normalise(self, expr: pl.Expr) -> pl.Expr:
        """``expr`` after the options, in lm-eval's order: regexes, case, punctuation."""
        for rx in self.regexes_to_ignore:
            expr = expr.str.replace_all(rx, "")
        if self.ignore_case:
            expr = py_lower(expr)
        if self.ignore_punctuation:
            expr = expr.str.replace_all(_PUNCT_CLASS, "")
        return expr


@register_metric("exact_match")
class ExactMatch(_Normalising):
    """lm-eval's exact match against any target (options: ``ignore_case``, ``ignore_punctuation``,
    ``regexes_to_ignore``)."""

    description = "exact match (lm-evaluation-harness exact_match, with its options)"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the (normalised) response equals a (normalised) target."""
        return any_target(frame, lambda r, t: self.normalise(r) == self.normalise(t))


@register_metric("normalized_exact_match")
class NormalizedExactMatch(Metric):
    """SuperNI's normalised exact match (:func:`capdrift_fast.metrics.classification.score_classification`)."""

    description = "exact match after SuperNI normalisation (compute_metrics.py)"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the normalised response equals a normalised target."""
        f = frame.select("response", "target", labels=pl.col("target"))
        return score_classification(f)["exact_match"].cast(pl.Float64)


@register_metric("numeric_match")
class NumericMatch(Metric):
    """lm-eval GSM8K numeric match of the first target: ``extract: strict`` or ``flexible``."""

    extract: Literal["strict", "flexible"] = "flexible"
    description = "numeric match (lm-eval gsm8k strict-match / flexible-extract)"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the extracted number equals the first target's final number."""
        ext = extract_strict if self.extract == "strict" else extract_flexible
        return frame.select(
            numeric_match(ext(pl.col("response").fill_null("")), pl.col("target").list.first()).cast(pl.Float64)
        ).to_series()


@register_metric("regex_match")
class RegexMatch(_Normalising):
    """Extract with ``pattern`` (capture ``group``), then exact match against any target."""

    pattern: str
    group: int = Field(default=1, ge=0)
    description = "regex extraction, then exact match"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the extracted text (``[invalid]`` when none) equals a target after the options."""
        extracted = frame.with_columns(response=pl.col("response").fill_null("").str.extract(self.pattern, self.group)
                                       .fill_null(INVALID))
        return any_target(extracted, lambda r, t: self.normalise(r) == self.normalise(t))


@register_metric("rougeL")
class RougeL(Metric):
    """SuperNI's ROUGE-L F-measure, max over the targets."""

    binary = False
    description = "ROUGE-L F-measure (rouge-score, stemmed), max over targets"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """ROUGE-L F in [0, 1] per row."""
        return score_rouge_l(frame.select("response", "target")).cast(pl.Float64)


@register_metric("format_correct")
class FormatCorrect(Metric):
    """Format correctness (Kung & Peng 2023): the normalised response is in the label space."""

    needs_labels = True
    description = "format correctness: response in the label space (Kung & Peng 2023)"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the SuperNI-normalised response is a normalised label."""
        return score_classification(frame.select("response", "target", "labels"))["format_correct"].cast(pl.Float64)


@register_metric("contains")
class Contains(Metric):
    """A target occurs in the response (``ignore_case``)."""

    ignore_case: bool = False
    description = "a target is a substring of the response"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where some target is a substring of the response."""
        def hit(r: pl.Expr, t: pl.Expr) -> pl.Expr:
            if self.ignore_case:
                r, t = py_lower(r), py_lower(t)
            return r.str.contains(t, literal=True)

        return any_target(frame, hit)


class _ChoiceMetric(Metric):
    """lm-eval's multiple-choice accuracy (``process_results`` of ``output_type: multiple_choice`` in
    ``lm_eval/api/task.py``): 1.0 where the argmax choice, its summed log-likelihood divided by the
    length ``norm`` names, is a gold choice."""

    loglikelihood = True
    norm: ClassVar[Literal["none", "chars", "bytes"]] = "none"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the argmax choice (log-likelihood / length in :attr:`norm` units) is gold, else 0.0."""
        return choice_accuracy(frame, self.norm)


@register_metric("acc")
class ChoiceAccuracy(_ChoiceMetric):
    """lm-eval's multiple-choice ``acc``: the choice of highest summed log-likelihood is gold."""

    description = "multiple-choice accuracy, argmax of summed log-likelihood (lm-eval acc, api/task.py)"


@register_metric("acc_norm")
class ChoiceAccuracyNorm(_ChoiceMetric):
    """lm-eval's ``acc_norm``: log-likelihood divided by the choice's length in characters."""

    description = "multiple-choice accuracy, log-likelihood per character of the choice (lm-eval acc_norm)"
    norm = "chars"


@register_metric("acc_bytes")
class ChoiceAccuracyBytes(_ChoiceMetric):
    """lm-eval's ``acc_bytes``: log-likelihood divided by the choice's UTF-8 length."""

    description = "multiple-choice accuracy, log-likelihood per UTF-8 byte of the choice (lm-eval acc_bytes)"
    norm = "bytes"


@register_metric("letter_acc")
class LetterAccuracy(Metric):
    """Letter-choice accuracy: the generated answer letter is a gold letter (:mod:`~capdrift_fast.metrics.letter_choice`;
    MMLU's ``A. ... Answer:`` format, lm-eval's ``mmlu_generative``)."""

    description = "letter-choice accuracy: the one generated letter is the gold letter (MMLU format, lm-eval *_generative)"

    def score(self, frame: pl.DataFrame) -> pl.Series:
        """1.0 where the stripped response is one of the gold letters (``target``)."""
        return letter_accuracy(frame)
