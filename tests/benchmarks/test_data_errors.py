"""Malformed data rows: reported with file and line, fatal (``data_errors: fail``) or skipped and listed
(``skip``); nothing is dropped silently. Files are real rows of the shared data with broken copies mixed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capdrift_fast.errors import DataError
from capdrift_fast.benchmarks import RowErrors
from capdrift_fast.benchmarks.gsm8k import GSM8KTask
from capdrift_fast.benchmarks.ifeval import IFEvalTask
from capdrift_fast.benchmarks.superni import SuperNITask


def first_lines(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


@pytest.fixture
def ifeval_file(data_dir, tmp_path) -> tuple[Path, dict[int, str]]:
    good = [json.loads(line) for line in first_lines(data_dir / "ifeval" / "input_data.jsonl", 4)]
    bad_id = {**good[1], "key": 90001, "instruction_id_list": ["punctuation:no_coma"], "kwargs": [{}]}
    bad_kw = {**good[1], "key": 90002, "instruction_id_list": ["length_constraints:number_words"],
              "kwargs": [{"num_words": "many", "relation": "at least"}]}
    no_prompt = {k: v for k, v in good[2].items() if k != "prompt"}
    wrong_type = {**good[2], "key": "90004"}
    lines = [json.dumps(good[0]), json.dumps(bad_id), "{not json", json.dumps(good[1]), json.dumps(no_prompt),
             json.dumps(bad_kw), json.dumps(wrong_type), "[1, 2]", json.dumps(good[3]), json.dumps(good[1])]
    path = tmp_path / "ifeval.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # line number -> what its message must say
    return path, {2: "unknown IFEval instruction id 'punctuation:no_coma'. Did you mean 'punctuation:no_comma'?",
                  3: "not valid JSON", 5: "missing field 'prompt'", 6: "num_words",
                  7: "field 'key' should be int, got str", 8: "expected a JSON object",
                  10: f"key {good[1]['key']} repeats line 4"}


def test_ifeval_fail_names_file_and_first_bad_line(ifeval_file):
    path, bad = ifeval_file
    with pytest.raises(DataError) as exc:
        IFEvalTask("ifeval", path).samples()
    assert str(exc.value).startswith(f"{path}:2: ") and bad[2] in str(exc.value)
    assert (exc.value.path, exc.value.line) == (str(path), 2)


def test_ifeval_skip_reports_every_bad_row(ifeval_file):
    path, bad = ifeval_file
    errors = RowErrors("skip")
    samples = IFEvalTask("ifeval", path, errors=errors).samples()
    assert samples.height == 3  # the good rows only, in file order
    assert [e.line for e in errors.skipped] == sorted(bad)
    for e in errors.skipped:
        assert str(e).startswith(f"{path}:{e.line}: ") and bad[e.line] in str(e), str(e)


def test_limit_counts_good_rows(ifeval_file):
    path, _ = ifeval_file
    errors = RowErrors("skip")
    assert IFEvalTask("ifeval", path, limit=2, errors=errors).samples().height == 2
    assert [e.line for e in errors.skipped] == [2, 3]  # rows read before the limit was reached


def test_gsm8k_rows(data_dir, tmp_path):
    good = first_lines(data_dir / "gsm8k" / "test.jsonl", 2)
    rec = json.loads(good[0])
    lines = [good[0], json.dumps({"question": rec["question"]}), json.dumps({**rec, "answer": "no final answer"}),
             json.dumps({**rec, "question": 7}), good[1]]
    path = tmp_path / "gsm.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{path}:2: missing field 'answer'"):
        GSM8KTask("gsm8k", path).samples()
    errors = RowErrors("skip")
    samples = GSM8KTask("gsm8k", path, errors=errors).samples()
    assert samples.get_column("sample_id").to_list() == ["0", "4"]  # ids stay the line index: stable on resume
    assert [(e.line, str(e).split(": ", 1)[1]) for e in errors.skipped] == [
        (2, "missing field 'answer'"), (3, "answer has no '#### <number>' final answer"),
        (4, "field 'question' should be str, got int")]


def test_superni_instances(data_dir, tmp_path):
    task = json.loads((data_dir / "superni" / "task828_copa_commonsense_cause_effect.json").read_text())
    inst = task["Instances"][:3]
    task["Instances"] = [inst[0], {"id": "x1", "input": "no output"}, {**inst[1], "output": []}, inst[2], inst[0]]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(task))
    with pytest.raises(DataError, match=r"Instances\[1\] needs 'id', 'input' and 'output'"):
        SuperNITask("s", path).samples()
    errors = RowErrors("skip")
    samples = SuperNITask("s", path, errors=errors).samples()
    assert samples.get_column("sample_id").to_list() == [inst[0]["id"], inst[2]["id"]]
    assert [str(e).split(": ", 1)[1] for e in errors.skipped] == [
        "Instances[1] needs 'id', 'input' and 'output'",
        f"Instances[2] (id {inst[1]['id']!r}): output must be a non-empty list of strings",
        f"Instances[4]: id {inst[0]['id']!r} repeats an earlier instance"]


def test_a_file_without_usable_rows_always_fails(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{}\n[]\n")
    with pytest.raises(DataError, match=r"no usable samples \(all 2 rows read were malformed\)"):
        GSM8KTask("gsm8k", path, errors=RowErrors("skip")).samples()
