"""GSM8K test (Cobbe et al. 2021, arXiv:2110.14168): grade-school maths, scored by numeric match.

Prompt and scoring follow lm-evaluation-harness's ``gsm8k`` task (``lm_eval/tasks/gsm8k/gsm8k.yaml``,
version 3.0): prompt ``"Question: {question}\\nAnswer:"`` after ``num_fewshot`` solved examples from a train
file (lm-eval's sampler and seed), stop at ``"Question:"``, ``"</s>"``, ``"<|im_end|>"`` (and the engine adds
the tokenizer's EOS string, as lm-eval's vLLM backend does); two answer extractions —
``strict-match`` (the number after ``#### ``) and ``flexible-extract`` (the last number in the
response) — compared with the gold final number after removing ``,``, ``$``, everything up to
``#### `` and a trailing ``.``, case-insensitively (lm-eval's ``exact_match`` with
``regexes_to_ignore``). An extraction that finds nothing is ``[invalid]`` and scores 0. The scorer
lives in :mod:`capdrift_fast.metrics.numeric`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Literal

import polars as pl
from pydantic import Field, model_validator

from capdrift_fast.benchmarks.base import (
    Benchmark,
    LmEvalDefinition,
    MetricSpec,
    NoLabelSpace,
    PromptWatch,
    RowErrors,
    no_samples_error,
    read_jsonl,
    require_fields,
)
from capdrift_fast.benchmarks.score_file import (
    ScoreFileResult,
    join_responses,
    rate,
    response_field,
    unique_responses,
)
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.conversation import conversation_prompt
from capdrift_fast.errors import DataError
from capdrift_fast.metrics.numeric import score_numeric
from capdrift_fast.registry import register_benchmark

DEFAULT_DATA = "gsm8k/test.jsonl"


LM_EVAL_GSM8K = LmEvalDefinition(
    task="gsm8k", version=3.0, num_fewshot=5, fewshot_split="train", until=("Question:", "</s>", "<|im_end|>"),
    max_gen_toks=256, dataset_path="openai/gsm8k", dataset_name="main", test_split="test",
)
"""lm-eval 0.4.13's ``lm_eval/tasks/gsm8k/gsm8k.yaml`` (no ``max_gen_toks``: its vLLM backend's default 256)."""


class GSM8KTaskConfig(TaskConfigBase):
    """GSM8K test (Cobbe et al. 2021): numeric match of the final answer.

    Few-shot examples come from ``fewshot_data`` (a train-split jsonl of ``question``/``answer`` rows, relative
    to ``data_dir``), drawn as lm-eval does: ``num_fewshot`` (default 5 with ``fewshot_data``, as lm-eval's
    ``gsm8k``; else 0) examples per evaluated item, ``fewshot_sampler: default`` = ``random.Random(fewshot_seed)
    .sample(train, k)`` with one generator advancing over the items in file order (``first_n``: the first k).
    In chat format, ``fewshot_as_multiturn`` (lm-eval's default with ``--apply_chat_template``) makes each
    example its own user and assistant turn; false puts everything in one user turn.
    """

    benchmark: Literal["gsm8k"]
    num_fewshot: int | None = Field(default=None, ge=0, le=8,
                                    description="Default: 5 with fewshot_data (lm-eval's gsm8k), else 0.")
    fewshot_data: str | None = Field(default=None, description="Train-split jsonl the examples come from.")
    fewshot_seed: int = LM_EVAL_GSM8K.fewshot_seed
    fewshot_sampler: Literal["default", "first_n"] = "default"
    fewshot_as_multiturn: bool = True

    @model_validator(mode="after")
    def _shots_need_a_source(self) -> "GSM8KTaskConfig":
        if self.num_fewshot and not self.fewshot_data:
            raise ValueError(
                f"num_fewshot: {self.num_fewshot} needs fewshot_data: a train-split jsonl (question, answer) to draw "
                "the examples from, as lm-eval's gsm8k does; examples are no longer taken from the head of the "
                "test file (to keep that, write those lines to a file and name it in fewshot_data)")
        return self

    def shots(self) -> int:
        """The number of examples per prompt: ``num_fewshot``, or lm-eval's 5 when ``fewshot_data`` is set."""
        if self.num_fewshot is not None:
            return self.num_fewshot
        return LM_EVAL_GSM8K.num_fewshot if self.fewshot_data else 0


class GSM8KTask(NoLabelSpace):
    """GSM8K bound to a ``test.jsonl`` (question, answer), evaluated from its first line; few-shot examples
    come from ``fewshot_path`` (see :class:`GSM8KTaskConfig`)."""

    benchmark = "gsm8k"
    version = "1.0"
    lm_eval = LM_EVAL_GSM8K
    stop: tuple[str, ...] = LM_EVAL_GSM8K.until
    metrics = (
        MetricSpec("numeric_match_strict", "GSM8K numeric match, lm-eval strict-match (#### N)", primary=True,
                   lm_eval="exact_match,strict-match"),
        MetricSpec("numeric_match_flexible", "GSM8K numeric match, lm-eval flexible-extract (last number)", primary=True,
                   drift=True, lm_eval="exact_match,flexible-extract"),
    )

    def __init__(self, name: str, path: Path, limit: int | None = None, num_fewshot: int = 0,
                 errors: RowErrors | None = None, *, fewshot_path: Path | None = None,
                 fewshot_seed: int = LM_EVAL_GSM8K.fewshot_seed,
                 fewshot_sampler: Literal["default", "first_n"] = "default",
                 fewshot_as_multiturn: bool = True) -> None:
        self.name, self.path, self.limit, self.num_fewshot = name, path, limit, num_fewshot
        self.fewshot_path, self.fewshot_seed, self.fewshot_sampler = fewshot_path, fewshot_seed, fewshot_sampler
        self.fewshot_as_multiturn = fewshot_as_multiturn
        self.errors = errors or RowErrors()
        if num_fewshot and fewshot_path is None:
            raise DataError(f"{path}: num_fewshot {num_fewshot} needs a few-shot file (fewshot_data)")

    @property
    def fewshot_same_split(self) -> bool:
        """The examples come from the evaluated file itself (lm-eval then leaves the evaluated item out)."""
        return self.fewshot_path is not None and Path(self.fewshot_path).resolve() == Path(self.path).resolve()

    def _rows(self, path: Path) -> list[tuple[int, dict]]:
        rows = []
        for lineno, rec in read_jsonl(path, self.errors):
            try:
                require_fields(path, lineno, rec, {"question": str, "answer": str})
                if "####" not in rec["answer"]:
                    raise DataError(f"{path}:{lineno}: answer has no '#### <number>' final answer", path, lineno)
            except DataError as err:
                self.errors.bad(err)
                continue
            rows.append((lineno, rec))
        return rows

    def _sampler(self, pool: list[dict]) -> Callable[[dict], list[dict]]:
        """lm-eval's ``ContextSampler.sample`` / ``FirstNSampler.sample`` (``lm_eval/api/samplers.py``) for
        ``num_fewshot`` examples, one generator seeded with ``fewshot_seed`` advancing over the calls."""
        k, rnd, same = self.num_fewshot, random.Random(self.fewshot_seed), self.fewshot_same_split
        if len(pool) < k + (1 if same else 0):
            raise DataError(f"{self.fewshot_path}: num_fewshot {k} needs more examples than the {len(pool)} there")

        def sample(doc: dict) -> list[dict]:
            if self.fewshot_sampler == "first_n":
                return ([x for x in pool if x != doc] if same else pool)[:k]
            if not same:
                return rnd.sample(pool, k)
            res = [x for x in rnd.sample(pool, k + 1) if x != doc][:k]
            if len(res) < k:  # duplicates of the evaluated item drawn: lm-eval draws again without any copy
                res = rnd.sample([x for x in pool if x != doc], k)
            return res

        return sample

    def samples(self) -> pl.DataFrame:
        """Columns: sample_id (0-based line index in the file), prompt, target (gold final answer text).

        The prompt is lm-eval's ``fewshot_context``: ``"Question: {q}\nAnswer: {a}\n\n"`` per example, then
        ``"Question: {q}\nAnswer:"``; with examples and ``fewshot_as_multiturn`` a conversation prompt
        (:mod:`capdrift_fast.conversation`: user ``"Question: {q}\nAnswer:"`` / assistant ``a`` turns).
        Items are drawn for in file order, so ``limit`` keeps lm-eval's first N items and their examples
        (a malformed row skipped under ``data_errors: skip`` is a row lm-eval would have drawn examples for).

        Raises:
            DataError: (policy ``fail``) a line lacks ``question``/``answer`` or its answer has no ``#### N``;
                no usable line at all; fewer examples in the few-shot file than ``num_fewshot``.
        """
        self.lines: dict[str, int] = {}
        """sample_id -> line of the data file (for messages naming file:line)."""
        watch = PromptWatch(self.path, self.errors)
        evals = self._rows(self.path)
        for lineno, _ in evals:
            self.lines[str(lineno - 1)] = lineno
        if self.limit:
            evals = evals[: self.limit]
        for lineno, r in evals:
            watch.check(r["question"], f"line {lineno}", lineno)
        if not evals:
            raise no_samples_error(self.path, self.errors)
        sample = None
        if self.num_fewshot:
            sample = self._sampler([r for _, r in self._rows(self.fewshot_path)])
        prompts = []
        for _, doc in evals:
            shots = sample(doc) if sample else []
            question = f"Question: {doc['question']}\nAnswer:"
            text = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots) + question
            if shots and self.fewshot_as_multiturn:
                messages = [m for s in shots for m in ({"role": "user", "content": f"Question: {s['question']}\nAnswer:"},
                                                       {"role": "assistant", "content": s["answer"]})]
                prompts.append(conversation_prompt(text, [*messages, {"role": "user", "content": question}]))
            else:
                prompts.append(text)
        return pl.DataFrame(
            {
                "sample_id": [str(lineno - 1) for lineno, _ in evals],
                "prompt": prompts,
                "target": [r["answer"] for _, r in evals],
            },
            schema={"sample_id": pl.Utf8, "prompt": pl.Utf8, "target": pl.Utf8},
        )

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Numeric match per generation (1.0/0.0), both extractions (:mod:`capdrift_fast.metrics.numeric`)."""
        scored = score_numeric(generations.select("request_id", "response", "target"))
        return scored.select(
            "request_id",
            pl.col("numeric_match_strict").cast(pl.Float64),
            pl.col("numeric_match_flexible").cast(pl.Float64),
        )

    def lm_eval_samples(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Per-sample rows of lm-eval's ``samples_gsm8k_*.jsonl``: one per response and filter (``strict-match``,
        then ``flexible-extract``), columns ``request_id``, ``target`` (the gold solution), ``filter``,
        ``filtered_resp`` (the extracted answer or ``[invalid]``) and ``metrics`` (JSON ``{"exact_match": 0/1.0}``)."""
        scored = score_numeric(generations.select("request_id", "response", "target"))
        parts = [scored.select("request_id", "target", filter=pl.lit(name), filtered_resp=pl.col(f"extracted_{kind}"),
                               metrics=pl.concat_str(pl.lit('{"exact_match": '),
                                                     pl.col(f"numeric_match_{kind}").cast(pl.Float64).cast(pl.Utf8),
                                                     pl.lit("}")))
                 for name, kind in (("strict-match", "strict"), ("flexible-extract", "flexible"))]
        return pl.concat(parts)


