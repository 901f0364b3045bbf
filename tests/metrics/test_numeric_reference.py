"""Differential test: our Polars numeric match vs lm-evaluation-harness's own GSM8K scoring code.

Reference (lm-eval 0.4.13, test-only, installed ``--no-deps``): the ``filter_list`` and ``metric_list``
of the installed ``lm_eval/tasks/gsm8k/gsm8k.yaml`` are read from the file and turned into lm-eval
objects exactly as ``ConfigurableTask`` does: ``lm_eval.filters.build_filter_ensemble`` (``RegexFilter``
+ ``take_first``) over ``Instance`` objects, then the registered ``exact_match`` metric
(``exact_match_hf_evaluate``) called as ``process_results`` calls it for ``generate_until``
(``references=[gold], predictions=[result], **kwargs``, gold = the full ``answer`` text).

``lm_eval.api.metrics`` imports ``sacrebleu`` at module level (used only by its BLEU/chrF/TER
metrics); when it is not installed a placeholder module stands in during that import only.

Responses: every real GSM8K test solution and variants of it (no marker, ``$``/``,``/trailing period,
off by one, truncated), plus the 1082 real GPT-4 and text-bison IFEval responses (free text full of
numbers, ``$``, commas and periods) paired both with GSM8K answers and with a gold answer equal to
their own last number-like token.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import polars as pl
import pytest
import yaml

from capdrift_fast.metrics.numeric import FLEXIBLE_RE, IGNORE_RES, STRICT_RE, score_numeric


def _lm_eval_dir() -> Path:
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("lm-eval is not installed (test-only dependency): pip install --no-deps lm-eval==0.4.13")
    return Path(next(iter(spec.submodule_search_locations)))


def _import_metrics() -> types.ModuleType:
    try:
        return importlib.import_module("lm_eval.api.metrics")
    except ModuleNotFoundError as exc:
        if exc.name != "sacrebleu":
            raise
    sys.modules["sacrebleu"] = types.ModuleType("sacrebleu")  # only BLEU/chrF/TER touch it
    try:
        return importlib.import_module("lm_eval.api.metrics")
    finally:
        del sys.modules["sacrebleu"]


class LmEvalGSM8K:
    """lm-eval's GSM8K post-processing and metric, configured from the installed gsm8k.yaml."""

    def __init__(self) -> None:
        self.config = yaml.safe_load((_lm_eval_dir() / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
        _import_metrics()
        from lm_eval.api.instance import Instance
        from lm_eval.api.registry import get_metric
        from lm_eval.filters import build_filter_ensemble

        self.instance = Instance
        self.ensembles = {}
        for filter_config in self.config["filter_list"]:
            components = [[f["function"], {k: v for k, v in f.items() if k != "function"}]
                          for f in filter_config["filter"]]
            self.ensembles[filter_config["name"]] = build_filter_ensemble(filter_config["name"], components)
        (metric_config,) = self.config["metric_list"]
        self.metric = get_metric(metric_config["metric"])
        self.kwargs = {k: v for k, v in metric_config.items()
                       if k not in ("metric", "aggregation", "higher_is_better", "hf_evaluate")}

    def score(self, responses: list[str], targets: list[str]) -> dict[str, list]:
        """Per filter: the filtered answers and the exact_match of each (1.0/0.0)."""
        out: dict[str, list] = {}
        for name, ensemble in self.ensembles.items():
            instances = [self.instance("generate_until", {"answer": t}, ("", {}), i, resps=[r])
                         for i, (r, t) in enumerate(zip(responses, targets, strict=True))]
            ensemble.apply(instances)
            filtered = [inst.filtered_resps[name] for inst in instances]
            out[f"{name}/answer"] = filtered
            out[name] = [self.metric(references=[t], predictions=[f], **self.kwargs)["exact_match"]
                         for f, t in zip(filtered, targets, strict=True)]
        return out


@pytest.fixture(scope="module")
def reference() -> LmEvalGSM8K:
    return LmEvalGSM8K()


def _variants(answer: str) -> list[str]:
    final = answer.split("####")[-1].strip()
    plain = final.replace(",", "")
    bumped = str(int(plain) + 1) if plain.lstrip("-").isdigit() else "0"
    return [
        answer,
        answer.replace("#### ", "The answer is "),
        f"So it costs ${final}.",
        f"#### {final}\nQuestion: next",
        f"The result: {final}.\n",
        f"Maybe {bumped} or not",
        f"#### {final[:-1] or '0'}",
        f"#### ${final}",
        f"{final}.00 dollars",
        "I do not know",
        "",
    ]


@pytest.fixture(scope="module")
def cases(data_dir) -> pl.DataFrame:
    answers = [json.loads(line)["answer"] for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()
               if line.strip()]
    responses, targets = [], []
    for answer in answers:
        for v in _variants(answer):
            responses.append(v)
            targets.append(answer)
    ifeval = []
    for name in ("input_response_data_gpt4_20231107_145030.jsonl", "input_response_data_text_bison.jsonl"):
        ifeval += [json.loads(line)["response"] for line in (data_dir / "ifeval" / name).read_text().splitlines()
                   if line.strip()]
    import re

    for i, text in enumerate(ifeval):
        responses.append(text)
        targets.append(answers[i % len(answers)])
        found = re.findall(FLEXIBLE_RE, text)
        last = [g for g in found[-1] if g][0] if found else "0"
        responses.append(text)
        targets.append(f"Because ...\n#### {last}")
    return pl.DataFrame({"response": responses, "target": targets})


def test_matches_lm_eval_on_every_response(reference, cases) -> None:
    """Zero disagreements: extracted answers and both verdicts equal lm-eval's, row by row."""
    assert reference.config["metric_list"][0]["regexes_to_ignore"] == list(IGNORE_RES)
    patterns = {f["name"]: f["filter"][0]["regex_pattern"] for f in reference.config["filter_list"]}
    assert patterns == {"strict-match": STRICT_RE, "flexible-extract": FLEXIBLE_RE}

    ref = reference.score(cases["response"].to_list(), cases["target"].to_list())
    ours = score_numeric(cases)
    for ours_col, name in (("strict", "strict-match"), ("flexible", "flexible-extract")):
        got_answer = ours[f"extracted_{ours_col}"].to_list()
        bad = [i for i, (a, b) in enumerate(zip(got_answer, ref[f"{name}/answer"], strict=True)) if a != b]
        assert not bad, f"{name}: {len(bad)} extractions differ, e.g. rows {bad[:5]}"
        got = ours[f"numeric_match_{ours_col}"].to_list()
        want = [bool(v) for v in ref[name]]
        bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
        assert not bad, f"{name}: {len(bad)} verdicts differ, e.g. {[cases.row(i) for i in bad[:3]]}"

    # The sample exercises both outcomes of both filters (so agreement is not vacuous).
    for name in ("strict-match", "flexible-extract"):
        assert 0.1 < sum(ref[name]) / len(ref[name]) < 0.9
    n_free = 2 * 1082
    assert sum(ref["flexible-extract"][-n_free:]) > 400  # IFEval texts that hold a number vs their last one


@pytest.mark.parametrize(
    ("response", "target"),
    [
        ("#### 5.\n", "#### 5"),          # Python's `$` also matches before a final newline
        ("Total: 5.\n", "#### 5.\n"),
        ("#### 1,234", "#### 1234"),
        ("costs $1,234.", "#### 1234"),
        ("#### 5\nthen 7", "#### 5"),
        ("#### -3", "#### -3"),
        ("-.5 and 3.", "#### 3"),
        ("$$ 12", "#### 12"),
        ("no numbers", "#### 3"),
        ("", "#### 0"),
        ("ends with 7..", "#### 7."),
    ],
)
def test_edge_cases_match_lm_eval(reference, response, target) -> None:
    ref = reference.score([response], [target])
    ours = score_numeric(pl.DataFrame({"response": [response], "target": [target]}))
    assert ours["extracted_strict"][0] == ref["strict-match/answer"][0]
    assert ours["extracted_flexible"][0] == ref["flexible-extract/answer"][0]
    assert ours["numeric_match_strict"][0] == bool(ref["strict-match"][0])
    assert ours["numeric_match_flexible"][0] == bool(ref["flexible-extract"][0])


def test_null_response_is_invalid(reference) -> None:
    ours = score_numeric(pl.DataFrame({"response": [None], "target": ["#### 1"]}, schema={"response": pl.Utf8,
                                                                                          "target": pl.Utf8}))
    ref = reference.score([None], ["#### 1"])  # lm-eval's RegexFilter reads a non-str response as ""
    assert ours["extracted_strict"][0] == ref["strict-match/answer"][0] == "[invalid]"
    assert ours["extracted_flexible"][0] == ref["flexible-extract/answer"][0] == "[invalid]"
