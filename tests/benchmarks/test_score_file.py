"""``capdrift score-file``: responses produced elsewhere, in each benchmark's own file formats.

IFEval on the real released responses (GPT-4 <-> the 2023-11-27 prompts, text-bison <-> the patched
first-release prompts, see ``ifeval/SOURCE.md``); GSM8K and SuperNI on their real data files with
response files written here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from capdrift_fast.cli import app
from capdrift_fast.errors import DataError, UnknownNameError
from capdrift_fast.metrics.classification import random_guess_expectation
from capdrift_fast.benchmarks.score_file import score_file
from capdrift_fast.metrics.ifeval import ifeval_accuracies, score_ifeval
from capdrift_fast.metrics.numeric import score_numeric

IFEVAL = {
    "gpt4": ("input_data_v20231127_066e1ed.jsonl", "input_response_data_gpt4_20231107_145030.jsonl"),
    "text_bison": ("input_data_v20231114_e4c89b6_repeat_patched.jsonl", "input_response_data_text_bison.jsonl"),
}
COPA = "task828_copa_commonsense_cause_effect.json"
LINE = re.compile(r"^(\S+)\s+([0-9.]+)\s+\((?:(\d+)/(\d+)|n=(\d+))\)(.*)$")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _printed(output: str) -> dict[str, tuple]:
    """name -> (value, hits, total, note) of each accuracy line the CLI prints."""
    out = {}
    for line in output.splitlines():
        m = LINE.match(line.strip())
        if m:
            out[m.group(1)] = (float(m.group(2)), m.group(3) and int(m.group(3)), int(m.group(4) or m.group(5)),
                               m.group(6).strip())
    return out


def _reference_frame(data_dir: Path, name: str) -> pl.DataFrame:
    """The IFEval frame joined independently of score-file (by prompt text, in plain Python)."""
    inputs, responses = IFEVAL[name]
    rows = [json.loads(l) for l in (data_dir / "ifeval" / inputs).read_text().splitlines() if l.strip()]
    resp = {json.loads(l)["prompt"]: json.loads(l)["response"]
            for l in (data_dir / "ifeval" / responses).read_text().splitlines() if l.strip()}
    return pl.DataFrame({"key": [r["key"] for r in rows], "response": [resp[r["prompt"]] for r in rows],
                         "instruction_id_list": [r["instruction_id_list"] for r in rows],
                         "kwargs": [json.dumps(r["kwargs"]) for r in rows]})


@pytest.mark.parametrize("name", list(IFEVAL))
def test_ifeval_cli_on_released_responses(name, data_dir, tmp_path) -> None:
    inputs, responses = IFEVAL[name]
    out = tmp_path / "scores.parquet"
    res = CliRunner().invoke(app, ["score-file", "ifeval", "--data", str(data_dir / "ifeval" / inputs),
                                   "--responses", str(data_dir / "ifeval" / responses), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = pl.read_parquet(out)
    assert written.columns == ["key", "prompt_level_strict", "prompt_level_loose", "inst_level_strict",
                               "inst_level_loose"]
    assert written.height == 541
    assert written.schema["inst_level_strict"] == pl.List(pl.Boolean)
    assert written.schema["prompt_level_loose"] == pl.Boolean

    ref = score_ifeval(_reference_frame(data_dir, name))
    assert written["key"].to_list() == ref["key"].to_list()
    assert written["inst_level_strict"].to_list() == ref["inst_level_strict"].to_list()
    assert written["inst_level_loose"].to_list() == ref["inst_level_loose"].to_list()
    assert [len(ids) for ids in ref["instruction_id_list"]] == written["inst_level_loose"].list.len().to_list()
    printed = _printed(res.output)
    want = ifeval_accuracies(ref)
    assert set(printed) == set(want)
    for key, value in want.items():
        acc, hits, total, _ = printed[key]
        assert hits / total == value and acc == round(value, 4)


def test_ifeval_missing_and_extra_prompts(data_dir, tmp_path) -> None:
    """The current input_data.jsonl changed key 2785's prompt: 1 missing and 1 extra vs the GPT-4 file."""
    data = data_dir / "ifeval" / "input_data.jsonl"
    responses = data_dir / "ifeval" / IFEVAL["gpt4"][1]
    with pytest.raises(DataError, match=r"input_response_data_gpt4_20231107_145030.jsonl: 1 of 541 responses match no"):
        score_file("ifeval", data, responses)
    with pytest.raises(DataError, match=r"gpt4_20231107_145030.jsonl: no response for 1 of 541 prompts .*key 2785\)"):
        score_file("ifeval", data, responses, skip_extra=True)
    result = score_file("ifeval", data, responses, skip_extra=True, skip_missing=True)
    assert result.scores.height == 540 and 2785 not in result.scores["key"].to_list()
    assert len(result.notes) == 2


