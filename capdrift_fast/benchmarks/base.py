"""The task protocol: a benchmark's samples (prompts + references) and its scorer.

A task turns one benchmark data file into a samples frame and scores generations against it.
Samples frame columns (one row per sample, ``n_samples`` rows):

- ``sample_id`` (Utf8): unique and stable within the task (the dataset's own id where it has one);
- ``prompt`` (Utf8): the text sent to the model (before any chat template);
- task-specific reference columns (``target``, ``labels``, ``instruction_id_list``, ...).

``score`` receives generations joined with the samples on ``sample_id`` and returns one row per
generation: ``request_id`` plus one Float64 column per metric (1.0/0.0 for binary metrics) and any
weight column a metric names.

Optional hooks a task may provide (the report uses them when present; nothing names a benchmark):

- ``breakdown(generations) -> DataFrame``: the units inside each item a metric averages over, long:
  ``request_id``, ``unit`` (Int32, the unit's position in its item), ``group`` (Utf8), ``metric``,
  ``value`` (0/1). IFEval gives one row per instruction, grouped by instruction id, so the report can
  show instruction-level accuracy per instruction type (:mod:`capdrift_fast.analysis.breakdown`).
- ``references(samples) -> Series``: one display string per sample (the reference/target shown in the
  report's sample browser); default :func:`reference_texts`.
- ``language``: ISO 639-1 code of the language responses should be in (default ``en``), for the report's
  format-drift panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol, runtime_checkable

import polars as pl

from capdrift_fast.errors import DataError


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports.

    Attributes:
        name: column name in ``scores.parquet`` and value of ``metric`` in ``matrix.parquet``.
        description: one line, with the metric's source (paper or reference implementation).
        weight: name of a per-generation weight column; the task score is then the weighted mean
            ``sum(value * weight) / sum(weight)`` (IFEval ILA is a micro-average over instructions).
        primary: shown in the CLI's summary table.
        binary: values are 0/1 (affects the paired test chosen in the drift statistics).
        drift: this metric stands for its task in the drift score unless ``drift.metrics`` says
            otherwise (default when no metric of a task has it: its first primary metric).
        lm_eval: lm-evaluation-harness's ``"metric,filter"`` key for the same quantity, where lm-eval
            has one (the export then uses it; else ``"<name>,none"``).
    """

    name: str
    description: str
    weight: str | None = None
    primary: bool = False
    binary: bool = True
    drift: bool = False
    lm_eval: str | None = None


@dataclass(frozen=True)
class LmEvalDefinition:
    """lm-evaluation-harness 0.4.13's definition of a task (its YAML under ``lm_eval/tasks/``), which a task
    with the same prompts and scoring declares as its ``lm_eval`` attribute; the export names results with
    ``task`` only when the run's settings match it (:func:`capdrift_fast.benchmarks.lm_eval_compat.lm_eval_deviations`).

    Attributes:
        task: lm-eval's task name (``gsm8k``).
        version: the YAML's ``metadata.version`` (a float, as lm-eval writes it in ``versions``).
        num_fewshot: the YAML's ``num_fewshot``.
        fewshot_split: the split the examples come from (``train``), or None for a 0-shot task.
        until: ``generation_kwargs.until`` (lm-eval's vLLM backend adds the tokenizer's EOS string).
        max_gen_toks: ``generation_kwargs.max_gen_toks``, or the vLLM backend's default 256 when the YAML has none.
        dataset_path, dataset_name, test_split: where lm-eval reads the evaluated documents.
        fewshot_seed: lm-eval's default ``--seed`` for few-shot sampling (1234).
        fewshot_sampler: ``fewshot_config.sampler`` (``default``: ``random.Random(seed).sample`` advancing over docs).
    """

    task: str
    version: float
    num_fewshot: int
    fewshot_split: str | None
    until: tuple[str, ...]
    max_gen_toks: int
    dataset_path: str
    dataset_name: str | None
    test_split: str
    fewshot_seed: int = 1234
    fewshot_sampler: str = "default"


