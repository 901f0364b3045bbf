"""Log-likelihood requests as lm-evaluation-harness makes them, shared by the vLLM engine and the reference.

lm-eval's ``loglikelihood`` (``lm_eval/api/model.py``: ``TemplateLM.loglikelihood`` and ``_encode_pair``;
``lm_eval/models/vllm_causallms.py``: ``tok_encode``, ``_loglikelihood_tokens``, ``_parse_logprobs``, 0.4.13):

- a (context, continuation) pair is tokenised as a whole and as context alone; the continuation's tokens are
  the whole's tokens after the context's (so a word boundary tokenises as the model saw it in training);
  trailing whitespace of the context is moved to the start of the continuation first;
- an empty context is replaced by the model's prefix token (BOS, else EOS);
- a pair longer than ``max_model_len - 1`` tokens is truncated from the left (vLLM needs one token of room);
- the continuation's log-likelihood is the sum of its tokens' log-probabilities given everything before
  (vLLM's ``prompt_logprobs``), and ``is_greedy`` says each continuation token is the argmax at its position.

Strings are tokenised with the tokenizer's own special tokens (lm-eval's default; no chat template), so
prompts of log-likelihood requests are sent raw whatever ``model.prompt_format`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class LoglikResult(NamedTuple):
    """One choice's score: ``logprob`` (summed over the continuation's tokens, nats), ``n_tokens`` (continuation
    tokens scored) and ``is_greedy`` (every one of them is the most likely token at its position)."""

    logprob: float
    n_tokens: int
    is_greedy: bool


def tok_encode(tokenizer: Any, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """lm-eval's ``tok_encode``: ``[]`` for ``""``; the tokenizer's own special tokens unless the text
    already starts with the BOS string (or ``add_special_tokens`` says otherwise)."""
    if not text:
        return []
    kwargs: dict[str, Any] = {}
    if add_special_tokens is not None:
        kwargs["add_special_tokens"] = add_special_tokens
    else:
        bos = getattr(tokenizer, "bos_token", None)
        if bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
    return list(tokenizer(text, **kwargs)["input_ids"])


def prefix_token_id(tokenizer: Any) -> int:
    """lm-eval's ``prefix_token_id``: BOS when the tokenizer has one, else EOS."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return int(bos if bos is not None else tokenizer.eos_token_id)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids ``(context, continuation)`` of one log-likelihood request, as lm-eval 0.4.13 makes them
    (``TemplateLM.loglikelihood`` + ``_encode_pair``, causal models; module docstring)."""
    if context == "":
        cont = tok_encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok_encode(tokenizer, context + continuation)
    ctx = tok_encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def fit(context: Sequence[int], continuation: Sequence[int], max_model_len: int) -> tuple[list[int], int]:
    """The tokens sent (``context + continuation``, left-truncated to ``max_model_len - 1`` as lm-eval's
    vLLM model does) and the number of them that are context."""
    room = max_model_len - 1
    tokens = (list(context) + list(continuation))[-room:]
    ctxlen = len(context) - max(0, len(context) + len(continuation) - room)
    return tokens, ctxlen


def parse_prompt_logprobs(tokens: Sequence[int], prompt_logprobs: Sequence[Any], ctxlen: int) -> LoglikResult:
    """lm-eval's ``_parse_logprobs``: sum the log-probabilities of ``tokens[ctxlen:]`` from vLLM's
    ``prompt_logprobs`` (one ``{token_id: Logprob}`` per prompt position, ``None`` first), and whether each is
    the argmax of its position.

    ``prompt_logprobs`` may be shorter than ``tokens`` (positions served from vLLM's prefix cache carry no
    log-probabilities): it is aligned on the end, which always holds the continuation.

    Raises:
        ValueError: fewer positions than continuation tokens, or a continuation token missing from its position.
    """
    n = len(tokens) - ctxlen
    if n <= 0:
        return LoglikResult(0.0, 0, True)
    if len(prompt_logprobs) < n:
        raise ValueError(f"vLLM returned {len(prompt_logprobs)} prompt log-probabilities for {n} continuation tokens")
    total, greedy = 0.0, True
    for tok, pos in zip(tokens[ctxlen:], list(prompt_logprobs)[-n:], strict=True):
        if pos is None or tok not in pos:
            raise ValueError(f"vLLM returned no log-probability for continuation token {tok}")
        values = {t: float(getattr(lp, "logprob", lp)) for t, lp in pos.items()}
        total += values[tok]
        if max(values, key=values.__getitem__) != tok:
            greedy = False
    return LoglikResult(total, n, greedy)
