"""IFEval strict / loose evaluation of a frame of responses, and the accuracies.

Definitions (Zhou et al. 2023, arXiv:2311.07911, Section 2.2 "strict and loose"; reference
``evaluation_lib.py``: ``test_instruction_following_strict`` / ``_loose`` / ``print_report``):

- strict: an instruction is followed when the response's ``strip()`` is non-empty and its checker
  passes on the response;
- loose: followed when the checker passes on any non-blank one of 8 variants of the response (the
  response; without ``*``; without its first line, last line, or both; and those three without ``*``,
  see :func:`~.text.loose_variants`);
- prompt level: every instruction of the prompt is followed (a prompt without instructions counts as
  followed, as ``all([])`` in the reference); instruction level: micro average over all instructions.

Checkers with a Polars expression (:mod:`.vectorized`) run over all (instruction, variant) rows at
once; the rest (NLTK, langdetect, JSON) and the rows a Polars expression cannot handle exactly run the
Python checkers of :mod:`.checkers`, with the reference's short-circuit over loose variants.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from .checkers import check_following
from .pycompat import PY_WHITESPACE
from .registry import Instruction, parse_instruction
from .text import loose_variants
from .vectorized import ARGUMENT_SCHEMA, argument_columns, verdicts

__all__ = ["score_ifeval", "ifeval_accuracies", "parse_kwargs", "evaluate_response", "OUTPUT_COLUMNS"]

#: Columns added by :func:`score_ifeval`.
OUTPUT_COLUMNS = ("prompt_level_strict", "prompt_level_loose", "inst_level_strict", "inst_level_loose")
_N_VARIANTS = 8
_ROW = "__ifeval_row"


def parse_kwargs(instruction_ids: Sequence[str], kwargs: str | Sequence[Any] | None) -> list[Instruction]:
    """Parse one prompt's instructions: its ids and its ``kwargs`` (JSON text or already-decoded list).

    Args:
        instruction_ids: the prompt's ``instruction_id_list``.
        kwargs: a JSON array with one object (or null) per instruction, exactly as in IFEval's
            ``input_data.jsonl``; None or ``""`` means no kwargs for any instruction.

    Returns:
        One validated :class:`~.registry.Instruction` per id, in order.

    Raises:
        UnknownInstructionError: an id is not an IFEval instruction id.
        ValueError: ``kwargs`` is not a JSON array of objects of the right length, or an object does
            not fit its instruction (the message names the instruction id and the kwarg).
    """
    if kwargs is None or kwargs == "":
        objects: list[Any] = [None] * len(instruction_ids)
    else:
        if isinstance(kwargs, str):
            try:
                objects = json.loads(kwargs)
            except json.JSONDecodeError as exc:
                raise ValueError(f"IFEval kwargs is not valid JSON ({exc}): {kwargs[:200]!r}") from None
        else:
            objects = list(kwargs)
        if not isinstance(objects, list):
            raise ValueError(f"IFEval kwargs must be a JSON array (one object per instruction), got {kwargs[:200]!r}")
        if len(objects) != len(instruction_ids):
            raise ValueError(f"IFEval kwargs has {len(objects)} objects for {len(instruction_ids)} instructions "
                             f"{list(instruction_ids)}")
    out = []
    for iid, obj in zip(instruction_ids, objects, strict=True):
        if obj is not None and not isinstance(obj, dict):
            raise ValueError(f"IFEval instruction {iid!r}: kwargs entry must be a JSON object, got {obj!r}")
        out.append(parse_instruction(iid, obj))
    return out


def evaluate_response(instructions: Sequence[Instruction], response: str) -> tuple[list[bool], list[bool]]:
    """Strict and loose verdicts of one response, in plain Python (the reference algorithm verbatim).

    Args:
        instructions: the prompt's parsed instructions (see :func:`parse_kwargs`).
        response: the model's response.

    Returns:
        ``(strict, loose)``: one bool per instruction each.
    """
    variants = loose_variants(response)
    strict = [bool(response.strip()) and check_following(inst, response) for inst in instructions]
    loose = [any(v.strip() and check_following(inst, v) for v in variants) for inst in instructions]
    return strict, loose


def _check_input(frame: pl.DataFrame) -> None:
    missing = [c for c in ("response", "instruction_id_list", "kwargs") if c not in frame.columns]
    if missing:
        raise ValueError(f"score_ifeval: input frame lacks column(s) {missing}; it has {frame.columns}")
    schema = frame.schema
    if schema["response"] not in (pl.Utf8, pl.Null):
        raise TypeError(f"score_ifeval: column 'response' must be Utf8, got {schema['response']}")
    if not (isinstance(schema["instruction_id_list"], pl.List)
            and schema["instruction_id_list"].inner in (pl.Utf8, pl.Null)):
        raise TypeError(f"score_ifeval: column 'instruction_id_list' must be List[Utf8], got "
                        f"{schema['instruction_id_list']}")
    if schema["kwargs"] not in (pl.Utf8, pl.Null):
        raise TypeError(f"score_ifeval: column 'kwargs' must be Utf8 (a JSON array), got {schema['kwargs']}")


def _parse_frame(frame: pl.DataFrame, offset: int = 0) -> list[list[Instruction]]:
    cache: dict[tuple[tuple[str, ...], str | None], list[Instruction]] = {}
    parsed = []
    columns = zip(frame["instruction_id_list"].to_list(), frame["kwargs"].to_list(), strict=True)
    for row, (ids, kwargs) in enumerate(columns, start=offset):
        if ids is None:
            raise ValueError(f"score_ifeval: row {row}: instruction_id_list is null")
        key = (tuple(ids), kwargs)
        if key not in cache:
            try:
                cache[key] = parse_kwargs(ids, kwargs)
            except ValueError as exc:
                exc.args = (f"score_ifeval: row {row}: {exc.args[0] if exc.args else exc}",) + exc.args[1:]
                raise
        parsed.append(cache[key])
    return parsed


def _strip(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars(PY_WHITESPACE)


def _variants(responses: pl.Series) -> pl.DataFrame:
    """Long frame of the 8 loose variants (:func:`~.text.loose_variants`, same order): ``_row``,
    ``_var`` (0 = the response itself, used by strict), ``text``, ``valid`` (non-blank)."""
    r = pl.col("r")
    lines = r.str.split("\n")
    n = lines.list.len().cast(pl.Int64)
    first = _strip(lines.list.slice(1).list.join("\n"))
    last = _strip(lines.list.head(n - 1).list.join("\n"))
    both = _strip(lines.list.slice(1, pl.max_horizontal(n - 2, pl.lit(0))).list.join("\n"))

    def star(e: pl.Expr) -> pl.Expr:
        return e.str.replace_all("*", "", literal=True)

    wide = pl.DataFrame({"_row": pl.Series(range(responses.len()), dtype=pl.UInt32), "r": responses}).select(
        "_row", v0=r, v1=star(r), v2=first, v3=last, v4=both, v5=star(first), v6=star(last), v7=star(both),
    )
    return (
        wide.unpivot(index="_row", variable_name="_var", value_name="text")
        .with_columns(
            _var=pl.col("_var").str.slice(1).cast(pl.UInt8),
            valid=_strip(pl.col("text")) != "",
        )
    )


#: Rows scored at once by :func:`score_ifeval`: its intermediate frame holds 8 loose variants of every
#: (response, instruction) pair, so memory stays bounded by scoring large frames in slices this size.
CHUNK_ROWS = 16_384


def score_ifeval(frame: pl.DataFrame, chunk_rows: int = CHUNK_ROWS) -> pl.DataFrame:
    """Score IFEval responses, strict and loose, per instruction and per prompt.

    Args:
        frame: one row per response, with columns ``response`` (Utf8; null counts as empty),
            ``instruction_id_list`` (List[Utf8]) and ``kwargs`` (Utf8: a JSON array with one object per
            instruction, as in IFEval's ``input_data.jsonl``; null values inside an object mean unset, as
            in the HF ``google/IFEval`` release). Other columns are kept.

    Returns:
        ``frame`` with added (or replaced) columns ``prompt_level_strict`` and ``prompt_level_loose``
        (Boolean), ``inst_level_strict`` and ``inst_level_loose`` (List[Boolean], in
        ``instruction_id_list`` order). Row order is kept.

    Raises:
        UnknownInstructionError: an instruction id is not an IFEval id (message suggests close ids).
        ValueError: kwargs do not fit an instruction (message names row, instruction id and kwarg),
            or a required column is missing.
        TypeError: a column has the wrong dtype.
        FileNotFoundError: NLTK's punkt_tab data is needed but cannot be found (see :mod:`.text`).

    Deterministic: langdetect is seeded, no argument is drawn at random (see :mod:`.registry`).
    """
    _check_input(frame)
    if chunk_rows < 1:
        raise ValueError(f"score_ifeval: chunk_rows must be >= 1, got {chunk_rows}")
    if frame.height > chunk_rows:
        parts = [_score_chunk(frame.slice(start, chunk_rows), start) for start in range(0, frame.height, chunk_rows)]
        return pl.concat(parts)
    return _score_chunk(frame)


def _score_chunk(frame: pl.DataFrame, offset: int = 0) -> pl.DataFrame:
    base = frame.drop([c for c in OUTPUT_COLUMNS if c in frame.columns])
    parsed = _parse_frame(frame, offset)
    flat: list[Instruction] = [inst for insts in parsed for inst in insts]
    arg_cache: dict[Instruction, dict[str, object]] = {}
    arg_rows = [arg_cache.setdefault(inst, argument_columns(inst)) for inst in flat]
    inst_df = pl.DataFrame(
        {
            "_i": pl.Series(range(len(flat)), dtype=pl.UInt32),
            "_row": pl.Series([r for r, insts in enumerate(parsed) for _ in insts], dtype=pl.UInt32),
            "_pos": pl.Series([p for insts in parsed for p in range(len(insts))], dtype=pl.UInt32),
            "iid": pl.Series([inst.id for inst in flat], dtype=pl.Utf8),
            **{name: pl.Series([a[name] for a in arg_rows], dtype=dtype) for name, dtype in ARGUMENT_SCHEMA.items()},
        }
    )
    responses = frame["response"].cast(pl.Utf8).fill_null("")
    long = (
        inst_df.join(_variants(responses), on="_row", how="inner")
        .sort("_i", "_var")
        .with_row_index("_k")
    )
    parts = []
    for (iid,), sub in long.partition_by("iid", as_dict=True, maintain_order=True).items():
        parts.append(sub.select("_k", "_i", "_var", "valid", "text").with_columns(ok=verdicts(sub, iid)))
    if parts:
        table = pl.concat(parts).sort("_k")
    else:
        table = pl.DataFrame(schema={"_k": pl.UInt32, "_i": pl.UInt32, "_var": pl.UInt8, "valid": pl.Boolean,
                                     "text": pl.Utf8, "ok": pl.Boolean})
    per_inst = table.group_by("_i").agg(
        strict=(pl.col("valid") & pl.col("ok")).filter(pl.col("_var") == 0).first(),
        loose=(pl.col("valid") & pl.col("ok")).any(),
        pending=(pl.col("valid") & pl.col("ok").is_null()).any(),
    ).sort("_i")
    strict = per_inst["strict"].to_list()
    loose = per_inst["loose"].to_list()
    pending = per_inst.filter("pending")["_i"].to_list()
    if pending:
        _resolve_in_python(table.filter(pl.col("_i").is_in(pending)), flat, strict, loose)
    results = inst_df.select("_row", "_pos").with_columns(
        strict=pl.Series(strict, dtype=pl.Boolean), loose=pl.Series(loose, dtype=pl.Boolean)
    )
    lists = results.sort("_row", "_pos").group_by("_row").agg(
        inst_level_strict=pl.col("strict"), inst_level_loose=pl.col("loose")
    )
    empty = pl.lit([], dtype=pl.List(pl.Boolean))
    out = (
        base.with_row_index(_ROW)
        .with_columns(pl.col(_ROW).cast(pl.UInt32))
        .join(lists.rename({"_row": _ROW}), on=_ROW, how="left", maintain_order="left")
        .with_columns(
            inst_level_strict=pl.col("inst_level_strict").fill_null(empty),
            inst_level_loose=pl.col("inst_level_loose").fill_null(empty),
        )
        .with_columns(
            prompt_level_strict=pl.col("inst_level_strict").list.all(),
            prompt_level_loose=pl.col("inst_level_loose").list.all(),
        )
        .drop(_ROW)
    )
    return out.select(*base.columns, *OUTPUT_COLUMNS)


def _resolve_in_python(table: pl.DataFrame, flat: list[Instruction], strict: list, loose: list) -> None:
    """Fill strict/loose of instructions with null (non-vectorisable) verdicts, in the reference's order.

    ``table`` holds all 8 variant rows of those instructions, sorted by ``_i`` then ``_var``. Checks are
    memoised on (instruction, text): identical variants are checked once.
    """
    memo: dict[tuple[Instruction, str], bool] = {}

    def check(inst: Instruction, text: str) -> bool:
        key = (inst, text)
        if key not in memo:
            memo[key] = check_following(inst, text)
        return memo[key]

    i_col, valid_col, ok_col, text_col = (table[c].to_list() for c in ("_i", "valid", "ok", "text"))
    for start in range(0, len(i_col), _N_VARIANTS):
        i = i_col[start]
        inst = flat[i]
        rows = range(start, start + _N_VARIANTS)
        verdict = [ok_col[k] for k in rows]
        s = valid_col[start] and (verdict[0] if verdict[0] is not None else check(inst, text_col[start]))
        strict[i] = bool(s)
        followed = bool(s)
        for offset, k in enumerate(rows):
            if followed:
                break
            if offset == 0 or not valid_col[k]:
                continue
            followed = verdict[offset] if verdict[offset] is not None else check(inst, text_col[k])
        loose[i] = bool(followed)


def ifeval_accuracies(scored: pl.DataFrame) -> dict[str, float]:
    """IFEval accuracies of a frame returned by :func:`score_ifeval` (reference ``print_report``).

    Returns:
        ``prompt_level_strict_acc``, ``inst_level_strict_acc``, ``prompt_level_loose_acc``,
        ``inst_level_loose_acc``: fractions in [0, 1]; prompt level = mean over rows, instruction level
        = micro average over all instructions of all rows (lm-eval ``agg_inst_level_acc``).

    Raises:
        ValueError: a column of :data:`OUTPUT_COLUMNS` is missing, or there are no prompts / no instructions.
    """
    missing = [c for c in OUTPUT_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"ifeval_accuracies: frame lacks {missing}; pass the output of score_ifeval")
    if scored.height == 0:
        raise ValueError("ifeval_accuracies: no prompts")
    n_inst = scored["inst_level_strict"].list.len().sum()
    if not n_inst:
        raise ValueError("ifeval_accuracies: no instructions")
    return {
        "prompt_level_strict_acc": float(scored["prompt_level_strict"].cast(pl.Float64).mean()),
        "inst_level_strict_acc": float(scored["inst_level_strict"].list.sum().sum() / n_inst),
        "prompt_level_loose_acc": float(scored["prompt_level_loose"].cast(pl.Float64).mean()),
        "inst_level_loose_acc": float(scored["inst_level_loose"].list.sum().sum() / n_inst),
    }
