"""The architectures people fine-tune, end to end on the real CPU engine (issue #13, "done when" item 1).

For each family of :data:`model_zoo.FAMILIES` (tiny random models built locally, each with its family's
chat template): ONE vLLM engine serves the base and five adapters (q/v rank 8 — Phi-3's fused
``qkv_proj`` —, all-linear rank 16, rsLoRA, ``rank_pattern``/``alpha_pattern``, rank 64 beside rank 8) in
one batch, and the main job runs in ``raw`` and then ``chat`` format on it. For every run the parity guard
(transformers+peft in its own process, eager attention) must have checked and agreed with every model,
each adapter must change most responses (else a mis-served adapter would go unseen), and chat prompts
must be the tokenizer's template, tokenized as transformers does.

GPT-NeoX and OLMo 2 are served by vLLM's Transformers backend, which leaves transformers patched in the
engine's process: their guard passes only because the reference runs in a separate process.

Gemma 2 (attention logit soft-capping 5, so it bites on random weights): the guard agrees with eager
attention, and an SDPA reference — transformers' default, which drops the soft-capping — would have
disagreed with the correct vLLM on its canaries.

Time: see :data:`FAMILY_NAMES`; each family prints its own (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from capdrift_fast.config import BASE_NAME
from capdrift_fast.rundir import read_generations

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model_zoo import ADAPTER_KINDS, FAMILIES, build_family, changed_fraction, zoo_config  # noqa: E402

pytestmark = pytest.mark.engine

FAMILY_NAMES = ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "granite", "gpt_neox", "olmo2"]
"""Every family. Measured on 2 CPU cores: 35-70 s per family when idle (llama 35 s, gemma2 43 s,
gpt_neox 69 s: engine start ~11 s, two runs of 48 requests, two guard processes); 79-138 s per family and
18 min for the module with the machine under a load of ~11 (other test suites running)."""
FORMATS = ("raw", "chat")
MODELS = [BASE_NAME] + sorted(k.name for k in ADAPTER_KINDS)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_runs(request, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Build one family (cached under $CAPDRIFT_CACHE), start ONE engine for base + all adapters, run the
    job in raw and in chat format through it (the engine's prompt format switched between runs; the
    guard builds its own reference in a separate process), close the engine.

    Returns (family name, config per format, RunResult per format, generations per format, seconds)."""
    import yaml

    from capdrift_fast.config import load_config
    from capdrift_fast.engines.vllm_engine import VLLMEngine
    from capdrift_fast.runner import run

    t0 = time.perf_counter()
    name = request.param
    cache = Path(os.environ["CAPDRIFT_CACHE"]) if "CAPDRIFT_CACHE" in os.environ else tmp_path_factory.mktemp("zoo")
    folder = build_family(name, data_dir, cache)
    work = tmp_path_factory.mktemp(f"zoo-{name}")
    cfgs = {}
    for fmt in FORMATS:
        path = work / f"{fmt}.yaml"
        path.write_text(yaml.safe_dump(zoo_config(folder, data_dir, fmt)))
        cfgs[fmt] = load_config(path)
    engine = VLLMEngine(cfgs["raw"].model, cfgs["raw"].engine, cfgs["raw"].adapters, seed=0)
    results, gens = {}, {}
    try:
        for fmt in FORMATS:
            engine.prompt_format = fmt  # one engine for both formats: only the prompt encoding differs
            results[fmt] = run(cfgs[fmt], work / fmt, progress=False, engine=engine, report=False)
            gens[fmt] = read_generations(results[fmt].run_dir / "generations").collect()
    finally:
        engine.close()
    seconds = time.perf_counter() - t0
    print(f"\n[model zoo] {name}: {seconds:.1f} s (build/cache + engine + raw and chat runs + guard)")
    return name, cfgs, results, gens, seconds


