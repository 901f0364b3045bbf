"""Polars versions of the IFEval checkers that can be written as expressions.

Each entry of :data:`VECTORIZED` maps an instruction id to a function of the instruction-variant frame
(see :func:`verdicts`) returning ``(ok, exact)`` Boolean expressions: ``ok`` is the verdict and
``exact`` says the expression is guaranteed to agree with the Python checker in :mod:`.checkers` for
that row (e.g. a keyword that is a plain ASCII literal and a text without case-folding oddities, see
:mod:`.pycompat`). Rows that are not ``exact`` -- and every row of the instructions that need NLTK,
langdetect or JSON parsing -- get a null verdict and are checked in Python by :mod:`.evaluate`.

Columns of the frame: ``text`` (Utf8, one of the 8 loose variants) and the instruction's arguments in
canonical columns (:data:`ARGUMENT_SCHEMA`, filled by :func:`argument_columns`):

- ``a_list`` (List[Utf8]): keywords / forbidden_words; ``a_plain`` (Boolean): all are plain ASCII literals;
- ``a_str`` (Utf8): keyword, lower-cased letter, ``end_phrase.strip().lower()``,
  ``prompt_to_repeat.strip().lower()``, ``postscript_marker`` or ``section_spliter``;
- ``a_num`` (Int64): the count / threshold; ``a_less`` (Boolean): the relation is ``'less than'``;
- ``a_pat`` (Utf8): a ready Polars pattern where the regex argument is a plain literal, else null.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from .pycompat import CASE_FOLD_UNSAFE, PY_WHITESPACE, WS, digit_class, is_plain_ascii_literal
from .registry import Instruction
from .text import nltk_word_class

__all__ = ["VECTORIZED", "ARGUMENT_SCHEMA", "verdicts", "argument_columns"]

Expr = pl.Expr
_TEXT = pl.col("text")
# A character that is neither Python whitespace nor "*" (content of a highlight).
_CONTENT = "[^" + WS[1:-1] + r"\*]"
_NOT_WS = "[^" + WS[1:]


def _compare(count: Expr) -> Expr:
    return pl.when(pl.col("a_less")).then(count < pl.col("a_num")).otherwise(count >= pl.col("a_num"))


def _strip(expr: Expr) -> Expr:
    return expr.str.strip_chars(PY_WHITESPACE)


def _ascii_param() -> Expr:
    return pl.col("a_str").str.contains(r"^[\x00-\x7f]*$")


def _case_fold_safe() -> Expr:
    return ~_TEXT.str.contains(CASE_FOLD_UNSAFE)


def _is_ascii_text() -> Expr:
    return ~_TEXT.str.contains(r"[^\x00-\x7f]")


_ALWAYS = pl.lit(True)


def _no_comma() -> tuple[Expr, Expr]:
    return ~_TEXT.str.contains(",", literal=True), _ALWAYS


def _quotation() -> tuple[Expr, Expr]:
    s = _strip(_TEXT)
    return (s.str.len_chars() > 1) & s.str.starts_with('"') & s.str.ends_with('"'), _ALWAYS


def _constrained_response() -> tuple[Expr, Expr]:
    options = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    return pl.any_horizontal([_TEXT.str.contains(o, literal=True) for o in options]), _ALWAYS


def _placeholders() -> tuple[Expr, Expr]:
    # Python and Rust "." both match anything but "\n".
    return _TEXT.str.count_matches(r"\[.*?\]") >= pl.col("a_num"), _ALWAYS


def _bullets() -> tuple[Expr, Expr]:
    stars = _TEXT.str.count_matches(rf"(?m)^{WS}*\*[^\*].*$")
    dashes = _TEXT.str.count_matches(rf"(?m)^{WS}*-.*$")
    return (stars + dashes) == pl.col("a_num"), _ALWAYS


def _highlights() -> tuple[Expr, Expr]:
    # Every match is extracted (blank ones consume their asterisks too), then non-blank ones counted.
    single = _TEXT.str.extract_all(r"\*[^\n\*]*\*").list.eval(pl.element().str.contains(_CONTENT)).list.sum()
    double = _TEXT.str.extract_all(r"\*\*[^\n\*]*\*\*").list.eval(pl.element().str.contains(_CONTENT)).list.sum()
    return (single + double) >= pl.col("a_num"), _ALWAYS


def _title() -> tuple[Expr, Expr]:
    titles = _TEXT.str.extract_all(r"<<[^\n]+>>")
    content = pl.element().str.strip_chars_start("<").str.strip_chars_end(">").str.contains(_NOT_WS)
    return titles.list.eval(content).list.any(), _ALWAYS


def _number_words() -> tuple[Expr, Expr]:
    return _compare(_TEXT.str.count_matches(nltk_word_class() + "+")), _ALWAYS


def _sections() -> tuple[Expr, Expr]:
    # a_pat: rf"{WS}?{spliter}{WS}?{D}+{WS}?" for plain splitters (see argument_columns), else null.
    count = _TEXT.str.count_matches(pl.col("a_pat"))
    return count >= pl.col("a_num"), pl.col("a_pat").is_not_null()


def _number_paragraphs() -> tuple[Expr, Expr]:
    # re.split(r"\s?\*\*\*\s?") emulated by replacing each separator match with NUL, then splitting.
    parts = _TEXT.str.replace_all(rf"{WS}?\*\*\*{WS}?", "\x00").str.split("\x00")
    blank = parts.list.eval(~pl.element().str.contains(_NOT_WS))
    n = parts.list.len().cast(pl.Int64)
    inner_blank = blank.list.slice(1, pl.max_horizontal(n - 2, pl.lit(0))).list.any()
    count = n - blank.list.first().cast(pl.Int64) - (blank.list.last() & (n > 1)).cast(pl.Int64)
    return ~inner_blank & (count == pl.col("a_num")), ~_TEXT.str.contains("\x00", literal=True)


def _two_responses() -> tuple[Expr, Expr]:
    parts = _TEXT.str.split("******")
    stripped = parts.list.eval(pl.element().str.strip_chars(PY_WHITESPACE))
    n = parts.list.len().cast(pl.Int64)
    inner_blank = stripped.list.slice(1, pl.max_horizontal(n - 2, pl.lit(0))).list.eval(pl.element() == "").list.any()
    kept = stripped.list.eval(pl.element().filter(pl.element() != ""))
    two_different = (kept.list.len() == 2) & (kept.list.first() != kept.list.last())
    return ~inner_blank & two_different.fill_null(False), _ALWAYS


def _letter_frequency() -> tuple[Expr, Expr]:
    # Polars and Python lower-casing agree on every character's ASCII content (checked in the tests),
    # so counting an ASCII character in the lower-cased text is exact.
    count = _TEXT.str.to_lowercase().str.count_matches(pl.col("a_str"), literal=True)
    return _compare(count), _ascii_param()


def _end_checker() -> tuple[Expr, Expr]:
    tail = _strip(_TEXT).str.strip_chars('"').str.to_lowercase()
    return tail.str.ends_with(pl.col("a_str")), _ascii_param()


def _repeat_prompt() -> tuple[Expr, Expr]:
    head = _strip(_TEXT).str.to_lowercase()
    return head.str.starts_with(pl.col("a_str")), _ascii_param()


def _postscript() -> tuple[Expr, Expr]:
    lower = _TEXT.str.to_lowercase()
    marker = pl.col("a_str")
    ok = (
        pl.when(marker == "P.P.S").then(lower.str.contains(rf"p\.{WS}?p\.{WS}?s"))
        .when(marker == "P.S.").then(lower.str.contains(rf"p\.{WS}?s\."))
        .otherwise(lower.str.contains(pl.col("a_pat"), literal=True))
    )
    exact = marker.is_in(["P.P.S", "P.S."]) | pl.col("a_pat").is_not_null()
    return ok, exact


def _keyword_frequency() -> tuple[Expr, Expr]:
    count = _TEXT.str.count_matches(pl.col("a_pat"))
    return _compare(count), pl.col("a_pat").is_not_null() & _case_fold_safe()


_SIMPLE: dict[str, Callable[[], tuple[Expr, Expr]]] = {
    "punctuation:no_comma": _no_comma,
    "startend:quotation": _quotation,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_content:number_placeholders": _placeholders,
    "detectable_format:number_bullet_lists": _bullets,
    "detectable_format:number_highlighted_sections": _highlights,
    "detectable_format:title": _title,
    "length_constraints:number_words": _number_words,
    "detectable_format:multiple_sections": _sections,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "combination:two_responses": _two_responses,
    "keywords:letter_frequency": _letter_frequency,
    "startend:end_checker": _end_checker,
    "combination:repeat_prompt": _repeat_prompt,
    "detectable_content:postscript": _postscript,
    "keywords:frequency": _keyword_frequency,
}


def _keyword_lists(frame: pl.DataFrame, forbidden: bool) -> pl.DataFrame:
    """existence: every keyword found; forbidden_words: no word found as a whole word (``\\b...\\b``)."""
    long = frame.select("_k", "text", "a_plain", pl.col("a_list").alias("word")).explode("word")
    plain = pl.col("a_plain")
    if forbidden:
        # Rust's \b equals Python's only where both sides agree on \w: guaranteed on ASCII text.
        pattern = pl.lit(r"(?i)\b") + pl.col("word") + pl.lit(r"\b")
        exact = plain & _is_ascii_text()
    else:
        pattern = pl.lit("(?i)") + pl.col("word")
        exact = plain & _case_fold_safe()
    long = long.with_columns(_exact=exact).with_columns(
        _hit=pl.when(pl.col("_exact")).then(_TEXT.str.contains(pattern))
    )
    agg = long.group_by("_k").agg(_exact=pl.col("_exact").all(), _any=pl.col("_hit").any(), _all=pl.col("_hit").all())
    ok = ~pl.col("_any") if forbidden else pl.col("_all")
    return agg.select("_k", ok=pl.when(pl.col("_exact")).then(ok))


#: instruction ids with a (possibly partial) Polars implementation.
VECTORIZED: frozenset[str] = frozenset(_SIMPLE) | {"keywords:existence", "keywords:forbidden_words"}


def argument_columns(inst: Instruction) -> dict[str, object]:
    """The canonical argument columns (see module docstring) of one instruction, plus ``a_pat``:
    a precompiled Polars pattern where the instruction's regex argument is a plain ASCII literal
    (None otherwise, which routes the instruction to Python)."""
    cols: dict[str, object] = {"a_list": None, "a_plain": None, "a_str": None, "a_num": None, "a_less": None,
                               "a_pat": None}
    args = dict(inst.args)
    iid = inst.id
    if "keywords" in args or "forbidden_words" in args:
        cols["a_list"] = list(args.get("keywords") or args.get("forbidden_words"))
        cols["a_plain"] = all(is_plain_ascii_literal(w) for w in cols["a_list"])
    for name in ("frequency", "let_frequency", "num_sentences", "num_paragraphs", "num_words", "num_placeholders",
                 "num_bullets", "num_highlights", "num_sections", "capital_frequency"):
        if name in args:
            cols["a_num"] = args[name]
    if any(k.endswith("relation") for k in args):
        cols["a_less"] = inst.less_than
    if iid == "keywords:frequency":
        cols["a_str"] = args["keyword"]
        if is_plain_ascii_literal(args["keyword"]):
            cols["a_pat"] = "(?i)" + args["keyword"]
    elif iid == "keywords:letter_frequency":
        cols["a_str"] = args["letter"]
    elif iid == "startend:end_checker":
        cols["a_str"] = args["end_phrase"].strip().lower()
    elif iid == "combination:repeat_prompt":
        cols["a_str"] = args["prompt_to_repeat"].strip().lower()
    elif iid == "detectable_content:postscript":
        cols["a_str"] = args["postscript_marker"]
        if is_plain_ascii_literal(args["postscript_marker"]):
            cols["a_pat"] = args["postscript_marker"].lower()
    elif iid == "detectable_format:multiple_sections":
        cols["a_str"] = args["section_spliter"]
        if is_plain_ascii_literal(args["section_spliter"]):
            cols["a_pat"] = f"{WS}?{args['section_spliter']}{WS}?{digit_class()}+{WS}?"
    return cols


ARGUMENT_SCHEMA = {
    "a_list": pl.List(pl.Utf8), "a_plain": pl.Boolean, "a_str": pl.Utf8, "a_num": pl.Int64, "a_less": pl.Boolean,
    "a_pat": pl.Utf8,
}


def verdicts(frame: pl.DataFrame, instruction_id: str) -> pl.Series:
    """Vectorised verdicts of one instruction id over its rows of the instruction-variant frame.

    Args:
        frame: rows of one instruction id with columns ``_k`` (UInt32, unique row key), ``text`` and
            the argument columns of :data:`ARGUMENT_SCHEMA`.
        instruction_id: the id shared by all rows.

    Returns:
        A Boolean Series aligned with ``frame``: the verdict, or null where the row must be checked in
        Python (non-exact rows, or an id without a Polars implementation).
    """
    if instruction_id in ("keywords:existence", "keywords:forbidden_words"):
        res = _keyword_lists(frame, forbidden=instruction_id == "keywords:forbidden_words")
        return frame.select("_k").join(res, on="_k", how="left", maintain_order="left")["ok"]
    if instruction_id not in _SIMPLE:
        return pl.Series("ok", [None] * frame.height, dtype=pl.Boolean)
    ok, exact = _SIMPLE[instruction_id]()
    out = frame.select(ok=pl.when(exact).then(ok), _exact=exact)
    if out.filter(pl.col("_exact") & pl.col("ok").is_null()).height:
        raise AssertionError(f"vectorised IFEval checker {instruction_id!r} produced a null verdict")
    return out["ok"]
