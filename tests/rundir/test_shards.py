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
        # every 4th a log-likelihood record's per-choice columns
        "choice_logprobs": None if i % 4 else [-1.5, -2.25 - i], "choice_tokens": None if i % 4 else [1, 2],
        "choice_greedy": None if i % 4 else [True, False],
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


def test_shards_of_earlier_formats_read_with_later_fields_null(tmp_path):
    """A shard written before the log-likelihood columns (run-folder format 2; 0.1.0 also lacked
    output_logprobs) reads, alone and beside a current one, with those fields null."""
    import pyarrow as pa

    from capdrift_fast.records import LATER_FIELDS
    from capdrift_fast.rundir.shards import read_shard

    with ShardWriter(tmp_path, "run-1") as w:
        w.write(record(0))
    current = sorted(tmp_path.glob("shard-*.arrow"))[0]
    table = ipc.open_file(current).read_all()
    for fields in (["choice_logprobs", "choice_tokens", "choice_greedy"], list(LATER_FIELDS)):
        old = table.select([n for n in table.schema.names if n not in fields])
        path = tmp_path / "old" / "shard-00000.arrow"
        path.parent.mkdir(exist_ok=True)
        with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, old.schema) as writer:
            writer.write_table(old)
        back, reason = read_shard(path)
        assert reason is None and back.schema.equals(GENERATION_SCHEMA)
        assert all(back.column(f).null_count == 1 for f in fields)
        (path.parent / "shard-00001.arrow").write_bytes(current.read_bytes())
        both = read_generations(path.parent).collect()
        assert both.height == 2 and both["choice_logprobs"].null_count() == 1 and both.columns == GENERATION_SCHEMA.names
    bad = table.drop_columns(["response"])
    with pa.OSFile(str(tmp_path / "bad.arrow"), "wb") as sink, ipc.new_file(sink, bad.schema) as writer:
        writer.write_table(bad)
    assert read_shard(tmp_path / "bad.arrow") == (None, "not in the generation schema")
