"""Export per model (base, each adapter) as lm-evaluation-harness 0.4.13 writes its results.

lm-eval writes ``OUTPUT/<model>/results_<date>.json`` (``lm_eval/loggers/evaluation_tracker.py``
``save_results_aggregated``: the dict of ``lm_eval/evaluator.py`` ``simple_evaluate`` + the tracker's fields;
its keys and types are ``lm_eval/result_schema.py`` ``EvalResults``) and, with ``--log_samples``,
``samples_<task>_<date>.jsonl`` beside it (``save_results_samples``: one line per document and filter with
``doc_id``, ``doc``, ``target``, ``arguments`` {``gen_args_0``: {``arg_0``: context, ``arg_1``: gen_kwargs}},
``resps``, ``filtered_resps``, ``filter``, ``metrics``, ``doc_hash``/``prompt_hash``/``target_hash`` (sha256 of
the JSON doc, the context, the target) and each metric's value). We write the same files to
``RUN_DIR/lm_eval/<model>/`` (``<model>`` = ``base`` or the adapter name: lm-eval would put base and every
adapter in one folder named after the base model).

Task names: a task that is lm-eval's own task as run (same definition: shots, example source, seed, stop
sequences, max tokens, greedy, special tokens kept, all items; :func:`~capdrift_fast.benchmarks.lm_eval_compat.lm_eval_deviations`)
carries lm-eval's name (``gsm8k``, ``ifeval``) and version (3.0, 4.0); a deviating one is
``<task>_capdrift_<k>shot`` with its reasons in ``configs[...]["metadata"]["capdrift_deviations"]``, never the
official name. Metrics are named as lm-eval's tasks name them (``exact_match,strict-match``,
``prompt_level_strict_acc,none``, ...), else ``<metric>,none``. Standard errors follow lm-eval's ``mean_stderr``
(sample sd with ddof 1 over sqrt(n)); for the instruction-level micro-averages lm-eval reports ``"N/A"``
and so do we. The model is ``vllm`` with ``model_args`` a dict as lm-eval 0.4.13's CLI records it
(``pretrained``, ``lora_local_path`` for an adapter, as its vLLM backend takes it, ``dtype``, ...). Our own
additions (run id, label, delta vs base with CI and q, share of truncated responses) sit under ``capdrift``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from capdrift_fast.benchmarks.base import MetricSpec, is_multiple_choice
from capdrift_fast.benchmarks.lm_eval_compat import LM_EVAL_VERSION, data_items, lm_eval_deviations, lm_eval_task_name
from capdrift_fast.config import BASE_NAME, task_name
from capdrift_fast.conversation import prompt_text
from capdrift_fast.engines.prompts import render_chat, resolve_prompt_format
from capdrift_fast.rundir.atomic import atomic_write_text
from capdrift_fast.report.runs import RunData


def lm_eval_key(spec: MetricSpec | None, metric: str) -> str:
    """lm-eval's ``"metric,filter"`` name of our ``metric`` (its :class:`MetricSpec`'s ``lm_eval`` when the
    benchmark declares one, else ``<metric>,none``)."""
    return spec.lm_eval if spec is not None and spec.lm_eval else f"{metric},none"


def sanitize_model_name(name: str) -> str:
    """lm-eval's ``sanitize_model_name``: path separators and other unsafe characters -> ``__``."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def hash_string(text: str) -> str:
    """lm-eval's ``lm_eval.utils.hash_string``: sha256 hex digest of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stderr(values: pl.Series) -> float | None:
    n = values.len()
    if n < 2:
        return None
    sd = values.std(ddof=1)
    return None if sd is None else float(sd) / math.sqrt(n)


def _date_id(run: RunData) -> str:
    m = re.search(r"(\d{8})-(\d{6})", str(run.manifest.get("run_id", "")))
    if m:
        dt = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S")
    else:
        dt = datetime.fromtimestamp((run.run_dir / "scores.parquet").stat().st_mtime)
    return dt.isoformat().replace(":", "-")


class _Tokenizer:
    """The run's tokenizer (transformers; no weights), loaded once for chat rendering and tokenizer fields;
    ``tok`` is None when it cannot be loaded (a hub id offline, a moved folder)."""

    def __init__(self, run: RunData) -> None:
        model = run.config.model
        self.tok = None
        try:
            from transformers import AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(model.tokenizer or model.path, revision=model.revision,
                                                     trust_remote_code=model.trust_remote_code)
        except Exception:  # transformers raises many kinds; the export then says it could not render chat
            self.tok = None
        fmt = model.prompt_format
        self.format = resolve_prompt_format(self.tok, fmt) if self.tok is not None else ("raw" if fmt == "auto" else fmt)
        self.template = getattr(self.tok, "chat_template", None) if self.format == "chat" else None
        if isinstance(self.template, dict):  # several named templates: lm-eval records the default one
            self.template = self.template.get("default")

    def contexts(self, prompts: list[str]) -> list[str]:
        """The text sent for each prompt (lm-eval's request context ``arg_0``)."""
        if self.format == "chat" and self.tok is not None:
            return render_chat(self.tok, prompts)
        return [prompt_text(p) for p in prompts]

    def fields(self, max_length: int) -> dict[str, Any]:
        """lm-eval's ``add_tokenizer_info`` fields (``{}`` without a tokenizer)."""
        t = self.tok
        if t is None:
            return {}
        return {"tokenizer_pad_token": [t.pad_token, str(t.pad_token_id)],
                "tokenizer_eos_token": [t.eos_token, str(t.eos_token_id)],
                "tokenizer_bos_token": [t.bos_token, str(t.bos_token_id)],
                "eot_token_id": t.eos_token_id, "max_length": max_length}


class _Plan:
    """Per task of a run: its export name, deviations, counts and generation settings (shared by every model)."""

    def __init__(self, run: RunData) -> None:
        cfg = run.config
        tcfgs = {task_name(t): t for t in cfg.tasks}
        matrix = run.analysis.matrix
        self.names: dict[str, str] = {}
        self.info: dict[str, dict[str, Any]] = {}
        used: set[str] = set()
        for tname, task in run.tasks.items():
            rows = matrix.filter(pl.col("task") == tname)
            if rows.height == 0:
                continue
            n = int(rows["n"].max())
            n_original = data_items(task, n) if getattr(task, "limit", None) else n
            tcfg = tcfgs.get(tname)
            max_tokens = cfg.task_max_tokens(tcfg) if tcfg else cfg.sampling.max_tokens
            deviations = lm_eval_deviations(task, max_tokens, cfg.sampling, n_original, n)
            name = lm_eval_task_name(task, deviations)
            if name in used:  # two deviating variants of one lm-eval task: keep them apart by our name
                name = f"{name}_{tname}"
            used.add(name)
            self.names[tname] = name
            self.info[tname] = {"n": n, "n_original": n_original, "max_tokens": max_tokens, "deviations": deviations}

    def config(self, run: RunData, tname: str, task: Any, multiturn: bool | None) -> dict[str, Any]:
        """lm-eval's ``configs[task]`` entry (its ``TaskConfig.to_dict()`` keys that apply)."""
        cfg, info = run.config, self.info[tname]
        d = getattr(task, "lm_eval", None)
        files = {(d.test_split if d else "test"): str(getattr(task, "path", ""))}
        shots = int(task.num_fewshot)
        fewshot_path = getattr(task, "fewshot_path", None)
        if shots and fewshot_path is not None:
            files.setdefault(d.fewshot_split if d and d.fewshot_split else "train", str(fewshot_path))
        metadata: dict[str, Any] = {"version": d.version if d else task.version,
                                    "config_source": f"{type(task).__module__}.{type(task).__name__}"}
        if d is not None and info["deviations"]:
            metadata.update(capdrift_deviates_from=d.task, capdrift_deviations=info["deviations"])
        if shots and multiturn is not None:
            metadata["fewshot_as_multiturn"] = multiturn
        entry: dict[str, Any] = {
            "task": self.names[tname], "dataset_path": "json", "dataset_kwargs": {"data_files": files},
            "test_split": d.test_split if d else "test",
        }
        if shots:
            split = d.fewshot_split if d and d.fewshot_split else "train"
            entry.update(training_split=split, fewshot_split=split, fewshot_config={
                "sampler": getattr(task, "fewshot_sampler", "default"), "split": split})
        mc = is_multiple_choice(task)
        entry.update({
            "description": "", "target_delimiter": str(getattr(task, "target_delimiter", " ")) if mc else " ",
            "fewshot_delimiter": "\n\n", "num_fewshot": shots,
            "metric_list": [{"metric": lm_eval_key(m, m.name).split(",")[0], "aggregation": "mean",
                             "higher_is_better": True} for m in task.metrics],
            "output_type": "multiple_choice" if mc else "generate_until",
        })
        if not mc:  # lm-eval's TaskConfig.to_dict drops the None generation_kwargs of a multiple-choice task
            entry["generation_kwargs"] = self.gen_kwargs(cfg, task, info["max_tokens"])
        entry.update({"repeats": 1, "should_decontaminate": False, "metadata": metadata})
        return entry

    @staticmethod
    def gen_kwargs(cfg: Any, task: Any, max_tokens: int) -> dict[str, Any]:
        """The task's ``generation_kwargs`` as lm-eval records them (its until, greedy or not, max_gen_toks)."""
        t = cfg.sampling.temperature
        return {"until": list(task.stop), "do_sample": t > 0, "temperature": float(t), "max_gen_toks": max_tokens}


def _choice_lines(sub: pl.DataFrame, samples: pl.DataFrame, task: Any, scores: pl.DataFrame,
                  model: str, tname: str) -> list[dict[str, Any]]:
    """Per log-likelihood record of ``sub``: lm-eval's ``arguments`` (one ``gen_args_<i>`` per choice: the
    context and the target delimiter + choice), ``resps`` (``[[loglikelihood, is_greedy]]`` per choice, as text),
    ``filtered_resps`` (filter ``none``: the first response of each), ``target`` (``doc_to_target``: the gold
    index, a list when several are gold; as text, as lm-eval's tracker writes it) and the metrics (``acc``, ``acc_norm``), as ``ConfigurableTask``
    ``construct_requests``/``process_results`` and ``evaluator.evaluate`` log them."""
    delim = str(getattr(task, "target_delimiter", " "))
    metric_cols = [m.name for m in task.metrics if m.name in scores.columns]
    names = {m.name: lm_eval_key(m, m.name).split(",")[0] for m in task.metrics}
    values = {r["request_id"]: r for r in scores.filter((pl.col("adapter") == model) & (pl.col("task") == tname))
              .select("request_id", *metric_cols).iter_rows(named=True)}
    by_sample = {r["sample_id"]: r for r in samples.select("sample_id", "choices", "gold").iter_rows(named=True)}
    rows = []
    for g in sub.iter_rows(named=True):
        s = by_sample[g["sample_id"]]
        ctx = prompt_text(g["prompt"])
        # as lm-eval's tracker writes them: every element as text (``utils.sanitize_list``)
        pairs = [[str(float(ll)), str(bool(gr))] for ll, gr in zip(g["choice_logprobs"], g["choice_greedy"])]
        gold = list(s["gold"] or [])
        rows.append({
            "arguments": {f"gen_args_{i}": {"arg_0": ctx, "arg_1": delim + c} for i, c in enumerate(s["choices"])},
            "resps": [[p] for p in pairs], "filtered_resps": pairs, "filter": "none",
            "target": str(gold[0] if len(gold) == 1 else gold), "context": ctx,
            "metrics": {names[c]: values.get(g["request_id"], {}).get(c) for c in metric_cols}})
    return rows


def comparability(run: RunData) -> list[dict[str, Any]]:
    """Per task of ``run`` (report rows): ``task``, ``exported_as`` (its name in the lm-eval export),
    ``deviations`` (why it is not lm-eval's task; ``None`` when lm-eval has no such task) and ``truncated``
    (model -> share of responses that stopped at max_tokens, ``finish_reason == "length"``)."""
    plan = _Plan(run)
    scores = run.scores if run.scores is not None else pl.read_parquet(run.run_dir / "scores.parquet")
    share: dict[str, dict[str, float]] = {}
    if "finish_reason" in scores.columns:
        agg = scores.group_by("task", "adapter", maintain_order=True).agg(
            (pl.col("finish_reason") == "length").mean().alias("share"))
        for t, a, v in agg.iter_rows():
            share.setdefault(t, {})[a] = float(v)
    return [{"task": t, "exported_as": plan.names[t], "deviations": plan.info[t]["deviations"],
             "truncated": share.get(t, {})} for t in plan.names]


def lm_eval_results(run: RunData, model: str, scores: pl.DataFrame, plan: _Plan | None = None,
                    tokenizer: _Tokenizer | None = None) -> dict[str, Any]:
    """The lm-eval-shaped results dict of one model (``base`` or an adapter name) of ``run``: the keys and
    types of a ``results_<date>.json`` lm-eval 0.4.13 writes, plus ``capdrift``."""
    cfg = run.config
    plan = plan or _Plan(run)
    tokenizer = tokenizer or _Tokenizer(run)
    matrix = run.analysis.matrix.filter(pl.col("adapter") == model)
    adapter = next((a for a in cfg.adapters if a.name == model), None)
    model_args: dict[str, Any] = {"pretrained": cfg.model.path}
    if adapter:
        model_args["lora_local_path"] = adapter.path
    model_args.update(dtype=cfg.engine.dtype, max_model_len=cfg.engine.max_model_len,
                      max_lora_rank=cfg.engine.max_lora_rank)
    if adapter:
        model_args["enable_lora"] = True
    if cfg.model.revision:
        model_args["revision"] = cfg.model.revision
    results: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {}
    truncated: dict[str, float] = {}
    configs, versions, nshot, hib, nsamples = {}, {}, {}, {}, {}
    multi = [getattr(t, "fewshot_as_multiturn", None) for t in run.tasks.values() if int(t.num_fewshot)]
    # lm-eval's CLI: --fewshot_as_multiturn defaults to on with --apply_chat_template, else stays unset (null)
    multiturn = all(m is not False for m in multi) if tokenizer.format == "chat" else None
    for tname, task in run.tasks.items():
        if tname not in plan.names:
            continue
        rows = matrix.filter(pl.col("task") == tname)
        if rows.height == 0:
            continue
        name, info = plan.names[tname], plan.info[tname]
        sub = scores.filter((pl.col("adapter") == model) & (pl.col("task") == tname))
        entry: dict[str, Any] = {"name": name, "alias": name, "sample_len": int(rows["n"].max())}
        specs = {m.name: m for m in task.metrics}
        for r in rows.iter_rows(named=True):
            spec = specs.get(r["metric"])
            key = lm_eval_key(spec, r["metric"])
            mname, _, filt = key.partition(",")
            entry[key] = r["score"]
            se = None if spec is None or spec.weight else _stderr(sub.get_column(r["metric"]).drop_nulls())
            entry[f"{mname}_stderr,{filt}"] = "N/A" if se is None else se
            hib.setdefault(name, {})[mname] = True
            if model != BASE_NAME:
                extra.setdefault(name, {})[key] = {
                    "delta_vs_base": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                    "test": r["test"], "p_value": r["p_value"], "q_value": r["q_value"], "significant": r["significant"],
                }
        if "finish_reason" in sub.columns and sub.height:
            truncated[name] = float((sub["finish_reason"] == "length").mean())
        results[name] = entry
        task_multi = getattr(task, "fewshot_as_multiturn", None) if tokenizer.format == "chat" else None
        configs[name] = plan.config(run, tname, task, task_multi)
        d = getattr(task, "lm_eval", None)
        versions[name] = d.version if d else task.version
        nshot[name] = int(task.num_fewshot)
        nsamples[name] = {"original": info["n_original"], "effective": info["n"]}
    man = run.manifest
    total = (man.get("engine_start_s") or 0) + (man.get("generation_s") or 0)
    versions_installed = man.get("versions") or {}
    date = (run.run_dir / "scores.parquet").stat().st_mtime
    sampling = cfg.sampling
    out: dict[str, Any] = {
        "results": results,
        "group_subtasks": {},
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": {
            "model": "vllm", "model_args": model_args, "batch_size": str(cfg.engine.max_num_seqs), "batch_sizes": [],
            "device": None, "use_cache": None, "limit": None, "bootstrap_iters": 0,
            "gen_kwargs": {"temperature": sampling.temperature, "top_p": sampling.top_p},
            "random_seed": sampling.seed, "numpy_seed": sampling.seed, "torch_seed": sampling.seed,
            "fewshot_seed": next((int(getattr(t, "fewshot_seed")) for t in run.tasks.values()
                                  if int(t.num_fewshot) and hasattr(t, "fewshot_seed")), 1234),
        },
        "git_hash": None,
        "date": date,
        "pretty_env_info": "; ".join(f"{k} {v}" for k, v in versions_installed.items() if v),
        "transformers_version": versions_installed.get("transformers") or "",
        "lm_eval_version": LM_EVAL_VERSION,
        "upper_git_hash": None,
        **tokenizer.fields(cfg.engine.max_model_len),
        "task_hashes": {},
        "model_source": "vllm",
        "model_name": cfg.model.path,
        "model_name_sanitized": sanitize_model_name(cfg.model.path),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": multiturn,
        "chat_template": tokenizer.template,
        "chat_template_sha": hash_string(tokenizer.template) if tokenizer.template else None,
        "start_time": None,
        "end_time": None,
        "total_evaluation_time_seconds": str(round(total, 3)),
    }
    out["capdrift"] = {
        "run_id": man.get("run_id"), "model": model, "base_model": cfg.model.path,
        "adapter": model if adapter else None, "label": adapter.label if adapter else None,
        "adapter_files_sha256": run.adapter_files.get(model, {}) if adapter else {},
        "task_names": {plan.names[t]: t for t in plan.names},
        "prompt_format": tokenizer.format,
        "skip_special_tokens": sampling.skip_special_tokens,
        "truncated": truncated,
        "deltas_vs_base": extra, "exported_at": time.time(),
    }
    return out


