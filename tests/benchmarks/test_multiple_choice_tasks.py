"""Multiple-choice tasks without an engine: YAML validation, choices/target forms, the SuperNI form, plan rows,
the metrics on hand-checked log-likelihoods and lm-eval's own tokenisation of (context, continuation) pairs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.benchmarks import build_task
from capdrift_fast.benchmarks.template import TemplateTaskConfig
from capdrift_fast.config import load_config
from capdrift_fast.errors import ConfigError, DataError
from capdrift_fast.metrics.multiple_choice import choice_accuracy, predictions, random_choice_expectation


def _cfg(tmp_path: Path, task: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": str(tmp_path)}, "tasks": [task]}))
    return path


def _mc(tmp_path: Path, rows: list[dict], **over) -> TemplateTaskConfig:
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return TemplateTaskConfig.model_validate({"benchmark": "template", "name": "mc", "data": str(data),
                                             "output_type": "multiple_choice", "prompt": "Q: {{ q }}\nA:",
                                             "choices": "opts", "target": "label", **over})


def test_yaml_multiple_choice_targets_by_index_or_text_and_default_metrics(tmp_path: Path):
    cfg = _mc(tmp_path, [{"q": "sky", "opts": ["blue", "green"], "label": 0},
                         {"q": "grass", "opts": ["blue", "green"], "label": "green"},
                         {"q": "both", "opts": ["a", "b", "c"], "label": "2"}])
    assert [m.metric for m in cfg.metrics] == ["acc", "acc_norm"]
    task = build_task(cfg, tmp_path)
    s = task.samples()
    assert s["gold"].to_list() == [[0], [1], [2]] and s["target"].to_list() == [["blue"], ["green"], ["c"]]
    assert task.random_baseline(s) == pytest.approx({"acc": (1 / 2 + 1 / 2 + 1 / 3) / 3, "acc_norm": (1 / 2 + 1 / 2 + 1 / 3) / 3})


def test_choices_template_renders_a_list_literal(tmp_path: Path):
    cfg = _mc(tmp_path, [{"q": "x", "a": "yes", "b": "no", "label": 1}], choices="{{ [a, b] }}")
    assert build_task(cfg, tmp_path).samples()["choices"].to_list() == [["yes", "no"]]


def test_target_outside_the_choices_names_the_row(tmp_path: Path):
    cfg = _mc(tmp_path, [{"q": "x", "opts": ["a", "b"], "label": "a"}, {"q": "y", "opts": ["a", "b"], "label": "z"}])
    with pytest.raises(DataError, match=r"mc\.jsonl:2: target 'z' is neither a choice index"):
        build_task(cfg, tmp_path).samples()


@pytest.mark.parametrize("task, message", [
    ({"output_type": "multiple_choice", "metrics": ["acc"]}, "needs `choices:`"),
    ({"metrics": ["acc"]}, r"scores choice log-likelihoods: set `output_type: multiple_choice`"),
    ({"output_type": "multiple_choice", "choices": ["a", "b"], "metrics": ["exact_match"]},
     "scores a generated response"),
])
def test_mismatched_metrics_are_config_errors(tmp_path: Path, task: dict, message: str):
    base = {"benchmark": "template", "name": "qa", "data": "x.jsonl", "prompt": "{{ q }}", "target": "a"}
    with pytest.raises(ConfigError, match=message):
        load_config(_cfg(tmp_path, {**base, **task}))


def test_superni_multiple_choice_form_shares_prompts_and_ablations(data_dir: Path, tmp_path: Path):
    task_file = "superni/task1612_sick_label_classification.json"
    cfg = load_config(_cfg(tmp_path, {"benchmark": "superni", "data": task_file, "limit": 5}))
    gen = build_task(cfg.tasks[0], data_dir)
    for ablation in ({}, {"definition": "simplified", "examples": "delusive"}):
        raw = {"benchmark": "superni", "data": task_file, "limit": 5, "output_type": "multiple_choice", **ablation}
        mc_cfg = load_config(_cfg(tmp_path, raw)).tasks[0]
        gen_cfg = load_config(_cfg(tmp_path, {**raw, "output_type": "generate_until"})).tasks[0]
        mc, g = build_task(mc_cfg, data_dir), build_task(gen_cfg, data_dir)
        assert mc.name == g.name + ".mc"
        s = mc.samples()
        assert s["prompt"].to_list() == g.samples()["prompt"].to_list()  # same prompts, ablations included
        assert s["choices"].to_list() == [["0", "1", "2"]] * 5
        assert [c[g[0]] for c, g in zip(s["choices"].to_list(), s["gold"].to_list())] == \
            [t[0] for t in s["target"].to_list()]
        assert [m.name for m in mc.metrics] == ["acc", "acc_norm"] and all(m.binary for m in mc.metrics)
        assert mc.random_baseline(s) == {"acc": pytest.approx(1 / 3), "acc_norm": pytest.approx(1 / 3)}
    assert gen.samples()["prompt"].to_list()[0].endswith("Output: ")


def test_plan_rows_of_a_multiple_choice_task(data_dir: Path, tmp_path: Path):
    from capdrift_fast.pipeline.plan import build_plan

    raw = {"model": {"path": str(tmp_path)}, "adapters": [], "data_dir": str(data_dir), "tasks": [
        {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json", "limit": 2,
         "output_type": "multiple_choice"},
        {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json", "limit": 2}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    plan = build_plan(load_config(path))
    mc = plan.requests.filter(pl.col("task") == "superni_task828.mc")
    assert mc["continuations"].to_list() == [["cause", "effect"]] * 2 and mc["max_tokens"].to_list() == [1, 1]
    assert plan.requests.filter(pl.col("task") == "superni_task828")["continuations"].is_null().all()


def test_acc_norm_divides_by_characters_and_ties_take_the_first():
    frame = pl.DataFrame({"choice_logprobs": [[-4.0, -6.0], [-3.0, -3.0], [-5.0, -1.0], None],
                          "choices": [["ab", "abcdef"], ["x", "y"], ["é", "e"], ["a", "b"]],
                          "gold": [[1], [1], [0, 1], [0]]},
                         schema={"choice_logprobs": pl.List(pl.Float64), "choices": pl.List(pl.Utf8),
                                 "gold": pl.List(pl.Int32)})
    assert predictions(frame).to_list() == [0, 0, 1, None]
    assert predictions(frame, "chars").to_list() == [1, 0, 1, None]  # -4/2 < -6/6
    assert predictions(frame, "bytes").to_list() == [1, 0, 1, None]
    assert choice_accuracy(frame).to_list() == [0.0, 0.0, 1.0, 0.0]
    assert choice_accuracy(frame, "chars").to_list() == [1.0, 0.0, 1.0, 0.0]
    assert random_choice_expectation(frame) == pytest.approx((0.5 + 0.5 + 1.0 + 0.5) / 4)


def test_encode_pair_is_lm_evals_with_the_demo_tokenizer(demo_assets: Path):
    """Our (context, continuation) token ids equal lm-eval 0.4.13's TemplateLM.loglikelihood tokenisation
    (its own _encode_pair and empty-context branch) for the demo model's real tokenizer."""
    from lm_eval.api.model import TemplateLM
    from transformers import AutoTokenizer

    from capdrift_fast.engines.loglik import encode_pair, fit

    tok = AutoTokenizer.from_pretrained(demo_assets / "model")

    class Shim(TemplateLM):  # lm-eval's own tokenisation; the model methods are never called
        backend = "causal"
        eot_token_id = tok.eos_token_id
        # lm-eval's VLLM.prefix_token_id: BOS when the tokenizer has one, else EOT
        prefix_token_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

        def tok_encode(self, string, add_special_tokens=None, **kw):
            return [] if not string else tok(string, **({} if add_special_tokens is None else
                                                        {"add_special_tokens": add_special_tokens}))["input_ids"]

        def _loglikelihood_tokens(self, requests, **kw):
            return [(ctx, cont) for _, ctx, cont in requests]

        loglikelihood_rolling = generate_until = None

    from lm_eval.api.instance import Instance

    pairs = [("Output: ", "cause"), ("Question: why?\nAnswer:", " because"), ("The end.  \n", " yes"),
             ("", " empty context"), ("Sentiment:", " POS")]
    shim = Shim()
    want = shim.loglikelihood([Instance("loglikelihood", {}, pair, 0) for pair in pairs], disable_tqdm=True)
    for (ctx, cont), (wctx, wcont) in zip(pairs, want):
        assert encode_pair(tok, ctx, cont) == (list(wctx), list(wcont)), (ctx, cont)
    tokens, ctxlen = fit(list(range(10)), [10, 11, 12], 8)  # lm-eval: keep the last max_len - 1 tokens
    assert tokens == [6, 7, 8, 9, 10, 11, 12] and ctxlen == 4


def test_the_readme_yaml_task_builds_lm_eval_continuations(data_dir: Path, tmp_path: Path):
    from capdrift_fast.pipeline.plan import build_plan

    tasks = Path(__file__).resolve().parents[2] / "configs" / "tasks"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": str(tmp_path)}, "data_dir": str(data_dir),
                                    "tasks": [{"include": "copa_mc", "limit": 3}]}))
    plan = build_plan(load_config(path, include_paths=[tasks]))
    assert plan.requests["continuations"].to_list() == [[" cause", " effect"]] * 3
    assert plan.requests["prompt"].str.ends_with("\nAnswer:").all()
    first = json.loads((data_dir / "superni" / "task828_copa_commonsense_cause_effect.json").read_text())["Instances"][:3]
    s = plan.samples["copa_mc"]
    assert [["cause", "effect"][g[0]] for g in s["gold"].to_list()] == [i["output"][0] for i in first]
