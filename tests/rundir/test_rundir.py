"""The run folder across crashes, without an engine: run id kept, config checked, shards recovered.
(The kill tests on the real engine are in tests/integration/test_resume.py.)"""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
import yaml

from capdrift_fast.config import EngineConfig, load_config
from capdrift_fast.errors import RunDirError
from capdrift_fast.rundir import ShardWriter, read_generations
from capdrift_fast.rundir.resume import open_run
from capdrift_fast.pipeline.plan import PLAN_SCHEMA

N = 12


def make_cfg(tmp_path, **changes):
    raw = {"model": {"path": "./model"}, "tasks": [{"benchmark": "gsm8k", "limit": N}], **changes}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def plan(prompt: str = "p") -> pl.DataFrame:
    return pl.DataFrame({
        "request_id": [f"base/gsm8k/{i}" for i in range(N)], "adapter": ["base"] * N, "lora_id": [0] * N,
        "task": ["gsm8k"] * N, "sample_id": [str(i) for i in range(N)], "prompt": [f"{prompt}{i}" for i in range(N)],
        "max_tokens": [8] * N, "continuations": [None] * N}, schema=PLAN_SCHEMA)


def record(i: int) -> dict:
    return {"request_id": f"base/gsm8k/{i}", "adapter": "base", "lora_id": 0, "task": "gsm8k", "sample_id": str(i),
            "prompt": f"p{i}", "response": f"r{i}", "prompt_tokens": 3, "output_tokens": 1, "output_token_ids": [i],
            "finish_reason": "length", "ttft_s": 0.1, "finished_at": float(i)}


def write(run_dir, run_id, ids, rows_per_shard=3):
    with ShardWriter(run_dir / "generations", run_id, rows_per_shard=rows_per_shard) as w:
        for i in ids:
            w.write(record(i))


def test_first_start_then_resume_keeps_run_id(tmp_path):
    cfg = make_cfg(tmp_path)
    first = open_run(tmp_path / "run", cfg, plan())
    assert not first.resumed and first.done == set()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["run_id"] == first.run_id
    write(first.run_dir, first.run_id, range(7))  # 2 full shards + 1 partial flushed on exit
    again = open_run(tmp_path / "run", make_cfg(tmp_path, output={"shard_rows": 5}), plan())  # output may change
    assert again.resumed and again.run_id == first.run_id
    assert again.done == {f"base/gsm8k/{i}" for i in range(7)} and again.n_shards == 3


def test_truncated_shard_and_stray_tmp_are_set_aside(tmp_path):
    cfg = make_cfg(tmp_path)
    st = open_run(tmp_path / "run", cfg, plan())
    write(st.run_dir, st.run_id, range(9))
    gen = st.run_dir / "generations"
    shard = gen / "shard-00001.arrow"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # a non-atomic copy or a full disk
    (gen / ".shard-00003.arrow.x1y2.tmp").write_bytes(data[:100])  # killed while writing
    again = open_run(tmp_path / "run", cfg, plan())
    assert again.done == {f"base/gsm8k/{i}" for i in (0, 1, 2, 6, 7, 8)}  # shard 1 held 3, 4, 5
    assert again.removed_tmp == [".shard-00003.arrow.x1y2.tmp"] and not list(gen.glob("*.tmp"))
    assert len(again.quarantined) == 1 and again.quarantined[0].startswith("shard-00001.arrow: unreadable")
    kept = list((st.run_dir / "quarantine").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == data[: len(data) // 2]  # kept for inspection, not deleted
    assert read_generations(gen).collect().height == 6  # the generations glob no longer sees it
    # the redone requests go to a new shard; the folder then covers the plan exactly once
    write(st.run_dir, st.run_id, [i for i in range(N) if f"base/gsm8k/{i}" not in again.done])
    ids = read_generations(gen).collect().get_column("request_id")
    assert ids.is_unique().all() and ids.len() == N


def test_copied_shard_is_set_aside_partial_overlap_is_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    st = open_run(tmp_path / "run", cfg, plan())
    write(st.run_dir, st.run_id, range(6))
    gen = st.run_dir / "generations"
    shutil.copy(gen / "shard-00000.arrow", gen / "shard-00007.arrow")
    again = open_run(tmp_path / "run", cfg, plan())
    assert again.done == {f"base/gsm8k/{i}" for i in range(6)}
    assert again.quarantined == ["shard-00007.arrow: every generation in it is already in earlier shards (a copy)"]
    write(st.run_dir, st.run_id, [5, 6, 7])  # 5 is doubled, 6 and 7 are new
    with pytest.raises(RunDirError, match="repeats 1 generation"):
        open_run(tmp_path / "run", cfg, plan())


def test_changed_config_is_refused_with_the_fields(tmp_path):
    st = open_run(tmp_path / "run", make_cfg(tmp_path), plan())
    changed = make_cfg(tmp_path, sampling={"temperature": 0.7}, engine={"max_num_seqs": 8})
    with pytest.raises(RunDirError) as exc:
        open_run(st.run_dir, changed, plan())
    msg = str(exc.value)
    assert st.run_id in msg and "field sampling.temperature: was 0.0, now 0.7" in msg
    assert f"field engine.max_num_seqs: was {EngineConfig().max_num_seqs}, now 8" in msg and "new --out" in msg


def test_field_added_since_the_run_started_compares_as_its_default(tmp_path):
    st = open_run(tmp_path / "run", make_cfg(tmp_path), plan())
    stored = json.loads((st.run_dir / "config.json").read_text())
    del stored["engine"]["request_order"]  # as written by a version without that field
    (st.run_dir / "config.json").write_text(json.dumps(stored))
    assert open_run(st.run_dir, make_cfg(tmp_path), plan()).run_id == st.run_id
    with pytest.raises(RunDirError, match="field engine.request_order: was 'grouped', now 'interleaved'"):
        open_run(st.run_dir, make_cfg(tmp_path, engine={"request_order": "interleaved"}), plan())


def test_changed_prompts_foreign_and_unplanned_shards_are_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    st = open_run(tmp_path / "run", cfg, plan())
    with pytest.raises(RunDirError, match="changed their prompt"):
        open_run(st.run_dir, cfg, plan(prompt="q"))
    write(st.run_dir, "another-run", [0])
    with pytest.raises(RunDirError, match="holds generations of run another-run"):
        open_run(st.run_dir, cfg, plan())
    for p in (st.run_dir / "generations").iterdir():
        p.unlink()
    write(st.run_dir, st.run_id, [0])
    with pytest.raises(RunDirError, match="does not plan"):
        open_run(st.run_dir, cfg, plan().head(0))


def test_generations_without_run_json_are_refused(tmp_path):
    write(tmp_path / "run", "x", [0])
    with pytest.raises(RunDirError, match="no run.json"):
        open_run(tmp_path / "run", make_cfg(tmp_path), plan())
