"""The lm-eval export against files lm-evaluation-harness 0.4.13 itself writes: ``simple_evaluate`` over local
``dataset_path: json`` copies of its ``gsm8k``/``ifeval`` YAMLs with a fixed-answer ``LM`` (no model), saved by
its ``EvaluationTracker``; our export of the committed 0.1.0 demo run (stored generations; no engine) must have
the same keys and types, load with lm-eval's readers (``make_table``, the results/samples file-name helpers),
and give the same per-sample hashes where the prompts are the same (0-shot GSM8K).

Also: which configurations carry lm-eval's official task name (only those that are lm-eval's definition).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("datasets", reason="lm-eval's task machinery needs datasets (the test extra installs it)")
pytest.importorskip("pytablewriter", reason="lm-eval's make_table needs pytablewriter (the test extra installs it)")

from capdrift_fast.benchmarks import build_task  # noqa: E402
from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig  # noqa: E402
from capdrift_fast.benchmarks.ifeval import IFEvalTaskConfig  # noqa: E402
from capdrift_fast.benchmarks.lm_eval_compat import lm_eval_deviations, lm_eval_task_name  # noqa: E402
from capdrift_fast.config import SamplingConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_golden import _portable_copy  # noqa: E402

N = 24  # items per task in the 0.1.0 demo run


@pytest.fixture(scope="module")
def lm_eval_files(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """A results file and samples files written by lm-eval 0.4.13's own code paths."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
    import lm_eval
    from lm_eval import evaluator
    from lm_eval.api.model import LM
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    class FixedAnswer(LM):
        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

        def generate_until(self, requests, disable_tqdm=False):
            return ["It is 18.\n#### 18" for _ in requests]

    tmp = tmp_path_factory.mktemp("lm_eval_ref")
    root = Path(lm_eval.__file__).parent / "tasks"
    test = data_dir / "gsm8k" / "test.jsonl"
    (tmp / "gsm8k_local.yaml").write_text(yaml.safe_dump({
        "include": str(root / "gsm8k" / "gsm8k.yaml"), "task": "gsm8k_local", "dataset_path": "json",
        "dataset_name": None, "num_fewshot": 0, "dataset_kwargs": {"data_files": {"test": str(test), "train": str(test)}}}))
    (tmp / "ifeval_local.yaml").write_text(yaml.safe_dump({
        "include": str(root / "ifeval" / "ifeval.yaml"), "task": "ifeval_local", "dataset_path": "json",
        "dataset_name": None, "dataset_kwargs": {"data_files": {"train": str(data_dir / "ifeval" / "input_data.jsonl")}}}))
    res = evaluator.simple_evaluate(model=FixedAnswer(), tasks=["gsm8k_local", "ifeval_local"], limit=N,
                                    task_manager=TaskManager(include_path=str(tmp)), log_samples=True)
    tracker = EvaluationTracker(output_path=str(tmp / "out"))
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples)
    for name, s in samples.items():
        tracker.save_results_samples(task_name=name, samples=s)
    (results,) = (tmp / "out").rglob("results_*.json")
    read = {p.name.split("_")[1]: [json.loads(x) for x in p.read_text().splitlines()] for p in (tmp / "out").rglob("samples_*.jsonl")}
    return SimpleNamespace(results=json.loads(results.read_text()), samples=read)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """Our export of the 0.1.0 demo run (raw prompts; gsm8k and ifeval 0-shot, 24 items, max_tokens 64)."""
    from capdrift_fast.report.lm_eval import export_lm_eval
    from capdrift_fast.report.runs import load_run

    run = _portable_copy(tmp_path_factory.mktemp("gold"), data_dir)
    out = tmp_path_factory.mktemp("lm_eval_export")
    paths = export_lm_eval(load_run(run), out)
    return SimpleNamespace(out=out, paths=paths, base=json.loads((out / "base" / paths[0].name).read_text()))


def _same_types(ours: object, ref: object, where: str) -> None:
    """``ours`` has ``ref``'s keys and, where ``ref`` has a value, its types (recursively into dicts)."""
    if ref is None or ours is None:
        return
    if isinstance(ref, bool) or isinstance(ours, bool):
        assert type(ours) is type(ref), where
        return
    if isinstance(ref, (int, float)) and isinstance(ours, (int, float)):
        return
    assert type(ours) is type(ref), f"{where}: {type(ours).__name__} vs lm-eval's {type(ref).__name__}"
    if isinstance(ref, dict):
        missing = set(ref) - set(ours)
        assert not missing, f"{where}: lacks {sorted(missing)}"
        for k in ref:
            _same_types(ours[k], ref[k], f"{where}.{k}")


