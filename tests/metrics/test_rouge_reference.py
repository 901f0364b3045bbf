"""ROUGE-L: ours vs Google's rouge-score as SuperNI calls it (bit-identical F-measures).

Reference: SuperNI ``eval/automatic/evaluation.py`` / Tk-Instruct ``src/compute_metrics.py``, default
(English) track: ``rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)``,
``score(prediction=..., target=gold)['rougeL'].fmeasure``, max over the gold outputs
(``metric_max_over_ground_truths``). rouge-score is a test-only dependency.
"""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from capdrift_fast.metrics.rouge import lcs_length, rouge_l, score_rouge_l
from capdrift_fast.benchmarks.superni import SuperNITask

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer", reason="rouge-score is a test dependency")

FILES = ["task828_copa_commonsense_cause_effect", "task363_sst2_polarity_classification",
         "task199_mnli_classification", "task1612_sick_label_classification"]


@pytest.fixture(scope="module")
def scorer():
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def ref_rouge(scorer, prediction: str, ground_truth: str) -> float:
    return scorer.score(prediction=prediction, target=ground_truth)["rougeL"].fmeasure


@pytest.fixture(scope="module")
def ifeval(data_dir) -> dict[str, list[dict]]:
    out = {}
    for name in ("gpt4_20231107_145030", "text_bison"):
        path = data_dir / "ifeval" / f"input_response_data_{name}.jsonl"
        out[name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def test_free_text_pairs_bit_identical(scorer, ifeval) -> None:
    """1082 real responses against their prompts, and 25 GPT-4 vs text-bison response pairs (long)."""
    preds = [r["response"] for rs in ifeval.values() for r in rs]
    golds = [r["prompt"] for rs in ifeval.values() for r in rs]
    bison = {r["prompt"]: r["response"] for r in ifeval["text_bison"]}
    long = [(r["response"], bison[r["prompt"]]) for r in ifeval["gpt4_20231107_145030"] if r["prompt"] in bison][:25]
    preds += [p for p, _ in long]
    golds += [g for _, g in long]
    got = rouge_l(pl.Series(preds), pl.Series(golds)).to_list()
    want = [ref_rouge(scorer, p, g) for p, g in zip(preds, golds, strict=True)]
    bad = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not bad, f"{len(bad)} differ, e.g. {[(got[i], want[i]) for i in bad[:5]]}"
    assert len(long) == 25 and len({round(w, 3) for w in want}) > 100  # a spread of real values


@pytest.mark.parametrize("name", FILES)
def test_superni_instances_max_over_golds(name, scorer, data_dir, ifeval) -> None:
    """Every instance: label spellings, other labels, the instance input, and free text as responses."""
    s = SuperNITask(name, data_dir / "superni" / f"{name}.json").samples()
    raw = json.loads((data_dir / "superni" / f"{name}.json").read_text())["Instances"]
    texts = [r["response"][:300] for r in ifeval["text_bison"]]
    rows = []
    for k, (gold, labels, inst) in enumerate(zip(s["target"], s["labels"], raw, strict=True)):
        for resp in (gold[0], f"The answer is {gold[0].upper()}.", labels[-1], inst["input"], texts[k % len(texts)],
                     "", "running runs ran"):
            rows.append({"response": resp, "target": gold})
    frame = pl.DataFrame(rows, schema={"response": pl.Utf8, "target": pl.List(pl.Utf8)})
    got = score_rouge_l(frame).to_list()
    want = [max(ref_rouge(scorer, r["response"], g) for g in r["target"]) for r in rows]
    assert got == want
    assert 0 < sum(w == 1.0 for w in want) < len(want) and any(0 < w < 1 for w in want)


@pytest.mark.parametrize(
    ("prediction", "target"),
    [
        ("", "cause"), ("cause", ""), ("...", "!!!"), ("The cats are running.", "cat run"),
        ("İstanbul İS", "istanbul is"), ("naïve café", "naive cafe"), ("a a a b", "a b a b a"),
        ("generously generous", "generous"), ("ÀB\u212aC k", "k kc"), ("x" * 5, "x" * 5),
    ],
)
def test_edge_cases(scorer, prediction, target) -> None:
    assert rouge_l(pl.Series([prediction]), pl.Series([target]))[0] == ref_rouge(scorer, prediction, target)


def test_null_prediction_scores_zero() -> None:
    got = score_rouge_l(pl.DataFrame({"response": [None, "cause"], "target": [["cause"], ["cause", "effect"]]},
                                     schema={"response": pl.Utf8, "target": pl.List(pl.Utf8)}))
    assert got.to_list() == [0.0, 1.0]


def test_lcs_length_equals_dynamic_programme() -> None:
    """The bit-parallel LCS equals rouge-score's DP table on 400 random token lists (seeded)."""
    rng = random.Random(0)
    for _ in range(400):
        vocab = [str(i) for i in range(rng.randint(1, 6))]
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 80))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 80))]
        want = rouge_scorer._lcs_table(a, b)[-1][-1] if a and b else 0
        assert lcs_length(a, b) == want
