"""SuperNI classification tasks on the real task files: Tk-Instruct encoding, exact match, format."""

from __future__ import annotations

import json
import string

import polars as pl
import pytest

from capdrift_fast.errors import DataError
from capdrift_fast.benchmarks.superni import SuperNITask

FILES = ["task828_copa_commonsense_cause_effect", "task363_sst2_polarity_classification",
         "task199_mnli_classification", "task1612_sick_label_classification"]


def reference_normalize(s: str) -> str:
    """SuperNI's normalize_answer (natural-instructions eval/automatic/evaluation.py): articles kept."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    return " ".join(s.split())


@pytest.fixture(params=FILES)
def task(request, data_dir):
    return SuperNITask(request.param, data_dir / "superni" / f"{request.param}.json", limit=50)


def test_prompt_encoding(task, data_dir):
    raw = json.loads(task.path.read_text())
    s = task.samples()
    assert s.height == 50
    assert s["sample_id"].to_list() == [i["id"] for i in raw["Instances"][:50]]
    p = s["prompt"][0]
    assert p.startswith("Definition: " + raw["Definition"][0].strip()[:40])
    assert " Positive Example 1 -\nInput: " in p and " Positive Example 2 -\n" in p and " Positive Example 3" not in p
    assert p.endswith("\nOutput: ")
    assert "Now complete the following example -\nInput: " + raw["Instances"][0]["input"].strip()[:30] in p


def test_metrics_match_reference_normalisation(task):
    s = task.samples()
    labels = task.label_space()
    variants = []
    for sid, gold in zip(s["sample_id"], s["target"]):
        other = [l for l in labels if l not in gold]
        variants += [(sid, gold[0]), (sid, f"  {gold[0].upper()}!! "), (sid, f"The {gold[0]}"),
                     (sid, other[0] if other else "x"),
                     (sid, "an answer, maybe"), (sid, gold[0] + " because")]
    frame = pl.DataFrame({"request_id": [f"{i}" for i in range(len(variants))],
                          "sample_id": [v[0] for v in variants], "response": [v[1] for v in variants]})
    got = task.score(frame.join(s, on="sample_id", how="left"))
    gold_by = dict(zip(s["sample_id"], s["target"]))
    space = {reference_normalize(l) for l in labels}
    want_em = [float(any(reference_normalize(r) == reference_normalize(g) for g in gold_by[sid])) for sid, r in variants]
    want_fc = [float(reference_normalize(r) in space) for _, r in variants]
    assert got["exact_match"].to_list() == want_em
    assert got["format_correct"].to_list() == want_fc
    assert sum(want_em) >= 2 * s.height  # the gold label and its noisy spelling both count


def test_label_spaces_of_real_files(data_dir):
    copa = SuperNITask("c", data_dir / "superni" / f"{FILES[0]}.json")
    assert copa.label_space() == ["cause", "effect"]
    sst = SuperNITask("s", data_dir / "superni" / f"{FILES[1]}.json")
    assert sst.label_space() == ["NEG", "POS"]


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "task1_bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="task1_bad.json"):
        SuperNITask("b", bad).samples()
    bad.write_text(json.dumps({"Definition": ["d"], "Positive Examples": [], "Instances": [{"id": "x"}]}))
    with pytest.raises(DataError, match=r"Instances\[0\]"):
        SuperNITask("b", bad).samples()
    with pytest.raises(DataError, match="not found"):
        SuperNITask("b", tmp_path / "missing.json").samples()


# --- Kung & Peng (2023) test-time ablations ---------------------------------------------------------

def test_ablation_prompts(data_dir):
    path = data_dir / "superni" / f"{FILES[0]}.json"
    raw = json.loads(path.read_text())
    original = SuperNITask("o", path, limit=3).samples()["prompt"][0]
    simplified = SuperNITask("s", path, limit=3, definition="simplified").samples()["prompt"][0]
    empty_def = SuperNITask("e", path, limit=3, definition="empty").samples()["prompt"][0]
    no_shots = SuperNITask("n", path, limit=3, examples="empty").samples()["prompt"][0]
    definition_part = original[: original.index(" Positive Example 1")]
    assert simplified == "Definition: Answer with one of: cause, effect.\n\n" + original[len(definition_part):]
    assert empty_def == original[len(definition_part):] and empty_def.startswith(" Positive Example 1 -\n")
    assert no_shots == definition_part + original[original.index("Now complete the following example"):]
    assert "Positive Example" not in no_shots
    assert raw["Definition"][0].strip()[:30] not in simplified


@pytest.mark.parametrize("name", FILES)
def test_delusive_examples_keep_inputs_and_flip_every_label(name, data_dir):
    path = data_dir / "superni" / f"{name}.json"
    raw = json.loads(path.read_text())["Positive Examples"][:2]
    task = SuperNITask(name, path, examples="delusive")
    definition, examples = task.prompt_parts()
    labels = task.label_space()
    space = {reference_normalize(l) for l in labels}
    assert [e["input"] for e in examples] == [e["input"] for e in raw]
    for orig, new in zip(raw, examples, strict=True):
        assert new["output"] in labels and reference_normalize(new["output"]) != reference_normalize(orig["output"])
    assert len(space) >= 2
    # deterministic, and the prompt carries the wrong outputs
    assert task.samples()["prompt"].equals(SuperNITask(name, path, examples="delusive").samples()["prompt"])
    prompt = task.samples()["prompt"][0]
    assert f"Output: {examples[0]['output']}" in prompt and definition.strip()[:20] in prompt


def test_delusive_needs_two_labels(tmp_path):
    bad = tmp_path / "task9_one.json"
    bad.write_text(json.dumps({"Definition": ["d"], "Positive Examples": [{"input": "i", "output": "A"}],
                               "Instances": [{"id": "1", "input": "x", "output": ["A"]}]}))
    with pytest.raises(DataError, match=r"task9_one.json: .*two distinct labels"):
        SuperNITask("b", bad, examples="delusive").samples()


def test_ablation_config_names_and_build(tmp_path, data_dir):
    import yaml

    from capdrift_fast.config import load_config, task_name
    from capdrift_fast.benchmarks import build_task

    data = "superni/task828_copa_commonsense_cause_effect.json"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump({"model": {"path": "m"}, "data_dir": str(data_dir), "tasks": [
        {"benchmark": "superni", "data": data},
        {"benchmark": "superni", "data": data, "definition": "simplified", "examples": "delusive"},
        {"benchmark": "superni", "data": data, "examples": "empty"},
        {"benchmark": "superni", "data": data, "definition": "empty", "name": "copa_nodef"},
    ]}))
    cfg = load_config(cfg_path)
    assert [task_name(t) for t in cfg.tasks] == [
        "superni_task828", "superni_task828.def-simplified.ex-delusive", "superni_task828.ex-empty", "copa_nodef"]
    tasks = [build_task(t, cfg.data_dir) for t in cfg.tasks]
    assert [(t.definition, t.examples) for t in tasks] == [
        ("original", "original"), ("simplified", "delusive"), ("original", "empty"), ("empty", "original")]
    assert len({t.samples()["prompt"][0] for t in tasks}) == 4
