"""Prompt encoding shared by vLLM and the transformers+peft reference (no engine started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from capdrift_fast.demo import build_tokenizer
from capdrift_fast.engines.prompts import encode_prompts, resolve_prompt_format

# A Zephyr-style template: the template writes BOS itself, as most chat templates do.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(data_dir, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_auto_picks_chat_when_the_tokenizer_has_a_template(chat_tokenizer):
    assert resolve_prompt_format(chat_tokenizer, "auto") == "chat"
    assert resolve_prompt_format(chat_tokenizer, "raw") == "raw"


def test_chat_prompts_are_token_ids_of_the_rendered_template(chat_tokenizer):
    """transformers 5.x returns a dict-like BatchEncoding from ``apply_chat_template(tokenize=True)``;
    the ids must be the ints of ``input_ids``, with BOS once (from the template, not added again)."""
    prompts = ["Write a haiku about rain.", "Premise: The man broke his toe.\nQuestion: cause or effect?"]
    ids = encode_prompts(chat_tokenizer, prompts, "chat")
    assert len(ids) == 2
    for p, got in zip(prompts, ids):
        assert all(isinstance(i, int) for i in got)
        want = chat_tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                  tokenize=True, return_dict=True)["input_ids"]
        assert got == list(want)
        assert got.count(chat_tokenizer.bos_token_id) == 1 and got[0] == chat_tokenizer.bos_token_id
        text = chat_tokenizer.decode(got)
        assert text.startswith("<s><|user|>\n" + p) and text.endswith("<|assistant|>\n")


def test_raw_prompts_get_the_tokenizers_own_bos(chat_tokenizer):
    (ids,) = encode_prompts(chat_tokenizer, ["Hello there"], "raw")
    assert ids[0] == chat_tokenizer.bos_token_id
    assert chat_tokenizer.decode(ids[1:]) == "Hello there"


def test_conversation_prompts_are_turns_in_chat_and_text_in_raw(chat_tokenizer):
    """A few-shot conversation (:mod:`capdrift_fast.conversation`): each example its own user/assistant turn
    for ``chat``; its plain text, as the task wrote it, for ``raw``."""
    from capdrift_fast.conversation import conversation_prompt, prompt_messages, prompt_text

    turns = [{"role": "user", "content": "Question: 1+1?\nAnswer:"}, {"role": "assistant", "content": "#### 2"},
             {"role": "user", "content": "Question: 2+2?\nAnswer:"}]
    text = "Question: 1+1?\nAnswer: #### 2\n\nQuestion: 2+2?\nAnswer:"
    prompt = conversation_prompt(text, turns)
    assert prompt_text(prompt) == text and prompt_messages(prompt) == turns
    assert prompt_text("plain") == "plain" and prompt_messages("plain") == [{"role": "user", "content": "plain"}]
    (chat,) = encode_prompts(chat_tokenizer, [prompt], "chat")
    want = chat_tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert chat == list(want)
    assert chat_tokenizer.decode(chat).count("<|assistant|>") == 2  # the example's answer turn + the generation prompt
    (raw,) = encode_prompts(chat_tokenizer, [prompt], "raw")
    assert raw == encode_prompts(chat_tokenizer, [text], "raw")[0]


def test_bos_added_once_as_lm_eval_adds_it(chat_tokenizer):
    """lm-eval's vLLM ``tok_encode``: no special tokens for a text that starts with the BOS string (its own
    ``has_bos_prefix``), the tokenizer's otherwise — so a template that writes no BOS still gets one, once."""
    import copy

    from lm_eval.models.utils import has_bos_prefix

    bos = chat_tokenizer.decode(chat_tokenizer.bos_token_id)
    no_bos = copy.deepcopy(chat_tokenizer)
    no_bos.chat_template = CHAT_TEMPLATE.replace("{{ bos_token }}", "")
    for tok in (chat_tokenizer, no_bos):
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
        (ids,) = encode_prompts(tok, ["Hi"], "chat")
        want = tok(text, add_special_tokens=not has_bos_prefix(text, bos))["input_ids"]
        assert ids == list(want) and ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    (raw,) = encode_prompts(chat_tokenizer, [bos + "Hello"], "raw")  # a raw text that brings its own BOS
    assert raw.count(chat_tokenizer.bos_token_id) == 1