@register_benchmark("gsm8k")
class GSM8K(Benchmark):
    """The GSM8K plugin: default data ``gsm8k/test.jsonl``; on target for ``numeric`` adapters."""

    name = "gsm8k"
    config_model = GSM8KTaskConfig
    target_label = "numeric"
    lm_eval_task = "gsm8k"
    version = GSM8KTask.version

    @classmethod
    def build(cls, cfg: GSM8KTaskConfig, data_dir: Path, errors: RowErrors) -> GSM8KTask:
        """The GSM8K task of one config entry."""
        return GSM8KTask(cfg.task_name(), Path(data_dir) / (cfg.data or DEFAULT_DATA), cfg.limit, cfg.shots(), errors,
                         fewshot_path=Path(data_dir) / cfg.fewshot_data if cfg.fewshot_data else None,
                         fewshot_seed=cfg.fewshot_seed, fewshot_sampler=cfg.fewshot_sampler,
                         fewshot_as_multiturn=cfg.fewshot_as_multiturn)

    @classmethod
    def corpus(cls, data_dir: Path) -> list[str]:
        """Demo tokenizer text: see :meth:`Benchmark.corpus`."""
        texts: list[str] = []
        gsm = Path(data_dir) / DEFAULT_DATA
        if gsm.is_file():
            for line in list(gsm.open(encoding="utf-8"))[:400]:
                rec = json.loads(line)
                texts += [rec["question"], rec["answer"]]
        return texts

    @classmethod
    def score_file(cls, data: Path, responses: Path, *, skip_missing: bool = False, skip_extra: bool = False,
                   seed: int = 0) -> ScoreFileResult:
        """:func:`score_gsm8k_file` (``seed`` unused)."""
        return score_gsm8k_file(data, responses, skip_missing, skip_extra)


def score_gsm8k_file(data: Path, responses: Path, skip_missing: bool, skip_extra: bool) -> ScoreFileResult:
    """``capdrift score-file gsm8k``: GSM8K ``test.jsonl`` + ``{index or question, response}`` lines; both
    lm-eval extractions (see :mod:`capdrift_fast.benchmarks.score_file`).

    Raises:
        DataError: a file is missing or malformed, or responses are missing/extra without the skip option.
    """
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
        response = response_field(responses, lineno, rec, ("response",))
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
    unique_responses(answers, "index", responses)
    joined = join_responses(frame, answers, "index", data, responses, "question", skip_missing, skip_extra, notes, "index")
    scored = score_numeric(joined)
    out = scored.select("index", "extracted_strict", "extracted_flexible", "numeric_match_strict",
                        "numeric_match_flexible")
    accuracies = [rate("numeric_match_strict", out["numeric_match_strict"]),
                  rate("numeric_match_flexible", out["numeric_match_flexible"])]
    return ScoreFileResult("gsm8k", out, accuracies, notes=notes)
