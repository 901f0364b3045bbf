"""Differential test: our IFEval scorer vs the reference implementation shipped by lm-evaluation-harness.

Reference: ``lm_eval.tasks.ifeval.utils.test_instruction_following_strict`` / ``_loose`` (lm-eval
0.4.x, a port of google-research ``instruction_following_eval/evaluation_lib.py``). Test-only
dependency, installed light: ``pip install immutabledict && pip install --no-deps lm-eval``; its
``lm_eval.tasks`` package imports ``datasets`` etc., so when that fails only the four
``lm_eval/tasks/ifeval`` modules are loaded (see :func:`_load_reference`).

Data (``$CAPDRIFT_DATA_DIR`` or ``<repo>/../shared/data``, see ``ifeval/SOURCE.md``), joined by prompt text:
GPT-4 responses <-> ``input_data_v20231127_066e1ed.jsonl``; text-bison responses <->
``input_data_v20231114_e4c89b6_repeat_patched.jsonl``; 541 prompts each.

Randomness in the reference, and how it is handled:

- ``langdetect.detect`` is unseeded there: ``DetectorFactory.seed = 0`` while the reference runs (we
  use our own factory seeded 0 too), so both sides make identical detections.
- ``keywords:letter_frequency`` with a non-letter ``letter`` (keys 1122 '#', 1129 '!'): the reference
  checks a letter drawn with the global ``random`` instead, independently in its strict and loose
  calls. We seed ``random``, record the letter each call drew, and compare with our scorer given
  that letter. Our default counts the requested character (current google-research rule); that is
  compared with the reference checker forced to the same rule.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import os
import random
import sys
import types
from pathlib import Path

import polars as pl
import pytest

from capdrift_fast.metrics.ifeval import configure_nltk_data, ifeval_accuracies, score_ifeval

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("CAPDRIFT_DATA_DIR") or (REPO_ROOT / ".." / "shared" / "data")).resolve()
IFEVAL_DIR = DATA_DIR / "ifeval"
SEED = 20231107

pytestmark = pytest.mark.skipif(
    not IFEVAL_DIR.is_dir(),
    reason=f"IFEval data dir {IFEVAL_DIR} absent (set CAPDRIFT_DATA_DIR to the shared data folder)",
)

DATASETS = {
    "gpt4": ("input_data_v20231127_066e1ed.jsonl", "input_response_data_gpt4_20231107_145030.jsonl"),
    "text_bison": ("input_data_v20231114_e4c89b6_repeat_patched.jsonl", "input_response_data_text_bison.jsonl"),
}
# The IFEval paper's GPT-4 numbers (prompt strict, inst strict, prompt loose, inst loose), in %.
PUBLISHED_GPT4 = (76.89, 83.57, 79.30, 85.37)
# Ours on the same data: the paper's run drew random letters for keys 1122/1129 (see module docstring).
OURS_GPT4 = (77.08, 83.69, 79.67, 85.61)
LETTER_ID = "keywords:letter_frequency"


def _load_reference() -> types.SimpleNamespace:
    """``utils``, ``instructions_registry`` and ``instructions`` of lm-eval's IFEval task.

    A full lm-eval install imports normally. With ``--no-deps`` the ``lm_eval.tasks`` package
    ``__init__`` fails (it imports ``datasets``); then a bare package object stands in for it while
    the ifeval modules are imported from their files, and is removed again afterwards.
    """
    try:
        utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
    except ImportError as exc:
        spec = importlib.util.find_spec("lm_eval")
        if spec is None or not spec.submodule_search_locations:
            pytest.fail(f"lm-eval is not installed (test-only dependency): pip install immutabledict && "
                        f"pip install --no-deps lm-eval ({exc})")
        tasks_dir = Path(next(iter(spec.submodule_search_locations))) / "tasks"
        saved = {k: v for k, v in sys.modules.items() if k == "lm_eval.tasks" or k.startswith("lm_eval.tasks.")}
        stub = types.ModuleType("lm_eval.tasks")
        stub.__path__ = [str(tasks_dir)]
        sys.modules["lm_eval.tasks"] = stub
        try:
            utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
        finally:
            for name in [k for k in sys.modules if k == "lm_eval.tasks" or k.startswith("lm_eval.tasks.")]:
                del sys.modules[name]
            sys.modules.update(saved)
    return types.SimpleNamespace(utils=utils, registry=utils.instructions_registry)


def _load(name: str) -> pl.DataFrame:
    inputs_file, responses_file = DATASETS[name]
    rows = [json.loads(line) for line in (IFEVAL_DIR / inputs_file).read_text().splitlines() if line.strip()]
    responses = {}
    for line in (IFEVAL_DIR / responses_file).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            responses[rec["prompt"]] = rec["response"]
    missing = [r["key"] for r in rows if r["prompt"] not in responses]
    assert not missing, f"{name}: prompts without a response: {missing[:10]}"
    return pl.DataFrame(
        {
            "key": [r["key"] for r in rows],
            "prompt": [r["prompt"] for r in rows],
            "response": [responses[r["prompt"]] for r in rows],
            "instruction_id_list": [r["instruction_id_list"] for r in rows],
            "kwargs": [json.dumps(r["kwargs"]) for r in rows],
        },
        schema={"key": pl.Int64, "prompt": pl.Utf8, "response": pl.Utf8,
                "instruction_id_list": pl.List(pl.Utf8), "kwargs": pl.Utf8},
    )


def _non_letter(kwargs: dict) -> bool:
    letter = kwargs.get("letter") or ""
    return not (len(letter) == 1 and "a" <= letter.lower() <= "z")


class _Reference:
    """Runs the reference per prompt with seeded randomness; records the letters it draws."""

    def __init__(self, ref: types.SimpleNamespace, literal_letters: bool = False) -> None:
        self.ref = ref
        self.drawn: list[str] = []
        base = ref.registry.INSTRUCTION_DICT[LETTER_ID]
        recorder = self

        class LetterChecker(base):  # type: ignore[misc, valid-type]
            def build_description(self, **kwargs):  # noqa: ANN003, ANN202
                out = super().build_description(**kwargs)
                if literal_letters:  # google-research HEAD: count the requested character
                    self._letter = kwargs["letter"].strip().lower()
                recorder.drawn.append(self._letter)
                return out

        self.checker = LetterChecker

    def run(self, frame: pl.DataFrame) -> dict[int, dict]:
        import langdetect

        utils = self.ref.utils
        state, lang_seed = random.getstate(), langdetect.DetectorFactory.seed
        dict_ = self.ref.registry.INSTRUCTION_DICT
        original = dict_[LETTER_ID]
        dict_[LETTER_ID] = self.checker
        random.seed(SEED)
        langdetect.DetectorFactory.seed = 0
        out = {}
        try:
            for row in frame.iter_rows(named=True):
                inp = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"],
                                         prompt=row["prompt"], kwargs=json.loads(row["kwargs"]))
                self.drawn = []
                strict = utils.test_instruction_following_strict(inp, row["response"])
                strict_letters, self.drawn = self.drawn, []
                loose = utils.test_instruction_following_loose(inp, row["response"])
                out[row["key"]] = {
                    "strict": strict.follow_instruction_list, "loose": loose.follow_instruction_list,
                    "strict_letters": strict_letters, "loose_letters": self.drawn,
                }
        finally:
            dict_[LETTER_ID] = original
            random.setstate(state)
            langdetect.DetectorFactory.seed = lang_seed
        return out


def _with_letters(frame: pl.DataFrame, letters: dict[int, list[str]]) -> pl.DataFrame:
    """``frame`` restricted to ``letters``' keys, with their letter_frequency ``letter`` replaced in order."""
    rows = []
    for row in frame.filter(pl.col("key").is_in(list(letters))).iter_rows(named=True):
        kwargs, it = json.loads(row["kwargs"]), iter(letters[row["key"]])
        for iid, kw in zip(row["instruction_id_list"], kwargs, strict=True):
            if iid == LETTER_ID:
                kw["letter"] = next(it)
        rows.append({**row, "kwargs": json.dumps(kwargs)})
    return pl.DataFrame(rows, schema=frame.schema)


