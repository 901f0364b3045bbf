"""Tasks declared in YAML, no Python: the ``template`` benchmark.

A task entry (in the run config, or in a task YAML it ``include:``s) names a data file, a Jinja2 prompt
over each row's fields, the target(s), optionally a label space, few-shot examples, stop sequences and
metrics by registered name with their options::

    benchmark: template
    name: my_qa
    data: my_qa/test.jsonl            # .jsonl, .json (a list, or a document with rows under data_key), .csv, .parquet
    prompt: "Question: {{ question }}\\nAnswer:"
    target: answer                    # a row field (string or list of strings) or a template: "{{ answer }}"
    choices: [yes, no]                # optional label space: a list, a row field, or "targets" (every target)
    num_fewshot: 2                    # with fewshot: {data: train.jsonl, seed: 0, sampler: random}
    stop: ["\\n"]
    filters: [strip]                  # answer filters applied to every response (a metric may add its own)
    metrics: [exact_match, {metric: exact_match, name: em_nocase, ignore_case: true}]

Data files: ``.jsonl`` rows are read with the run's ``data_errors`` policy (a bad row names file:line);
``.json`` is a list of rows or, with ``data_key``, a document whose ``data_key`` holds the rows (the rest of
the document is ``doc`` in the template); ``.csv``/``.parquet`` through Polars. A Hugging Face dataset:
``dataset: <id>`` with ``split`` (and ``dataset_config``), read with ``datasets`` from the local cache only
(``HF_DATASETS_OFFLINE=1``; the ``datasets`` package is needed).

Templates see the row's fields, ``doc`` and the filter ``end_punct`` (appends ``.`` unless the text ends in
ASCII punctuation, as Tk-Instruct's encoder does). Undefined fields are errors (Jinja2 ``StrictUndefined``).
Few-shot examples are ``num_fewshot`` rows of ``fewshot.data`` (or the data file itself, those rows then not
evaluated), drawn once with ``random.Random(seed).sample`` (``sampler: random``) or the first rows
(``first_n``): every item gets the same examples. That is not lm-eval's default sampler, which draws other
examples for each item from one advancing generator; the built-in ``gsm8k`` benchmark with ``fewshot_data``
draws as lm-eval does (:mod:`capdrift_fast.benchmarks.gsm8k`). Each example is rendered with ``fewshot.template`` (default ``"{{ prompt }} {{ target }}"``,
where ``prompt`` is the example's rendered prompt and ``target`` its first target) and joined with
``fewshot.separator`` before the prompt.

Multiple choice (lm-eval's ``output_type: multiple_choice``), scored by log-likelihood for every model in the
same pass::

    benchmark: template
    name: my_mc
    data: my_mc/test.jsonl
    output_type: multiple_choice
    prompt: "Question: {{ question }}\nAnswer:"
    choices: options                  # a list, a row field holding a list, "targets", or a template rendering
                                      # a list literal: "{{ [option_a, option_b] }}"
    target: label                     # gold: a choice index (int or digit string) or the choice's text
    target_delimiter: " "             # between context and choice (lm-eval's default)
    metrics: [acc, acc_norm]          # the default; acc_bytes too (lm-eval api/task.py process_results)

Each choice is scored as ``target_delimiter + choice`` after the prompt (lm-eval's ``construct_requests``), so
with the defaults the contexts and continuations are lm-eval's own for the same prompt, choices and target.

Letter-choice form (``output_type: multiple_choice_letters``, same ``choices``/``target``): the prompt becomes
``"{prompt}\nA. {choice 0}\nB. {choice 1}\n...\nAnswer:"`` (MMLU's format, lm-eval's ``mmlu_generative``;
:mod:`capdrift_fast.metrics.letter_choice`), the model generates one token restricted to the letters, greedy,
and ``letter_acc`` (the default metric) scores it against the gold letters. No few-shot examples in this form.
"""

from __future__ import annotations

import ast
import json
import os
import random
import string
from pathlib import Path
from typing import Any, Literal

