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

__all__ = [
    "PY_WHITESPACE",
    "WS",
    "CASE_FOLD_UNSAFE",
    "REGEX_META",
    "digit_class",
    "ranges_class",
    "is_plain_ascii_literal",
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
