"""GSM8K numeric match: Polars extraction vs lm-eval's rules written plainly with Python's ``re``."""

from __future__ import annotations

import re

import polars as pl
import pytest

from capdrift_fast.metrics.numeric import FLEXIBLE_RE, IGNORE_RES, INVALID, STRICT_RE
from capdrift_fast.benchmarks.gsm8k import GSM8KTask


def lm_eval_match(response: str, target: str, pattern: str, group_select: int) -> bool:
    """lm-eval: RegexFilter (findall, pick group_select, first non-empty group of a tuple,
    '[invalid]' if none) then exact_match with regexes_to_ignore and ignore_case."""
    matches = re.findall(pattern, response)
    if matches:
        m = matches[group_select]
        if isinstance(m, tuple):
            m = [x for x in m if x][0]
        pred = m.strip()
    else:
        pred = INVALID
    for r in IGNORE_RES:
        pred, target = re.sub(r, "", pred), re.sub(r, "", target)
    return pred.lower() == target.lower()


@pytest.fixture(scope="module")
def task(data_dir):
    return GSM8KTask("gsm8k", data_dir / "gsm8k" / "test.jsonl")


def responses_for(answer: str) -> list[str]:
    final = answer.split("####")[-1].strip()
    return [
        answer,                                        # the gold solution itself
        answer.replace("#### ", "The answer is "),     # no strict marker
        f"So it costs ${final}.",                      # dollar sign and trailing period
        f"#### {final}\nQuestion: next",               # strict marker first
        f"Maybe {int(final.replace(',', '')) + 1 if final.replace(',', '').lstrip('-').isdigit() else 0} or not",
        "I do not know",
        f"#### {final[:-1] or '0'}",
    ]


def test_real_answers_and_variants_agree_with_reference(task):
    samples = task.samples()
    rows = [
        {"request_id": f"{sid}:{k}", "response": resp, "target": tgt}
        for sid, tgt in zip(samples["sample_id"], samples["target"])
        for k, resp in enumerate(responses_for(tgt))
    ]
    frame = pl.DataFrame(rows)
    got = task.score(frame)
    want_strict = [lm_eval_match(r["response"], r["target"], STRICT_RE, 0) for r in rows]
    want_flex = [lm_eval_match(r["response"], r["target"], FLEXIBLE_RE, -1) for r in rows]
    assert got["numeric_match_strict"].cast(bool).to_list() == want_strict
    assert got["numeric_match_flexible"].cast(bool).to_list() == want_flex
    # the gold solution scores 1 under both extractions for all 1319 test questions
    gold = got.filter(pl.col("request_id").str.ends_with(":0"))
    assert gold.height == 1319
    assert gold["numeric_match_strict"].sum() == 1319 and gold["numeric_match_flexible"].sum() == 1319


@pytest.mark.parametrize(
    ("response", "target", "strict", "flexible"),
    [
        ("#### 1,234", "#### 1234", 1, 1),
        ("The total is $1,234.", "#### 1234", 0, 1),
        ("#### 5\nthen 7", "#### 5", 1, 0),
        ("#### -3", "#### -3", 1, 1),
        ("no numbers", "#### 3", 0, 0),
        ("", "#### 0", 0, 0),
    ],
)
def test_golden_cases(task, response, target, strict, flexible):
    got = task.score(pl.DataFrame({"request_id": ["r"], "response": [response], "target": [target]}))
    assert (got["numeric_match_strict"][0], got["numeric_match_flexible"][0]) == (strict, flexible)


def test_fewshot_prompts_and_limit(data_dir, tmp_path):
    """Items start at line 0 of the test file; examples come from the few-shot file, lm-eval's way."""
    test = data_dir / "gsm8k" / "test.jsonl"
    train = tmp_path / "train.jsonl"
    train.write_text("".join(test.read_text(encoding="utf-8").splitlines(keepends=True)[100:110]), encoding="utf-8")
    t = GSM8KTask("gsm8k", test, limit=3, num_fewshot=2, fewshot_path=train, fewshot_as_multiturn=False)
    s = t.samples()
    assert s.height == 3 and s["sample_id"].to_list() == ["0", "1", "2"]
    assert s["prompt"][0].count("Question:") == 3 and s["prompt"][0].endswith("\nAnswer:")
    # the generator advances over items: the first item's examples are not the second's
    assert s["prompt"][0].split("Question:")[1] != s["prompt"][1].split("Question:")[1]
    longer = GSM8KTask("gsm8k", test, limit=5, num_fewshot=2, fewshot_path=train, fewshot_as_multiturn=False).samples()
    assert longer["prompt"].head(3).to_list() == s["prompt"].to_list()  # limit keeps the first items' examples


def test_fewshot_needs_a_source(data_dir):
    from capdrift_fast.benchmarks.gsm8k import GSM8KTaskConfig

    with pytest.raises(ValueError, match="fewshot_data"):
        GSM8KTaskConfig(benchmark="gsm8k", num_fewshot=2)
    assert GSM8KTaskConfig(benchmark="gsm8k", fewshot_data="x.jsonl").shots() == 5
    assert GSM8KTaskConfig(benchmark="gsm8k").shots() == 0