@pytest.fixture(scope="module")
def reference() -> types.SimpleNamespace:
    nltk_dir = DATA_DIR / "nltk_data"
    if nltk_dir.is_dir():
        configure_nltk_data(nltk_dir)  # before lm-eval's import-time nltk.data.find("tokenizers/punkt_tab")
    return _load_reference()


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return {name: _load(name) for name in DATASETS}


@pytest.fixture(scope="module")
def reference_results(reference, frames) -> dict[str, dict[int, dict]]:
    return {name: _Reference(reference).run(frame) for name, frame in frames.items()}


@pytest.fixture(scope="module")
def scored(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {name: score_ifeval(frame) for name, frame in frames.items()}


def _disagreements(ours: pl.DataFrame, ref: dict[int, dict], skip_letters: bool) -> list[str]:
    bad = []
    for row in ours.iter_rows(named=True):
        r = ref[row["key"]]
        kwargs = json.loads(row["kwargs"])
        for level in ("strict", "loose"):
            for pos, (iid, mine, theirs) in enumerate(zip(row["instruction_id_list"], row[f"inst_level_{level}"],
                                                          r[level], strict=True)):
                if skip_letters and iid == LETTER_ID and _non_letter(kwargs[pos]):
                    continue
                if mine != theirs:
                    bad.append(f"key {row['key']} {level} #{pos} {iid}: ours {mine}, reference {theirs}")
            assert len(row[f"inst_level_{level}"]) == len(r[level])
            if not skip_letters:
                assert row[f"prompt_level_{level}"] == all(r[level]), (row["key"], level)
    return bad


@pytest.mark.parametrize("name", list(DATASETS))
def test_matches_reference_per_instruction(name: str, reference_results, frames, scored) -> None:
    """Zero disagreements, strict and loose, on every instruction of all 541 prompts."""
    frame, ours, ref = frames[name], scored[name], reference_results[name]
    assert frame.height == 541
    bad = _disagreements(ours, ref, skip_letters=True)
    assert not bad, f"{len(bad)} disagreements with lm-eval:\n" + "\n".join(bad[:50])

    # Prompt level, on prompts without a randomised instruction.
    random_keys = {
        row["key"] for row in frame.iter_rows(named=True)
        if any(iid == LETTER_ID and _non_letter(kw)
               for iid, kw in zip(row["instruction_id_list"], json.loads(row["kwargs"]), strict=True))
    }
    for row in ours.filter(~pl.col("key").is_in(list(random_keys))).iter_rows(named=True):
        assert row["prompt_level_strict"] == all(ref[row["key"]]["strict"]), row["key"]
        assert row["prompt_level_loose"] == all(ref[row["key"]]["loose"]), row["key"]

    # The randomised letter checks: our scorer given the letters the reference drew must agree.
    assert random_keys == ({1122, 1129} if name == "gpt4" else set())
    if random_keys:
        for level in ("strict", "loose"):
            drawn = {k: ref[k][f"{level}_letters"] for k in random_keys}
            again = score_ifeval(_with_letters(frame, drawn))
            for row in again.iter_rows(named=True):
                assert row[f"inst_level_{level}"] == ref[row["key"]][level], (row["key"], level, drawn[row["key"]])
                assert row[f"prompt_level_{level}"] == all(ref[row["key"]][level])


def test_non_letter_letters_follow_current_google_rule(reference, frames, scored) -> None:
    """Keys 1122/1129: our default (count '#' / '!') equals the reference checker counting that character."""
    frame = frames["gpt4"].filter(pl.col("key").is_in([1122, 1129]))
    ref = _Reference(reference, literal_letters=True).run(frame)
    assert {k: v["strict_letters"] for k, v in ref.items()} == {1122: ["#"], 1129: ["!"]}
    ours = scored["gpt4"].filter(pl.col("key").is_in([1122, 1129]))
    assert not _disagreements(ours, ref, skip_letters=False)


def _percent(acc: dict[str, float]) -> tuple[float, ...]:
    keys = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")
    return tuple(round(100 * acc[k], 2) for k in keys)


def test_gpt4_aggregates(scored) -> None:
    """Published GPT-4 numbers 76.89 / 83.57 / 79.30 / 85.37.

    They depend on the reference's random letters for keys 1122/1129 (4 coin flips: strict and loose
    letter check of each). Every other verdict is ours, so we assert: (a) our deterministic numbers;
    (b) the published numbers are reproduced exactly by the assignments where one of the two strict
    letter checks failed and both loose ones failed -- and by no other assignment.
    """
    ours = scored["gpt4"]
    assert _percent(ifeval_accuracies(ours)) == OURS_GPT4

    positions = {
        row["key"]: row["instruction_id_list"].index(LETTER_ID)
        for row in ours.filter(pl.col("key").is_in([1122, 1129])).iter_rows(named=True)
    }
    matches = set()
    for s1122, s1129, l1122, l1129 in itertools.product([False, True], repeat=4):
        flips = {(1122, "strict"): s1122, (1129, "strict"): s1129, (1122, "loose"): l1122, (1129, "loose"): l1129}

        def patch(level: str, flips: dict = flips) -> pl.Expr:
            expr = pl.col(f"inst_level_{level}")
            for key in (1122, 1129):
                patched = pl.concat_list(
                    expr.list.slice(0, positions[key]),
                    pl.lit([flips[(key, level)]], dtype=pl.List(pl.Boolean)),
                    expr.list.slice(positions[key] + 1),
                )
                expr = pl.when(pl.col("key") == key).then(patched).otherwise(expr)
            return expr

        alt = ours.with_columns(inst_level_strict=patch("strict"), inst_level_loose=patch("loose")).with_columns(
            prompt_level_strict=pl.col("inst_level_strict").list.all(),
            prompt_level_loose=pl.col("inst_level_loose").list.all(),
        )
        if _percent(ifeval_accuracies(alt)) == PUBLISHED_GPT4:
            matches.add((s1122, s1129, l1122, l1129))
    assert matches == {(False, True, False, False), (True, False, False, False)}


def test_text_bison_aggregates_match_reference(reference_results, scored) -> None:
    """Aggregates equal lm-eval's on the text-bison responses (no randomised instruction there)."""
    ref = reference_results["text_bison"]
    n = sum(len(v["strict"]) for v in ref.values())
    expected = (
        round(100 * sum(all(v["strict"]) for v in ref.values()) / len(ref), 2),
        round(100 * sum(sum(v["strict"]) for v in ref.values()) / n, 2),
        round(100 * sum(all(v["loose"]) for v in ref.values()) / len(ref), 2),
        round(100 * sum(sum(v["loose"]) for v in ref.values()) / n, 2),
    )
    assert _percent(ifeval_accuracies(scored["text_bison"])) == expected
