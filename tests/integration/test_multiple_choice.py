"""Multiple-choice tasks scored by log-likelihood for the base model and every adapter in one engine pass
(the shared real vLLM CPU engine), checked item by item against transformers+peft in float32."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from capdrift_fast.config import RunConfig
from capdrift_fast.demo import DEMO_ADAPTERS

pytestmark = pytest.mark.engine

MC_TASKS = [
    {"benchmark": "superni", "data": "superni/task828_copa_commonsense_cause_effect.json",
     "output_type": "multiple_choice", "limit": 6},
    {"benchmark": "superni", "data": "superni/task363_sst2_polarity_classification.json",
     "output_type": "multiple_choice", "limit": 6},
]
TEMPLATE_MC = {  # the COPA instances as a YAML multiple-choice task with lm-eval's default delimiter " "
    "benchmark": "template", "name": "copa_tpl_mc", "data": "superni/task828_copa_commonsense_cause_effect.json",
    "data_key": "Instances", "id_field": "id", "output_type": "multiple_choice",
    "prompt": "{{ input }}\nAnswer:", "choices": ["cause", "effect"], "target": "output", "limit": 4,
}


@pytest.fixture(scope="module")
def mc_run(demo_cfg, engine, hf_reference, tmp_path_factory):
    """COPA and SST-2 as multiple choice, base + the demo adapters, one pass of the shared engine, parity
    guard on every sample (canaries_per_task = limit)."""
    from capdrift_fast.runner import run

    raw = json.loads(demo_cfg.model_dump_json())
    raw["tasks"] = MC_TASKS + [TEMPLATE_MC]
    raw["parity"] = {**raw.get("parity", {}), "canaries_per_task": 6}
    cfg = RunConfig.model_validate(raw)
    out = tmp_path_factory.mktemp("mc") / "run"
    return cfg, run(cfg, out, progress=False, engine=engine, reference=hf_reference)


def test_acc_equals_transformers_peft_argmax_on_every_item(mc_run, hf_reference):
    cfg, result = mc_run
    gens = pl.read_ipc(str(result.run_dir / "generations" / "*.arrow")).filter(pl.col("task").str.starts_with("superni"))
    scores = pl.read_parquet(result.run_dir / "scores.parquet")
    adapters = ["base"] + [a.name for a in cfg.adapters]
    assert len(adapters) >= 3
    assert gens.height == len(adapters) * 12 and set(gens["finish_reason"]) == {"loglikelihood"}
    worst = 0.0
    plan = pl.read_parquet(result.run_dir / "plan.parquet")
    for row in gens.iter_rows(named=True):
        labels = ["cause", "effect"] if "task828" in row["task"] else ["NEG", "POS"]
        conts = plan.filter(pl.col("request_id") == row["request_id"])["continuations"].item().to_list()
        assert conts == labels  # the prompt ends in "Output: ": target delimiter ""
        ref = hf_reference.loglikelihood(row["adapter"], row["prompt"], conts, cfg.engine.max_model_len)
        lls = [r.logprob for r in ref]
        worst = max(worst, *(abs(a - b) for a, b in zip(row["choice_logprobs"], lls)))
        assert row["choice_tokens"] == [r.n_tokens for r in ref]
        assert row["choice_greedy"] == [r.is_greedy for r in ref]
        ref_pred = max(range(len(lls)), key=lambda i: (lls[i], -i))  # transformers+peft's argmax
        acc = scores.filter(pl.col("request_id") == row["request_id"])["acc"].item()
        assert acc == float(labels[ref_pred] == _gold_label(row["task"], row["sample_id"])), row["request_id"]
        assert row["response"] == labels[ref_pred]
    assert worst < 1e-3
    parity = json.loads((result.run_dir / "parity.json").read_text())
    assert parity["status"] == "ok" and parity["worst_loglik_gap"] < 1e-3
    assert all(m["suspect"] is False and m["checked"] == 16 for m in parity["models"].values())


def _gold_label(task: str, sample_id: str) -> str:
    from capdrift_fast.config import default_data_dir

    name = ("task828_copa_commonsense_cause_effect" if "task828" in task else "task363_sst2_polarity_classification")
    data = json.loads((default_data_dir() / "superni" / f"{name}.json").read_text())
    return next(i["output"][0] for i in data["Instances"] if i["id"] == sample_id)


def test_matrix_treats_choice_accuracy_as_binary_with_random_baseline(mc_run):
    _, result = mc_run
    m = pl.read_parquet(result.run_dir / "matrix.parquet")
    assert set(m["metric"]) == {"acc", "acc_norm"}
    assert set(m["task"]) == {"superni_task828.mc", "superni_task363.mc", "copa_tpl_mc"}
    adapters = m.filter(pl.col("adapter") != "base")
    assert set(adapters["test"]) == {"mcnemar"}  # paired binary outcomes
    assert (adapters["n_both"] + adapters["n_adapter_only"] + adapters["n_base_only"] + adapters["n_neither"]
            == adapters["n"]).all()
    assert set(m.filter(pl.col("drift_metric"))["metric"]) == {"acc"}
    drift = pl.read_parquet(result.run_dir / "drift.parquet")
    assert drift.height == len(DEMO_ADAPTERS)  # one row per adapter
    from capdrift_fast.pipeline.plan import build_plan
    from capdrift_fast.report.runs import random_baselines

    cfg = RunConfig.model_validate(json.loads((result.run_dir / "config.json").read_text()))
    plan = build_plan(cfg)
    base, _ = random_baselines(plan.tasks, plan.samples)
    assert base.filter(pl.col("metric") == "acc")["score"].to_list() == [0.5, 0.5, 0.5]


LM_EVAL_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: {text}
doc_to_choice: {choice}
doc_to_target: {target}
target_delimiter: {delim}
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def test_lm_eval_builds_the_same_requests_and_aggregates_our_logprobs_to_our_scores(mc_run, tmp_path, monkeypatch):
    """lm-eval 0.4.13's own ConfigurableTask (a local ``dataset_path: json`` YAML, no model run) builds the
    same (context, continuation) strings as our plan, and its process_results + mean over OUR per-choice
    log-likelihoods give our acc/acc_norm, per item and per model."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager, get_task_dict

    from capdrift_fast.pipeline.plan import build_plan

    cfg, result = mc_run
    plan = build_plan(cfg)
    gens = pl.read_ipc(str(result.run_dir / "generations" / "*.arrow"))
    scores = pl.read_parquet(result.run_dir / "scores.parquet")
    specs = {}
    for i, (name, samples) in enumerate(plan.samples.items()):
        data = tmp_path / f"t{i}.jsonl"
        if name == "copa_tpl_mc":  # lm-eval renders the raw fields itself
            raw = json.loads((Path(cfg.data_dir) / TEMPLATE_MC["data"]).read_text())["Instances"][:4]
            data.write_text("".join(json.dumps({"id": r["id"], "input": r["input"], "output": r["output"]}) + "\n"
                                    for r in raw))
            text, choice, target, delim = '"{{input}}\\nAnswer:"', '["cause", "effect"]', '"{{output[0]}}"', '" "'
        else:  # our rendered Tk-Instruct prompt; the label space as the choices; the gold index
            data.write_text("".join(json.dumps({"id": r["sample_id"], "prompt": r["prompt"], "choices": r["choices"],
                                                "gold": r["gold"][0]}) + "\n" for r in samples.iter_rows(named=True)))
            text, choice, target, delim = '"{{prompt}}"', '"{{choices}}"', '"{{gold}}"', '""'
        (tmp_path / f"t{i}.yaml").write_text(LM_EVAL_YAML.format(task=f"capdrift_mc_{i}", data=data, text=text,
                                                                 choice=choice, target=target, delim=delim))
        specs[f"capdrift_mc_{i}"] = name
    tasks = get_task_dict(list(specs), TaskManager(include_path=str(tmp_path)))
    assert set(tasks) == set(specs)
    for lm_name, name in specs.items():
        task = tasks[lm_name]
        task.build_all_requests(limit=None, rank=0, world_size=1)
        docs = list(task.test_docs())
        sample_ids = plan.samples[name]["sample_id"].to_list()
        assert [d["id"] for d in docs] == sample_ids
        by_doc: dict[int, list] = {}
        for inst in task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        ours = plan.requests.filter((pl.col("task") == name) & (pl.col("adapter") == "base"))
        for doc_id, sid in enumerate(sample_ids):
            insts = sorted(by_doc[doc_id], key=lambda x: x.idx)
            row = ours.filter(pl.col("sample_id") == sid).row(0, named=True)
            assert [x.args[0] for x in insts] == [row["prompt"]] * len(insts), (name, sid)
            assert [x.args[1] for x in insts] == row["continuations"], (name, sid)
        for adapter in ["base"] + [a.name for a in cfg.adapters]:
            mine = gens.filter((pl.col("task") == name) & (pl.col("adapter") == adapter))
            lm: dict[str, list[float]] = {"acc": [], "acc_norm": []}
            for doc_id, sid in enumerate(sample_ids):
                rec = mine.filter(pl.col("sample_id") == sid).row(0, named=True)
                res = task.process_results(docs[doc_id], list(zip(rec["choice_logprobs"], rec["choice_greedy"])))
                got = scores.filter(pl.col("request_id") == rec["request_id"]).row(0, named=True)
                assert (got["acc"], got["acc_norm"]) == (res["acc"], res["acc_norm"]), rec["request_id"]
                for k in lm:
                    lm[k].append(res[k])
            agg = task.aggregation()
            cell = scores.filter((pl.col("task") == name) & (pl.col("adapter") == adapter))
            for k in lm:
                assert agg[k](lm[k]) == pytest.approx(cell[k].mean(), abs=1e-12), (name, adapter, k)


