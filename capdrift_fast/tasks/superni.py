"""Super-NaturalInstructions classification tasks (Wang et al. 2022, arXiv:2204.07705).

Prompts are encoded as Tk-Instruct encodes them (``src/ni_collator.py``, definition + positive examples):
``"Definition: {def}\\n\\n" + " Positive Example k -\\nInput: {in}.\\n Output: {out}.\\n\\n" * k +
"Now complete the following example -\\nInput: {instance}.\\nOutput: "``, a ``.`` added where a part
does not already end in punctuation.

Metrics:

- ``exact_match``: SuperNI's ``compute_metrics.py``: the normalised response equals any normalised
  gold output (normalisation: lower-case, remove punctuation, remove articles, collapse whitespace).
- ``format_correct``: format correctness (Kung & Peng 2023, arXiv:2305.11383): the normalised
  response lies in the task's label space (every gold output of every instance, normalised).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import polars as pl

from capdrift_fast.errors import DataError
from capdrift_fast.tasks.base import MetricSpec, RowErrors, no_samples_error

_PUNCT_CLASS = "[" + "".join("\\" + c if c in "\\[]^-&~" else c for c in string.punctuation) + "]"


def normalize_answer(expr: pl.Expr) -> pl.Expr:
    """SuperNI's ``normalize_answer`` as a Polars expression: lower, drop punctuation, drop the
    articles a/an/the as whole words, collapse whitespace and strip."""
    expr = expr.str.to_lowercase().str.replace_all(_PUNCT_CLASS, "")
    expr = expr.str.replace_all(r"\b(a|an|the)\b", " ")
    return expr.str.replace_all(r"\s+", " ").str.strip_chars(" ")


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


class SuperNITask:
    """One SuperNI task file; ``limit`` keeps the first N instances (SuperNI evaluates the first 100)."""

    benchmark = "superni"
    version = "1.0"
    stop: tuple[str, ...] = ("\n",)
    metrics = (
        MetricSpec("exact_match", "SuperNI exact match after normalisation (compute_metrics.py)", primary=True),
        MetricSpec("format_correct", "format correctness: response in the label space (Kung & Peng 2023)", primary=True),
    )

    def __init__(self, name: str, path: Path, limit: int | None = None, num_pos_examples: int = 2,
                 errors: RowErrors | None = None) -> None:
        self.name, self.path, self.limit, self.num_pos_examples = name, path, limit, num_pos_examples
        self.errors = errors or RowErrors()
        self._task: dict | None = None

    def _load(self) -> dict:
        if self._task is None:
            if not self.path.is_file():
                raise DataError(f"{self.path}: SuperNI task file not found")
            try:
                task = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{self.path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            if not isinstance(task, dict):
                raise DataError(f"{self.path}: expected a JSON object with Definition, Positive Examples, Instances")
            for field in ("Definition", "Positive Examples", "Instances"):
                if field not in task:
                    raise DataError(f"{self.path}: missing top-level field {field!r}")
            if not isinstance(task["Instances"], list):
                raise DataError(f"{self.path}: Instances must be a list")
            good = []
            seen: set[str] = set()
            for i, inst in enumerate(task["Instances"]):
                try:
                    self._check_instance(i, inst)
                    if inst["id"] in seen:  # request ids are adapter/task/id: a repeated id would double one
                        raise DataError(f"{self.path}: Instances[{i}]: id {inst['id']!r} repeats an earlier instance",
                                        self.path)
                    seen.add(inst["id"])
                except DataError as err:
                    self.errors.bad(err)
                    continue
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

    def label_space(self) -> list[str]:
        """Every distinct gold output over all instances of the file, as written (sorted)."""
        return sorted({o for inst in self._load()["Instances"] for o in inst["output"]})

    def samples(self) -> pl.DataFrame:
        """Columns: sample_id (instance id), prompt, target (List[Utf8] gold outputs), labels (List[Utf8]).

        Raises:
            DataError: the file is missing/invalid or an instance lacks id/input/output.
        """
        task = self._load()
        definition = task["Definition"][0] if isinstance(task["Definition"], list) else task["Definition"]
        examples = task["Positive Examples"][: self.num_pos_examples]
        instances = task["Instances"][: self.limit] if self.limit else task["Instances"]
        labels = self.label_space()
        rows = []
        for inst in instances:
            rows.append({"sample_id": inst["id"], "prompt": encode_prompt(definition, examples, inst["input"]),
                         "target": list(inst["output"]), "labels": labels})
        return pl.DataFrame(rows, schema={"sample_id": pl.Utf8, "prompt": pl.Utf8,
                                          "target": pl.List(pl.Utf8), "labels": pl.List(pl.Utf8)})

    def score(self, generations: pl.DataFrame) -> pl.DataFrame:
        """Exact match and format correctness per generation (1.0/0.0), vectorised over the list columns."""
        pred = normalize_answer(pl.col("response"))
        gold = pl.col("target").list.eval(normalize_answer(pl.element()))
        space = pl.col("labels").list.eval(normalize_answer(pl.element()))
        return generations.select(
            "request_id",
            gold.list.contains(pred).cast(pl.Float64).alias("exact_match"),
            space.list.contains(pred).cast(pl.Float64).alias("format_correct"),
        )
