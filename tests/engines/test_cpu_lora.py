"""capdrift_fast.engines.cpu_lora: the grouped CPU LoRA ops equal vLLM's torch ops token for token
(except index -1, where they apply no LoRA), and install/uninstall swap them in vLLM's CPU wrapper."""

from __future__ import annotations

import pytest
import torch

from capdrift_fast.engines import cpu_lora

vllm_ops = pytest.importorskip("vllm.lora.ops.torch_ops")


def _indices(n_tokens: int, n_slots: int, base: int = 0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n_slots, (n_tokens,), generator=g)
    idx[:base] = -1
    return idx


@pytest.mark.parametrize("tokens,slots,four_d", [(1, 1, True), (7, 3, True), (64, 8, False), (33, 1, True)])
@pytest.mark.parametrize("add", [True, False])
def test_bgmv_ops_equal_vllm(tokens, slots, four_d, add):
    g = torch.Generator().manual_seed(tokens + slots)
    d_in, r, d_out = 48, 8, 40
    x = torch.randn(tokens, d_in, generator=g)
    a = torch.randn(slots, 1, r, d_in, generator=g)
    b = torch.randn(slots, 1, d_out, r, generator=g)
    if not four_d:
        a, b = a[:, 0], b[:, 0]
    idx = _indices(tokens, slots, seed=tokens)
    want_buf, got_buf = torch.zeros(tokens, r), torch.zeros(tokens, r)
    vllm_ops.bgmv_shrink(x, a, want_buf, idx, 0.5)
    cpu_lora.bgmv_shrink(x, a, got_buf, idx, 0.5)
    torch.testing.assert_close(got_buf, want_buf)
    y0 = torch.randn(tokens, d_out + 6, generator=g)
    want, got = y0.clone(), y0.clone()
    vllm_ops.bgmv_expand(want_buf, b, want, idx, add_inputs=add)
    cpu_lora.bgmv_expand(got_buf, b, got, idx, add_inputs=add)
    torch.testing.assert_close(got, want)
    want, got = y0.clone(), y0.clone()
    vllm_ops.bgmv_expand_slice(want_buf, b, want, idx, 3, d_out, add_inputs=add)
    cpu_lora.bgmv_expand_slice(got_buf, b, got, idx, 3, d_out, add_inputs=add)
    torch.testing.assert_close(got, want)


def test_sgmv_ops_equal_vllm():
    g = torch.Generator().manual_seed(3)
    seq_lens = torch.tensor([3, 5, 2])
    lora_idx = torch.tensor([1, 0, 1])
    n = int(seq_lens.sum())
    x, a, b = torch.randn(n, 32, generator=g), torch.randn(2, 1, 4, 32, generator=g), torch.randn(2, 1, 24, 4, generator=g)
    meta = (torch.tensor([0, 3, 8]), seq_lens, lora_idx, 3, 5, n)
    want_buf, got_buf = torch.zeros(n, 4), torch.zeros(n, 4)
    vllm_ops.sgmv_shrink(x, a, want_buf, *meta, 2.0)
    cpu_lora.sgmv_shrink(x, a, got_buf, *meta, 2.0)
    torch.testing.assert_close(got_buf, want_buf)
    want, got = torch.zeros(n, 30), torch.zeros(n, 30)
    vllm_ops.sgmv_expand_slice(want_buf, b, want, *meta, 6, 24, True)
    cpu_lora.sgmv_expand_slice(got_buf, b, got, *meta, 6, 24, True)
    torch.testing.assert_close(got, want)
    want, got = torch.zeros(n, 24), torch.zeros(n, 24)
    vllm_ops.sgmv_expand(want_buf, b, want, *meta, False)
    cpu_lora.sgmv_expand(got_buf, b, got, *meta, False)
    torch.testing.assert_close(got, want)


def test_no_lora_tokens_get_no_lora():
    """Index -1: vLLM's ops use the last slot; the grouped ops leave the token's output alone."""
    g = torch.Generator().manual_seed(1)
    x, a, b = torch.randn(6, 16, generator=g), torch.randn(3, 1, 4, 16, generator=g), torch.randn(3, 1, 8, 4, generator=g)
    idx = torch.tensor([-1, 0, 2, -1, 1, 2])
    buf = torch.zeros(6, 4)
    cpu_lora.bgmv_shrink(x, a, buf, idx, 1.0)
    assert torch.equal(buf[[0, 3]], torch.zeros(2, 4))
    y = torch.ones(6, 8)
    cpu_lora.bgmv_expand(buf, b, y, idx, add_inputs=True)
    assert torch.equal(y[[0, 3]], torch.ones(2, 8))
    torch.testing.assert_close(y[1], 1 + (x[1] @ a[0, 0].T) @ b[0, 0].T)
    vbuf = torch.zeros(6, 4)
    vllm_ops.bgmv_shrink(x, a, vbuf, idx, 1.0)
    torch.testing.assert_close(vbuf[0], x[0] @ a[2, 0].T)  # vLLM: last slot


def test_group_cache_follows_index_contents():
    buf = torch.tensor([0, 1, 0, 1])
    first = cpu_lora.lora_groups(buf)
    assert [k for k, _ in first] == [0, 1]
    buf.copy_(torch.tensor([1, 1, 1, 1]))  # same storage, new contents
    assert [(k, rows) for k, rows in cpu_lora.lora_groups(buf)] == [(1, None)]
    assert cpu_lora.lora_groups(torch.tensor([-1, -1])) == []


def test_install_and_uninstall_swap_the_cpu_wrapper_ops():
    from vllm.lora.punica_wrapper import punica_cpu

    was_installed = punica_cpu.bgmv_shrink is cpu_lora.bgmv_shrink  # the shared engine may have installed them
    try:
        assert cpu_lora.install()
        assert punica_cpu.bgmv_shrink is cpu_lora.bgmv_shrink and punica_cpu.sgmv_expand is cpu_lora.sgmv_expand
        assert cpu_lora.install()  # idempotent
        cpu_lora.uninstall()
        assert punica_cpu.bgmv_shrink is vllm_ops.bgmv_shrink
    finally:
        if was_installed:
            cpu_lora.install()
