"""SuperNI classification tasks on the real task files: Tk-Instruct encoding, exact match, format."""

from __future__ import annotations

import json
import re
import string

import polars as pl
import pytest

from capdrift_fast.errors import DataError
from capdrift_fast.tasks.superni import SuperNITask

FILES = ["task828_copa_commonsense_cause_effect", "task363_sst2_polarity_classification",
         "task199_mnli_classification", "task1612_sick_label_classification"]


def reference_normalize(s: str) -> str:
    """SuperNI compute_metrics.normalize_answer, verbatim semantics."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
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
        variants += [(sid, gold[0]), (sid, f"  The {gold[0].upper()}!! "), (sid, other[0] if other else "x"),
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
