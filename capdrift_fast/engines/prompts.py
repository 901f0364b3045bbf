"""Prompt encoding shared by every engine, so vLLM and the reference see identical token ids."""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

from capdrift_fast.conversation import prompt_messages, prompt_text
from capdrift_fast.errors import EngineError


def resolve_prompt_format(tokenizer: Any, prompt_format: Literal["auto", "raw", "chat"]) -> Literal["raw", "chat"]:
    """``auto`` -> ``chat`` when the tokenizer has a chat template, else ``raw``."""
    if prompt_format == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "raw"
    return prompt_format


def render_chat(tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    """The text the ``chat`` format sends for each prompt: its chat messages (one user turn, or a few-shot
    conversation's turns: :mod:`capdrift_fast.conversation`) rendered with the tokenizer's chat template and
    the generation prompt appended, as lm-eval's ``apply_chat_template(history, tokenize=False,
    add_generation_prompt=True)`` renders them."""
    return [tokenizer.apply_chat_template(prompt_messages(p), add_generation_prompt=True, tokenize=False)
            for p in prompts]


def encode_prompts(tokenizer: Any, prompts: Sequence[str], prompt_format: Literal["raw", "chat"]) -> list[list[int]]:
    """Token ids of each prompt: its text (:func:`~capdrift_fast.conversation.prompt_text`) for ``raw``,
    :func:`render_chat`'s text for ``chat``, tokenized as lm-eval's vLLM backend does (``tok_encode``): without
    adding special tokens when the text already starts with the BOS string (the string of ``bos_token_id``,
    else of ``eos_token_id``: what most chat templates write), with the tokenizer's own special tokens
    otherwise. Shape: ``len(prompts)`` lists of ints."""
    # Chat: render the template to text, then tokenize it (what transformers' ``apply_chat_template(tokenize=True)``
    # does inside, but independent of its return type: a dict-like ``BatchEncoding`` in transformers 5.x, whose
    # ``list()`` is its key names).
    texts = render_chat(tokenizer, prompts) if prompt_format == "chat" else [prompt_text(p) for p in prompts]
    prefix_id = tokenizer.bos_token_id if getattr(tokenizer, "bos_token_id", None) is not None \
        else getattr(tokenizer, "eos_token_id", None)
    bos = tokenizer.decode(prefix_id) if prefix_id is not None else ""
    has = [bool(bos) and t.startswith(bos) for t in texts]
    out: list[list[int] | None] = [None] * len(texts)
    for flag in (True, False):
        idx = [i for i, h in enumerate(has) if h is flag]
        if idx:
            ids = tokenizer([texts[i] for i in idx], add_special_tokens=not flag)["input_ids"]
            for i, row in zip(idx, ids):
                out[i] = list(row)
    return out  # type: ignore[return-value]


def stop_strings(tokenizer: Any, task_stop: Sequence[str], ignore_eos: bool = False) -> list[str]:
    """A task's stop strings plus the tokenizer's EOS string (``decode(eos_token_id)``, else ``eos_token``)
    unless ``ignore_eos``, as lm-eval's vLLM backend sends them (``lm_eval/models/vllm_causallms.py``
    ``generate_until``, ``lm_eval/models/utils.py`` ``handle_stop_sequences``)."""
    until = list(task_stop)
    if not ignore_eos:
        eos_id = getattr(tokenizer, "eos_token_id", None)
        eos = (tokenizer.decode(eos_id) if eos_id is not None else "") or getattr(tokenizer, "eos_token", None) or ""
        if eos and eos not in until:
            until.append(eos)
    return until


def letter_token_ids(tokenizer: Any, letters: Sequence[str], prompt: str,
                     prompt_format: Literal["raw", "chat"], task: str = "?") -> list[int]:
    """The token id of each answer letter as the model would generate it right after ``prompt`` (a
    letter-choice prompt of ``task``, rendered as the engine sends it): ``" A"`` after text ending in a
    non-space character (``"Answer:"`` in the raw format), ``"A"`` after whitespace (a chat template's
    generation prompt ending in a newline). The letter counts only when the prompt's tokens followed by it are
    the prompt's own tokens plus exactly one more (that one is its id). Shape: ``len(letters)`` distinct ints.

    Raises:
        EngineError: a letter is not a single token after the prompt, or two letters share one (names the task).
    """
    text = render_chat(tokenizer, [prompt])[0] if prompt_format == "chat" else prompt_text(prompt)
    lead = " " if text and not text[-1].isspace() else ""
    ctx = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = []
    for letter in letters:
        full = tokenizer(text + lead + letter, add_special_tokens=False)["input_ids"]
        if len(full) != len(ctx) + 1 or list(full[: len(ctx)]) != list(ctx):
            raise EngineError(f"task {task!r}: the answer letter {lead + letter!r} is not one token after the prompt "
                              "for this tokenizer, so one restricted token cannot answer; use output_type "
                              "multiple_choice (log-likelihood) for this task")
        ids.append(int(full[-1]))
    if len(set(ids)) != len(ids):
        raise EngineError(f"task {task!r}: two answer letters map to one token ({ids}); use output_type multiple_choice")
    return ids


def load_prompt_encoder(model: Any, purpose: str) -> Callable[[list[str]], list[list[int]]]:
    """The model's tokenizer (transformers; no weights, no engine) as ``prompts -> token ids``, encoding
    exactly as :func:`encode_prompts` does for the engine. ``model``: a ``ModelConfig``; ``purpose`` ends the
    error message ("to check prompt lengths").

    Raises:
        EngineError: the tokenizer cannot be loaded (the message names the model and the purpose).
    """
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model.tokenizer or model.path, revision=model.revision,
                                            trust_remote_code=model.trust_remote_code)
    except Exception as exc:  # transformers raises many kinds (missing files, offline hub, ...)
        raise EngineError(f"cannot load the tokenizer of {model.tokenizer or model.path!r} {purpose} "
                          f"({type(exc).__name__}: {exc})") from None
    fmt = resolve_prompt_format(tok, model.prompt_format)
    return lambda prompts: encode_prompts(tok, prompts, fmt)