def test_lm_eval_export_of_a_multiple_choice_run_equals_what_lm_eval_writes(mc_run, tmp_path, monkeypatch):
    """Our lm-eval export of the run (base model) against the files lm-eval 0.4.13 itself writes
    (``simple_evaluate`` + ``EvaluationTracker``) for the same SuperNI tasks as local multiple-choice YAMLs, with
    an ``LM`` whose ``loglikelihood`` answers OUR per-choice log-likelihoods: the same samples lines (arguments,
    resps, filtered_resps, target, metrics, prompt and target hashes), the same acc/acc_norm and config fields,
    and lm-eval's ``make_table`` reads ours."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    from lm_eval import evaluator, utils
    from lm_eval.api.model import LM
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from capdrift_fast.pipeline.plan import build_plan
    from capdrift_fast.report.lm_eval import export_lm_eval
    from capdrift_fast.report.runs import load_run

    cfg, result = mc_run
    plan = build_plan(cfg)
    gens = pl.read_ipc(str(result.run_dir / "generations" / "*.arrow")).filter(pl.col("adapter") == "base")
    answers = {}
    for name in ("superni_task828.mc", "superni_task363.mc"):
        conts = plan.requests.filter((pl.col("task") == name) & (pl.col("adapter") == "base"))
        for row in conts.join(gens.select("request_id", "choice_logprobs", "choice_greedy"), on="request_id").iter_rows(named=True):
            for c, ll, g in zip(row["continuations"], row["choice_logprobs"], row["choice_greedy"]):
                answers[row["prompt"], c] = (ll, g)

    class Ours(LM):
        def loglikelihood(self, requests, disable_tqdm=False):
            return [answers[r.args] for r in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            raise NotImplementedError

    specs = {}
    for i, name in enumerate(("superni_task828.mc", "superni_task363.mc")):
        data = tmp_path / f"t{i}.jsonl"
        data.write_text("".join(json.dumps({"id": r["sample_id"], "prompt": r["prompt"], "choices": r["choices"],
                                            "gold": r["gold"][0]}) + "\n" for r in plan.samples[name].iter_rows(named=True)))
        (tmp_path / f"t{i}.yaml").write_text(LM_EVAL_YAML.format(task=f"capdrift_mc_{i}", data=data, text='"{{prompt}}"',
                                                                 choice='"{{choices}}"', target='"{{gold}}"', delim='""'))
        specs[f"capdrift_mc_{i}"] = name
    res = evaluator.simple_evaluate(model=Ours(), tasks=list(specs), task_manager=TaskManager(include_path=str(tmp_path)),
                                    log_samples=True)
    tracker = EvaluationTracker(output_path=str(tmp_path / "ref"))
    ref_samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=ref_samples)
    for lm_name, s in ref_samples.items():
        tracker.save_results_samples(task_name=lm_name, samples=s)
    (ref_path,) = (tmp_path / "ref").rglob("results_*.json")
    ref = json.loads(ref_path.read_text())

    paths = export_lm_eval(load_run(result.run_dir), tmp_path / "ours")
    base = next(p for p in paths if p.parent.name == "base")
    got = json.loads(base.read_text())
    assert "capdrift_mc" not in utils.make_table(got) and "superni_task828.mc" in utils.make_table(got)
    stamp = base.stem.split("_", 1)[1]
    for lm_name, name in specs.items():
        for key in ("acc,none", "acc_norm,none", "acc_stderr,none", "acc_norm_stderr,none"):
            assert got["results"][name][key] == pytest.approx(ref["results"][lm_name][key], abs=1e-12), (name, key)
        # (num_fewshot differs on purpose: our SuperNI prompt holds its 2 positive examples; lm-eval gets it as text)
        for key in ("output_type", "target_delimiter", "metric_list"):
            assert got["configs"][name][key] == ref["configs"][lm_name][key], (name, key)
        assert "generation_kwargs" not in got["configs"][name] and "generation_kwargs" not in ref["configs"][lm_name]
        mine = [json.loads(x) for x in (base.parent / f"samples_{name}_{stamp}.jsonl").read_text().splitlines()]
        (ref_file,) = (tmp_path / "ref").rglob(f"samples_{lm_name}_*.jsonl")  # as lm-eval's tracker writes them
        theirs = [json.loads(x) for x in ref_file.read_text().splitlines()]
        assert len(mine) == len(theirs) == plan.samples[name].height
        for m, t in zip(mine, sorted(theirs, key=lambda x: x["doc_id"])):
            assert set(m) == set(t), name
            for key in ("doc_id", "target", "arguments", "resps", "filtered_resps", "filter", "metrics", "acc",
                        "acc_norm", "prompt_hash", "target_hash"):
                assert m[key] == t[key], (name, m["doc_id"], key)


def test_prefix_cache_serves_shared_contexts_and_repeated_pairs_exactly(engine, hf_reference):
    """With ``engine.loglik_prefix_cache`` (default) a choice whose context + continuation were already computed
    comes back from vLLM's cache without log-probabilities for the cached positions: the engine sends it again
    uncached, so a repeat of the same requests gives the same log-likelihoods, equal to transformers+peft's."""
    assert engine.settings.loglik_prefix_cache
    block = engine.llm.llm_engine.vllm_config.cache_config.block_size
    # a context shorter than a cache block, a continuation across the next block boundary: the repeat's cache
    # hit (whole blocks) reaches into the continuation
    prompt = "Input: " + " ".join(["the cat sat on the mat"] * (block // 8)) + " Output:"
    conts = [" a long answer that runs across the boundary of a cache block " * 6, " no"]
    adapters = ["base", engine.adapters[0].name]
    frame = pl.DataFrame([{"request_id": f"{a}/rep/0", "adapter": a, "lora_id": i, "task": "rep", "sample_id": "0",
                           "prompt": prompt, "max_tokens": 1, "continuations": conts} for i, a in enumerate(adapters)],
                         schema_overrides={"lora_id": pl.Int32, "max_tokens": pl.Int32,
                                           "continuations": pl.List(pl.Utf8)})
    from capdrift_fast.config import SamplingConfig

    first = {r["adapter"]: r for r in engine.generate(frame, SamplingConfig())}
    before = engine.loglik_uncached_retries
    again = {r["adapter"]: r for r in engine.generate(frame, SamplingConfig())}
    assert engine.loglik_uncached_retries > before  # the repeat hit the cache inside the continuation
    for a in adapters:
        want = [r.logprob for r in hf_reference.loglikelihood(a, prompt, conts, engine.max_model_len)]
        assert first[a]["choice_tokens"] == again[a]["choice_tokens"]
        assert max(abs(x - y) for x, y in zip(again[a]["choice_logprobs"], want)) < 1e-3
        assert max(abs(x - y) for x, y in zip(first[a]["choice_logprobs"], want)) < 1e-3
