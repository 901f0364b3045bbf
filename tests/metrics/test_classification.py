"""Classification scorers vs SuperNI's reference functions, and Kung & Peng's random baseline.

Reference: ``normalize_answer`` / ``exact_match`` / ``metric_max_over_ground_truths`` of SuperNI's
``eval/automatic/evaluation.py`` (allenai/natural-instructions, commit 8540acd3; the same functions
are in Tk-Instruct's ``src/compute_metrics.py``). That module cannot be imported (it downloads the
GPT-2 tokenizer at import), so the three functions are transcribed below, unchanged.
"""

from __future__ import annotations

import json
import math
import string

import polars as pl
import pytest

from capdrift_fast.metrics.classification import (
    classification_accuracies,
    normalize_answer,
    random_guess_baseline,
    random_guess_expectation,
    random_guess_probabilities,
    score_classification,
)
from capdrift_fast.benchmarks.superni import SuperNITask

FILES = ["task828_copa_commonsense_cause_effect", "task363_sst2_polarity_classification",
         "task199_mnli_classification", "task1612_sick_label_classification"]


# --- SuperNI reference (transcribed) --------------------------------------------------------------
def ref_normalize_answer(s):
    """Lower text and remove punctuation, and extra whitespace."""

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_punc(lower(s)))


def ref_exact_match(prediction, ground_truth, xlingual=False):
    return (ref_normalize_answer(prediction) == ref_normalize_answer(ground_truth))


def ref_metric_max_over_ground_truths(metric_fn, prediction, ground_truths, xlingual=False):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth, xlingual=xlingual)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(data_dir) -> dict[str, pl.DataFrame]:
    return {f: SuperNITask(f, data_dir / "superni" / f"{f}.json").samples() for f in FILES}


@pytest.fixture(scope="module")
def free_text(data_dir) -> list[str]:
    """Real model text: the first line of every GPT-4 IFEval response."""
    path = data_dir / "ifeval" / "input_response_data_gpt4_20231107_145030.jsonl"
    return [json.loads(line)["response"].split("\n")[0] for line in path.read_text().splitlines() if line.strip()]


def _responses(gold: str, other: str) -> list[str]:
    return [gold, f"  {gold.upper()}!! ", f"The {gold}", f"{gold}.", other, f"{gold} because", f"\u2003{gold}\x1c",
            f"'{gold}'\n", "", f"{gold}\u0130", f"\ua7cb{gold}"]


@pytest.mark.parametrize("name", FILES)
def test_metrics_equal_reference_on_every_instance(name, samples, free_text) -> None:
    s = samples[name]
    rows = []
    for k, (sid, gold, labels) in enumerate(zip(s["sample_id"], s["target"], s["labels"], strict=True)):
        other = next(l for l in labels if l not in gold) if any(l not in gold for l in labels) else "x"
        for r in _responses(gold[0], other) + [free_text[k % len(free_text)]]:
            rows.append({"sample_id": sid, "response": r, "target": gold, "labels": labels})
    frame = pl.DataFrame(rows, schema={"sample_id": pl.Utf8, "response": pl.Utf8,
                                       "target": pl.List(pl.Utf8), "labels": pl.List(pl.Utf8)})
    got = score_classification(frame)
    want_em = [ref_metric_max_over_ground_truths(ref_exact_match, r["response"], r["target"]) for r in rows]
    space = {name: {ref_normalize_answer(l) for l in s["labels"][0]}}[name]
    want_fc = [ref_normalize_answer(r["response"]) in space for r in rows]
    assert got["prediction"].to_list() == [ref_normalize_answer(r["response"]) for r in rows]
    assert got["exact_match"].to_list() == want_em
    assert got["format_correct"].to_list() == want_fc
    # both outcomes occur: gold spellings match, articles / other labels / free text do not
    assert 0.3 < sum(want_em) / len(rows) < 0.8 and sum(want_fc) > sum(want_em)
    acc = classification_accuracies(got)
    assert acc["exact_match"] == pytest.approx(sum(want_em) / len(rows))


def test_normalisation_golden_cases() -> None:
    cases = {
        "The Cause!": "the cause",           # articles are kept (SuperNI, unlike SQuAD)
        " POS. ": "pos",
        "a\u00a0b\x1c\x1dc": "a b c",        # Python whitespace, not only ASCII
        "\u0130": "i\u0307",                 # Python's full lower-casing
        "\ua7cbX": "\ua7cbx",                # first cased in Unicode 16: Python 3.11 keeps it
        "“quoted”": "“quoted”",              # only ASCII punctuation is removed
    }
    got = pl.select(normalize_answer(pl.lit(pl.Series(list(cases))))).to_series().to_list()
    assert got == list(cases.values()) == [ref_normalize_answer(c) for c in cases]


@pytest.mark.parametrize("name", FILES)
def test_random_guess_expectation_equals_set_computation(name, samples) -> None:
    s = samples[name]
    p = []
    for gold, labels in zip(s["target"], s["labels"], strict=True):
        space = {ref_normalize_answer(l) for l in labels}
        p.append(len({ref_normalize_answer(g) for g in gold} & space) / len(space))
    assert random_guess_probabilities(s).to_list() == p
    assert random_guess_expectation(s) == pytest.approx(sum(p) / len(p))


def test_random_guess_expectation_of_known_label_spaces(samples) -> None:
    assert random_guess_expectation(samples[FILES[0]]) == 0.5       # COPA: 2 labels, one gold each
    assert random_guess_expectation(samples[FILES[3]]) == pytest.approx(1 / 3)  # SICK: 3 labels
    # MNLI: one of the 200 instances accepts both "no" and "yes"
    assert random_guess_expectation(samples[FILES[2]]) == pytest.approx((199 * 0.5 + 1) / 200)


@pytest.mark.parametrize("name", FILES)
def test_random_guess_baseline(name, samples) -> None:
    s = samples[name]
    a, b = random_guess_baseline(s, seed=7), random_guess_baseline(s, seed=7)
    assert a.equals(b) and a.height == s.height
    space = {ref_normalize_answer(l) for l in s["labels"][0]}
    assert set(a["guess"]) <= space
    want = [float(ref_normalize_answer(g) in {ref_normalize_answer(t) for t in gold})
            for g, gold in zip(a["guess"], s["target"], strict=True)]
    assert a["exact_match"].to_list() == want
    assert not random_guess_baseline(s, seed=8)["guess"].equals(a["guess"])
    # Over 100 seeds the mean score sits at the analytic expectation (4 standard errors) ...
    runs = [random_guess_baseline(s, seed) for seed in range(100)]
    p = random_guess_probabilities(s).to_list()
    sd_one = math.sqrt(sum(q * (1 - q) for q in p)) / len(p)
    means = [r["exact_match"].mean() for r in runs]
    assert abs(sum(means) / len(means) - random_guess_expectation(s)) < 4 * sd_one / math.sqrt(len(means))
    # ... and every label is drawn about equally often
    counts = pl.concat([r["guess"] for r in runs]).value_counts()
    assert all(abs(c / (100 * s.height) - 1 / len(space)) < 0.03 for c in counts["count"])


def test_random_guess_rejects_empty_label_space() -> None:
    frame = pl.DataFrame({"target": [["a"]], "labels": [[]]}, schema={"target": pl.List(pl.Utf8),
                                                                      "labels": pl.List(pl.Utf8)})
    with pytest.raises(ValueError, match="empty label space"):
        random_guess_baseline(frame, 0)
