"""The parity guard's mode, tolerance and per-model status (no engine): sampled runs always compare
log-probabilities, and a guard that did not run never reads as a pass."""

from __future__ import annotations

import pytest

from capdrift_fast.config import RunConfig
from capdrift_fast.pipeline.parity import GUARD_STATUSES, ParityResult, guard_status, resolve_mode, resolve_tolerance


def cfg(temperature: float = 0.0, dtype: str = "float32", **parity) -> RunConfig:
    return RunConfig.model_validate({
        "model": {"path": "m"}, "adapters": [{"name": "a", "path": "a"}],
        "tasks": [{"benchmark": "gsm8k"}], "engine": {"dtype": dtype},
        "sampling": {"temperature": temperature}, "parity": parity,
    })


@pytest.mark.parametrize(("temperature", "dtype", "mode", "want"), [
    (0.0, "float32", "auto", "tokens"), (0.0, "bfloat16", "auto", "logprob"), (0.0, "float32", "logprob", "logprob"),
    (0.8, "float32", "auto", "sampled"), (0.8, "bfloat16", "auto", "sampled"),
    (0.8, "float32", "tokens", "sampled"),  # an independent sample can never be compared token by token
    (0.0, "float32", "sampled", "tokens"), (0.0, "bfloat16", "sampled", "logprob"),  # nothing was sampled
])
def test_mode(temperature, dtype, mode, want):
    assert resolve_mode(cfg(temperature, dtype, mode=mode), None) == want


def test_tolerance():
    assert resolve_tolerance(cfg(), "tokens", None) is None
    assert resolve_tolerance(cfg(), "logprob", None) == 0.5
    assert resolve_tolerance(cfg(0.8), "sampled", None) == 0.01
    assert resolve_tolerance(cfg(0.8, "bfloat16"), "sampled", None) == 0.5
    assert resolve_tolerance(cfg(0.8, sampled_tolerance=0.2), "sampled", None) == 0.2
    assert resolve_tolerance(cfg(0.8, "auto"), "sampled", "bfloat16") == 0.5  # the model's own dtype


def test_guard_status_never_reads_as_a_pass_when_not_run():
    assert [guard_status("ok", s) for s in (False, True, None)] == ["agreed", "SUSPECT", "not checked"]
    assert guard_status("error", None) == "not run" and guard_status("disabled", None) == "disabled"
    assert set(GUARD_STATUSES) == {"agreed", "SUSPECT", "not run", "disabled", "not checked"}
    out = ParityResult("error", "tokens", {"base": None, "a": None}, message="boom").to_json()
    assert {m: v["guard"] for m, v in out["models"].items()} == {"base": "not run", "a": "not run"}
    assert out["status"] == "error" and out["message"] == "boom"