@runtime_checkable
class Task(Protocol):
    """A benchmark bound to one data file (see the module docstring for the frame shapes).

    ``num_fewshot``: in-context examples in each prompt (for the lm-eval export's ``n-shot``).
    ``has_label_space``: the samples carry a label space (``labels``), so format correctness and a
    random-guess baseline (:meth:`random_baseline`) are defined.
    """

    name: str
    benchmark: str
    version: str
    metrics: tuple[MetricSpec, ...]
    stop: tuple[str, ...]
    num_fewshot: int
    has_label_space: bool

    def samples(self) -> pl.DataFrame:
        """The samples frame (``sample_id``, ``prompt``, reference columns)."""
        ...

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Metric columns for each generation (``request_id`` + metrics)."""
        ...

    def random_baseline(self, samples: pl.DataFrame) -> dict[str, float]:
        """Expected metric values of guessing uniformly from the task's label space (``{}`` without one)."""
        ...


def output_type(task: Any) -> str:
    """lm-eval's ``output_type`` of a task or task config: ``generate_until`` (the default), ``multiple_choice``
    (scored by the log-likelihood of each choice) or ``multiple_choice_letters`` (one generated answer letter)."""
    return str(getattr(task, "output_type", "generate_until"))


def is_multiple_choice(task: Any) -> bool:
    """The task (or task config) is scored by log-likelihood of its choices (``output_type: multiple_choice``)."""
    return output_type(task) == "multiple_choice"


class Benchmark:
    """A benchmark plugin: what the rest of capdrift_fast needs to know about one benchmark.

    Subclasses set the class attributes and implement :meth:`build`; register them with
    ``@register_benchmark("name")`` (:mod:`capdrift_fast.registry`) or through the entry-point group
    ``capdrift_fast.benchmarks``.

    Attributes:
        name: the registered name (``benchmark:`` in a task entry).
        config_model: the pydantic model of its task entries (a :class:`~capdrift_fast.config.TaskConfigBase`
            subclass with ``benchmark: Literal["<name>"]``).
        target_label: the nominal adapter label whose on-target tasks it is by default (``drift.targets``),
            or None.
        lm_eval_task: lm-evaluation-harness's task name for the same benchmark, or None.
        version: the benchmark's version (prompts + scoring), in the report and the lm-eval export.
    """

    name: str = ""
    config_model: Any = None
    target_label: str | None = None
    lm_eval_task: str | None = None
    version: str = "1.0"

    @classmethod
    def build(cls, cfg: Any, data_dir: Path, errors: "RowErrors") -> Task:
        """The task of one validated task entry; ``cfg.data`` resolves against ``data_dir`` unless absolute."""
        raise NotImplementedError

    @classmethod
    def corpus(cls, data_dir: Path) -> list[str]:
        """Texts of this benchmark's default data under ``data_dir`` for training the demo's tokenizer
        (:mod:`capdrift_fast.demo`); ``[]`` when it has none or the data is absent."""
        return []

    @classmethod
    def score_file(cls, data: Path, responses: Path, *, skip_missing: bool = False, skip_extra: bool = False,
                   seed: int = 0) -> Any:
        """``capdrift score-file`` for this benchmark (see :mod:`capdrift_fast.benchmarks.score_file`).

        Raises:
            DataError: this benchmark has no reader for response files.
        """
        raise DataError(f"benchmark {cls.name!r} has no score-file reader; score its responses in a run instead")


class NoLabelSpace:
    """Mixin for tasks without a label space: no random-guess baseline."""

    has_label_space = False

    def random_baseline(self, samples: pl.DataFrame) -> dict[str, float]:
        """``{}``: the task has no label space to guess from."""
        return {}


class RowErrors:
    """What a task loader does with a malformed row: ``fail`` raises its :class:`DataError` at once;
    ``skip`` records it in :attr:`skipped` (every one, with file and line) and the loader goes on.

    Whole-file problems (missing file, no samples left) always raise. Rows that are usable but suspicious
    (an empty prompt, a prompt repeated exactly within the task) are kept and listed in :attr:`warnings`.
    """

    def __init__(self, policy: Literal["fail", "skip"] = "fail") -> None:
        self.policy = policy
        self.skipped: list[DataError] = []
        self.warnings: list[DataError] = []

    def warn(self, err: DataError) -> None:
        """Record a usable but suspicious row (reported, never fatal)."""
        self.warnings.append(err)

    def bad(self, err: DataError) -> None:
        """Handle one bad row.

        Raises:
            DataError: ``err`` itself, when the policy is ``fail``.
        """
        if self.policy == "fail":
            raise err
        self.skipped.append(err)


