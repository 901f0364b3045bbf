"""Prompts that are conversations: few-shot examples as their own user/assistant turns.

A task's ``prompt`` (a string everywhere: samples, plan, records, resume checks) is usually plain text,
sent as is (``prompt_format: raw``) or as one user turn (``chat``). A few-shot task rendered like
lm-evaluation-harness's ``--apply_chat_template --fewshot_as_multiturn`` needs each example as its own
user turn and assistant turn, so its prompt string holds the conversation: :data:`CONVERSATION_MARK`
followed by a JSON object ``{"text": <the plain-text prompt>, "messages": [{"role", "content"}, ...]}``.
``text`` is what a ``raw`` engine sends (lm-eval's plain rendering: each turn followed by its delimiter,
``lm_eval/api/utils.py`` ``Message.to_text``); ``messages`` is what a ``chat`` engine renders with the
tokenizer's chat template (``Message.to_dict``). :func:`prompt_text` and :func:`prompt_messages` read
either kind of prompt.
"""

from __future__ import annotations

import json
from typing import Any

CONVERSATION_MARK = "\x1ecapdrift-conversation\x1e"
"""Start of a conversation prompt (the ASCII record separator cannot start a task's text prompt by
accident: data files are checked text)."""


def conversation_prompt(text: str, messages: list[dict[str, str]]) -> str:
    """The prompt string of a conversation: ``text`` (its plain-text rendering, for ``raw``) and
    ``messages`` (``[{"role": "user"|"assistant"|"system", "content": str}, ...]``, ending with a user turn)."""
    return CONVERSATION_MARK + json.dumps({"text": text, "messages": messages}, ensure_ascii=False)


def _parse(prompt: str) -> dict[str, Any] | None:
    if not prompt.startswith(CONVERSATION_MARK):
        return None
    return json.loads(prompt[len(CONVERSATION_MARK):])


def is_conversation(prompt: str) -> bool:
    """The prompt holds a conversation (made by :func:`conversation_prompt`)."""
    return prompt.startswith(CONVERSATION_MARK)


def prompt_text(prompt: str) -> str:
    """The plain text of ``prompt`` (itself, or a conversation's ``text``): what ``raw`` sends and what
    tables and the report show."""
    conv = _parse(prompt)
    return prompt if conv is None else conv["text"]


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """The chat messages of ``prompt``: a conversation's own turns, else one user turn holding the text."""
    conv = _parse(prompt)
    return [{"role": "user", "content": prompt}] if conv is None else conv["messages"]