@pytest.mark.parametrize("fmt", FORMATS)
def test_guard_checked_and_agreed_on_every_model(family_runs, fmt):
    name, _, results, _, _ = family_runs
    parity = json.loads((results[fmt].run_dir / "parity.json").read_text())
    assert parity["status"] == "ok", f"{name}/{fmt}: {parity['message']}"
    assert parity["mode"] == "tokens"
    assert {m: v["guard"] for m, v in parity["models"].items()} == dict.fromkeys(MODELS, "agreed"), name
    assert all(v["checked"] == 4 for v in parity["models"].values())  # 2 canaries x 2 tasks
    assert all(c["compared"] > 0 for c in parity["canaries"])
    m = pl.read_parquet(results[fmt].run_dir / "matrix.parquet")
    assert set(m.get_column("guard")) == {"agreed"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_adapter_changes_most_responses(family_runs, fmt):
    name, _, _, gens, _ = family_runs
    changed = {k.name: changed_fraction(gens[fmt], k.name) for k in ADAPTER_KINDS}
    assert all(v > 0.5 for v in changed.values()), f"{name}/{fmt}: share of responses changed {changed}"


def test_chat_prompts_are_the_template(family_runs):
    """The chat run's prompts are the family's template rendered and tokenized as lm-eval's vLLM backend
    encodes them (``tok_encode``: no added special tokens when the text starts with the BOS string, its own
    ``has_bos_prefix``; the tokenizer's otherwise), and differ from the raw prompts."""
    from lm_eval.models.utils import has_bos_prefix
    from transformers import AutoTokenizer

    name, cfgs, _, gens, _ = family_runs
    tok = AutoTokenizer.from_pretrained(cfgs["chat"].model.path)
    assert tok.chat_template == FAMILIES[name].chat_template
    chat = gens["chat"].filter(pl.col("adapter") == BASE_NAME).sort("task", "sample_id")
    raw = gens["raw"].filter(pl.col("adapter") == BASE_NAME).sort("task", "sample_id")
    for prompt, n_chat, n_raw in zip(chat["prompt"], chat["prompt_tokens"], raw["prompt_tokens"]):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=False)
        bos = tok.decode(tok.bos_token_id) if tok.bos_token_id is not None else None
        want = tok(text, add_special_tokens=not (bos and has_bos_prefix(text, bos)))["input_ids"]
        assert n_chat == len(want) and n_chat > n_raw
        assert len(tok(prompt)["input_ids"]) == n_raw


def test_gemma2_guard_needs_eager_attention(family_runs):
    """Gemma 2: vLLM agreed with the eager reference (the guard above); an SDPA reference, which ignores
    ``attn_logit_softcapping``, would have flagged the correctly served canaries."""
    name, cfgs, results, gens, _ = family_runs
    if name != "gemma2":
        pytest.skip("Gemma 2 only")
    from capdrift_fast.engines.hf_reference import HFReference
    from capdrift_fast.pipeline.parity import check_canaries, select_canaries
    from capdrift_fast.pipeline.plan import build_plan

    cfg = cfgs["raw"]
    assert FAMILIES[name].settings["attn_logit_softcapping"] == 5.0
    checked = [BASE_NAME, "qv-r8"]  # the base and one adapter suffice; keeps the SDPA reference small
    canaries = select_canaries(build_plan(cfg), cfg.parity.canaries_per_task).join(
        gens["raw"].select("request_id", "output_token_ids", "finish_reason"), on="request_id"
    ).filter(pl.col("adapter").is_in(checked))
    sdpa = HFReference(cfg.model, [a for a in cfg.adapters if a.name in checked], attn_implementation="sdpa")
    rows = check_canaries(sdpa, canaries, cfg, "tokens", None)
    assert len(rows) == 8 and sum(not r["ok"] for r in rows) > len(rows) // 2
    parity = json.loads((results["raw"].run_dir / "parity.json").read_text())
    eager = {c["request_id"]: c["ok"] for c in parity["canaries"]}
    assert all(eager[r["request_id"]] for r in rows)  # the same canaries agreed with the eager reference
