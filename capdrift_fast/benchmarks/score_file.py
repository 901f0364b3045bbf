"""Scoring of responses produced elsewhere (``capdrift score-file``): benchmark data + a responses file
-> one row per item with its verdicts, and the benchmark's accuracies.

File formats (JSON lines unless stated; extra fields are ignored):

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

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from capdrift_fast.errors import DataError, UnknownNameError
from capdrift_fast.benchmarks.base import read_jsonl, require_fields

__all__ = ["BENCHMARKS", "ScoreFileResult", "Accuracy", "score_file"]

BENCHMARKS = ("ifeval", "gsm8k", "superni")


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
        benchmark: ``ifeval``, ``gsm8k`` or ``superni``.
        data, responses: the files (formats in the module docstring).
        skip_missing: score only the data items that have a response (default: error).
        skip_extra: ignore responses that match no data item (default: error).
        seed: seed of SuperNI's random-guess baseline.

    Raises:
        UnknownNameError: unknown ``benchmark`` (suggests the closest).
        DataError: a file is missing or malformed (names file, line and field), responses are missing
            or extra without the skip option, or no item is left to score.
    """
    if benchmark not in BENCHMARKS:
        raise UnknownNameError("benchmark", benchmark, BENCHMARKS)
    data, responses = Path(data), Path(responses)
    if benchmark == "ifeval":
        return _score_ifeval(data, responses, skip_missing, skip_extra)
    if benchmark == "gsm8k":
        return _score_gsm8k(data, responses, skip_missing, skip_extra)
    return _score_superni(data, responses, skip_missing, skip_extra, seed)


# --- joining ------------------------------------------------------------------------------------------

