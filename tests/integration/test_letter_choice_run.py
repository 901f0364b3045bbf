"""The letter-choice form of multiple-choice tasks (MMLU's ``A. ... Answer:``, one generated token restricted
to the letters) for the base model and every adapter in one pass of the shared real vLLM CPU engine, checked
item by item against transformers+peft's argmax over the letters' tokens (float32), parity guard on."""

from __future__ import annotations

import json

import polars as pl
import pytest

from capdrift_fast.config import RunConfig

pytestmark = pytest.mark.engine

LETTER_TASKS = [
    {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
     "output_type": "multiple_choice_letters", "limit": 6},
    {"benchmark": "superni", "data": "superni/task363_sst2_polarity_classification.json",
     "output_type": "multiple_choice_letters", "limit": 6},
]


@pytest.fixture(scope="module")
def letter_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    from capdrift_fast.runner import run

    raw = json.loads(demo_cfg.model_dump_json())
    raw["tasks"] = LETTER_TASKS
    raw["parity"] = {**raw.get("parity", {}), "canaries_per_task": 6}
    cfg = RunConfig.model_validate(raw)
    out = tmp_path_factory.mktemp("mcl") / "run"
    return cfg, run(cfg, out, progress=False, engine=engine, reference=hf_reference)


def test_one_restricted_letter_equals_transformers_peft_argmax_over_the_letters(letter_run, hf_reference):
    cfg, result = letter_run
    gens = pl.read_ipc(str(result.run_dir / "generations" / "*.arrow"))
    scores = pl.read_parquet(result.run_dir / "scores.parquet")
    adapters = ["base"] + [a.name for a in cfg.adapters]
    assert len(adapters) >= 3 and gens.height == len(adapters) * 12
    assert set(gens["task"]) == {"superni_task828.mcl", "superni_task363.mcl"}
    assert set(gens["response"].str.strip_chars()) <= {"A", "B"} and (gens["output_tokens"] == 1).all()
    unrestricted_letters = 0
    for (adapter, task), group in gens.group_by("adapter", "task"):
        want = hf_reference.letter_choice(adapter, group["prompt"].to_list(), ["A", "B"], task)
        assert [ids[0] for ids in group["output_token_ids"].to_list()] == want, (adapter, task)
        free = hf_reference.greedy(adapter, group["prompt"].to_list(), 1)  # what an unrestricted token would be
        unrestricted_letters += sum(f == [w] for f, w in zip(free, want))
        labels = ["cause", "effect"] if "task828" in task else ["NEG", "POS"]
        for row in group.iter_rows(named=True):
            assert row["prompt"].endswith(f"\nA. {labels[0]}\nB. {labels[1]}\nAnswer:")
            gold = "AB"[labels.index(_gold_label(task, row["sample_id"]))]
            acc = scores.filter(pl.col("request_id") == row["request_id"])["letter_acc"].item()
            assert acc == float(row["response"].strip() == gold), row["request_id"]
    assert unrestricted_letters < gens.height  # the restriction decides: unrestricted, the demo model answers off-letter
    parity = json.loads((result.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok"
    assert all(m["suspect"] is False and m["checked"] == 12 for m in parity["models"].values())
    m = pl.read_parquet(result.run_dir / "matrix.parquet")
    assert set(m["metric"]) == {"letter_acc"}
    assert set(m.filter(pl.col("adapter") != "base")["test"]) == {"mcnemar"}  # binary, paired


def _gold_label(task: str, sample_id: str) -> str:
    from capdrift_fast.config import default_data_dir

    name = ("task828_copa_commonsense_cause_effect" if "task828" in task else "task363_sst2_polarity_classification")
    data = json.loads((default_data_dir() / "superni" / f"{name}.json").read_text())
    return next(i["output"][0] for i in data["Instances"] if i["id"] == sample_id)


def test_a_letter_that_is_not_one_token_is_refused_before_any_request(engine, demo_cfg):
    from capdrift_fast.errors import EngineError

    plan = pl.DataFrame({"request_id": ["base/t/0"], "adapter": ["base"], "lora_id": [0], "task": ["t"],
                         "sample_id": ["0"], "prompt": ["Is it?\nA. yes\nB. no\nAnswer:"], "max_tokens": [1]},
                        schema_overrides={"lora_id": pl.Int32, "max_tokens": pl.Int32})
    with pytest.raises(EngineError, match=r"^task 't': the answer letter ' Zebra-crossing' is not one token"):
        next(engine.generate(plan, demo_cfg.sampling, letters={"t": ("A", "Zebra-crossing")}))
