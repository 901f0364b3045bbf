"""The letter-choice (generative) form of multiple-choice tasks without an engine: MMLU's prompt format, the
letter token ids as the prompt ends (raw and chat), config refusals, the plan rows and the metric."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.benchmarks import build_task
from capdrift_fast.config import load_config
from capdrift_fast.engines.prompts import letter_token_ids, render_chat
from capdrift_fast.errors import ConfigError, EngineError
from capdrift_fast.metrics.letter_choice import letter_accuracy, letter_prompt
from capdrift_fast.pipeline.plan import build_plan, letter_choices

COPA = "superni/task828_copa_commonsense_cause_effect.json"


def _cfg(tmp_path: Path, tasks: list[dict], data_dir: Path | None = None) -> Path:
    path = tmp_path / "run.yaml"
    raw = {"model": {"path": str(tmp_path)}, "tasks": tasks}
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_letter_prompt_is_mmlus_format():
    # lm_eval/tasks/mmlu/generative/_default_template_yaml: "{{question.strip()}}\nA. ...\nD. ...\nAnswer:"
    assert letter_prompt("Which? ", ["x", "y", "z"]) == "Which?\nA. x\nB. y\nC. z\nAnswer:"
    with pytest.raises(ValueError, match="1 to 26"):
        letter_prompt("q", [str(i) for i in range(27)])


def test_yaml_letter_form_samples_metric_and_baseline(tmp_path: Path):
    data = tmp_path / "mc.jsonl"
    rows = [{"q": "1+1?", "opts": ["one", "two"], "label": 1}, {"q": "Sky?", "opts": ["red", "blue", "green"], "label": "blue"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(_cfg(tmp_path, [{"benchmark": "template", "name": "mcl", "data": str(data),
                                       "output_type": "multiple_choice_letters", "prompt": "Q: {{ q }}",
                                       "choices": "opts", "target": "label"}]))
    task = build_task(cfg.tasks[0], tmp_path)
    s = task.samples()
    assert s["prompt"].to_list() == ["Q: 1+1?\nA. one\nB. two\nAnswer:", "Q: Sky?\nA. red\nB. blue\nC. green\nAnswer:"]
    assert s["target"].to_list() == [["B"], ["B"]] and s["gold"].to_list() == [[1], [1]]
    assert s["labels"].to_list() == [["A", "B"], ["A", "B", "C"]]
    assert task.letters == ("A", "B", "C") and [m.name for m in task.metrics] == ["letter_acc"]
    assert task.random_baseline(s) == pytest.approx({"letter_acc": (1 / 2 + 1 / 3) / 2})
    gens = s.select(pl.lit("x").alias("request_id"), "target", "labels",
                    response=pl.Series([" B", "C"]))
    assert task.score(gens)["letter_acc"].to_list() == [1.0, 0.0]


@pytest.mark.parametrize("task, message", [
    ({"output_type": "multiple_choice_letters"}, "multiple_choice_letters needs `choices:`"),
    ({"output_type": "multiple_choice_letters", "choices": ["a", "b"], "num_fewshot": 1},
     "takes no few-shot examples"),
    ({"output_type": "multiple_choice_letters", "choices": ["a", "b"], "metrics": ["acc"]},
     "scores choice log-likelihoods"),
])
def test_letter_form_config_refusals(tmp_path: Path, task: dict, message: str):
    base = {"benchmark": "template", "name": "qa", "data": "x.jsonl", "prompt": "{{ q }}", "target": "a"}
    with pytest.raises(ConfigError, match=message):
        load_config(_cfg(tmp_path, [{**base, **task}]))


def test_superni_letter_form_and_plan_rows(data_dir: Path, tmp_path: Path):
    cfg = load_config(_cfg(tmp_path, [
        {"benchmark": "superni", "data": COPA, "limit": 2, "output_type": "multiple_choice_letters"},
        {"benchmark": "superni", "data": COPA, "limit": 2, "output_type": "multiple_choice"}], data_dir))
    plan = build_plan(cfg)
    assert list(plan.tasks) == ["superni_task828.mcl", "superni_task828.mc"]
    mcl, mc = plan.samples["superni_task828.mcl"], plan.samples["superni_task828.mc"]
    for p_l, p_mc in zip(mcl["prompt"], mc["prompt"]):  # the same prompt, "Output: " replaced by the choices
        assert p_mc.endswith("\nOutput: ") and p_l == p_mc.removesuffix("Output: ").rstrip() + "\nA. cause\nB. effect\nAnswer:"
    assert mcl["target"].to_list() == [[["A", "B"][g[0]]] for g in mc["gold"].to_list()]
    assert letter_choices(plan.tasks) == {"superni_task828.mcl": ("A", "B")}
    rows = plan.requests.filter(pl.col("task") == "superni_task828.mcl")
    assert rows["max_tokens"].to_list() == [1, 1] and rows["continuations"].is_null().all()
    assert plan.tasks["superni_task828.mcl"].random_baseline(mcl) == {"letter_acc": 0.5}


def test_letter_token_ids_follow_how_the_prompt_ends(demo_assets: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_assets / "model")
    prompt = letter_prompt("Is it?", ["yes", "no"])
    raw = letter_token_ids(tok, ["A", "B"], prompt, "raw")  # "Answer:" then " A"
    assert raw == [tok(" A", add_special_tokens=False)["input_ids"][-1], tok(" B", add_special_tokens=False)["input_ids"][-1]]
    assert tok.decode(raw[0]).strip() == "A" and len(set(raw)) == 2
    # chat: the answer cue is in the user turn; the generation prompt ends in a newline, so the letter has no space
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    text = render_chat(tok, [prompt])[0]
    assert text.endswith("Answer:\n<|assistant|>\n")
    chat = letter_token_ids(tok, ["A", "B"], prompt, "chat")
    assert chat == [tok(text + letter, add_special_tokens=False)["input_ids"][-1] for letter in "AB"]
    assert [tok.decode(i) for i in chat] == ["A", "B"] and chat != raw
    with pytest.raises(EngineError, match=r"task 'long': the answer letter ' Zebra-crossing' is not one token"):
        letter_token_ids(tok, ["A", "Zebra-crossing"], prompt, "raw", task="long")


def test_letter_accuracy_strips_and_accepts_any_gold_letter():
    frame = pl.DataFrame({"response": ["A", " B\n", "C", None], "target": [["A"], ["A", "B"], ["B"], ["A"]]},
                         schema={"response": pl.Utf8, "target": pl.List(pl.Utf8)})
    assert letter_accuracy(frame).to_list() == [1.0, 1.0, 0.0, 0.0]
