"""Non-UTF-8 bytes in data rows (issue #16): in all three benchmarks, ``fail`` stops with file:line and
``skip`` leaves exactly that row out with file:line; empty and exactly repeated prompts are warned about
(file:line), not silently accepted. Real rows of the shared data, with broken copies mixed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capdrift_fast.errors import DataError
from capdrift_fast.benchmarks import RowErrors
from capdrift_fast.benchmarks.gsm8k import GSM8KTask
from capdrift_fast.benchmarks.ifeval import IFEvalTask
from capdrift_fast.benchmarks.superni import SuperNITask

BAD = b"caf\xe9 \xff"  # Latin-1 bytes: not UTF-8


def jsonl_with_bad_line(src: Path, dst: Path, n: int, bad_at: int, field: str) -> list[bytes]:
    lines = src.read_bytes().splitlines()[:n]
    rec = json.loads(lines[bad_at - 1])
    rec[field] = "@@@" + rec[field]
    lines[bad_at - 1] = json.dumps(rec).encode().replace(b"@@@", BAD)
    dst.write_bytes(b"\n".join(lines) + b"\n")
    return lines


@pytest.mark.parametrize("bench", ["ifeval", "gsm8k"])
def test_jsonl_non_utf8_row_fail_and_skip(bench, data_dir, tmp_path):
    src, field, cls = {"ifeval": (data_dir / "ifeval" / "input_data.jsonl", "prompt", IFEvalTask),
                       "gsm8k": (data_dir / "gsm8k" / "test.jsonl", "question", GSM8KTask)}[bench]
    path = tmp_path / f"{bench}.jsonl"
    jsonl_with_bad_line(src, path, 5, 3, field)
    with pytest.raises(DataError) as exc:
        cls(bench, path).samples()
    assert str(exc.value).startswith(f"{path}:3: not UTF-8 text (byte 0xe9")
    assert (exc.value.path, exc.value.line) == (str(path), 3)
    errors = RowErrors("skip")
    samples = cls(bench, path, errors=errors).samples()
    assert samples.height == 4
    assert [(e.path, e.line) for e in errors.skipped] == [(str(path), 3)]
    assert "not UTF-8" in str(errors.skipped[0])


def superni_with_bad_instance(data_dir: Path, tmp_path: Path) -> tuple[Path, int, str]:
    task = json.loads((data_dir / "superni" / "task828_copa_commonsense_cause_effect.json").read_text())
    task["Instances"] = task["Instances"][:5]
    bad_id = task["Instances"][2]["id"]
    task["Instances"][2]["input"] = "@@@" + task["Instances"][2]["input"]
    text = json.dumps(task, indent=1).encode().replace(b"@@@", BAD)
    path = tmp_path / "task.json"
    path.write_bytes(text)
    line = text[: text.index(BAD)].count(b"\n") + 1
    return path, line, bad_id


def test_superni_non_utf8_instance_fail_and_skip(data_dir, tmp_path):
    path, line, bad_id = superni_with_bad_instance(data_dir, tmp_path)
    with pytest.raises(DataError) as exc:
        SuperNITask("s", path).samples()
    assert str(exc.value).startswith(f"{path}:{line}: Instances[2] is not UTF-8 text")
    errors = RowErrors("skip")
    samples = SuperNITask("s", path, errors=errors).samples()
    assert samples.height == 4 and bad_id not in samples["sample_id"].to_list()
    assert [(e.path, e.line) for e in errors.skipped] == [(str(path), line)]


def test_superni_non_utf8_outside_instances_is_a_file_error(data_dir, tmp_path):
    task = json.loads((data_dir / "superni" / "task828_copa_commonsense_cause_effect.json").read_text())
    task["Definition"] = ["@@@"]
    path = tmp_path / "task.json"
    path.write_bytes(json.dumps(task, indent=1).encode().replace(b"@@@", BAD))
    with pytest.raises(DataError, match=r"task.json:\d+: not UTF-8 text outside the instances"):
        SuperNITask("s", path, errors=RowErrors("skip")).samples()


def test_empty_and_repeated_prompts_are_warned_with_file_line(data_dir, tmp_path):
    lines = (data_dir / "gsm8k" / "test.jsonl").read_bytes().splitlines()[:4]
    empty = json.loads(lines[1])
    empty["question"] = "  "
    path = tmp_path / "gsm.jsonl"
    path.write_bytes(b"\n".join([lines[0], json.dumps(empty).encode(), lines[2], lines[0]]) + b"\n")
    errors = RowErrors("fail")
    assert GSM8KTask("g", path, errors=errors).samples().height == 4  # kept: evaluated as they are
    msgs = [str(w) for w in errors.warnings]
    assert len(msgs) == 2
    assert msgs[0].startswith(f"{path}:2: empty prompt")
    assert msgs[1].startswith(f"{path}:4: the prompt repeats line 1 exactly")
    clean = RowErrors("fail")
    IFEvalTask("i", data_dir / "ifeval" / "input_data.jsonl", limit=50, errors=clean).samples()
    assert clean.warnings == []