import jinja2
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from capdrift_fast import registry
from capdrift_fast.benchmarks.base import Benchmark, MetricSpec, RowErrors, no_samples_error, read_jsonl
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.errors import DataError, UnknownNameError
from capdrift_fast.metrics.base import Metric
from capdrift_fast.metrics.filters import Filter
from capdrift_fast.metrics.letter_choice import LETTERS, letter_prompt, letters_for
from capdrift_fast.metrics.multiple_choice import random_choice_expectation
from capdrift_fast.metrics.random_guess import random_guess_scores
from capdrift_fast.registry import register_benchmark


def end_punct(text: str) -> str:
    """``text`` with a ``.`` appended unless it ends in ASCII punctuation (Tk-Instruct's ``ni_collator``)."""
    return text if text and text[-1] in string.punctuation else text + "."


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_ENV.filters["end_punct"] = end_punct


def _compile(source: str, what: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"{what} is not a valid Jinja2 template: {exc.message} (line {exc.lineno})") from None


class FilterEntry(BaseModel):
    """One answer filter: a registered ``filter`` name and its options (every other key)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    filter: str

    def build(self) -> Filter:
        """The configured filter.

        Raises:
            ValueError: unknown filter name (with "Did you mean") or invalid options.
        """
        try:
            cls = registry.filters.get(self.filter)
        except UnknownNameError as err:
            raise ValueError(str(err)) from None
        return cls.model_validate(self.model_extra or {})


def _filter_names(v: Any) -> Any:
    return [{"filter": f} if isinstance(f, str) else f for f in v] if isinstance(v, list) else v


class MetricEntry(BaseModel):
    """One metric of a template task: a registered ``metric`` name, the column ``name`` it gets (default:
    the metric's name), ``primary`` (shown in the CLI table; default: every metric), ``drift`` (stands for
    the task in the drift score), ``filters`` applied to the response for this metric only (after the
    task's), and the metric's own options (every other key)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    metric: str
    name: str | None = None
    primary: bool = True
    drift: bool = False
    filters: list[FilterEntry] = Field(default_factory=list)

    @field_validator("filters", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return _filter_names(v)

    @property
    def column(self) -> str:
        """The metric's column in ``scores.parquet`` and name in ``matrix.parquet``."""
        return self.name or self.metric

    def build(self) -> Metric:
        """The configured metric object.

        Raises:
            ValueError: unknown metric name (with "Did you mean") or invalid options.
        """
        try:
            cls = registry.metrics.get(self.metric)
        except UnknownNameError as err:
            raise ValueError(str(err)) from None
        return cls.model_validate(self.model_extra or {})


class FewShotConfig(BaseModel):
    """Where few-shot examples come from and how they are drawn and rendered (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str | None = None
    seed: int = 0
    sampler: Literal["random", "first_n"] = "random"
    template: str = "{{ prompt }} {{ target }}"
    separator: str = "\n\n"


class TemplateTaskConfig(TaskConfigBase):
    """A task declared in YAML (see the module docstring for every field)."""

    benchmark: Literal["template"]
    name: str
    data: str | None = None
    data_key: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "test"
    id_field: str | None = None
    prompt: str
    target: str | list[str]
    choices: list[str] | str | None = None
    num_fewshot: int = Field(default=0, ge=0)
    fewshot: FewShotConfig = Field(default_factory=FewShotConfig)
    stop: list[str] = Field(default_factory=list)
    filters: list[FilterEntry] = Field(default_factory=list)
    metrics: list[MetricEntry] = Field(min_length=1)
    version: str = "1.0"
    description: str = ""
    output_type: Literal["generate_until", "multiple_choice", "multiple_choice_letters"] = "generate_until"
    target_delimiter: str = " "

    @model_validator(mode="before")
    @classmethod
    def _mc_default_metrics(cls, data: Any) -> Any:
        if isinstance(data, dict) and "metrics" not in data:
            default = {"multiple_choice": ["acc", "acc_norm"], "multiple_choice_letters": ["letter_acc"]}
            if data.get("output_type") in default:
                return {**data, "metrics": default[data["output_type"]]}
        return data

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_names(cls, v: Any) -> Any:
        return [{"metric": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v

    @field_validator("metrics")
    @classmethod
    def _metrics_exist(cls, v: list[MetricEntry]) -> list[MetricEntry]:
        for m in v:
            m.build()  # unknown name ("Did you mean ...?") or bad options: refused before any engine starts
            for f in m.filters:
                f.build()
        return v

    @field_validator("filters", mode="before")
    @classmethod
    def _filter_names(cls, v: Any) -> Any:
        return _filter_names(v)

    @field_validator("filters")
    @classmethod
    def _filters_exist(cls, v: list[FilterEntry]) -> list[FilterEntry]:
        for f in v:
            f.build()
        return v

    @model_validator(mode="after")
    def _check(self) -> "TemplateTaskConfig":
        if (self.data is None) == (self.dataset is None):
            raise ValueError("a template task needs exactly one of `data` (a file) or `dataset` (a Hugging Face id)")
        _compile(self.prompt, "prompt")
        _compile(self.fewshot.template, "fewshot.template")
        for t in [self.target] if isinstance(self.target, str) else self.target:
            _compile(t, "target")
        columns = [m.column for m in self.metrics]
        dup = sorted({c for c in columns if columns.count(c) > 1})
        if dup:
            raise ValueError(f"metric columns repeat: {', '.join(dup)}; give each a distinct `name:`")
        mc = self.output_type == "multiple_choice"
        if self.output_type != "generate_until" and self.choices is None:
            raise ValueError(f"output_type {self.output_type} needs `choices:` (a list, a row field, \"targets\" or a template)")
        if self.output_type == "multiple_choice_letters" and self.num_fewshot:
            raise ValueError("output_type multiple_choice_letters takes no few-shot examples (num_fewshot must be 0): "
                             "the examples would answer with choice texts, not letters")
        for i, m in enumerate(self.metrics):
            metric = m.build()
            if metric.needs_labels and self.choices is None:
                raise ValueError(f"metrics.{i} ({m.metric}) needs a label space: set `choices:`")
            if metric.loglikelihood and not mc:
                raise ValueError(f"metrics.{i} ({m.metric}) scores choice log-likelihoods: set `output_type: "
                                 "multiple_choice`, or use a generation metric (exact_match, ...)")
            if mc and not metric.loglikelihood:
                raise ValueError(f"metrics.{i} ({m.metric}) scores a generated response, which a multiple_choice "
                                 "task does not produce: use acc, acc_norm or acc_bytes")
        if isinstance(self.choices, str) and ("{{" in self.choices or "{%" in self.choices):
            _compile(self.choices, "choices")
        return self


class TemplateTask:
    """A task declared in YAML, bound to its data (see the module docstring)."""

    benchmark = "template"

    def __init__(self, cfg: TemplateTaskConfig, data_dir: Path, errors: RowErrors | None = None) -> None:
        self.cfg, self.name, self.version = cfg, cfg.task_name(), cfg.version
        self.path = _data_path(cfg.data, data_dir) if cfg.data else None
        self.fewshot_path = _data_path(cfg.fewshot.data, data_dir) if cfg.fewshot.data else None
        self.errors = errors or RowErrors()
        self.stop = tuple(cfg.stop)
        self.num_fewshot = cfg.num_fewshot
        self.has_label_space = cfg.choices is not None
        self.output_type = cfg.output_type
        self.target_delimiter = cfg.target_delimiter
        self.letters: tuple[str, ...] = ()  # letter form: the answer letters (set by samples())
        self._metrics = [(m.column, m.build()) for m in cfg.metrics]
        self._filters = [f.build() for f in cfg.filters]
        self._metric_filters = {m.column: [f.build() for f in m.filters] for m in cfg.metrics}
        self.metrics = tuple(
            MetricSpec(m.column, metric.description or m.metric, primary=m.primary, binary=metric.binary, drift=m.drift)
            for m, (_, metric) in zip(cfg.metrics, self._metrics)
        )
        self._prompt = _compile(cfg.prompt, "prompt")
        self._shot = _compile(cfg.fewshot.template, "fewshot.template")
        targets = [cfg.target] if isinstance(cfg.target, str) else cfg.target
        self._targets = [(t, None if "{" in t else t, _compile(t, "target")) for t in targets]

    # --- reading ---------------------------------------------------------------------------------------

    def _rows(self, path: Path | None) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
        """``[(where, row)]`` (``where`` = ``file:line`` or ``file[index]``) and the JSON document (``doc``)."""
        cfg = self.cfg
        if path is None:
            return _hf_rows(cfg), {}
        if not path.is_file():
            raise DataError(f"{path}: data file not found (task {self.name!r}; relative paths resolve against "
                            "data_dir or the task file's folder)")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return [(f"{path}:{line}", rec) for line, rec in read_jsonl(path, self.errors)], {}
        if suffix == ".json":
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            rows = doc.get(cfg.data_key) if isinstance(doc, dict) and cfg.data_key else doc
            if not isinstance(rows, list):
                want = f"the key {cfg.data_key!r} holding a list of rows" if cfg.data_key else "a list of rows (or set data_key)"
                raise DataError(f"{path}: expected {want}")
            rest = {k: v for k, v in doc.items() if k != cfg.data_key} if isinstance(doc, dict) else {}
            return [(f"{path}[{i}]", r) for i, r in enumerate(rows)], rest
        if suffix in (".csv", ".parquet"):
            try:
                frame = pl.read_csv(path) if suffix == ".csv" else pl.read_parquet(path)
            except Exception as exc:  # polars raises several types for a malformed file
                raise DataError(f"{path}: cannot read ({exc})") from None
            return [(f"{path}:{i + 2 if suffix == '.csv' else i}", r) for i, r in enumerate(frame.iter_rows(named=True))], {}
        raise DataError(f"{path}: unsupported data file type {suffix!r}; use .jsonl, .json, .csv or .parquet")

    def _render(self, where: str, tpl: jinja2.Template, ctx: dict[str, Any], what: str) -> str:
        try:
            return tpl.render(ctx)
        except jinja2.UndefinedError as exc:
            raise DataError(f"{where}: {what} of task {self.name!r}: {exc.message}; the row's fields are "
                            f"{', '.join(sorted(k for k in ctx if k != 'doc'))}") from None
        except Exception as exc:  # a template error on this row's values
            raise DataError(f"{where}: {what} of task {self.name!r}: {exc}") from None

    def _target_list(self, where: str, ctx: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for source, field, tpl in self._targets:
            if field is not None and field in ctx:
                value = ctx[field]
                values = value if isinstance(value, list) else [value]
                if not values or not all(isinstance(v, (str, int, float)) for v in values):
                    raise DataError(f"{where}: field {field!r} (target) should be a string or a non-empty list of strings")
                out += [str(v) for v in values]
            else:
                out.append(self._render(where, tpl, ctx, f"target {source!r}"))
        return out

    def _example(self, where: str, row: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        ctx = {**row, "doc": doc}
        return {"prompt": self._render(where, self._prompt, ctx, "prompt"), "target": self._target_list(where, ctx),
                "row": row}

    def _good(self, rows: list[tuple[str, dict[str, Any]]], doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        good = []
        for where, row in rows:
            if not isinstance(row, dict):
                self.errors.bad(DataError(f"{where}: expected an object (a row with named fields)"))
                continue
            try:
                ex = self._example(where, row, doc)
            except DataError as err:
                self.errors.bad(err)
                continue
            good.append((where, {**ex, "where": where}))
        return good

    def samples(self) -> pl.DataFrame:
        """Columns: ``sample_id`` (``id_field`` or the row's 0-based index), ``prompt`` (few-shot prefix +
        rendered prompt), ``target`` (List[Utf8]) and, with ``choices``, ``labels`` (List[Utf8]).

        Raises:
            DataError: a missing or unreadable file, a row the templates cannot render (policy ``fail``;
                names file:line and the missing field), a repeated id, or no usable row.
        """
        cfg = self.cfg
        rows, doc = self._rows(self.path)
        self._doc = doc
        examples = [(i, w, ex) for i, (w, ex) in enumerate(self._good(rows, doc))]
        shots = self._fewshot(examples, doc)
        if self.fewshot_path is None and cfg.num_fewshot:
            used = {id(ex) for ex in shots}
            examples = [e for e in examples if id(e[2]) not in used]
        space = self._label_space([ex for _, _, ex in examples])
        prefix = "".join(self._render(ex["where"], self._shot, {**ex["row"], "doc": doc, "prompt": ex["prompt"],
                                                                  "target": ex["target"][0]}, "fewshot.template")
                         + cfg.fewshot.separator for ex in shots)
        out, seen = [], {}
        for index, where, ex in examples:
            sid = str(ex["row"].get(cfg.id_field, index)) if cfg.id_field else str(index)
            if cfg.id_field and cfg.id_field not in ex["row"]:
                self.errors.bad(DataError(f"{where}: missing id field {cfg.id_field!r}"))
                continue
            if sid in seen:
                self.errors.bad(DataError(f"{where}: id {sid!r} repeats {seen[sid]}"))
                continue
            seen[sid] = where
            rec = {"sample_id": sid, "prompt": prefix + ex["prompt"], "target": ex["target"]}
            if space is not None:
                try:
                    rec["labels"] = space(ex["row"])
                    if self.output_type != "generate_until":
                        rec["choices"], rec["gold"] = rec["labels"], self._gold(where, ex["target"], rec["labels"])
                        rec["target"] = [rec["choices"][g] for g in rec["gold"]]
                    if self.output_type == "multiple_choice_letters":
                        try:
                            rec["prompt"] = letter_prompt(rec["prompt"], rec["choices"])
                        except ValueError as exc:
                            raise DataError(f"{where}: {exc}") from None
                        rec["labels"] = list(LETTERS[:len(rec["choices"])])
                        rec["target"] = [LETTERS[g] for g in rec["gold"]]
                except DataError as err:
                    self.errors.bad(DataError(f"{where}: {err}") if not str(err).startswith(where) else err)
                    continue
            out.append(rec)
            if self.cfg.limit and len(out) >= self.cfg.limit:
                break
        if not out:
            raise no_samples_error(self.path or Path(str(cfg.dataset)), self.errors)
        schema = {"sample_id": pl.Utf8, "prompt": pl.Utf8, "target": pl.List(pl.Utf8)}
        if space is not None:
            schema["labels"] = pl.List(pl.Utf8)
        if self.output_type != "generate_until":
            schema.update(choices=pl.List(pl.Utf8), gold=pl.List(pl.Int32))
        if self.output_type == "multiple_choice_letters":
            self.letters = letters_for(max(len(r["choices"]) for r in out))
        return pl.DataFrame(out, schema=schema)

    def _gold(self, where: str, targets: list[str], choices: list[str]) -> list[int]:
        """Gold choice indices of one row: each target is a choice's text or else an index (an int, or a digit
        string, as lm-eval reads a rendered target).

        Raises:
            DataError: a target is neither (names the row, the target and the choices).
        """
        if not choices:
            raise DataError(f"{where}: no choices")
        gold = []
        for t in targets:
            if t in choices:
                gold.append(choices.index(t))
            elif t.strip().isdigit() and int(t) < len(choices):
                gold.append(int(t))
            else:
                raise DataError(f"{where}: target {t!r} is neither a choice index (0..{len(choices) - 1}) nor one of "
                                f"the choices {choices}; fix the row or the task's `target:`")
        return sorted(set(gold))

    def _fewshot(self, examples: list[tuple[int, str, dict[str, Any]]], doc: dict[str, Any]) -> list[dict[str, Any]]:
        k = self.cfg.num_fewshot
        if not k:
            return []
        if self.fewshot_path is not None:
            rows, sdoc = self._rows(self.fewshot_path)
            pool = [ex for _, ex in self._good(rows, sdoc)]
        else:
            pool = [ex for _, _, ex in examples]
        if len(pool) < k + (0 if self.fewshot_path is not None else 1):
            raise DataError(f"{self.fewshot_path or self.path}: num_fewshot {k} needs more rows than the {len(pool)} there")
        if self.cfg.fewshot.sampler == "first_n":
            return pool[:k]
        return random.Random(self.cfg.fewshot.seed).sample(pool, k)

    def _label_space(self, examples: list[dict[str, Any]]) -> Any:
        choices = self.cfg.choices
        if choices is None:
            return None
        if isinstance(choices, list):
            labels = [str(c) for c in choices]
            return lambda row: labels
        if choices == "targets":
            labels = sorted({t for ex in examples for t in ex["target"]})
            return lambda row: labels
        field = choices
        if "{{" in choices or "{%" in choices:
            tpl = _compile(choices, "choices")

            def rendered(row: dict[str, Any]) -> list[str]:
                text = self._render(f"task {self.name!r}", tpl, {**row, "doc": self._doc}, "choices")
                try:
                    value = ast.literal_eval(text.strip())
                except (ValueError, SyntaxError):
                    value = None
                if not isinstance(value, (list, tuple)):
                    raise DataError(f"task {self.name!r}: choices template should render a list literal, got {text!r}")
                return [str(v) for v in value]

            return rendered

        def per_row(row: dict[str, Any]) -> list[str]:
            value = row.get(field)
            if not isinstance(value, list):
                raise DataError(f"task {self.name!r}: choices field {field!r} should be a list in every row")
            return [str(v) for v in value]

        return per_row

    # --- scoring ---------------------------------------------------------------------------------------

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Every configured metric per generation (``request_id`` + one Float64 column per metric)."""
        cols = ["response", "target"] + (["labels"] if self.has_label_space else [])
        if self.output_type == "multiple_choice":
            cols += ["choice_logprobs", "choices", "gold"]
        frame = generations.select(*cols).with_columns(response=_chain(pl.col("response"), self._filters))
        return generations.select("request_id").with_columns([
            metric.score(frame.with_columns(response=_chain(pl.col("response"), self._metric_filters[column])))
            .alias(column) for column, metric in self._metrics
        ])

    def random_baseline(self, samples: pl.DataFrame) -> dict[str, float]:
        """Kung & Peng's random-guess expectations of the SuperNI-normalised metrics this task reports
        (``normalized_exact_match``, ``format_correct``) under their column names; ``{}`` without ``choices``."""
        if not self.has_label_space:
            return {}
        if self.output_type == "multiple_choice":  # 1/k per item for every choice-accuracy metric
            e = random_choice_expectation(samples)
            return {} if e is None else {m.column: e for m in self.cfg.metrics}
        if self.output_type == "multiple_choice_letters":  # a uniform letter: 1/k per item
            e = random_choice_expectation(samples)
            return {} if e is None else {m.column: e for m in self.cfg.metrics if m.metric == "letter_acc"}
        expected = random_guess_scores(samples)
        by_metric = {"normalized_exact_match": expected.get("exact_match"), "format_correct": expected.get("format_correct")}
        return {m.column: by_metric[m.metric] for m in self.cfg.metrics if by_metric.get(m.metric) is not None}


def _chain(expr: pl.Expr, filters: list[Filter]) -> pl.Expr:
    """``expr`` through ``filters`` in order."""
    for f in filters:
        expr = f.apply(expr)
    return expr


def _data_path(value: str, data_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(data_dir) / p


def _hf_rows(cfg: TemplateTaskConfig) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a Hugging Face dataset from the local cache (no network)."""
    try:
        import datasets  # optional: capdrift_fast[datasets]
    except ImportError:
        raise DataError(f"task {cfg.name!r}: `dataset: {cfg.dataset}` needs the `datasets` package "
                        "(pip install 'capdrift_fast[datasets]'), or export the split to a .jsonl and use `data:`") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        ds = datasets.load_dataset(cfg.dataset, cfg.dataset_config, split=cfg.split)
    except Exception as exc:  # datasets raises many types for a missing cache entry
        raise DataError(f"task {cfg.name!r}: dataset {cfg.dataset!r} split {cfg.split!r} not in the local Hugging Face "
                        f"cache ({exc}); download it once with datasets.load_dataset on a connected machine") from None
    return [(f"{cfg.dataset}[{cfg.split}][{i}]", dict(r)) for i, r in enumerate(ds)]


@register_benchmark("template")
class Template(Benchmark):
    """The plugin of tasks declared in YAML (module docstring); no default target label."""

    name = "template"
    config_model = TemplateTaskConfig

    @classmethod
    def build(cls, cfg: TemplateTaskConfig, data_dir: Path, errors: RowErrors) -> TemplateTask:
        """The task of one template entry."""
        return TemplateTask(cfg, Path(data_dir), errors)