def _join(items: pl.DataFrame, answers: pl.DataFrame, on: str, data: Path, responses: Path, what: str,
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


def _response_field(path: Path, lineno: int, rec: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in rec:
            value = rec[name]
            if value is not None and not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: field {name!r} should be a string, got {type(value).__name__}")
            return value
    raise DataError(f"{path}:{lineno}: missing field {names[0]!r}" + (f" (or {names[1]!r})" if len(names) > 1 else ""))


def _unique(answers: pl.DataFrame, on: str, path: Path) -> None:
    dup = answers.group_by(on).agg(pl.col("_line")).filter(pl.col("_line").list.len() > 1)
    if dup.height:
        row = dup.row(0, named=True)
        lines = ", ".join(map(str, sorted(row["_line"])))
        raise DataError(f"{path}: {dup.height} {on} values have more than one response "
                        f"(e.g. {on} {_short(row[on])} on lines {lines}); keep one per {on}")


def _rate(name: str, column: pl.Series) -> Accuracy:
    hits = int(column.sum())
    return Accuracy(name, hits / column.len(), hits, column.len())


# --- IFEval ---------------------------------------------------------------------------------------------

def _score_ifeval(data: Path, responses: Path, skip_missing: bool, skip_extra: bool) -> ScoreFileResult:
    from capdrift_fast.metrics.ifeval import UnknownInstructionError, ifeval_accuracies, parse_kwargs, score_ifeval

    items = []
    for lineno, rec in read_jsonl(data):
        require_fields(data, lineno, rec, {"key": int, "prompt": str, "instruction_id_list": list, "kwargs": list})
        try:
            parse_kwargs(rec["instruction_id_list"], rec["kwargs"])
        except (UnknownInstructionError, ValueError) as exc:
            raise DataError(f"{data}:{lineno}: key {rec['key']}: {exc}") from None
        items.append({"key": rec["key"], "prompt": rec["prompt"], "instruction_id_list": rec["instruction_id_list"],
                      "kwargs": json.dumps(rec["kwargs"])})
    if not items:
        raise DataError(f"{data}: no prompts")
    frame = pl.DataFrame(items, schema={"key": pl.Int64, "prompt": pl.Utf8, "instruction_id_list": pl.List(pl.Utf8),
                                        "kwargs": pl.Utf8})
    dup = frame.filter(pl.col("prompt").is_duplicated())
    if dup.height:
        raise DataError(f"{data}: {dup.height} rows share a prompt text (e.g. key {dup['key'][0]}); responses are "
                        "joined by prompt text, so prompts must be unique")

    rows: dict[str, dict] = {}
    repeated = 0
    for lineno, rec in read_jsonl(responses):
        require_fields(responses, lineno, rec, {"prompt": str})
        response = _response_field(responses, lineno, rec, ("response",))
        repeated += rec["prompt"] in rows
        rows[rec["prompt"]] = {"prompt": rec["prompt"], "response": response, "_line": lineno}
    notes = []
    if repeated:
        notes.append(f"{repeated} prompts occur more than once in {responses.name}; their last response is used "
                     "(as the reference's prompt -> response dict does)")
    answers = pl.DataFrame(list(rows.values()), schema={"prompt": pl.Utf8, "response": pl.Utf8, "_line": pl.Int64})
    joined = _join(frame, answers, "prompt", data, responses, "prompt", skip_missing, skip_extra, notes, "key")
    try:
        scored = score_ifeval(joined.select("key", "response", "instruction_id_list", "kwargs"))
    except FileNotFoundError as exc:
        raise DataError(str(exc)) from None
    acc = ifeval_accuracies(scored)
    n_inst = int(scored["inst_level_strict"].list.len().sum())
    accuracies = [
        Accuracy("prompt_level_strict_acc", acc["prompt_level_strict_acc"],
                 int(scored["prompt_level_strict"].sum()), scored.height),
        Accuracy("inst_level_strict_acc", acc["inst_level_strict_acc"],
                 int(scored["inst_level_strict"].list.sum().sum()), n_inst),
        Accuracy("prompt_level_loose_acc", acc["prompt_level_loose_acc"],
                 int(scored["prompt_level_loose"].sum()), scored.height),
        Accuracy("inst_level_loose_acc", acc["inst_level_loose_acc"],
                 int(scored["inst_level_loose"].list.sum().sum()), n_inst),
    ]
    out = scored.select("key", "prompt_level_strict", "prompt_level_loose", "inst_level_strict", "inst_level_loose")
    return ScoreFileResult("ifeval", out, accuracies, notes=notes)


# --- GSM8K ----------------------------------------------------------------------------------------------

def _score_gsm8k(data: Path, responses: Path, skip_missing: bool, skip_extra: bool) -> ScoreFileResult:
    from capdrift_fast.metrics.numeric import score_numeric

    items = []
    for lineno, rec in read_jsonl(data):
        require_fields(data, lineno, rec, {"question": str, "answer": str})
        items.append({"index": lineno - 1, "question": rec["question"], "target": rec["answer"]})
    if not items:
        raise DataError(f"{data}: no questions")
    frame = pl.DataFrame(items, schema={"index": pl.Int64, "question": pl.Utf8, "target": pl.Utf8})
    index_of = {}
    for item in items:
        index_of.setdefault(item["question"], []).append(item["index"])

    rows, notes, unmatched = [], [], []
    for lineno, rec in read_jsonl(responses):
        response = _response_field(responses, lineno, rec, ("response",))
        if "index" in rec:
            if not isinstance(rec["index"], int) or isinstance(rec["index"], bool):
                raise DataError(f"{responses}:{lineno}: field 'index' should be an integer (0-based line of {data.name})")
            rows.append({"index": rec["index"], "response": response, "_line": lineno})
        elif "question" in rec:
            require_fields(responses, lineno, rec, {"question": str})
            found = index_of.get(rec["question"], [])
            if len(found) > 1:
                raise DataError(f"{responses}:{lineno}: the question is on {len(found)} lines of {data} "
                                f"({', '.join(str(i + 1) for i in found)}); give an 'index' instead")
            if found:
                rows.append({"index": found[0], "response": response, "_line": lineno})
            else:
                unmatched.append(lineno)
        else:
            raise DataError(f"{responses}:{lineno}: needs 'index' (0-based line of {data.name}) or 'question'")
    if unmatched:
        if not skip_extra:
            raise DataError(f"{responses}: {len(unmatched)} responses have a question that is in no line of {data} "
                            f"(e.g. line {unmatched[0]}); pass --skip-extra to ignore them")
        notes.append(f"ignored {len(unmatched)} responses whose question is in no line of {data.name}")
    answers = pl.DataFrame(rows, schema={"index": pl.Int64, "response": pl.Utf8, "_line": pl.Int64})
    _unique(answers, "index", responses)
    joined = _join(frame, answers, "index", data, responses, "question", skip_missing, skip_extra, notes, "index")
    scored = score_numeric(joined)
    out = scored.select("index", "extracted_strict", "extracted_flexible", "numeric_match_strict",
                        "numeric_match_flexible")
    accuracies = [_rate("numeric_match_strict", out["numeric_match_strict"]),
                  _rate("numeric_match_flexible", out["numeric_match_flexible"])]
    return ScoreFileResult("gsm8k", out, accuracies, notes=notes)


# --- SuperNI --------------------------------------------------------------------------------------------

def _score_superni(data: Path, responses: Path, skip_missing: bool, skip_extra: bool, seed: int) -> ScoreFileResult:
    from capdrift_fast.metrics.classification import (
        random_guess_baseline,
        random_guess_expectation,
        score_classification,
    )
    from capdrift_fast.metrics.rouge import score_rouge_l
    from capdrift_fast.benchmarks.superni import load_task_file

    task = load_task_file(data)
    labels = sorted({o for inst in task["Instances"] for o in inst["output"]})
    frame = pl.DataFrame(
        [{"id": inst["id"], "target": list(inst["output"]), "labels": labels} for inst in task["Instances"]],
        schema={"id": pl.Utf8, "target": pl.List(pl.Utf8), "labels": pl.List(pl.Utf8)},
    )
    if frame.height == 0:
        raise DataError(f"{data}: no instances")
    rows = []
    for lineno, rec in read_jsonl(responses):
        require_fields(responses, lineno, rec, {"id": str})
        rows.append({"id": rec["id"], "response": _response_field(responses, lineno, rec, ("response", "prediction")),
                     "_line": lineno})
    answers = pl.DataFrame(rows, schema={"id": pl.Utf8, "response": pl.Utf8, "_line": pl.Int64})
    _unique(answers, "id", responses)
    notes: list[str] = []
    joined = _join(frame, answers, "id", data, responses, "instance", skip_missing, skip_extra, notes, "id")
    scored = score_classification(joined)
    scored = scored.with_columns(score_rouge_l(scored).alias("rougeL"))
    out = scored.select("id", "exact_match", "format_correct", "rougeL")
    accuracies = [_rate("exact_match", out["exact_match"]), _rate("format_correct", out["format_correct"]),
                  Accuracy("rougeL", float(out["rougeL"].mean()), None, out.height)]  # type: ignore[arg-type]
    guess = random_guess_baseline(joined, seed)
    expectation = random_guess_expectation(joined)
    hits = int(guess["exact_match"].sum())
    baseline = Accuracy("random_guess_exact_match", hits / guess.height, hits, guess.height,
                        note=f"seed {seed}; analytic expectation {expectation:.4f}")
    return ScoreFileResult("superni", out, accuracies, notes, baseline, expectation)