def test_ifeval_bad_kwargs_name_file_line_and_key(data_dir, tmp_path) -> None:
    """The unpatched first release has empty repeat_prompt kwargs (the reference would fail too)."""
    data = data_dir / "ifeval" / "input_data_v20231114_e4c89b6.jsonl"
    with pytest.raises(DataError, match=r"input_data_v20231114_e4c89b6.jsonl:\d+: key \d+: .*prompt_to_repeat"):
        score_file("ifeval", data, data_dir / "ifeval" / IFEVAL["text_bison"][1])


def test_ifeval_repeated_prompt_takes_last_response(data_dir, tmp_path) -> None:
    rows = [json.loads(l) for l in (data_dir / "ifeval" / IFEVAL["gpt4"][0]).read_text().splitlines()[:3]]
    data = _jsonl(tmp_path / "in.jsonl", rows)
    resp = _jsonl(tmp_path / "r.jsonl", [{"prompt": r["prompt"], "response": ""} for r in rows]
                  + [{"prompt": rows[0]["prompt"], "response": "x " * 400}])
    result = score_file("ifeval", data, resp)
    assert result.scores.height == 3 and "last response" in result.notes[0]
    assert result.scores["inst_level_strict"][1].to_list() == [False] * len(rows[1]["instruction_id_list"])


@pytest.fixture(scope="module")
def gsm8k_rows(data_dir) -> list[dict]:
    return [json.loads(l) for l in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines() if l.strip()]


