"""ROUGE-L F-measure as Super-NaturalInstructions computes it.

Reference: SuperNI's ``eval/automatic/evaluation.py`` (allenai/natural-instructions) and Tk-Instruct's
``src/compute_metrics.py``, default (English) track: ``rouge_scorer.RougeScorer(['rougeL'],
use_stemmer=True).score(prediction=..., target=gold).fmeasure`` from Google's ``rouge-score``
package, maximised over the instance's gold outputs (``metric_max_over_ground_truths``). No
``normalize_answer`` is applied first.

rouge-score's steps (``rouge_score/tokenize.py``, ``rouge_scorer._score_lcs``) and how they run here:

1. tokenise: ``text.lower()``, every run of characters outside ``[a-z0-9]`` made a space, split --
   vectorised in Polars (Python-exact lower-casing, :func:`~.ifeval.pycompat.py_lower`);
2. stem tokens longer than 3 characters with NLTK's ``PorterStemmer()`` -- once per *distinct* token,
   in Python (a stemmer is no Polars expression), then joined back;
3. LCS length of the target and prediction token lists -- once per distinct (target, prediction)
   pair, in Python: an LCS cannot be expressed as a Polars expression, so the bit-parallel algorithm
   of Allison & Dix (1986) / Hyyrö (2004) computes the same integer as rouge-score's DP table;
4. ``precision = lcs / len(prediction)``, ``recall = lcs / len(target)``,
   ``f = 2 * precision * recall / (precision + recall)`` (0 when either list is empty or
   ``precision + recall == 0``) -- vectorised, same float operations in the same order, so values are
   bit-identical (``tests/metrics/test_rouge_reference.py`` compares with rouge-score itself).
"""

from __future__ import annotations

import functools

import polars as pl

from capdrift_fast.metrics.ifeval.pycompat import py_lower

__all__ = ["rouge_tokens", "lcs_length", "rouge_l", "score_rouge_l"]


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    from nltk.stem import porter

    return porter.PorterStemmer()


def rouge_tokens(expr: pl.Expr) -> pl.Expr:
    """rouge-score's tokens *before stemming* (Utf8 -> List[Utf8]; null -> ``[]``): lower-case, split
    on every run of characters outside ``[a-z0-9]``, empty pieces dropped."""
    spaced = py_lower(expr.fill_null("")).str.replace_all("[^a-z0-9]+", " ").str.strip_chars(" ")
    return pl.when(spaced == "").then(pl.lit([], dtype=pl.List(pl.Utf8))).otherwise(spaced.str.split(" "))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, O(len(a) * len(b) / w)).

    Each token of ``a`` owns a bit mask of its positions; ``V`` starts all ones over ``len(a)`` bits
    and for each token of ``b``: ``U = V & M[token]``, ``V = (V + U) | (V - U)``; the LCS length is the
    number of zero bits left in the low ``len(a)`` bits (Hyyrö 2004, "Bit-parallel LCS-length
    computation revisited").
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        m = masks.get(tok)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _stem_lists(tokens: pl.Series) -> pl.Series:
    """Stem every token longer than 3 characters (NLTK Porter, once per distinct token); drop any
    empty or non-``[a-z0-9]`` token afterwards, as rouge-score does."""
    rows = pl.DataFrame({"tok": tokens}).with_row_index("_r")
    flat = rows.explode("tok")  # an empty list gives no row (or a null row): both handled below
    distinct = flat["tok"].drop_nulls().unique()
    long = distinct.filter(distinct.str.len_chars() > 3).to_list()
    stem = _stemmer().stem
    if long:
        flat = flat.with_columns(pl.col("tok").replace(dict(zip(long, map(stem, long), strict=True))))
    valid = pl.col("tok").drop_nulls().filter(pl.col("tok").drop_nulls().str.contains("^[a-z0-9]+$"))
    lists = flat.group_by("_r").agg(valid)
    out = rows.select("_r").join(lists, on="_r", how="left", maintain_order="left")
    return out["tok"].fill_null(pl.lit([], dtype=pl.List(pl.Utf8))).alias(tokens.name)


def rouge_l(predictions: pl.Series, targets: pl.Series) -> pl.Series:
    """ROUGE-L F-measure of each (prediction, target) pair, as ``rouge_scorer.RougeScorer(['rougeL'],
    use_stemmer=True).score(target, prediction)['rougeL'].fmeasure``.

    Args:
        predictions, targets: Utf8 series of equal length (nulls count as ``""``).

    Returns:
        Float64 series in [0, 1], one per pair.

    Raises:
        ValueError: the lengths differ.
    """
    if predictions.len() != targets.len():
        raise ValueError(f"rouge_l: {predictions.len()} predictions for {targets.len()} targets")
    pairs = pl.DataFrame({"p": predictions.cast(pl.Utf8), "t": targets.cast(pl.Utf8)})
    # distinct texts are tokenised once, distinct token-list pairs get one LCS each
    texts = pl.concat([pairs["p"], pairs["t"]]).unique().alias("text").to_frame()
    toks = texts.with_columns(tokens=rouge_tokens(pl.col("text")))
    toks = toks.with_columns(_stem_lists(toks["tokens"]).alias("tokens"))
    toks = toks.with_columns(key=pl.col("tokens").list.join(" "), n=pl.col("tokens").list.len().cast(pl.Float64))
    joined = (
        pairs.with_row_index("_i")
        .join(toks.select(p="text", pk="key", pn="n"), on="p", how="left", nulls_equal=True)
        .join(toks.select(t="text", tk="key", tn="n"), on="t", how="left", nulls_equal=True)
        .sort("_i")
    )
    distinct = joined.select("tk", "pk").unique()
    lcs = [
        lcs_length(t.split(" ") if t else [], p.split(" ") if p else [])
        for t, p in zip(distinct["tk"].to_list(), distinct["pk"].to_list(), strict=True)
    ]
    distinct = distinct.with_columns(lcs=pl.Series(lcs, dtype=pl.Float64))
    out = joined.join(distinct, on=["tk", "pk"], how="left", nulls_equal=True).sort("_i")
    precision = pl.col("lcs") / pl.col("pn")
    recall = pl.col("lcs") / pl.col("tn")
    f = (
        pl.when((pl.col("pn") == 0) | (pl.col("tn") == 0)).then(0.0)
        .when(precision + recall > 0).then(2.0 * precision * recall / (precision + recall))
        .otherwise(0.0)
    )
    return out.select(f.alias("rougeL"))["rougeL"]


def score_rouge_l(frame: pl.DataFrame, response: str = "response", target: str = "target") -> pl.Series:
    """SuperNI's instance ROUGE-L: the maximum of :func:`rouge_l` over the gold outputs.

    Args:
        frame: one row per response: ``response`` (Utf8) and ``target`` (List[Utf8], non-empty).

    Returns:
        Float64 series ``rougeL``, one value per row in [0, 1], row order kept.
    """
    long = frame.select(pl.col(response).alias("p"), pl.col(target).alias("t")).with_row_index("_row").explode("t")
    long = long.with_columns(f=rouge_l(long["p"], long["t"].fill_null("")))
    return long.group_by("_row", maintain_order=True).agg(pl.col("f").max()).sort("_row")["f"].alias("rougeL")
