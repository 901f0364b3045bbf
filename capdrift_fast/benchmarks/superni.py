"""Super-NaturalInstructions classification tasks (Wang et al. 2022, arXiv:2204.07705).

Prompts are encoded as Tk-Instruct encodes them (``src/ni_collator.py``, definition + positive examples):
``"Definition: {def}\\n\\n" + " Positive Example k -\\nInput: {in}.\\n Output: {out}.\\n\\n" * k +
"Now complete the following example -\\nInput: {instance}.\\nOutput: "``, a ``.`` added where a part
does not already end in punctuation.

Metrics (:mod:`capdrift_fast.metrics.classification`, :mod:`capdrift_fast.metrics.rouge`):

- ``exact_match``: SuperNI's ``compute_metrics.py``: the normalised response equals any normalised
  gold output (normalisation: lower-case, remove punctuation, collapse whitespace; articles kept);
- ``format_correct``: format correctness (Kung & Peng 2023, arXiv:2305.11383): the normalised
  response lies in the task's label space (every gold output of every instance, normalised);
- ``rougeL``: SuperNI's ROUGE-L F-measure (rouge-score, stemmed), max over the gold outputs.

Test-time ablations of Kung & Peng 2023 ("Do Models Really Learn to Follow Instructions? An Empirical
Study of Instruction Tuning", ACL 2023, arXiv:2305.11383), chosen per task in the config:

- ``definition``: ``original``; ``simplified`` -- "all semantic components removed, only the output
  space information left": here ``"Answer with one of: {labels}."`` with the task's label space as
  written, sorted (:func:`simplified_definition`); ``empty`` -- no definition at all;
- ``examples``: ``original``; ``delusive`` -- the same positive examples with a wrong input-to-output
  mapping: each example's output replaced by the next label of the sorted label space (cyclically;
  :func:`delusive_examples`, deterministic, always a different label); ``empty`` -- no examples.

Multiple-choice form (``output_type: multiple_choice``): the same prompts (ablations included) scored by
log-likelihood, the task's label space (sorted, as written) as the choices, each instance's gold outputs as
the gold choices, lm-eval's ``acc``/``acc_norm`` (:mod:`capdrift_fast.metrics.multiple_choice`). The prompt
ends in ``"Output: "``, so the target delimiter is ``""`` (lm-eval moves the context's trailing space to the
continuation: ``" cause"``). Its default name ends in ``.mc``, so both forms can run side by side.

Letter-choice form (``output_type: multiple_choice_letters``, default name ending in ``.mcl``): the same prompt
without its final ``"Output: "``, then the label space (sorted) as ``A. ...``/``B. ...`` lines and ``"Answer:"``
(MMLU's format, lm-eval's ``mmlu_generative``; :mod:`capdrift_fast.metrics.letter_choice`); one generated token
restricted to the letters, greedy, scored by ``letter_acc``. The positive examples keep their label outputs.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from capdrift_fast.benchmarks.base import (
    Benchmark,
    MetricSpec,
    PromptWatch,
    RowErrors,
    no_samples_error,
    read_jsonl,
    require_fields,
)
from capdrift_fast.benchmarks.score_file import (
    Accuracy,
    ScoreFileResult,
    join_responses,
    rate,
    response_field,
    unique_responses,
)
from capdrift_fast.config import TaskConfigBase
from capdrift_fast.errors import DataError
from capdrift_fast.metrics.classification import (
    normalize_answer,
    random_guess_baseline,
    random_guess_expectation,
    score_classification,
)
from capdrift_fast.metrics.letter_choice import LETTERS, letter_accuracy, letter_prompt, letters_for
from capdrift_fast.metrics.multiple_choice import choice_accuracy, random_choice_expectation
from capdrift_fast.metrics.random_guess import random_guess_scores
from capdrift_fast.metrics.rouge import score_rouge_l
from capdrift_fast.registry import register_benchmark

DEFINITION_VARIANTS = ("original", "simplified", "empty")
EXAMPLE_VARIANTS = ("original", "delusive", "empty")


def _end_punct(text: str) -> str:
    return text if text and text[-1] in string.punctuation else text + "."


def encode_prompt(definition: str, examples: list[dict], instance_input: str) -> str:
    """Tk-Instruct's encoding of one instance (no task name, no negative examples, no explanations)."""
    head = _end_punct("Definition: " + definition.strip()) + "\n\n" if definition.strip() else ""
    shots = "".join(
        f" Positive Example {i + 1} -\n" + _end_punct(f"Input: {ex['input'].strip()}") + "\n"
        + _end_punct(f" Output: {ex['output'].strip()}") + "\n\n"
        for i, ex in enumerate(examples)
    )
    return head + shots + "Now complete the following example -\n" + _end_punct(f"Input: {instance_input.strip()}") + "\nOutput: "