def test_results_file_has_lm_evals_keys_and_types(lm_eval_files, ours):
    ref, got = lm_eval_files.results, ours.base
    for key in ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better", "group_subtasks", "config",
                "task_hashes", "date", "lm_eval_version", "transformers_version", "fewshot_as_multiturn", "chat_template",
                "chat_template_sha", "system_instruction", "model_name", "model_name_sanitized"):
        assert key in ref and key in got, key
    for key in set(ref) - {"results", "configs", "versions", "n-shot", "n-samples", "higher_is_better", "task_hashes"}:
        _same_types(got.get(key, "MISSING"), ref[key], key)
    pairs = {"gsm8k_local": "gsm8k_capdrift_0shot", "ifeval_local": "ifeval_capdrift_0shot"}
    for theirs, mine in pairs.items():
        assert set(got["results"][mine]) == set(ref["results"][theirs])  # same metric,filter and stderr keys
        for section in ("versions", "n-shot", "n-samples", "higher_is_better"):
            _same_types(got[section][mine], ref[section][theirs], f"{section}.{mine}")
            assert got[section][mine] == ref[section][theirs] or section == "n-samples", section
        assert got["n-samples"][mine] == {"original": ref["n-samples"][theirs]["original"], "effective": N}
        assert set(got["configs"][mine]) <= set(ref["configs"][theirs]) | {"fewshot_config"}
        common = (set(got["configs"][mine]) & set(ref["configs"][theirs])) - {"dataset_kwargs"}  # data files differ
        _same_types({k: got["configs"][mine][k] for k in common}, {k: ref["configs"][theirs][k] for k in common},
                    f"configs.{mine}")
    assert got["versions"]["gsm8k_capdrift_0shot"] == 3.0 and got["versions"]["ifeval_capdrift_0shot"] == 4.0
    assert got["lm_eval_version"] == ref["lm_eval_version"] == "0.4.13"


def test_deviating_tasks_never_carry_the_official_name(ours):
    got = ours.base
    assert "gsm8k" not in got["results"] and "ifeval" not in got["results"]
    why = got["configs"]["gsm8k_capdrift_0shot"]["metadata"]["capdrift_deviations"]
    assert any(w.startswith("0-shot") for w in why) and any("max_tokens 64" in w for w in why)
    assert any(w.startswith(f"{N} of 1319 items") for w in why)
    adapter = json.loads((ours.out / "math-r16" / ours.paths[0].name).read_text())
    assert adapter["config"]["model_args"]["lora_local_path"].endswith("math-r16")
    assert adapter["config"]["model_args"]["pretrained"] == adapter["model_name"]
    assert "lora_local_path" not in got["config"]["model_args"]


def test_lm_evals_readers_load_our_files(ours):
    from lm_eval import utils

    table = utils.make_table(ours.base)
    assert "gsm8k_capdrift_0shot" in table and "exact_match" in table and "strict-match" in table
    files = [str(p) for p in ours.out.rglob("*.json*")]
    results = utils.get_results_filenames(files)
    assert sorted(results) == sorted(str(p) for p in ours.paths)
    samples = [f for f in utils.get_sample_results_filenames(files) if "/base/" in f]
    assert {utils.get_file_task_name(Path(f).name) for f in samples} >= {"gsm8k_capdrift_0shot", "ifeval_capdrift_0shot"}
    assert utils.get_latest_filename(results).endswith(".json")
    assert {utils.get_file_datetime(Path(f).name) for f in samples} == {ours.paths[0].stem.split("_", 1)[1]}


def test_samples_files_match_lm_evals(lm_eval_files, ours):
    stamp = ours.paths[0].stem.split("_", 1)[1]
    for theirs, mine, n_filters in (("gsm8k", "gsm8k_capdrift_0shot", 2), ("ifeval", "ifeval_capdrift_0shot", 1)):
        ref = lm_eval_files.samples[theirs]
        got = [json.loads(x) for x in (ours.out / "base" / f"samples_{mine}_{stamp}.jsonl").read_text().splitlines()]
        assert len(got) == len(ref) == N * n_filters
        assert [s["filter"] for s in got] == [s["filter"] for s in ref]
        for g, r in zip(got, ref):
            assert g["doc_id"] == r["doc_id"]
            _same_types({k: v for k, v in g.items() if k != "doc"}, {k: v for k, v in r.items() if k != "doc"}, mine)
            assert set(g["arguments"]["gen_args_0"]) == {"arg_0", "arg_1"}
        if theirs == "gsm8k":  # same docs, same 0-shot prompts, same targets: same hashes as lm-eval's
            for g, r in zip(got, ref):
                assert (g["doc_hash"], g["prompt_hash"], g["target_hash"]) == (r["doc_hash"], r["prompt_hash"], r["target_hash"])
                assert g["arguments"]["gen_args_0"]["arg_0"] == r["arguments"]["gen_args_0"]["arg_0"]
    assert ours.base["task_hashes"]["gsm8k_capdrift_0shot"]


