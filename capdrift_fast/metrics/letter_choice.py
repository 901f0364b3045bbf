"""The letter-choice (generative) form of a multiple-choice task: prompt, letters and accuracy.

The prompt lists the choices under the context as ``A. ...``, ``B. ...`` and ends in an answer cue,
``"{context}\\nA. {choice 0}\\nB. {choice 1}\\n...\\nAnswer:"`` -- MMLU's prompt format (Hendrycks et al. 2021,
"Measuring Massive Multitask Language Understanding", ICLR 2021), as lm-evaluation-harness 0.4.13's
``lm_eval/tasks/mmlu/generative/_default_template_yaml`` (``mmlu_generative``) writes it and as HELM's
``multiple_choice_joint`` adapter presents choices. The model answers with ONE generated token restricted to
the letters (vLLM ``SamplingParams(allowed_token_ids=...)``, greedy, ``max_tokens=1``); the item is right when
the generated letter is a gold letter (``letter_acc``; lm-eval's ``mmlu_generative`` scores the same with
``exact_match`` on the letter, where the model may also answer outside the letters).

Frame columns read by :func:`letter_accuracy`: ``response`` (Utf8) and ``target`` (List[Utf8], the gold letters).
"""

from __future__ import annotations

import string

import polars as pl

LETTERS = tuple(string.ascii_uppercase)
"""Answer letters in order: choice ``i`` is ``LETTERS[i]`` (at most 26 choices)."""

ANSWER_CUE = "Answer:"
"""The answer cue ending a letter-choice prompt (MMLU's)."""


def letters_for(k: int) -> tuple[str, ...]:
    """The first ``k`` answer letters.

    Raises:
        ValueError: ``k`` < 1 or more than 26 choices.
    """
    if not 1 <= k <= len(LETTERS):
        raise ValueError(f"{k} choices: the letter form takes 1 to {len(LETTERS)} choices")
    return LETTERS[:k]


def letter_prompt(context: str, choices: list[str]) -> str:
    """MMLU's format: ``context`` (right-stripped), then one ``"L. choice"`` line per choice, then ``"Answer:"``.

    Raises:
        ValueError: no choices or more than 26.
    """
    lines = [f"{letter}. {choice}" for letter, choice in zip(letters_for(len(choices)), choices)]
    return "\n".join([context.rstrip(), *lines, ANSWER_CUE])


def letter_accuracy(frame: pl.DataFrame) -> pl.Series:
    """1.0 where the response, whitespace-stripped, is one of the row's gold letters (``target``), else 0.0."""
    hit = [float(r is not None and r.strip() in (t or [])) for r, t in
           zip(frame["response"].to_list(), frame["target"].to_list(), strict=True)]
    return pl.Series("letter_acc", hit, dtype=pl.Float64)