def _docs(task: Any, samples: pl.DataFrame) -> dict[str, tuple[int, dict[str, Any]]]:
    """sample_id -> (lm-eval's doc_id: 0-based line of the data file, the file's own JSON row), for tasks that
    read a jsonl and record ``lines``; else the row position and ``{"sample_id", "prompt"}``."""
    lines = getattr(task, "lines", None)
    path = getattr(task, "path", None)
    if lines is None and path is not None and Path(path).suffix == ".jsonl":
        try:
            task.samples()
            lines = getattr(task, "lines", None)
        except Exception:  # the data moved or changed since the run: fall back to the samples frame
            lines = None
    if lines and path is not None and Path(path).is_file():
        text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        out = {}
        for sid in samples["sample_id"].to_list():
            if sid in lines:
                try:
                    out[sid] = (lines[sid] - 1, json.loads(text[lines[sid] - 1]))
                except (IndexError, json.JSONDecodeError):
                    pass
        if len(out) == samples.height:
            return out
    return {sid: (i, {"sample_id": sid, "prompt": prompt_text(p)})
            for i, (sid, p) in enumerate(samples.select("sample_id", "prompt").iter_rows())}


def lm_eval_sample_lines(model: str, tname: str, task: Any, gens: pl.DataFrame, samples: pl.DataFrame,
                         scores: pl.DataFrame, tokenizer: _Tokenizer, gen_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines of lm-eval's ``samples_<task>_<date>.jsonl`` for one model and task (one per document and
    filter, filters in turn), as ``save_results_samples`` writes them."""
    sub = gens.filter((pl.col("adapter") == model) & (pl.col("task") == tname))
    if sub.height == 0:
        return []
    docs = _docs(task, samples)
    if is_multiple_choice(task) and "choice_logprobs" in sub.columns:
        lines = [_sample_line(r, *docs.get(sid, (0, {}))) for r, sid in
                 zip(_choice_lines(sub, samples, task, scores, model, tname), sub["sample_id"].to_list())]
        return sorted(lines, key=lambda line: line["doc_id"])
    joined = sub.join(samples.drop("prompt", strict=False), on="sample_id", how="left")
    hook = getattr(task, "lm_eval_samples", None)
    if callable(hook):
        per = hook(joined)
    else:  # our own metrics' values (lm-eval's names), filter none, the samples' target
        metric_cols = [m.name for m in task.metrics if m.name in scores.columns]
        values = scores.filter((pl.col("adapter") == model) & (pl.col("task") == tname)).select("request_id", *metric_cols)
        names = {m.name: lm_eval_key(m, m.name).split(",")[0] for m in task.metrics}
        with_values = joined.join(values, on="request_id", how="left")
        per = with_values.select(
            "request_id", filter=pl.lit("none"), filtered_resp=pl.col("response"),
            target=pl.col("target").cast(pl.Utf8) if "target" in joined.columns
            and not isinstance(joined.schema["target"], pl.List) else pl.lit(""),
            metrics=pl.Series([json.dumps({names[c]: v for c, v in zip(metric_cols, vals)})
                               for vals in with_values.select(metric_cols).iter_rows()], dtype=pl.Utf8))
    order = {f: i for i, f in enumerate(per["filter"].unique(maintain_order=True).to_list())}
    by_rid = {r["request_id"]: r for r in sub.iter_rows(named=True)}
    contexts = dict(zip(sub["request_id"].to_list(), tokenizer.contexts(sub["prompt"].to_list())))
    lines = []
    rows = sorted(per.iter_rows(named=True), key=lambda r: (order[r["filter"]], docs.get(by_rid[r["request_id"]]["sample_id"],
                                                                                          (0, {}))[0]))
    for r in rows:
        g = by_rid[r["request_id"]]
        ctx = contexts[r["request_id"]]
        lines.append(_sample_line({
            "arguments": {"gen_args_0": {"arg_0": ctx, "arg_1": gen_kwargs}}, "resps": [[g["response"]]],
            "filtered_resps": [r["filtered_resp"]], "filter": r["filter"], "context": ctx,
            "target": "" if r["target"] is None else str(r["target"]), "metrics": json.loads(r["metrics"])},
            *docs.get(g["sample_id"], (0, {}))))
    return lines


def _sample_line(r: dict[str, Any], doc_id: int, doc: dict[str, Any]) -> dict[str, Any]:
    """One line of lm-eval's samples file from ``r`` (arguments, resps, filtered_resps, filter, target, context,
    metrics): the keys and hashes of ``evaluator.evaluate``'s logged sample (sha256 of the indented JSON doc,
    the context and ``str(target)``), then each metric's value."""
    metrics = r["metrics"]
    line = {"doc_id": doc_id, "doc": doc, "target": r["target"], "arguments": r["arguments"], "resps": r["resps"],
            "filtered_resps": r["filtered_resps"], "filter": r["filter"], "metrics": list(metrics),
            "doc_hash": hash_string(json.dumps(doc, indent=2, default=str, ensure_ascii=False)),
            "prompt_hash": hash_string(r["context"]), "target_hash": hash_string(str(r["target"]))}
    line.update(metrics)
    return line


