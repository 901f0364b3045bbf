"""transformers+peft greedy decoding: the parity oracle for the vLLM engine.

Slow by design (one prompt at a time, no padding, so no batch effects), exact in float32: on CPU,
vLLM's greedy tokens for the base and each adapter must equal these token for token. Where numerics
differ (bf16/fp16 on a GPU) :meth:`HFReference.token_gaps` scores vLLM's tokens by teacher forcing;
for sampled runs :meth:`HFReference.token_logprobs` gives the log-probabilities vLLM's sampled tokens
should have had.

The model runs with transformers' *eager* attention (:data:`REFERENCE_ATTENTION`): it computes what the
model defines. SDPA (transformers' default) drops terms some architectures define — Gemma 2's
``attn_logit_softcapping`` — so a reference on SDPA disagreed with a correct vLLM (tests/engines/test_gemma2_softcap.py).

Building the reference in a process where a vLLM engine has served a model through vLLM's Transformers
backend (GPT-NeoX, OLMo 2) fails (vLLM patched the transformers class's ``__init__``); the runner builds it
in a separate process (:mod:`capdrift_fast.parity_process`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from capdrift_fast.config import BASE_NAME, AdapterConfig, ModelConfig
from capdrift_fast.engines.loglik import LoglikResult, encode_pair, fit
from capdrift_fast.engines.prompts import encode_prompts, letter_token_ids, resolve_prompt_format

REFERENCE_ATTENTION = "eager"
"""transformers attention implementation of the reference: eager computes every term a model defines
(SDPA ignores Gemma 2's attention logit soft-capping)."""


class HFReference:
    """The base model with every adapter loaded through peft (``set_adapter`` / ``disable_adapter``).

    Args:
        model: base model settings (``trust_remote_code`` is passed on, off by default).
        adapters: peft LoRA adapters; each is selectable by its ``name``.
        device: torch device (``cpu``, ``cuda``).
        dtype: torch dtype name (``float32``, ``bfloat16``, ``float16``).
        attn_implementation: transformers attention (default :data:`REFERENCE_ATTENTION`; ``sdpa`` only to
            show what the default avoids).
    """

    def __init__(self, model: ModelConfig, adapters: Sequence[AdapterConfig], device: str = "cpu",
                 dtype: str = "float32", attn_implementation: str = REFERENCE_ATTENTION) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        trust = model.trust_remote_code
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model.tokenizer or model.path, revision=model.revision,
                                                       trust_remote_code=trust)
        self.prompt_format = resolve_prompt_format(self.tokenizer, model.prompt_format)
        base = AutoModelForCausalLM.from_pretrained(model.path, revision=model.revision, dtype=getattr(torch, dtype),
                                                    trust_remote_code=trust, attn_implementation=attn_implementation)
        self.model: Any = base.to(device).eval()
        # peft keeps adapters in ModuleDicts, whose keys may not contain '.', so use internal names
        self._names = {a.name: f"adapter{i}" for i, a in enumerate(adapters)}
        if adapters:
            from peft import PeftModel

            first, *rest = adapters
            self.model = PeftModel.from_pretrained(base, first.path, adapter_name=self._names[first.name]).eval()
            for a in rest:
                self.model.load_adapter(a.path, adapter_name=self._names[a.name])
            self.model.to(device)

    @contextlib.contextmanager
    def _use(self, adapter: str) -> Iterator[None]:
        import torch

        if adapter == BASE_NAME:
            ctx = self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else contextlib.nullcontext()
        else:
            self.model.set_adapter(self._names[adapter])
            ctx = contextlib.nullcontext()
        with ctx, torch.inference_mode():
            yield

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        """Prompt token ids exactly as the vLLM engine sends them."""
        return encode_prompts(self.tokenizer, prompts, self.prompt_format)

    def greedy(self, adapter: str, prompts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Greedy output token ids (EOS included if produced) for each prompt under ``adapter``
        (``base`` = adapters disabled). Shape: ``len(prompts)`` lists of at most ``max_tokens`` ints."""
        import torch

        ids = self.encode(prompts)
        outs: list[list[int]] = []
        with self._use(adapter):
            for p in ids:
                x = torch.tensor([p], device=self.device)
                y = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_tokens,
                                        do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
                outs.append(y[0, len(p):].tolist())
        return outs

    def letter_choice(self, adapter: str, prompts: Sequence[str], letters: Sequence[str], task: str = "?") -> list[int]:
        """The letter-choice answer vLLM's ``allowed_token_ids`` restriction should give: for each prompt, the
        token id of the letter with the highest next-token logit among the letters' tokens
        (:func:`~capdrift_fast.engines.prompts.letter_token_ids`; the first of equals). Shape: ``len(prompts)`` ints.

        Raises:
            EngineError: a letter is not one token after the prompt (names ``task``).
        """
        import torch

        if not prompts:
            return []
        allowed = letter_token_ids(self.tokenizer, letters, prompts[0], self.prompt_format, task)
        index = torch.tensor(allowed, device=self.device)
        out = []
        with self._use(adapter):
            for p in self.encode(prompts):
                x = torch.tensor([p], device=self.device)
                logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0, -1].float()
                out.append(allowed[int(torch.argmax(logits[index]))])
        return out

    def _log_probs(self, adapter: str, prompt: str, tokens: Sequence[int]) -> Any:
        """log_softmax of the reference's logits at each position of ``tokens`` (teacher-forced after
        ``prompt``). Shape: ``[len(tokens), vocab]`` float32 tensor."""
        import torch

        p = self.encode([prompt])[0]
        x = torch.tensor([p + list(tokens)], device=self.device)
        with self._use(adapter):
            logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float()
        return torch.log_softmax(logits[len(p) - 1 : len(p) - 1 + len(tokens)], dim=-1)

    def token_gaps(self, adapter: str, prompt: str, tokens: Sequence[int]) -> list[float]:
        """Teacher forcing: for each of ``tokens`` (a continuation of ``prompt``), how many nats its
        log-probability under the reference lies below the reference's most likely token at that
        position (0.0 where the reference agrees). Shape: ``len(tokens)`` floats >= 0."""
        import torch

        if not tokens:
            return []
        lp = self._log_probs(adapter, prompt, tokens)
        chosen = lp.gather(1, torch.tensor(list(tokens), device=lp.device)[:, None])[:, 0]
        return (lp.max(dim=-1).values - chosen).clamp_min(0).tolist()

    def token_logprobs(self, adapter: str, prompt: str, tokens: Sequence[int]) -> list[float]:
        """Teacher forcing: the reference's log-probability (nats, of the raw logits: no temperature or
        top-p applied, as vLLM's default ``raw_logprobs``) of each of ``tokens`` after ``prompt``.
        Shape: ``len(tokens)`` floats <= 0."""
        import torch

        if not tokens:
            return []
        lp = self._log_probs(adapter, prompt, tokens)
        return lp.gather(1, torch.tensor(list(tokens), device=lp.device)[:, None])[:, 0].tolist()

    def loglikelihood(self, adapter: str, context: str, continuations: Sequence[str],
                      max_model_len: int | None = None) -> list[LoglikResult]:
        """Teacher forcing, one forward pass per choice: the summed log-probability (nats) of each
        continuation after ``context``, its token count and lm-eval's ``is_greedy``, tokenised exactly as the
        vLLM engine's log-likelihood requests (:func:`capdrift_fast.engines.loglik.encode_pair`; left-truncated
        to ``max_model_len - 1`` tokens when given). Shape: ``len(continuations)`` results."""
        import torch

        out: list[LoglikResult] = []
        with self._use(adapter):
            for cont in continuations:
                ctx, cont_ids = encode_pair(self.tokenizer, context, cont)
                tokens, ctxlen = (fit(ctx, cont_ids, max_model_len) if max_model_len
                                  else (list(ctx) + list(cont_ids), len(ctx)))
                n = len(tokens) - ctxlen
                if n <= 0:
                    out.append(LoglikResult(0.0, 0, True))
                    continue
                x = torch.tensor([tokens], device=self.device)
                logits = self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float()
                lp = torch.log_softmax(logits[ctxlen - 1 : len(tokens) - 1], dim=-1)
                target = torch.tensor(tokens[ctxlen:], device=lp.device)
                chosen = lp.gather(1, target[:, None])[:, 0]
                out.append(LoglikResult(float(chosen.double().sum()), n, bool((lp.argmax(dim=-1) == target).all())))
        return out