def read_jsonl(path: Path, errors: RowErrors | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-empty line of a JSON-lines file.

    A line that is not a JSON object goes to ``errors`` (default: raise).

    Raises:
        DataError: the file is missing, or (policy ``fail``) a line is not a JSON object (names file and line).
    """
    errors = errors or RowErrors()
    if not path.is_file():
        raise DataError(f"{path}: data file not found (set data_dir in the config or $CAPDRIFT_DATA_DIR)")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.bad(DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                                     f"{exc.start + 1}); re-encode the file as UTF-8 or fix the line", path, lineno))
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.bad(DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})", path, lineno))
                continue
            if not isinstance(rec, dict):
                errors.bad(DataError(f"{path}:{lineno}: expected a JSON object", path, lineno))
                continue
            yield lineno, rec


class PromptWatch:
    """Warns (via :meth:`RowErrors.warn`) about empty prompts and prompts that repeat an earlier row of the
    same file exactly: both are usually data mistakes, and a repeated prompt counts twice in every score."""

    def __init__(self, path: Path, errors: RowErrors) -> None:
        self.path, self.errors = path, errors
        self.seen: dict[str, str] = {}

    def check(self, text: str, where: str, lineno: int | None = None) -> None:
        """Look at the prompt text (or input) of the row at ``where`` (``line 12``, ``Instances[3]``)."""
        loc = f"{self.path}:{lineno}" if lineno is not None else f"{self.path}: {where}"
        if not text.strip():
            self.errors.warn(DataError(f"{loc}: empty prompt; it is evaluated as is (remove the row if it is a mistake)",
                                       self.path, lineno))
        elif text in self.seen:
            self.errors.warn(DataError(f"{loc}: the prompt repeats {self.seen[text]} exactly; both are evaluated "
                                       "(and weigh twice in the scores): remove the copy if it is a mistake",
                                       self.path, lineno))
        else:
            self.seen[text] = where


def require_fields(path: Path, lineno: int, rec: dict[str, Any], fields: dict[str, type]) -> None:
    """Raise :class:`DataError` naming file, line and field when ``rec`` lacks a field or has the wrong type
    (``bool`` does not count as ``int``)."""
    for name, typ in fields.items():
        if name not in rec:
            raise DataError(f"{path}:{lineno}: missing field {name!r}", path, lineno)
        value = rec[name]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise DataError(
                f"{path}:{lineno}: field {name!r} should be {typ.__name__}, got {type(value).__name__}", path, lineno
            )


def no_samples_error(path: Path, errors: RowErrors) -> DataError:
    """The error for a data file none of whose rows is usable."""
    why = f" (all {len(errors.skipped)} rows read were malformed)" if errors.skipped else ""
    return DataError(f"{path}: no usable samples{why}")


BREAKDOWN_SCHEMA = {"request_id": pl.Utf8, "unit": pl.Int32, "group": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64}
"""Columns of a task's optional ``breakdown`` (see the module docstring)."""


def reference_texts(task: Any, samples: pl.DataFrame) -> pl.Series:
    """One display string per row of ``samples``: the task's own ``references`` when it has one, else its
    ``target`` column (a list joined with `` | ``), else empty strings."""
    hook = getattr(task, "references", None)
    if callable(hook):
        return hook(samples).cast(pl.Utf8).alias("reference")
    if "target" in samples.columns:
        col = samples["target"]
        if isinstance(col.dtype, pl.List):
            return col.cast(pl.List(pl.Utf8)).list.join(" | ").alias("reference")
        return col.cast(pl.Utf8).alias("reference")
    return pl.Series("reference", [""] * samples.height, dtype=pl.Utf8)


def task_language(task: Any) -> str:
    """The language a task's responses should be in (its ``language`` attribute, default ``en``)."""
    return str(getattr(task, "language", None) or "en")