def test_only_lm_evals_definition_carries_its_name(data_dir: Path, tmp_path: Path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join((data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:20]),
                     encoding="utf-8")
    sampling = SamplingConfig()
    cases = [
        (GSM8KTaskConfig(benchmark="gsm8k", fewshot_data=str(train)), 256, sampling, "gsm8k"),
        (IFEvalTaskConfig(benchmark="ifeval"), 1280, sampling, "ifeval"),
        (GSM8KTaskConfig(benchmark="gsm8k"), 256, sampling, "gsm8k_capdrift_0shot"),
        (GSM8KTaskConfig(benchmark="gsm8k", fewshot_data=str(train), fewshot_seed=0), 256, sampling, "gsm8k_capdrift_5shot"),
        (GSM8KTaskConfig(benchmark="gsm8k", fewshot_data=str(train)), 512, sampling, "gsm8k_capdrift_5shot"),
        (IFEvalTaskConfig(benchmark="ifeval"), 1280, SamplingConfig(skip_special_tokens=True), "ifeval_capdrift_0shot"),
        (IFEvalTaskConfig(benchmark="ifeval"), 1280, SamplingConfig(temperature=0.7), "ifeval_capdrift_0shot"),
        (GSM8KTaskConfig(benchmark="gsm8k", fewshot_data="gsm8k/test.jsonl"), 256, sampling, "gsm8k_capdrift_5shot"),
    ]
    for cfg, max_tokens, samp, want in cases:
        task = build_task(cfg, data_dir)
        why = lm_eval_deviations(task, max_tokens, samp, 100, 100)
        assert lm_eval_task_name(task, why) == want, (cfg, why)
        assert bool(why) == (want not in ("gsm8k", "ifeval"))
    task = build_task(IFEvalTaskConfig(benchmark="ifeval", limit=5), data_dir)
    assert lm_eval_deviations(task, 1280, sampling, 541, 5) == ["5 of 541 items (limit; lm-eval's score is over all of them)"]


def test_report_says_how_each_task_compares_and_what_was_truncated(tmp_path: Path, data_dir: Path):
    import polars as pl

    from capdrift_fast.report import write_report

    run = _portable_copy(tmp_path, data_dir)
    files = write_report([run])
    scores = pl.read_parquet(run / "scores.parquet")
    share = scores.filter((pl.col("adapter") == "base") & (pl.col("task") == "gsm8k"))["finish_reason"].eq("length").mean()
    md, html = files.markdown.read_text(), files.html.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| gsm8k | `gsm8k_capdrift_0shot` |"))
    assert "max_tokens 64 (lm-eval: 256)" in row and f"base {share:.0%}" in row
    assert "| superni_task363 | `superni_task363` | no lm-eval counterpart |" in md
    assert "Comparing with lm-evaluation-harness" in html and "<code>ifeval_capdrift_0shot</code>" in html


def test_manifest_records_how_each_task_compares(tmp_path: Path, data_dir: Path):
    """What ``manifest.json``'s ``lm_eval`` holds for a run (the runner writes it at the start)."""
    from capdrift_fast.benchmarks.lm_eval_compat import run_comparability
    from capdrift_fast.config import RunConfig
    from capdrift_fast.pipeline.plan import build_plan

    run = _portable_copy(tmp_path, data_dir)
    cfg = RunConfig.model_validate_json((run / "config.json").read_text())
    plan = build_plan(cfg)
    comp = run_comparability(cfg, plan.tasks, {t: s.height for t, s in plan.samples.items()})
    assert comp["gsm8k"]["lm_eval_task"] == "gsm8k" and comp["gsm8k"]["exported_as"] == "gsm8k_capdrift_0shot"
    assert "max_tokens 64 (lm-eval: 256)" in comp["gsm8k"]["deviations"]
    assert comp["superni_task828"] == {"lm_eval_task": None, "exported_as": "superni_task828", "deviations": None}


def test_chat_run_exports_the_rendered_context_and_template(tmp_path: Path, data_dir: Path):
    """A chat-format run: ``arg_0`` is the chat-rendered text lm-eval would send, with ``chat_template``,
    its sha and ``fewshot_as_multiturn`` as lm-eval's tracker records them."""
    from transformers import AutoTokenizer

    from capdrift_fast.demo import build_tokenizer
    from capdrift_fast.engines.prompts import render_chat
    from capdrift_fast.report.lm_eval import export_lm_eval, hash_string
    from capdrift_fast.report.runs import load_run

    template = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok_dir = tmp_path / "tok"
    build_tokenizer(data_dir, tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.chat_template = template
    tok.save_pretrained(tok_dir)
    run = _portable_copy(tmp_path, data_dir)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"].update(tokenizer=str(tok_dir), prompt_format="chat")
    (run / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "lm"
    (path, *_) = export_lm_eval(load_run(run), out)
    res = json.loads(path.read_text())
    assert res["chat_template"] == template and res["chat_template_sha"] == hash_string(template)
    assert res["fewshot_as_multiturn"] is True and res["tokenizer_bos_token"] == [tok.bos_token, str(tok.bos_token_id)]
    line = json.loads((path.parent / f"samples_gsm8k_capdrift_0shot_{path.stem.split('_', 1)[1]}.jsonl")
                      .read_text().splitlines()[0])
    question = line["doc"]["question"]
    (want,) = render_chat(tok, [f"Question: {question}\nAnswer:"])
    assert line["arguments"]["gen_args_0"]["arg_0"] == want and line["prompt_hash"] == hash_string(want)
    assert want.startswith(tok.bos_token + "<|im_start|>user\nQuestion: ")
