"""Is a task, as configured for a run, lm-evaluation-harness's own task? One comparison, used by the lm-eval
export (which names a deviating task ``<task>_capdrift_<k>shot`` instead of the official name) and the report.

A task matches when its benchmark declares lm-eval's definition (:class:`~capdrift_fast.benchmarks.base.LmEvalDefinition`,
taken from lm-eval 0.4.13's task YAML) and the run uses that definition's number of examples, example source
(another split than the evaluated one), few-shot seed and sampler, stop sequences, max new tokens, greedy
decoding, lm-eval's decoding of special tokens, and every item of the file (no ``limit`` that cuts it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capdrift_fast.config import RunConfig, SamplingConfig, task_name

LM_EVAL_VERSION = "0.4.13"
"""The lm-evaluation-harness release whose task definitions, prompts and results files we follow."""


def lm_eval_deviations(task: Any, max_tokens: int, sampling: SamplingConfig, n_original: int | None = None,
                       n_effective: int | None = None) -> list[str] | None:
    """Why ``task`` as run differs from lm-eval's definition of it: one short reason per difference, ``[]``
    when it is lm-eval's task, ``None`` when its benchmark has no lm-eval counterpart (no ``lm_eval``).

    Args:
        task: a built task (``lm_eval``, ``num_fewshot``, ``stop``; few-shot tasks also ``fewshot_seed``,
            ``fewshot_sampler``, ``fewshot_same_split``).
        max_tokens: the task's max new tokens in the run.
        sampling: the run's sampling settings.
        n_original, n_effective: items in the data file and items evaluated (a ``limit`` that keeps fewer
            items is a deviation: lm-eval's number is over the whole split).
    """
    d = getattr(task, "lm_eval", None)
    if d is None:
        return None
    why: list[str] = []
    k = int(task.num_fewshot)
    if k != d.num_fewshot:
        why.append(f"{k}-shot (lm-eval's {d.task}: {d.num_fewshot}-shot)")
    if k:
        if getattr(task, "fewshot_same_split", False) and d.fewshot_split is not None:
            why.append(f"examples drawn from the evaluated file (lm-eval: the {d.fewshot_split} split)")
        seed = getattr(task, "fewshot_seed", d.fewshot_seed)
        if seed != d.fewshot_seed:
            why.append(f"fewshot seed {seed} (lm-eval: {d.fewshot_seed})")
        sampler = getattr(task, "fewshot_sampler", d.fewshot_sampler)
        if sampler != d.fewshot_sampler:
            why.append(f"fewshot sampler {sampler} (lm-eval: {d.fewshot_sampler})")
    if list(task.stop) != list(d.until):
        why.append(f"stop sequences {list(task.stop)} (lm-eval: {list(d.until)})")
    if max_tokens != d.max_gen_toks:
        why.append(f"max_tokens {max_tokens} (lm-eval: {d.max_gen_toks})")
    if sampling.temperature > 0:
        why.append(f"sampled at temperature {sampling.temperature} (lm-eval: greedy)")
    if sampling.ignore_eos:
        why.append("ignore_eos (lm-eval stops at EOS)")
    if sampling.skip_special_tokens:
        why.append("responses decoded without special tokens (lm-eval keeps them)")
    if n_original is not None and n_effective is not None and n_effective < n_original:
        why.append(f"{n_effective} of {n_original} items (limit; lm-eval's score is over all of them)")
    return why


def lm_eval_task_name(task: Any, deviations: list[str] | None) -> str:
    """The name a task's results carry in the lm-eval export: lm-eval's task name when it matches lm-eval's
    definition, ``<lm-eval task>_capdrift_<k>shot`` when it deviates (never the official name then), and
    the task's own name when lm-eval has no such task."""
    d = getattr(task, "lm_eval", None)
    if d is None or deviations is None:
        return task.name
    if not deviations:
        return d.task
    return f"{d.task}_capdrift_{int(task.num_fewshot)}shot"


def data_items(task: Any, effective: int) -> int:
    """Items in the task's data file (lm-eval's ``n-samples.original``): the non-empty lines of a ``.jsonl``
    data file, else ``effective`` (the items evaluated)."""
    path = getattr(task, "path", None)
    if path is None or Path(path).suffix != ".jsonl" or not Path(path).is_file():
        return effective
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        return max(effective, sum(1 for line in fh if line.strip()))


def run_comparability(cfg: RunConfig, tasks: dict[str, Any], n_items: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per task of a run (for ``manifest.json``): ``lm_eval_task`` (lm-eval's counterpart or None),
    ``exported_as`` (:func:`lm_eval_task_name`) and ``deviations`` (:func:`lm_eval_deviations`).
    ``n_items``: task name -> items evaluated."""
    tcfgs = {task_name(t): t for t in cfg.tasks}
    out = {}
    for name, task in tasks.items():
        n = n_items.get(name, 0)
        tcfg = tcfgs.get(name)
        max_tokens = cfg.task_max_tokens(tcfg) if tcfg else cfg.sampling.max_tokens
        why = lm_eval_deviations(task, max_tokens, cfg.sampling, data_items(task, n) if getattr(task, "limit", None)
                                 else n, n)
        d = getattr(task, "lm_eval", None)
        out[name] = {"lm_eval_task": d.task if d else None, "exported_as": lm_eval_task_name(task, why),
                     "deviations": why}
    return out
