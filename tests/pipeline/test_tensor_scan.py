"""The streamed non-finite scan of safetensors files (capdrift_fast.pipeline.tensor_scan), per dtype, against
numpy/torch's own isfinite on the same values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from capdrift_fast.pipeline import tensor_scan
from capdrift_fast.pipeline.tensor_scan import nonfinite_tensors

SPECIAL = [0.0, -0.0, 1.0, -2.5, 1e-40, float("nan"), float("inf"), float("-inf"), 3.0e38]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_counts_match_torch_isfinite(tmp_path, dtype):
    rng = np.random.default_rng(0)
    vals = torch.tensor(rng.choice(SPECIAL, size=(37, 11)), dtype=torch.float64).to(dtype)
    clean = torch.ones(5, 3, dtype=dtype)
    ints = torch.full((4,), 0x7F80, dtype=torch.int32)  # an exponent-like bit pattern in an int tensor: ignored
    path = tmp_path / "a.safetensors"
    save_file({"b.clean": clean, "a.mixed": vals, "c.ints": ints}, str(path))
    expected = int((~torch.isfinite(vals)).sum())
    assert expected > 0
    assert nonfinite_tensors(path) == [("a.mixed", expected)]


def test_chunked_scan_equals_whole(tmp_path, monkeypatch):
    t = torch.zeros(1000, dtype=torch.float32)
    t[[0, 499, 500, 999]] = float("nan")
    path = tmp_path / "a.safetensors"
    save_file({"w": t}, str(path))
    monkeypatch.setattr(tensor_scan, "CHUNK_BYTES", 64)  # many chunks, boundaries inside the tensor
    assert nonfinite_tensors(path) == [("w", 4)]


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "a.safetensors"
    save_file({"w": torch.zeros(1000)}, str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="beyond the end of the file"):
        nonfinite_tensors(path)
