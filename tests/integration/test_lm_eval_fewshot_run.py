"""GSM8K as lm-eval's gsm8k (examples from a train file, lm-eval's sampler and seed, multi-turn conversation
prompts) runs end to end through the real CPU engine (base + the demo adapters, parity guard included) and is
exported with the right name, n-shot and per-sample contexts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.config import load_config
from capdrift_fast.conversation import is_conversation, prompt_text
from capdrift_fast.runner import run

pytestmark = pytest.mark.engine


def test_gsm8k_five_shot_from_a_train_file_end_to_end(tmp_path: Path, data_dir: Path, demo_cfg, engine, hf_reference):
    train = tmp_path / "train.jsonl"
    lines = (data_dir / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    train.write_text("".join(lines[-30:]), encoding="utf-8")  # stand-in for GSM8K's train split
    raw = json.loads(demo_cfg.model_dump_json())
    raw.update(run_name="fewshot", tasks=[{"benchmark": "gsm8k", "fewshot_data": str(train), "limit": 3, "max_tokens": 8}])
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)
    res = run(cfg, tmp_path / "out", progress=False, engine=engine, reference=hf_reference)
    d = res.run_dir
    gens = pl.concat([pl.read_ipc(p) for p in sorted((d / "generations").glob("*.arrow"))])
    assert gens.height == 3 * (1 + len(cfg.adapters))
    assert sorted(gens["sample_id"].unique().to_list()) == ["0", "1", "2"]  # items from line 0 of the test file
    prompts = gens["prompt"].unique().to_list()
    assert all(is_conversation(p) and prompt_text(p).count("Question:") == 6 for p in prompts)
    # raw format: the engine sent the conversation's plain text (BOS + text)
    tok = engine.tokenizer
    row = gens.row(0, named=True)
    assert row["prompt_tokens"] == len(tok(prompt_text(row["prompt"]))["input_ids"])
    man = json.loads((d / "manifest.json").read_text())
    assert man["lm_eval"]["gsm8k"]["exported_as"] == "gsm8k_capdrift_5shot"
    assert any(w.startswith("max_tokens 8") for w in man["lm_eval"]["gsm8k"]["deviations"])
    (base,) = (d / "lm_eval" / "base").glob("results_*.json")
    result = json.loads(base.read_text())
    assert result["n-shot"] == {"gsm8k_capdrift_5shot": 5} and result["fewshot_as_multiturn"] is None
    (samples,) = (d / "lm_eval" / "base").glob("samples_gsm8k_capdrift_5shot_*.jsonl")
    first = json.loads(samples.read_text().splitlines()[0])
    assert first["arguments"]["gen_args_0"]["arg_0"] == prompt_text(
        gens.filter((pl.col("adapter") == "base") & (pl.col("sample_id") == "0"))["prompt"][0])
    assert json.loads((d / "parity.json").read_text())["status"] == "ok"  # the guard ran on conversation prompts