def simplified_definition(labels: list[str]) -> str:
    """Kung & Peng (2023)'s simplified task definition: only the output space, as
    ``"Answer with one of: a, b."`` (``labels`` as written, in the given order)."""
    return "Answer with one of: " + ", ".join(labels) + "."


def delusive_examples(examples: list[dict], labels: list[str]) -> list[dict]:
    """Kung & Peng (2023)'s delusive examples: the examples with a wrong input-to-output mapping.

    Each example's output is replaced by the label that follows its own in ``labels`` (cyclically),
    comparing SuperNI-normalised forms (:func:`~capdrift_fast.metrics.classification.normalize_answer`);
    distinct spellings of one normalised label count once (the first in ``labels`` is used). An
    output outside the label space gets the first label. Deterministic.

    Raises:
        ValueError: the label space has fewer than two distinct normalised labels.
    """
    norm = pl.select(normalize_answer(pl.lit(pl.Series(labels + [e["output"] for e in examples], dtype=pl.Utf8))))
    normalised = norm.to_series().to_list()
    space: dict[str, str] = {}
    for raw, n in zip(labels, normalised[: len(labels)], strict=True):
        space.setdefault(n, raw)
    order = list(space)
    if len(order) < 2:
        raise ValueError(f"delusive examples need at least two distinct labels, got {labels}")
    out = []
    for ex, n in zip(examples, normalised[len(labels) :], strict=True):
        wrong = order[(order.index(n) + 1) % len(order)] if n in space else order[0]
        out.append({**ex, "output": space[wrong]})
    return out


class SuperNITaskConfig(TaskConfigBase):
    """One Super-NaturalInstructions task file (Wang et al. 2022), encoded as Tk-Instruct does:
    definition, ``num_pos_examples`` positive examples, then the instance.

    ``definition`` / ``examples`` select the test-time ablations of Kung & Peng 2023 ("Do Models
    Really Learn to Follow Instructions?", ACL 2023, arXiv:2305.11383): the task definition
    ``original``, ``simplified`` (only the output space: "Answer with one of: ...") or ``empty``; the
    positive examples ``original``, ``delusive`` (wrong input-to-output mapping) or ``empty``. A
    non-default variant is part of the default task name (see :meth:`default_name`).
    """

    benchmark: Literal["superni"]
    num_pos_examples: int = Field(default=2, ge=0, le=8)
    definition: Literal["original", "simplified", "empty"] = "original"
    examples: Literal["original", "delusive", "empty"] = "original"
    output_type: Literal["generate_until", "multiple_choice", "multiple_choice_letters"] = "generate_until"

    @model_validator(mode="after")
    def _data_required(self) -> "SuperNITaskConfig":
        if self.data is None:
            raise ValueError("superni tasks need `data`: a task file such as superni/task828_....json")
        return self

    def default_name(self) -> str:
        """``superni_<task id>``, plus a non-default ablation's parts, ``.def-<definition>`` then
        ``.ex-<examples>``: ``superni_task828.def-simplified.ex-delusive``, ``superni_task828.ex-empty``
        (letters, digits, ``_.-`` only, so the name is safe in file names and request ids); the
        multiple-choice form ends in ``.mc``."""
        stem = Path(self.data or "").stem
        m = re.match(r"(task\d+)", stem)
        name = f"superni_{m.group(1) if m else stem}"
        if self.definition != "original":
            name += f".def-{self.definition}"
        if self.examples != "original":
            name += f".ex-{self.examples}"
        if self.output_type == "multiple_choice":
            name += ".mc"
        elif self.output_type == "multiple_choice_letters":
            name += ".mcl"
        return name


