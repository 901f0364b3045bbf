"""IFEval checkers: golden cases per instruction type, the frame API, and the Polars/Python equivalences
the vectorised checkers rely on.

The golden table ``golden/ifeval_cases.json`` holds (instruction_id, kwargs, response, strict, loose,
note) rows; expected verdicts were produced with lm-eval 0.4.13's reference (nltk 3.10.4, langdetect
seeded 0), except where ``note`` says google-research semantics were kept on purpose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from capdrift_fast.metrics.ifeval import (
    INSTRUCTION_IDS,
    UnknownInstructionError,
    configure_nltk_data,
    evaluate_response,
    ifeval_accuracies,
    loose_variants,
    parse_instruction,
    parse_kwargs,
    pycompat,
    score_ifeval,
    text,
)
from capdrift_fast.metrics.ifeval.evaluate import OUTPUT_COLUMNS, _variants

GOLDEN = json.loads((Path(__file__).parent / "golden" / "ifeval_cases.json").read_text())
NEEDS_PUNKT = {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
SCHEMA = {"response": pl.Utf8, "instruction_id_list": pl.List(pl.Utf8), "kwargs": pl.Utf8}


def _punkt_available() -> bool:
    try:
        text._ensure_nltk_data()
        text._sentence_tokenizer()
    except (FileNotFoundError, LookupError):
        return False
    return True


@pytest.fixture(scope="module")
def golden_scored() -> tuple[list[dict], pl.DataFrame]:
    cases = [c for c in GOLDEN if c["instruction_id"] not in NEEDS_PUNKT or _punkt_available()]
    frame = pl.DataFrame(
        {
            "case": list(range(len(cases))),
            "response": [c["response"] for c in cases],
            "instruction_id_list": [[c["instruction_id"]] for c in cases],
            "kwargs": [json.dumps([c["kwargs"]]) for c in cases],
        },
        schema={"case": pl.Int64, **SCHEMA},
    )
    return cases, score_ifeval(frame)


def test_golden_table_covers_every_instruction() -> None:
    assert {c["instruction_id"] for c in GOLDEN} == INSTRUCTION_IDS
    assert len(INSTRUCTION_IDS) == 25


def test_golden_cases_vectorised(golden_scored: tuple[list[dict], pl.DataFrame]) -> None:
    """score_ifeval (Polars checkers + Python fallback) reproduces every golden verdict."""
    cases, scored = golden_scored
    bad = []
    for row in scored.iter_rows(named=True):
        case = cases[row["case"]]
        got = (row["inst_level_strict"][0], row["inst_level_loose"][0])
        if got != (case["strict"], case["loose"]):
            expected = (case["strict"], case["loose"])
            bad.append(f"{case['instruction_id']} ({case['note']}): got {got}, expected {expected}")
        assert row["prompt_level_strict"] == row["inst_level_strict"][0]
        assert row["prompt_level_loose"] == row["inst_level_loose"][0]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{c['instruction_id']}:{i}" for i, c in enumerate(GOLDEN)])
def test_golden_case_python(case: dict) -> None:
    """The plain-Python checkers (the specification) reproduce every golden verdict."""
    if case["instruction_id"] in NEEDS_PUNKT and not _punkt_available():
        pytest.skip("NLTK punkt_tab data not found (set NLTK_DATA or CAPDRIFT_DATA_DIR)")
    strict, loose = evaluate_response([parse_instruction(case["instruction_id"], case["kwargs"])], case["response"])
    assert (strict[0], loose[0]) == (case["strict"], case["loose"]), case["note"]


# --- frame API ---------------------------------------------------------------------------------------

def test_prompt_level_and_extra_columns() -> None:
    frame = pl.DataFrame(
        {
            "request_id": ["a", "b", "c", "d"],
            "response": ['"Hello, world."', "hello world", None, "anything"],
            "instruction_id_list": [["startend:quotation", "punctuation:no_comma"], ["punctuation:no_comma"],
                                    ["punctuation:no_comma"], []],
            "kwargs": ['[{}, {"unused_key": null}]', "[{}]", "[{}]", "[]"],
        },
        schema={"request_id": pl.Utf8, **SCHEMA},
    )
    out = score_ifeval(frame)
    assert out.columns == ["request_id", "response", "instruction_id_list", "kwargs", "prompt_level_strict",
                           "prompt_level_loose", "inst_level_strict", "inst_level_loose"]
    assert out.schema["inst_level_strict"] == pl.List(pl.Boolean)
    assert out["request_id"].to_list() == ["a", "b", "c", "d"]
    assert out["inst_level_strict"].to_list() == [[True, False], [True], [False], []]
    assert out["prompt_level_strict"].to_list() == [False, True, False, True]  # all([]) is True, as the reference
    assert ifeval_accuracies(out) == {
        "prompt_level_strict_acc": 0.5, "inst_level_strict_acc": 0.5,
        "prompt_level_loose_acc": 0.5, "inst_level_loose_acc": 0.5,
    }
    again = score_ifeval(out)  # output columns are replaced, not duplicated
    assert again.columns == out.columns and again.equals(out)


def test_empty_frame() -> None:
    out = score_ifeval(pl.DataFrame(schema=SCHEMA))
    assert out.height == 0 and out.schema["inst_level_loose"] == pl.List(pl.Boolean)
    with pytest.raises(ValueError, match="no prompts"):
        ifeval_accuracies(out)


def test_hf_style_kwargs_with_nulls() -> None:
    """HF google/IFEval rows carry every key, unset ones as null."""
    kwargs = {"num_highlights": None, "relation": "at least", "num_words": 2, "keywords": None, "letter": None}
    frame = pl.DataFrame({"response": ["two words"], "instruction_id_list": [["length_constraints:number_words"]],
                          "kwargs": [json.dumps([kwargs])]}, schema=SCHEMA)
    assert score_ifeval(frame)["inst_level_strict"].to_list() == [[True]]


def test_unknown_instruction_suggests() -> None:
    with pytest.raises(UnknownInstructionError, match=r"keywords:frequency") as info:
        parse_kwargs(["keywords:frequncy"], "[{}]")
    assert "keywords:frequency" in info.value.suggestions
    assert isinstance(info.value, ValueError) and "Valid ids:" in str(info.value)
    frame = pl.DataFrame({"response": ["x"], "instruction_id_list": [["punctuation:no_coma"]], "kwargs": ["[{}]"]},
                         schema=SCHEMA)
    with pytest.raises(UnknownInstructionError, match=r"row 0.*punctuation:no_comma"):
        score_ifeval(frame)


@pytest.mark.parametrize(
    ("iid", "kwargs", "bad"),
    [
        ("keywords:frequency", {"keyword": "x", "frequency": 2}, "relation"),  # missing -> reference draws randomly
        ("keywords:frequency", {"keyword": "x", "frequency": 2, "relation": "at most"}, "relation"),
        ("keywords:frequency", {"keyword": "x", "frequency": -1, "relation": "at least"}, "frequency"),
        ("keywords:frequency", {"keyword": "x", "frequency": "2", "relation": "at least"}, "frequency"),
        ("keywords:existence", {"keywords": []}, "keywords"),
        ("keywords:existence", {"keywords": "cat"}, "keywords"),
        ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": "at least"}, "letter"),
        ("language:response_language", {"language": "xx"}, "language"),
        ("length_constraints:nth_paragraph_first_word",
         {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}, "nth_paragraph"),
        ("combination:repeat_prompt", {}, "prompt_to_repeat"),
        ("punctuation:no_comma", {"num_words": 3}, "num_words"),
        ("keywords:frequency", {"keyword": "f(x", "frequency": 1, "relation": "at least"}, "keyword"),
    ],
)
def test_bad_kwargs_name_instruction_and_kwarg(iid: str, kwargs: dict, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{iid!r}: kwarg {bad!r}")):
        parse_instruction(iid, kwargs)


def test_kwargs_array_shape_errors() -> None:
    with pytest.raises(ValueError, match="2 instructions"):
        parse_kwargs(["punctuation:no_comma", "startend:quotation"], "[{}]")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_kwargs(["punctuation:no_comma"], "[{]")
    with pytest.raises(TypeError, match="kwargs"):
        score_ifeval(pl.DataFrame({"response": ["x"], "instruction_id_list": [["punctuation:no_comma"]],
                                   "kwargs": [[1]]}))
    with pytest.raises(ValueError, match="lacks column"):
        score_ifeval(pl.DataFrame({"response": ["x"]}))


def test_letter_frequency_non_letter_is_counted_literally() -> None:
    """Keys 1122/1129: '#' / '!' are counted (current google-research rule), not a random letter."""
    kwargs = {"letter": "#", "let_frequency": 2, "let_relation": "at least"}
    inst = parse_instruction("keywords:letter_frequency", kwargs)
    assert evaluate_response([inst], "#one #two") == ([True], [True])
    assert evaluate_response([inst], "#one") == ([False], [False])
    frame = pl.DataFrame({"response": ["#one #two", "#one"], "instruction_id_list": [[inst.id]] * 2,
                          "kwargs": [json.dumps([dict(inst.args)])] * 2}, schema=SCHEMA)
    assert score_ifeval(frame)["inst_level_strict"].to_list() == [[True], [False]]


def test_configure_nltk_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="punkt_tab"):
        configure_nltk_data(tmp_path)
    if _punkt_available():
        import nltk

        configure_nltk_data(text._configured)
        assert nltk.data.path[0] == str(text._configured)


# --- equivalences the Polars checkers rely on (see pycompat) ------------------------------------------

_ALL_CHARS = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def test_python_whitespace_constant() -> None:
    assert pycompat.PY_WHITESPACE == "".join(c for c in _ALL_CHARS if c.isspace())
    assert pl.Series(_ALL_CHARS).str.contains("^" + pycompat.WS + "$").to_list() == [c.isspace() for c in _ALL_CHARS]


def test_case_fold_unsafe_characters() -> None:
    """Outside these characters, Python's IGNORECASE and Rust's (?i) agree on ASCII letters."""
    non_ascii = _ALL_CHARS[128:]
    python = {c for letter in "abcdefghijklmnopqrstuvwxyz" for c in re.findall(letter, "".join(non_ascii), re.I)}
    series = pl.Series(non_ascii)
    rust = set(series.filter(series.str.contains("(?i)[a-z]")).to_list())
    assert python | rust == set(pycompat.CASE_FOLD_UNSAFE[1:-1])


def test_lowercase_agrees_on_ascii_content() -> None:
    """Polars' and Python's lower() may differ (Unicode versions), never in ASCII content or length."""
    polars_lower = pl.Series(_ALL_CHARS).str.to_lowercase().to_list()
    for char, ours in zip(_ALL_CHARS, polars_lower, strict=True):
        theirs = char.lower()
        if ours != theirs:
            assert len(ours) == len(theirs) and not ours.isascii() and not theirs.isascii(), hex(ord(char))
            assert [c for c in ours if c.isascii() or c.isspace()] == [c for c in theirs if c.isascii() or c.isspace()]


def test_digit_and_word_classes() -> None:
    series = pl.Series(_ALL_CHARS)
    assert series.str.contains("^" + pycompat.digit_class() + "$").to_list() == [c.isdecimal() for c in _ALL_CHARS]
    words = series.str.contains("^" + text.nltk_word_class() + "$").to_list()
    # Check NLTK's own verdict on every character where Python's re, Rust's \w and the class could
    # disagree, plus every 50th other character (one tokenizer call per character is slow).
    rust = series.str.contains(r"^\w$").to_list()
    probe = [i for i, c in enumerate(_ALL_CHARS)
             if i % 50 == 0 or len({words[i], rust[i], bool(re.fullmatch(r"\w", c))}) > 1]
    assert [words[i] for i in probe] == [text.count_words(_ALL_CHARS[i]) == 1 for i in probe]


_FUZZ_TOKENS = [
    "cat", "Cat", "CAT", "cats", "the", "The", " ", "  ", "\n", "\n\n", "\t", "\x1c", "\u3000", "*", "**", "***",
    "******", "-", "[x]", "[", "]", "<<T>>", "<<", ">>", "<", "Section", "SECTION", " 1", "2", "\u0663", "P.S.",
    "p. s.", "P.P.S", "p.p.s", ".", ",", "!", "?", '"', "'", "\u0130", "\u017f", "\u212a", "é", "e\u0301", "naïve",
    "\u0915\u093f", "\u00bd", "_", "Any other questions?", "My answer is yes.", "write a poem", "\x00", "Σ", "word",
    "e.g.", "exgy", "#", "is", "\u0131s", "i\u017f",
]
_FUZZ_INSTRUCTIONS = [
    ("keywords:existence", {"keywords": ["cat", "the"]}),
    ("keywords:existence", {"keywords": ["ki\u017fs"]}),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}),
    ("keywords:frequency", {"keyword": "e.g.", "frequency": 1, "relation": "less than"}),
    ("keywords:frequency", {"keyword": "is", "frequency": 1, "relation": "at least"}),
    ("keywords:forbidden_words", {"forbidden_words": ["cat", "word"]}),
    ("keywords:forbidden_words", {"forbidden_words": ["e"]}),
    ("keywords:letter_frequency", {"letter": "s", "let_frequency": 2, "let_relation": "at least"}),
    ("keywords:letter_frequency", {"letter": "i", "let_frequency": 2, "let_relation": "less than"}),
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 1, "let_relation": "at least"}),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}),
    ("length_constraints:number_words", {"num_words": 8, "relation": "at least"}),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}),
    ("detectable_content:postscript", {"postscript_marker": "Cat"}),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}),
    ("detectable_format:constrained_response", {}),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 1}),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}),
    ("detectable_format:title", {}),
    ("combination:two_responses", {}),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem"}),
    ("combination:repeat_prompt", {"prompt_to_repeat": "naïve cat"}),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}),
    ("startend:end_checker", {"end_phrase": "Σ"}),
    ("punctuation:no_comma", {}),
    ("startend:quotation", {}),
]


def test_fuzz_vectorised_equals_python() -> None:
    """Random token soups (whitespace, asterisks, case-folding and Unicode oddities): the Polars path
    (with its Python fallback) and the plain-Python checkers agree on every instruction, strict and loose."""
    import random

    rng = random.Random(0)
    spaces = ["", "", " ", "\t", "\x1c", "\u3000", "\x85", " \n"]
    starts = ["", "", "* ", "*", "**", "- ", "-", "***", "******", '"', "Section 1", "SECTION 2", "P.S. ", "<<T>> "]

    def line() -> str:
        body = "".join(rng.choice(_FUZZ_TOKENS) for _ in range(rng.randint(0, 6)))
        return rng.choice(spaces) + rng.choice(starts) + body + rng.choice(spaces)

    def response() -> str:
        out = "\n".join(line() for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.3:
            out = rng.choice(spaces) + '"' + out + '"' + rng.choice(spaces)
        return out

    responses = [response() for _ in range(600)]
    ids = [iid for iid, _ in _FUZZ_INSTRUCTIONS]
    kwargs = json.dumps([kw for _, kw in _FUZZ_INSTRUCTIONS])
    frame = pl.DataFrame({"response": responses, "instruction_id_list": [ids] * len(responses),
                          "kwargs": [kwargs] * len(responses)}, schema=SCHEMA)
    scored = score_ifeval(frame)
    instructions = parse_kwargs(ids, kwargs)
    bad = []
    for row in scored.iter_rows(named=True):
        strict, loose = evaluate_response(instructions, row["response"])
        for pos, iid in enumerate(ids):
            if (row["inst_level_strict"][pos], row["inst_level_loose"][pos]) != (strict[pos], loose[pos]):
                bad.append(f"{iid} #{pos} on {row['response']!r}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize(
    "response",
    ["", "one line", "first\nsecond", "a\n\nb\n", "\n", "*x*\n**y**\n*", "  lead\r\nmid\n  trail  ", "\x1cx\x1c\ny",
     "only\n", "\n\n\n"],
)
def test_loose_variants_polars_equals_python(response: str) -> None:
    frame = _variants(pl.Series([response])).sort("_var")
    assert frame["text"].to_list() == loose_variants(response)
    assert frame["valid"].to_list() == [bool(v.strip()) for v in loose_variants(response)]


def test_lower_newer_constant_and_py_lower() -> None:
    """Polars lower-cases exactly the LOWER_NEWER characters differently; py_lower equals str.lower."""
    chars = pl.Series(_ALL_CHARS)
    rust = chars.str.to_lowercase().to_list()
    differ = [c for c, low in zip(_ALL_CHARS, rust, strict=True) if c.lower() != low]
    assert chars.str.contains("^" + pycompat.LOWER_NEWER + "$").to_list() == [c in set(differ) for c in _ALL_CHARS]
    assert pl.select(pycompat.py_lower(pl.lit(chars))).to_series().to_list() == [c.lower() for c in _ALL_CHARS]
    texts = ["ΟΔΟΣ \ua7cbΑΣ\ua7cb", "İSTANBUL", "\U00010d50x\u1c89Y", None, ""]
    got = pl.select(pycompat.py_lower(pl.lit(pl.Series(texts, dtype=pl.Utf8)))).to_series().to_list()
    assert got == [t.lower() if t is not None else None for t in texts]


def test_chunked_scoring_equals_whole(golden_scored: tuple[list[dict], pl.DataFrame]) -> None:
    """Frames longer than chunk_rows are scored in slices: same rows, same verdicts, errors name the
    row of the whole frame."""
    _, whole = golden_scored
    frame = whole.drop(list(OUTPUT_COLUMNS))
    assert score_ifeval(frame, chunk_rows=7).equals(whole)
    bad = pl.concat([frame, pl.DataFrame({"response": ["x"], "instruction_id_list": [["keywords:existence"]],
                                          "kwargs": ['[{"keywords": 3}]']})], how="diagonal_relaxed")
    with pytest.raises(ValueError, match=rf"row {frame.height}: "):
        score_ifeval(bad.select(frame.columns), chunk_rows=7)
