"""kernels_bench/loglik_throughput.py bookkeeping without engines: items, request encoding, continuation
sums from vLLM's prompt log-prob entries, the per-adapter model and the ratios."""

from __future__ import annotations

import pytest

from kernels_bench.loglik_throughput import (
    TASK_FILES,
    continuation_logprob,
    encode_requests,
    load_items,
    one_pass_cell,
    parse_args,
    per_adapter_cell,
    ratios,
)


def test_items_are_superni_prompts_with_the_label_space(data_dir):
    from capdrift_fast.benchmarks.superni import SuperNITask

    items = load_items(data_dir, 3)
    assert [it.task for it in items] == ["task828"] * 3 + ["task363"] * 3
    assert items[0].choices == ["cause", "effect"] and items[3].choices == ["NEG", "POS"]
    copa = SuperNITask("task828", data_dir / TASK_FILES[0], limit=3).samples()
    assert [it.context for it in items[:3]] == copa.get_column("prompt").to_list()
    assert [it.sample_id for it in items[:3]] == copa.get_column("sample_id").to_list()


def test_requests_split_at_the_context_and_append_delimiter_plus_choice(data_dir, demo_assets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_assets / "model")
    items = load_items(data_dir, 2)
    reqs = encode_requests(tok, items)
    assert len(reqs) == sum(len(it.choices) for it in items)
    k = 0
    for it in items:
        ctx = tok(it.context)["input_ids"]
        for choice in it.choices:
            ids, n_ctx = reqs[k]
            k += 1
            assert n_ctx == len(ctx) and ids[:n_ctx] == ctx and len(ids) > n_ctx
            assert tok.decode(ids[n_ctx:]) == " " + choice
            assert tok.decode(ids, skip_special_tokens=True) == it.context + " " + choice


def test_continuation_logprob_sums_the_continuation_and_flags_gaps():
    from vllm.logprobs import Logprob

    ids = [0, 5, 6, 7]

    def entry(tok: int, lp: float) -> dict:
        return {tok: Logprob(logprob=lp, rank=1, decoded_token=None)}

    full = [None, entry(5, -1.0), entry(6, -0.5), {**entry(7, -0.25), **entry(9, -0.1)}]
    assert continuation_logprob(full, ids, 2) == pytest.approx(-0.75)
    assert continuation_logprob(full, ids, 1) == pytest.approx(-1.75)
    assert continuation_logprob([None, entry(5, -1.0), None, entry(7, -0.25)], ids, 2) is None  # not computed
    assert continuation_logprob([None, entry(5, -1.0), entry(8, -0.5), entry(7, -0.25)], ids, 2) is None
    assert continuation_logprob(None, ids, 2) is None


def _engine_rec(requests: int, gen: float, boot: float, wall: float) -> dict:
    return {"requests": requests, "prompt_tokens": requests * 100, "gen_s": gen, "gen_s_reps": [gen], "boot_s": boot,
            "process_wall_s": wall}


def test_per_adapter_measured_then_modelled_and_ratios():
    base = _engine_rec(10, 1.0, 3.0, 12.0)
    adapters = [_engine_rec(10, 2.0, 4.0, 14.0), _engine_rec(10, 4.0, 4.0, 16.0)]
    m = per_adapter_cell(2, base, adapters)
    assert not m["modelled"] and m["engines"] == 3 and m["requests"] == 30
    assert m["wall_s"] == 42.0 and m["gen_s"] == 7.0 and m["engine_start_s"] == 11.0
    big = per_adapter_cell(8, base, adapters)
    assert big["modelled"] and big["measured_adapter_engines"] == 2
    assert big["wall_s"] == 12.0 + 8 * 15.0 and big["gen_s"] == 1.0 + 8 * 3.0 and big["requests"] == 90
    one = one_pass_cell(_engine_rec(90, 5.0, 4.0, 20.0))
    assert one["requests_per_s_wall"] == 4.5 and one["tokens_per_s_gen"] == 9000 / 5.0
    # the one-pass process also ran a prefix-cache pass, a detokenize pass and a slower repetition: not in its wall
    extra = {**_engine_rec(90, 5.0, 4.0, 20.0 + 2.0 + 3.0 + 6.0), "gen_s_reps": [5.0, 6.0],
             "prefix_cache_read": {"gen_s": 2.0}, "detokenize_on": {"gen_s": 3.0}}
    assert one_pass_cell(extra)["wall_s"] == pytest.approx(20.0)
    r = ratios(one, big)
    assert r["ratio_wall"] == pytest.approx(4.5 / (90 / 132.0))
    assert r["ratio_gen"] == pytest.approx(18.0 / (90 / 25.0))
    with pytest.raises(AssertionError):
        ratios(one, m)  # different request sets are not compared


def test_cli_defaults_and_quick():
    args = parse_args([])
    assert args.n_values == [1, 8, 32] and args.samples == 8
    quick = parse_args(["--quick"])
    assert quick.n_values == [1, 2] and quick.samples == 2 and quick.per_adapter_max == 1
