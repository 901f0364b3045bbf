"""Scoring of responses produced elsewhere (``capdrift score-file``): benchmark data + a responses file
-> one row per item with its verdicts, and the benchmark's accuracies.

Each benchmark's reader is its ``Benchmark.score_file`` (in its own module); the shared joining and
checking helpers are here. File formats of the built-in benchmarks (JSON lines unless stated; extra
fields are ignored):

============  =============================================  ===============================================
benchmark     ``--data``                                     ``--responses`` (joined on)
============  =============================================  ===============================================
``ifeval``    IFEval ``input_data.jsonl``: ``key``,          IFEval's ``input_response_data_*.jsonl``:
              ``prompt``, ``instruction_id_list``, ``kwargs``  ``prompt``, ``response`` (prompt text, exactly
                                                             as the reference ``evaluation_lib`` joins)
``gsm8k``     GSM8K ``test.jsonl``: ``question``, ``answer``  ``response`` and ``index`` (0-based line of the
                                                             data file) or ``question`` (exact text)
``superni``   a SuperNI task file (JSON): ``Definition``,    ``id`` (instance id) and ``response`` (or
              ``Positive Examples``, ``Instances``           ``prediction``, SuperNI's own prediction files)
============  =============================================  ===============================================

Output rows (data-file order):

- ifeval: ``key``, ``prompt_level_strict``, ``prompt_level_loose`` (bool), ``inst_level_strict``,
  ``inst_level_loose`` (list of bool, in ``instruction_id_list`` order) -- :mod:`.ifeval`;
- gsm8k: ``index``, ``extracted_strict``, ``extracted_flexible``, ``numeric_match_strict``,
  ``numeric_match_flexible`` -- :mod:`.numeric`;
- superni: ``id``, ``exact_match``, ``format_correct`` (bool), ``rougeL`` (float) --
  :mod:`.classification`, :mod:`.rouge`; plus Kung & Peng's random-guess baseline beside its
  analytic expectation in the summary.

A data item without a response, or a response matching no data item, is an error naming the
responses file and the count (``skip_missing`` / ``skip_extra`` score the rest instead). For IFEval
a prompt repeated in the responses file takes its last response, as the reference's dict does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from capdrift_fast import registry
from capdrift_fast.errors import DataError

__all__ = ["ScoreFileResult", "Accuracy", "score_file", "join_responses", "response_field", "unique_responses",
           "rate"]


@dataclass(frozen=True)
class Accuracy:
    """One reported number: ``value`` = ``hits / total`` (or a mean over ``total`` items when ``hits``
    is None, for non-binary metrics); ``note`` is printed after it."""

    name: str
    value: float
    hits: int | None = None
    total: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ScoreFileResult:
    """What :func:`score_file` computed: the per-item ``scores`` frame (the rows written), the
    ``accuracies`` to print, and ``notes`` (skipped or repeated items). SuperNI adds Kung & Peng's
    random-guess ``baseline`` (exact match of seeded uniform guesses, printed beside) and its analytic
    ``expectation``."""

    benchmark: str
    scores: pl.DataFrame
    accuracies: list[Accuracy]
    notes: list[str] = field(default_factory=list)
    baseline: Accuracy | None = None
    expectation: float | None = None


def score_file(
    benchmark: str,
    data: Path,
    responses: Path,
    *,
    skip_missing: bool = False,
    skip_extra: bool = False,
    seed: int = 0,
) -> ScoreFileResult:
    """Score the responses of ``responses`` against the benchmark data ``data``.

    Args:
        benchmark: a registered benchmark with a score-file reader (the built-ins all have one).
        data, responses: the files (formats in the module docstring).
        skip_missing: score only the data items that have a response (default: error).
        skip_extra: ignore responses that match no data item (default: error).
        seed: seed of SuperNI's random-guess baseline.

    Raises:
        UnknownNameError: unknown ``benchmark`` (suggests the closest).
        DataError: a file is missing or malformed (names file, line and field), responses are missing
            or extra without the skip option, or no item is left to score.
    """
    bench = registry.benchmarks.get(benchmark)
    return bench.score_file(Path(data), Path(responses), skip_missing=skip_missing, skip_extra=skip_extra, seed=seed)


# --- joining ------------------------------------------------------------------------------------------

def join_responses(items: pl.DataFrame, answers: pl.DataFrame, on: str, data: Path, responses: Path, what: str,
          skip_missing: bool, skip_extra: bool, notes: list[str], ident: str) -> pl.DataFrame:
    """Left join of ``items`` (data order) with ``answers`` (``on``, ``response``, ``_line``), checking
    for missing and extra responses; returns the ``items`` rows that have a response, plus ``response``.
    Messages name a missing item by its ``ident`` column."""
    extra = answers.join(items.select(on), on=on, how="anti")
    if extra.height:
        example = f"line {extra['_line'][0]}: {on} {_short(extra[on][0])}"
        if not skip_extra:
            raise DataError(f"{responses}: {extra.height} of {answers.height} responses match no {what} of {data} "
                            f"(e.g. {example}); pass --skip-extra to ignore them")
        notes.append(f"ignored {extra.height} responses that match no {what} of {data.name} (e.g. {example})")
    joined = items.join(answers, on=on, how="left", maintain_order="left")  # _line null: no response
    missing = joined.filter(pl.col("_line").is_null())
    if missing.height:
        example = f"{ident} {_short(missing[ident][0])}"
        if not skip_missing:
            raise DataError(f"{responses}: no response for {missing.height} of {items.height} {what}s of {data} "
                            f"(e.g. {example}); pass --skip-missing to score only those with one")
        notes.append(f"skipped {missing.height} of {items.height} {what}s without a response (e.g. {example})")
        joined = joined.filter(pl.col("_line").is_not_null())
    if joined.height == 0:
        raise DataError(f"{responses}: no {what} of {data} has a response; nothing to score")
    return joined.drop("_line")


def _short(value: object, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def response_field(path: Path, lineno: int, rec: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in rec:
            value = rec[name]
            if value is not None and not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: field {name!r} should be a string, got {type(value).__name__}")
            return value
    raise DataError(f"{path}:{lineno}: missing field {names[0]!r}" + (f" (or {names[1]!r})" if len(names) > 1 else ""))


def unique_responses(answers: pl.DataFrame, on: str, path: Path) -> None:
    dup = answers.group_by(on).agg(pl.col("_line")).filter(pl.col("_line").list.len() > 1)
    if dup.height:
        row = dup.row(0, named=True)
        lines = ", ".join(map(str, sorted(row["_line"])))
        raise DataError(f"{path}: {dup.height} {on} values have more than one response "
                        f"(e.g. {on} {_short(row[on])} on lines {lines}); keep one per {on}")


def rate(name: str, column: pl.Series) -> Accuracy:
    hits = int(column.sum())
    return Accuracy(name, hits / column.len(), hits, column.len())