class SuperNITask:
    """One SuperNI task file; ``limit`` keeps the first N instances (SuperNI evaluates the first 100).

    ``definition`` (``original`` | ``simplified`` | ``empty``) and ``examples`` (``original`` |
    ``delusive`` | ``empty``) select Kung & Peng (2023)'s test-time ablations (module docstring).
    """

    benchmark = "superni"
    version = "1.1"
    has_label_space = True
    stop: tuple[str, ...] = ("\n",)
    metrics = (
        MetricSpec("exact_match", "SuperNI exact match after normalisation (compute_metrics.py)", primary=True,
                   drift=True),
        MetricSpec("format_correct", "format correctness: response in the label space (Kung & Peng 2023)", primary=True),
        MetricSpec("rougeL", "SuperNI ROUGE-L F-measure (rouge-score, stemmed), max over gold outputs", binary=False),
    )

    MC_METRICS = (
        MetricSpec("acc", "multiple-choice accuracy: argmax of summed log-likelihood (lm-eval acc, api/task.py)",
                   primary=True, drift=True, lm_eval="acc,none"),
        MetricSpec("acc_norm", "multiple-choice accuracy, log-likelihood per character (lm-eval acc_norm)",
                   primary=True, lm_eval="acc_norm,none"),
    )
    LETTER_METRICS = (
        MetricSpec("letter_acc", "letter-choice accuracy: one generated letter, restricted to the letters, is gold "
                   "(MMLU format, lm-eval mmlu_generative)", primary=True, drift=True),
    )
    target_delimiter = ""
    letters: tuple[str, ...] = ()

    def __init__(self, name: str, path: Path, limit: int | None = None, num_pos_examples: int = 2,
                 errors: RowErrors | None = None, definition: str = "original", examples: str = "original",
                 output_type: str = "generate_until") -> None:
        if definition not in DEFINITION_VARIANTS:
            raise ValueError(f"definition must be one of {DEFINITION_VARIANTS}, got {definition!r}")
        if examples not in EXAMPLE_VARIANTS:
            raise ValueError(f"examples must be one of {EXAMPLE_VARIANTS}, got {examples!r}")
        self.name, self.path, self.limit, self.num_pos_examples = name, path, limit, num_pos_examples
        self.definition, self.examples = definition, examples
        self.output_type = output_type
        if output_type == "multiple_choice":
            self.metrics = self.MC_METRICS
        elif output_type == "multiple_choice_letters":
            self.metrics = self.LETTER_METRICS
        self.errors = errors or RowErrors()
        self._task: dict | None = None

    @property
    def num_fewshot(self) -> int:
        """Positive examples asked for in each prompt (``num_pos_examples``)."""
        return self.num_pos_examples

    def random_baseline(self, samples: pl.DataFrame) -> dict[str, float]:
        """Kung & Peng's random-guess expectations (:func:`~capdrift_fast.metrics.random_guess.random_guess_scores`);
        for the multiple-choice form ``1/k`` per item (:func:`~capdrift_fast.metrics.multiple_choice.random_choice_expectation`)."""
        if self.output_type == "multiple_choice":
            e = random_choice_expectation(samples)
            return {} if e is None else {"acc": e, "acc_norm": e}
        if self.output_type == "multiple_choice_letters":
            e = random_choice_expectation(samples)
            return {} if e is None else {"letter_acc": e}
        return random_guess_scores(samples)

    def _load(self) -> dict:
        if self._task is None:
            task = load_task_file(self.path, check_instances=False)
            if not isinstance(task["Instances"], list):
                raise DataError(f"{self.path}: Instances must be a list")
            good = []
            seen: set[str] = set()
            self._bad_text: dict[int, int] = task.pop(NON_UTF8_KEY, {})
            watch = PromptWatch(self.path, self.errors)
            for i, inst in enumerate(task["Instances"]):
                try:
                    if i in self._bad_text:
                        line = self._bad_text[i]
                        raise DataError(f"{self.path}:{line}: Instances[{i}] is not UTF-8 text (an undecodable byte); "
                                        "re-encode the file as UTF-8 or fix the instance", self.path, line)
                    self._check_instance(i, inst)
                    if inst["id"] in seen:  # request ids are adapter/task/id: a repeated id would double one
                        raise DataError(f"{self.path}: Instances[{i}]: id {inst['id']!r} repeats an earlier instance",
                                        self.path)
                    seen.add(inst["id"])
                except DataError as err:
                    self.errors.bad(err)
                    continue
                if not self.limit or len(good) < self.limit:
                    watch.check(inst["input"], f"Instances[{i}] (id {inst['id']!r})")
                good.append(inst)
            if not good:
                raise no_samples_error(self.path, self.errors)
            self._task = {**task, "Instances": good}
        return self._task

    def _check_instance(self, i: int, inst: object) -> None:
        where = f"{self.path}: Instances[{i}]"
        if not (isinstance(inst, dict) and all(k in inst for k in ("id", "input", "output"))):
            raise DataError(f"{where} needs 'id', 'input' and 'output'", self.path)
        if not (isinstance(inst["id"], str) and isinstance(inst["input"], str)):
            raise DataError(f"{where} (id {inst['id']!r}): 'id' and 'input' must be strings", self.path)
        out = inst["output"]
        if not (isinstance(out, list) and out and all(isinstance(o, str) for o in out)):
            raise DataError(f"{where} (id {inst['id']!r}): output must be a non-empty list of strings", self.path)

    def line_of(self, sample_id: str) -> int | None:
        """The line of the file where instance ``sample_id`` is (its ``"id"`` entry), or None."""
        text = self.path.read_bytes().decode("utf-8", "surrogateescape")
        m = re.search(r'"id"\s*:\s*' + re.escape(json.dumps(sample_id)), text)
        if m is None:
            m = re.search(r'"id"\s*:\s*' + re.escape(json.dumps(sample_id, ensure_ascii=False)), text)
        return None if m is None else text.count("\n", 0, m.start()) + 1

    def label_space(self) -> list[str]:
        """Every distinct gold output over all instances of the file, as written (sorted)."""
        return sorted({o for inst in self._load()["Instances"] for o in inst["output"]})

    def prompt_parts(self) -> tuple[str, list[dict]]:
        """The definition text and positive examples after the selected ablations.

        Raises:
            DataError: ``examples: delusive`` on a task with fewer than two labels.
        """
        task = self._load()
        labels = self.label_space()
        original = task["Definition"][0] if isinstance(task["Definition"], list) else task["Definition"]
        definition = {"original": original, "simplified": simplified_definition(labels), "empty": ""}[self.definition]
        examples = list(task["Positive Examples"][: self.num_pos_examples])
        if self.examples == "empty":
            examples = []
        elif self.examples == "delusive":
            try:
                examples = delusive_examples(examples, labels)
            except ValueError as exc:
                raise DataError(f"{self.path}: {exc}") from None
        return definition, examples

    def samples(self) -> pl.DataFrame:
        """Columns: sample_id (instance id), prompt, target (List[Utf8] gold outputs), labels (List[Utf8]); the
        multiple-choice form adds ``choices`` (the label space) and ``gold`` (List[Int32], gold choice indices).

        Raises:
            DataError: the file is missing/invalid or an instance lacks id/input/output.
        """
        task = self._load()
        definition, examples = self.prompt_parts()
        instances = task["Instances"][: self.limit] if self.limit else task["Instances"]
        labels = self.label_space()
        rows = []
        mc = self.output_type != "generate_until"
        letter_form = self.output_type == "multiple_choice_letters"
        if letter_form:
            try:
                self.letters = letters_for(len(labels))
            except ValueError as exc:
                raise DataError(f"{self.path}: the label space has {len(labels)} labels: {exc}") from None
        for inst in instances:
            rec = {"sample_id": inst["id"], "prompt": encode_prompt(definition, examples, inst["input"]),
                   "target": list(inst["output"]), "labels": labels}
            if mc:
                rec.update(choices=labels, gold=sorted({labels.index(o) for o in inst["output"]}))
            if letter_form:
                rec.update(prompt=letter_prompt(rec["prompt"].removesuffix("Output: "), labels),
                           target=[LETTERS[g] for g in rec["gold"]], labels=list(self.letters))
            rows.append(rec)
        schema = {"sample_id": pl.Utf8, "prompt": pl.Utf8, "target": pl.List(pl.Utf8), "labels": pl.List(pl.Utf8)}
        if mc:
            schema.update(choices=pl.List(pl.Utf8), gold=pl.List(pl.Int32))
        return pl.DataFrame(rows, schema=schema)

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Exact match and format correctness (1.0/0.0) and ROUGE-L (in [0, 1]) per generation; the
        multiple-choice form: ``acc`` and ``acc_norm`` per log-likelihood record."""
        if self.output_type == "multiple_choice":
            return generations.select("request_id").with_columns(acc=choice_accuracy(generations, "none"),
                                                                 acc_norm=choice_accuracy(generations, "chars"))
        if self.output_type == "multiple_choice_letters":
            return generations.select("request_id").with_columns(letter_acc=letter_accuracy(generations))
        scored = score_classification(generations.select("request_id", "response", "target", "labels"))
        return scored.select(
            "request_id",
            pl.col("exact_match").cast(pl.Float64),
            pl.col("format_correct").cast(pl.Float64),
            score_rouge_l(scored).alias("rougeL"),
        )


NON_UTF8_KEY = "__capdrift_non_utf8__"
"""Key under which :func:`load_task_file` lists instances holding undecodable bytes: index -> line."""
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _n_undecodable(value: object) -> int:
    if isinstance(value, str):
        return len(_UNDECODABLE.findall(value))
    if isinstance(value, dict):
        return sum(_n_undecodable(k) + _n_undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_n_undecodable(v) for v in value)
    return 0


def _locate_undecodable(path: Path, task: dict, bad_lines: list[int]) -> dict[int, int]:
    """Instance index -> line of its first undecodable byte; an undecodable byte outside the instances
    (definition, examples) spoils the whole file and raises :class:`DataError` with its line."""
    if _n_undecodable({k: v for k, v in task.items() if k != "Instances"}):
        raise DataError(f"{path}:{bad_lines[0]}: not UTF-8 text outside the instances; re-encode the file as UTF-8",
                        path, bad_lines[0])
    found, k = {}, 0
    instances = task.get("Instances")
    for i, inst in enumerate(instances if isinstance(instances, list) else ()):
        n = _n_undecodable(inst)
        if n:
            found[i] = bad_lines[min(k, len(bad_lines) - 1)]
            k += n
    return found


def load_task_file(path: Path, check_instances: bool = True) -> dict:
    """Read and check a SuperNI task file (``Definition``, ``Positive Examples``, ``Instances`` with
    ``id``, ``input`` and a non-empty list ``output``). ``check_instances=False`` leaves the instances to
    the caller (the task checks them one by one under the run's ``data_errors`` policy).

    Raises:
        DataError: the file is missing, not JSON, or lacks a field (names the file and the instance).
    """
    if not path.is_file():
        raise DataError(f"{path}: SuperNI task file not found")
    raw = path.read_bytes()
    bad_lines: list[int] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # find every undecodable byte's line; instances holding one are bad rows
        text = raw.decode("utf-8", "surrogateescape")
        line, pos = 1, 0
        for m in _UNDECODABLE.finditer(text):
            line += text.count("\n", pos, m.start())
            pos = m.start()
            bad_lines.append(line)
    try:
        task = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(task, dict):
        raise DataError(f"{path}: expected a JSON object (a SuperNI task file)")
    if bad_lines:
        task[NON_UTF8_KEY] = _locate_undecodable(path, task, bad_lines)
        if check_instances and task[NON_UTF8_KEY]:
            i, line = next(iter(task[NON_UTF8_KEY].items()))
            raise DataError(f"{path}:{line}: Instances[{i}] is not UTF-8 text; re-encode the file as UTF-8", path, line)
    for field in ("Definition", "Positive Examples", "Instances"):
        if field not in task:
            raise DataError(f"{path}: missing top-level field {field!r}")
    for i, inst in enumerate(task["Instances"] if check_instances else ()):
        if not (isinstance(inst, dict) and all(k in inst for k in ("id", "input", "output"))):
            raise DataError(f"{path}: Instances[{i}] needs 'id', 'input' and 'output'")
        if not (isinstance(inst["output"], list) and inst["output"] and all(isinstance(o, str) for o in inst["output"])):
            raise DataError(f"{path}: Instances[{i}].output must be a non-empty list of strings")
    for i, ex in enumerate(task["Positive Examples"]):
        if not (isinstance(ex, dict) and isinstance(ex.get("input"), str) and isinstance(ex.get("output"), str)):
            raise DataError(f"{path}: Positive Examples[{i}] needs string 'input' and 'output'")
    return task


@register_benchmark("superni")
class SuperNI(Benchmark):
    """The SuperNI plugin: one task file per entry (``data`` required); on target for ``classification``
    adapters; a label space (every gold output), hence format correctness and a random-guess baseline."""

    name = "superni"
    config_model = SuperNITaskConfig
    target_label = "classification"
    version = SuperNITask.version

    @classmethod
    def build(cls, cfg: SuperNITaskConfig, data_dir: Path, errors: RowErrors) -> SuperNITask:
        """The SuperNI task of one config entry (with its Kung & Peng ablation)."""
        return SuperNITask(cfg.task_name(), Path(data_dir) / str(cfg.data), cfg.limit, cfg.num_pos_examples, errors,
                           definition=cfg.definition, examples=cfg.examples, output_type=cfg.output_type)

    @classmethod
    def corpus(cls, data_dir: Path) -> list[str]:
        """Demo tokenizer text: see :meth:`Benchmark.corpus`."""
        texts: list[str] = []
        for path in sorted((Path(data_dir) / "superni").glob("*.json")):
            task = json.loads(path.read_text(encoding="utf-8"))
            texts += task["Definition"] + [i["input"] + " " + " ".join(i["output"]) for i in task["Instances"][:100]]
        return texts

    @classmethod
    def score_file(cls, data: Path, responses: Path, *, skip_missing: bool = False, skip_extra: bool = False,
                   seed: int = 0) -> ScoreFileResult:
        """:func:`score_superni_file`."""
        return score_superni_file(data, responses, skip_missing, skip_extra, seed)


def score_superni_file(data: Path, responses: Path, skip_missing: bool, skip_extra: bool, seed: int) -> ScoreFileResult:
    """``capdrift score-file superni``: a SuperNI task file + ``{id, response}`` (or ``prediction``) lines, with
    Kung & Peng's seeded random-guess baseline beside its analytic expectation.

    Raises:
        DataError: a file is missing or malformed, or responses are missing/extra without the skip option.
    """
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
        rows.append({"id": rec["id"], "response": response_field(responses, lineno, rec, ("response", "prediction")),
                     "_line": lineno})
    answers = pl.DataFrame(rows, schema={"id": pl.Utf8, "response": pl.Utf8, "_line": pl.Int64})
    unique_responses(answers, "id", responses)
    notes: list[str] = []
    joined = join_responses(frame, answers, "id", data, responses, "instance", skip_missing, skip_extra, notes, "id")
    scored = score_classification(joined)
    scored = scored.with_columns(score_rouge_l(scored).alias("rougeL"))
    out = scored.select("id", "exact_match", "format_correct", "rougeL")
    accuracies = [rate("exact_match", out["exact_match"]), rate("format_correct", out["format_correct"]),
                  Accuracy("rougeL", float(out["rougeL"].mean()), None, out.height)]  # type: ignore[arg-type]
    guess = random_guess_baseline(joined, seed)
    expectation = random_guess_expectation(joined)
    hits = int(guess["exact_match"].sum())
    baseline = Accuracy("random_guess_exact_match", hits / guess.height, hits, guess.height,
                        note=f"seed {seed}; analytic expectation {expectation:.4f}")
    return ScoreFileResult("superni", out, accuracies, notes, baseline, expectation)