def export_lm_eval(run: RunData, out: str | Path) -> list[Path]:
    """Write ``out/<model>/results_<date>.json`` per model of ``run`` (base first) and, when the run folder
    has its generations, ``out/<model>/samples_<task>_<date>.jsonl`` per task; return the results paths.

    Earlier exports of the same run (same file names) are replaced atomically. The model names come from
    ``scores.parquet``; each must be ``base`` or an adapter of the run's config (whose names are validated
    as plain file names), and every path is checked to stay inside ``out`` (no symlinks on the way).

    Raises:
        RunFolderError: ``scores.parquet`` names a model the run's config does not have.
        RunDirError: a folder on the way is a symbolic link or leads outside ``out``.
    """
    from capdrift_fast.errors import RunFolderError
    from capdrift_fast.rundir.paths import inside

    out = Path(out)
    scores = pl.read_parquet(run.run_dir / "scores.parquet")
    stamp = _date_id(run)
    known = {BASE_NAME, *(a.name for a in run.config.adapters)}
    models = run.analysis.matrix["adapter"].unique(maintain_order=True).to_list()
    for model in models:  # every name checked before anything is written
        if model not in known:
            raise RunFolderError(f"{run.run_dir / 'scores.parquet'} names model {str(model)[:80]!r}, which is neither "
                                 f"{BASE_NAME!r} nor an adapter of the run's config.json; the file does not belong to "
                                 "this run (restore it, or rerun the run)")
    plan, tokenizer = _Plan(run), _Tokenizer(run)
    gens = run.generations()
    paths = []
    for model in models:
        res = lm_eval_results(run, model, scores, plan, tokenizer)
        if gens is not None:
            for tname, task in run.tasks.items():
                name = plan.names.get(tname)
                samples = run.samples.get(tname)
                if name is None or samples is None:
                    continue
                gk = _Plan.gen_kwargs(run.config, task, plan.info[tname]["max_tokens"])
                lines = lm_eval_sample_lines(model, tname, task, gens, samples, scores, tokenizer, gk)
                if not lines:
                    continue
                res["task_hashes"][name] = hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"]
                                                               for s in lines))
                spath = inside(out, model, f"samples_{name}_{stamp}.jsonl", what="model name")
                atomic_write_text(spath, "".join(json.dumps(s, default=str, ensure_ascii=False) + "\n" for s in lines))
        path = inside(out, model, f"results_{stamp}.json", what="model name")
        atomic_write_text(path, json.dumps(res, indent=2, default=str, ensure_ascii=False))
        paths.append(path)
    return paths


__all__ = ["comparability", "export_lm_eval", "lm_eval_results", "lm_eval_key",
           "lm_eval_sample_lines", "hash_string", "sanitize_model_name"]
