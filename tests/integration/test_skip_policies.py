"""`on_bad_adapter: skip` and `data_errors: skip` through the real run (shared engine): the bad adapter
and the malformed rows are left out, each reported (notify messages, preflight.json, data_errors.json),
and the run goes on with the rest."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml

from capdrift_fast.config import BASE_NAME, load_config

pytestmark = pytest.mark.engine


def test_bad_adapter_and_bad_rows_are_skipped_and_reported(demo_cfg, engine, hf_reference, data_dir, tmp_path):
    from capdrift_fast.runner import run

    good = (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[:4]
    rec = json.loads(good[0])
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("\n".join([good[0], json.dumps({"question": rec["question"]}), good[1], "{oops", good[2]]) + "\n")
    dora = tmp_path / "dora"
    dora.mkdir()
    src = demo_cfg.adapters[0].path
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (dora / f).write_bytes((__import__("pathlib").Path(src) / f).read_bytes())
    cfg_json = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg_json, "use_dora": True}))

    raw = json.loads(demo_cfg.model_dump_json())
    raw["adapters"].append({"name": "dora-x", "path": str(dora), "label": "instruction"})
    raw["tasks"] = [{"benchmark": "gsm8k", "data": str(gsm), "max_tokens": 8}]
    raw.update(on_bad_adapter="skip", data_errors="skip")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)

    said: list[str] = []
    result = run(cfg, tmp_path / "run", progress=False, engine=engine, reference=hf_reference, notify=said.append)
    d = result.run_dir

    assert any(m.startswith("skipping adapter 'dora-x' (on_bad_adapter: skip): uses DoRA") for m in said)
    pre = json.loads((d / "preflight.json").read_text())
    assert pre["adapters"]["dora-x"]["ok"] is False and "DoRA" in pre["adapters"]["dora-x"]["problems"][0]
    assert all(pre["adapters"][a.name]["ok"] for a in demo_cfg.adapters)

    errs = json.loads((d / "data_errors.json").read_text())
    assert errs["policy"] == "skip"
    assert [(e["file"], e["line"]) for e in errs["skipped"]] == [(str(gsm), 2), (str(gsm), 4)]
    assert sum(m.startswith(f"skipped data row: {gsm}:") for m in said) == 2

    m = pl.read_parquet(d / "matrix.parquet")
    assert set(m["adapter"]) == {BASE_NAME, *(a.name for a in demo_cfg.adapters)}  # dora-x left out
    assert set(m["n"].to_list()) == {3}  # the 3 good rows of 5
    man = json.loads((d / "manifest.json").read_text())
    assert man["served"]["skipped_adapters"] == ["dora-x"] and man["served"]["skipped_data_rows"] == 2
    assert "dora-x" not in man["files"]["adapters"]
