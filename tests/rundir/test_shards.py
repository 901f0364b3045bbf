"""Arrow IPC shards: round trip, rolling, atomic finalisation."""

from __future__ import annotations

import pyarrow.ipc as ipc

from capdrift_fast.rundir import GENERATION_SCHEMA, ShardWriter, read_generations


def record(i: int) -> dict:
    return {
        "request_id": f"base/t/{i}", "adapter": "base", "lora_id": 0, "task": "t", "sample_id": str(i),
        "prompt": f"p{i}", "response": f"r{i} é ✓", "prompt_tokens": i, "output_tokens": 2,
        "output_token_ids": [i, i + 1], "finish_reason": "length", "ttft_s": None if i % 2 else 0.5,
        "finished_at": 1.0 + i, "output_logprobs": None if i % 3 else [-0.5, -1.25],
    }


def test_round_trip_and_rolling(tmp_path):
    with ShardWriter(tmp_path, "run-1", rows_per_shard=4) as w:
        for i in range(10):
            w.write(record(i))
        assert w.rows_written == 8  # two full shards flushed while writing
    assert w.rows_written == 10
    shards = sorted(tmp_path.glob("shard-*.arrow"))
    assert [p.name for p in shards] == ["shard-00000.arrow", "shard-00001.arrow", "shard-00002.arrow"]
    assert not list(tmp_path.glob("*.tmp"))
    for p in shards:
        assert ipc.open_file(p).schema.equals(GENERATION_SCHEMA)
    back = read_generations(tmp_path).collect().sort("finished_at")
    assert back.height == 10
    for i, row in enumerate(back.iter_rows(named=True)):
        assert row == {**record(i), "run_id": "run-1"}


def test_new_writer_continues_numbering(tmp_path):
    with ShardWriter(tmp_path, "a") as w:
        w.write(record(0))
    with ShardWriter(tmp_path, "a") as w:
        w.write(record(1))
    assert sorted(p.name for p in tmp_path.glob("shard-*.arrow")) == ["shard-00000.arrow", "shard-00001.arrow"]
    assert read_generations(tmp_path).collect().height == 2


def test_empty_folder_reads_as_empty_frame(tmp_path):
    assert read_generations(tmp_path).collect().height == 0
