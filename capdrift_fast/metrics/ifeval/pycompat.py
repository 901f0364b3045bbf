"""Character classes that make Polars (Rust ``regex``) patterns match exactly like Python's ``re``.

The reference checkers use Python's ``re`` on ``str``: ``\\s`` is ``str.isspace``, ``\\d`` is
``str.isdecimal``, ``\\w`` is ``str.isalnum() or '_'``, and ``str.strip()`` strips ``str.isspace``
characters. Rust's Unicode classes differ (e.g. ``\\x1c``-``\\x1f`` are Python whitespace but not Rust
``\\s``; combining marks are Rust ``\\w`` but not Python ``\\w``; Rust knows newer Unicode digits). So the
vectorised checkers never use ``\\s``, ``\\d`` or ``\\w``: they use explicit classes built from Python's
own predicates (``\\w`` of the word count comes from NLTK, see :func:`.text.nltk_word_class`), and
``\\b`` only on ASCII text.

Case-insensitive matching of an ASCII literal is identical in both engines except for four
non-ASCII characters that Python's ``re.IGNORECASE`` (and/or Rust's simple case folding) equates with
ASCII letters; texts containing them take the Python path (:data:`CASE_FOLD_UNSAFE`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import polars as pl

__all__ = [
    "PY_WHITESPACE",
    "WS",
    "CASE_FOLD_UNSAFE",
    "REGEX_META",
    "digit_class",
    "ranges_class",
    "is_plain_ascii_literal",
    "LOWER_NEWER",
    "py_lower",
]

#: Every character for which ``str.isspace()`` is true (what ``str.strip()`` removes and Python's
#: ``\s`` matches). Verified against a full code-point scan in the tests.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

#: Non-ASCII characters that some engine matches case-insensitively with an ASCII letter:
#: U+0130 and U+0131 (Python only), U+017F (long s) and U+212A (Kelvin sign) (both).
CASE_FOLD_UNSAFE = "[\u0130\u0131\u017f\u212a]"

#: Code points that Polars' ``str.to_lowercase`` (Rust, Unicode 16) lower-cases but Python 3.11's
#: ``str.lower`` (Unicode 14) keeps: letters first cased in Unicode 15/16 (Cyrillic, Latin
#: Extended-D, Garay, Kirat Rai). Verified against a full code-point scan in the tests.
LOWER_NEWER = (
    "[\\x{1C89}\\x{A7CB}-\\x{A7CC}\\x{A7CE}\\x{A7D2}\\x{A7D4}\\x{A7DA}\\x{A7DC}"
    "\\x{10D50}-\\x{10D65}\\x{16EA0}-\\x{16EB8}]"
)

#: Characters that are special in a Python or Rust regular expression outside a class.
REGEX_META = frozenset("\\.^$*+?{}[]|()")


def ranges_class(pred: Callable[[str], bool], negate: bool = False) -> str:
    """A Rust-regex class ``[...]`` (or ``[^...]``) of the code points satisfying ``pred`` (surrogates excluded)."""
    parts = []
    start = prev = None
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or not pred(chr(cp)):
            continue
        if prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append((start, prev))
        start = prev = cp
    if start is not None:
        parts.append((start, prev))
    body = "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in parts
    )
    return f"[{'^' if negate else ''}{body}]"


#: Python's ``\s`` as a Rust class.
WS = "[" + "".join(f"\\x{{{ord(c):X}}}" for c in PY_WHITESPACE) + "]"
#: Anything but Python whitespace (``[^\s]``).
NOT_WS = "[^" + WS[1:]


@functools.cache
def digit_class() -> str:
    """Python's ``\\d`` (``str.isdecimal``) as a Rust class (built once, ~50 ms)."""
    return ranges_class(str.isdecimal)


def is_plain_ascii_literal(pattern: str) -> bool:
    """True when ``pattern`` is ASCII without regex metacharacters, i.e. a literal in both engines."""
    return pattern.isascii() and not (set(pattern) & REGEX_META)


def py_lower(expr: pl.Expr) -> pl.Expr:
    """Python's ``str.lower`` as a Polars expression (Utf8 -> Utf8, null stays null).

    Polars' ``to_lowercase`` applies the same full Unicode mappings (final sigma included) from a
    newer Unicode version; the characters it alone lower-cases (:data:`LOWER_NEWER`) are kept as
    they are, by lower-casing the text between them.
    """
    has_newer = expr.str.contains(LOWER_NEWER)
    # only rows holding such a character are split into pieces (others become null: no work)
    pieces = pl.when(has_newer).then(expr).str.extract_all(f"{LOWER_NEWER}|[^{LOWER_NEWER[1:]}+")
    keep = pl.element().str.contains(f"^{LOWER_NEWER}$")
    piecewise = pieces.list.eval(pl.when(keep).then(pl.element()).otherwise(pl.element().str.to_lowercase()))
    return pl.when(has_newer).then(piecewise.list.join("")).otherwise(expr.str.to_lowercase())