def test_gsm8k_by_index_and_by_question(data_dir, gsm8k_rows, tmp_path) -> None:
    responses = []
    for i, r in enumerate(gsm8k_rows):
        final = r["answer"].split("#### ")[-1]
        text = r["answer"] if i % 3 == 0 else f"The answer is ${final}." if i % 3 == 1 else "I think 7."
        responses.append({"index": i, "response": text} if i % 2 else {"question": r["question"], "response": text})
    path = _jsonl(tmp_path / "gsm.jsonl", responses)
    out = tmp_path / "gsm.parquet"
    res = CliRunner().invoke(app, ["score-file", "gsm8k", "--data", str(data_dir / "gsm8k" / "test.jsonl"),
                                   "--responses", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = pl.read_parquet(out)
    assert written.columns == ["index", "extracted_strict", "extracted_flexible", "numeric_match_strict",
                               "numeric_match_flexible"]
    assert written["index"].to_list() == list(range(1319))
    want = score_numeric(pl.DataFrame({"response": [r["response"] for r in responses],
                                       "target": [r["answer"] for r in gsm8k_rows]}))
    assert written["numeric_match_flexible"].equals(want["numeric_match_flexible"])
    assert written["numeric_match_strict"].equals(want["numeric_match_strict"])
    printed = _printed(res.output)
    assert printed["numeric_match_strict"][1:3] == (want["numeric_match_strict"].sum(), 1319)
    assert printed["numeric_match_flexible"][1:3] == (want["numeric_match_flexible"].sum(), 1319)
    assert 0.3 < printed["numeric_match_strict"][0] < printed["numeric_match_flexible"][0] < 0.8


def test_gsm8k_errors(data_dir, gsm8k_rows, tmp_path) -> None:
    data = data_dir / "gsm8k" / "test.jsonl"
    few = _jsonl(tmp_path / "few.jsonl", [{"index": i, "response": "#### 1"} for i in range(5)])
    with pytest.raises(DataError, match=r"few.jsonl: no response for 1314 of 1319 questions"):
        score_file("gsm8k", data, few)
    assert score_file("gsm8k", data, few, skip_missing=True).scores.height == 5
    extra = _jsonl(tmp_path / "extra.jsonl", [{"index": 5000, "response": "1"}, {"question": "Nope?", "response": "1"}])
    with pytest.raises(DataError, match=r"extra.jsonl: 1 responses have a question that is in no line"):
        score_file("gsm8k", data, extra, skip_missing=True)
    with pytest.raises(DataError, match=r"extra.jsonl: 1 of 1 responses match no question .*line 1: index 5000"):
        score_file("gsm8k", data, _jsonl(tmp_path / "extra.jsonl", [{"index": 5000, "response": "1"}]),
                   skip_missing=True)
    dup = _jsonl(tmp_path / "dup.jsonl", [{"index": 3, "response": "1"},
                                          {"question": gsm8k_rows[3]["question"], "response": "2"}])
    with pytest.raises(DataError, match=r"dup.jsonl: 1 index values have more than one response .*lines 1, 2"):
        score_file("gsm8k", data, dup, skip_missing=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index": 1, "response": "1"}\n{"response": "2"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: needs 'index'"):
        score_file("gsm8k", data, bad)
    bad.write_text('{"index": 1, "response": 2}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'response' should be a string"):
        score_file("gsm8k", data, bad)


def test_superni_scores_baseline_and_prediction_field(data_dir, tmp_path) -> None:
    task = json.loads((data_dir / "superni" / COPA).read_text())
    rows = []
    for i, inst in enumerate(task["Instances"]):
        gold = inst["output"][0]
        text = gold if i % 4 == 0 else f"{gold.upper()}." if i % 4 == 1 else ("effect" if gold == "cause" else "cause")
        rows.append({"id": inst["id"], "prediction" if i % 2 else "response": text if i % 4 != 3 else "It is the cause"})
    path = _jsonl(tmp_path / "copa.jsonl", rows)
    out = tmp_path / "copa.parquet"
    res = CliRunner().invoke(app, ["score-file", "superni", "--data", str(data_dir / "superni" / COPA),
                                   "--responses", str(path), "--out", str(out), "--seed", "3"])
    assert res.exit_code == 0, res.output
    written = pl.read_parquet(out)
    assert written.columns == ["id", "exact_match", "format_correct", "rougeL"] and written.height == 200
    assert written["exact_match"].to_list() == [i % 4 in (0, 1) for i in range(200)]
    assert written["format_correct"].to_list() == [i % 4 != 3 for i in range(200)]
    printed = _printed(res.output)
    assert printed["exact_match"][1:3] == (100, 200) and printed["format_correct"][1:3] == (150, 200)
    assert 0.5 < printed["rougeL"][0] < 0.8 and printed["rougeL"][2] == 200
    # the random-guess baseline, printed beside its analytic expectation
    value, hits, total, note = printed["random_guess_exact_match"]
    assert total == 200 and abs(value - 0.5) < 0.15 and note == "seed 3; analytic expectation 0.5000"
    samples = pl.DataFrame({"target": [i["output"] for i in task["Instances"]], "labels": [["cause", "effect"]] * 200})
    result = score_file("superni", data_dir / "superni" / COPA, path, seed=3)
    assert result.expectation == random_guess_expectation(samples) == 0.5
    assert result.baseline.hits == hits
    assert score_file("superni", data_dir / "superni" / COPA, path, seed=4).baseline.hits != hits


def test_superni_missing_ids_and_unknown_benchmark(data_dir, tmp_path) -> None:
    path = _jsonl(tmp_path / "r.jsonl", [{"id": "task828-nope", "response": "cause"}])
    with pytest.raises(DataError, match=r"r.jsonl: 1 of 1 responses match no instance .*task828-nope"):
        score_file("superni", data_dir / "superni" / COPA, path)
    with pytest.raises(UnknownNameError, match="Did you mean 'superni'"):
        score_file("supernl", data_dir / "superni" / COPA, path)
    res = CliRunner().invoke(app, ["score-file", "superni", "--data", str(tmp_path / "none.json"),
                                   "--responses", str(path), "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 2 and "none.json: SuperNI task file not found" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "o.parquet").exists()
