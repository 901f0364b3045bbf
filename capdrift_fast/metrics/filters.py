"""Answer filters: registered, composable transforms of a response before it is scored (lm-evaluation-harness's
``filter_list``: ``regex`` then ``take_first``), for tasks declared in YAML.

A template task applies its ``filters:`` (in order) to every response, and a metric entry may add its own
``filters:`` after those. Each filter maps a Utf8 Polars expression to a Utf8 expression (null stays null).

- ``regex``: the first match of ``pattern`` (capture ``group``), else ``fallback`` (``[invalid]``, as lm-eval's
  ``RegexFilter``); ``select: last`` takes the last match instead (lm-eval's ``group_select: -1``);
- ``strip``: leading and trailing whitespace removed (Python's ``str.strip`` set: Unicode white space);
- ``lowercase``: Python's ``str.lower`` (:func:`capdrift_fast.metrics.ifeval.pycompat.py_lower`);
- ``first_line``: the text before the first newline;
- ``remove``: every match of each of ``patterns`` removed (lm-eval's ``regexes_to_ignore`` as a filter).

Third-party filters register through the entry-point group ``capdrift_fast.filters``.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from capdrift_fast.metrics.ifeval.pycompat import py_lower
from capdrift_fast.registry import register_filter


class Filter(BaseModel):
    """Base class of registered filters: subclass fields are the filter's options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def apply(self, response: pl.Expr) -> pl.Expr:
        """``response`` (Utf8 expression) transformed (Utf8 expression)."""
        raise NotImplementedError


@register_filter("regex")
class RegexFilter(Filter):
    """The first (or last) match of ``pattern``, capture ``group``; ``fallback`` when nothing matches."""

    pattern: str
    group: int = Field(default=1, ge=0)
    select: Literal["first", "last"] = "first"
    fallback: str = "[invalid]"

    def apply(self, response: pl.Expr) -> pl.Expr:
        """The extracted text (lm-eval's ``RegexFilter``)."""
        if self.select == "first":
            return response.str.extract(self.pattern, self.group).fill_null(self.fallback)
        if self.group == 0:
            return response.str.extract_all(self.pattern).list.last().fill_null(self.fallback)
        groups = response.str.extract_all(self.pattern).list.eval(pl.element().str.extract(self.pattern, self.group))
        return groups.list.last().fill_null(self.fallback)


@register_filter("strip")
class Strip(Filter):
    """Leading and trailing white space removed."""

    def apply(self, response: pl.Expr) -> pl.Expr:
        """``response.strip()``."""
        return response.str.strip_chars()


@register_filter("lowercase")
class Lowercase(Filter):
    """Python's ``str.lower``."""

    def apply(self, response: pl.Expr) -> pl.Expr:
        """``response.lower()``."""
        return py_lower(response)


@register_filter("first_line")
class FirstLine(Filter):
    """The text before the first newline."""

    def apply(self, response: pl.Expr) -> pl.Expr:
        """``response.split("\\n", 1)[0]``."""
        return response.str.split_exact("\n", 1).struct.field("field_0")


@register_filter("remove")
class Remove(Filter):
    """Every match of each regex in ``patterns`` removed, in order."""

    patterns: list[str] = Field(min_length=1)

    def apply(self, response: pl.Expr) -> pl.Expr:
        """``response`` without the matches."""
        for rx in self.patterns:
            response = response.str.replace_all(rx, "")
        return response
