"""The IFEval instruction checkers, one plain-Python function per instruction id.

Each ``check_<name>(inst, text) -> bool`` reproduces ``check_following`` of the matching class in the
reference ``instructions.py`` (google-research ``instruction_following_eval/``; lm-evaluation-harness
``lm_eval/tasks/ifeval/``), quirks included; the docstrings state the rule. These functions are the
specification: the Polars versions in :mod:`.vectorized` must agree with them, and they serve the rows
the vectorised path cannot handle exactly (see :mod:`.pycompat`).

``inst`` is a validated :class:`~.registry.Instruction` (see :func:`~.registry.parse_instruction`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .registry import Instruction
from .text import count_sentences, count_words, detect_language, word_tokenize

__all__ = ["CHECKERS", "check_following"]

Checker = Callable[[Instruction, str], bool]


def _compare(count: int, inst: Instruction, threshold: int) -> bool:
    """Reference relation semantics: 'less than' -> ``count < t``; 'at least' -> ``count >= t``."""
    return count < threshold if inst.less_than else count >= threshold


# --- keywords ---------------------------------------------------------------------------------------

def check_keywords_existence(inst: Instruction, text: str) -> bool:
    """``KeywordChecker``: every keyword, used as a regex, ``re.search``-es case-insensitively (substring match)."""
    return all(re.search(k, text, flags=re.IGNORECASE) for k in inst["keywords"])


def check_keywords_frequency(inst: Instruction, text: str) -> bool:
    """``KeywordFrequencyChecker``: ``len(re.findall(keyword, text, IGNORECASE))`` vs ``frequency``."""
    return _compare(len(re.findall(inst["keyword"], text, flags=re.IGNORECASE)), inst, inst["frequency"])


def check_forbidden_words(inst: Instruction, text: str) -> bool:
    r"""``ForbiddenWords``: no ``\b<word>\b`` match (case-insensitive) for any forbidden word."""
    return not any(re.search(r"\b" + w + r"\b", text, flags=re.IGNORECASE) for w in inst["forbidden_words"])


def check_letter_frequency(inst: Instruction, text: str) -> bool:
    """``LetterFrequencyChecker``: occurrences of ``letter`` in ``text.lower()`` vs ``let_frequency``.

    ``letter`` is already lower-cased; a non-letter (``'#'``) is counted literally (see registry).
    """
    return _compare(text.lower().count(inst["letter"]), inst, inst["let_frequency"])


# --- language / change case ------------------------------------------------------------------------

def check_response_language(inst: Instruction, text: str) -> bool:
    """``ResponseLanguageChecker``: ``langdetect.detect(text) == language``; undetectable -> True."""
    lang = detect_language(text)
    return True if lang is None else lang == inst["language"]


def check_english_capital(inst: Instruction, text: str) -> bool:
    """``CapitalLettersEnglishChecker``: ``text.isupper()`` and detected language ``'en'`` (undetectable -> True)."""
    if not text.isupper():
        return False
    lang = detect_language(text)
    return True if lang is None else lang == "en"


def check_english_lowercase(inst: Instruction, text: str) -> bool:
    """``LowercaseLettersEnglishChecker``: ``text.islower()`` and detected language ``'en'`` (undetectable -> True)."""
    if not text.islower():
        return False
    lang = detect_language(text)
    return True if lang is None else lang == "en"


def check_capital_word_frequency(inst: Instruction, text: str) -> bool:
    """``CapitalWordFrequencyChecker``: ``nltk.word_tokenize`` tokens with ``isupper()`` vs ``capital_frequency``."""
    count = sum(1 for w in word_tokenize(text) if w.isupper())
    return _compare(count, inst, inst["capital_frequency"])


# --- length constraints ----------------------------------------------------------------------------

def check_number_sentences(inst: Instruction, text: str) -> bool:
    """``NumberOfSentences``: Punkt sentence count vs ``num_sentences``."""
    return _compare(count_sentences(text), inst, inst["num_sentences"])


def check_number_words(inst: Instruction, text: str) -> bool:
    r"""``NumberOfWords``: count of ``\w+`` runs vs ``num_words``."""
    return _compare(count_words(text), inst, inst["num_words"])


def check_number_paragraphs(inst: Instruction, text: str) -> bool:
    r"""``ParagraphChecker``: ``re.split(r"\s?\*\*\*\s?")``; blank first/last pieces are not counted, a
    blank inner piece fails; the count must equal ``num_paragraphs``."""
    paragraphs = re.split(r"\s?\*\*\*\s?", text)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index == 0 or index == len(paragraphs) - 1:
                count -= 1
            else:
                return False
    return count == inst["num_paragraphs"]


def check_nth_paragraph_first_word(inst: Instruction, text: str) -> bool:
    r"""``ParagraphFirstWordCheck``: split on ``"\n\n"``; the count of non-blank pieces must equal
    ``num_paragraphs`` and piece ``nth_paragraph`` (1-based, counted over *all* pieces, blank ones
    included -- a reference quirk) must be non-blank and start with ``first_word``: its first
    whitespace-separated token, leading ``'`` then ``"`` stripped, cut at the first of ``.,?!'"``,
    lower-cased."""
    paragraphs = re.split(r"\n\n", text)
    count = sum(1 for p in paragraphs if p.strip())
    nth = inst["nth_paragraph"]
    if nth > count:
        return False
    paragraph = paragraphs[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first_word = ""
    for char in word:
        if char in {".", ",", "?", "!", "'", '"'}:
            break
        first_word += char.lower()
    return count == inst["num_paragraphs"] and first_word == inst["first_word"]


# --- detectable content / format -------------------------------------------------------------------

def check_number_placeholders(inst: Instruction, text: str) -> bool:
    r"""``PlaceholderChecker``: ``len(re.findall(r"\[.*?\]"))`` >= ``num_placeholders``."""
    return len(re.findall(r"\[.*?\]", text)) >= inst["num_placeholders"]


def check_postscript(inst: Instruction, text: str) -> bool:
    r"""``PostscriptChecker``: search the lower-cased text (MULTILINE) for ``\s*p\.\s?p\.\s?s.*$`` (marker
    ``P.P.S``), ``\s*p\.\s?s\..*$`` (``P.S.``) or ``\s*<marker.lower()>.*$`` (other markers, as regex).
    Not anchored to a line start: the marker may appear anywhere."""
    marker = inst["postscript_marker"]
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def check_number_bullet_lists(inst: Instruction, text: str) -> bool:
    r"""``BulletListChecker``: lines matching ``^\s*\*[^\*].*$`` plus lines matching ``^\s*-.*$``
    (MULTILINE; ``\s*`` may span blank lines) must number exactly ``num_bullets``."""
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == inst["num_bullets"]


_CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def check_constrained_response(inst: Instruction, text: str) -> bool:
    """``ConstrainedResponseChecker``: one of the three "My answer is yes./no./maybe." options occurs (substring)."""
    text = text.strip()
    return any(option in text for option in _CONSTRAINED_OPTIONS)


def check_number_highlighted_sections(inst: Instruction, text: str) -> bool:
    r"""``HighlightSectionChecker``: ``\*[^\n\*]*\*`` matches with non-blank content, plus
    ``\*\*[^\n\*]*\*\*`` matches with non-blank content (so ``**bold**`` counts once per pattern that
    finds it), must be >= ``num_highlights``."""
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip())
    return count >= inst["num_highlights"]


def check_multiple_sections(inst: Instruction, text: str) -> bool:
    r"""``SectionChecker``: ``len(re.split(r"\s?" + spliter + r"\s?\d+\s?", text)) - 1`` (number of
    ``<spliter> <number>`` headers, case-sensitive, anywhere) >= ``num_sections``."""
    pattern = r"\s?" + inst["section_spliter"] + r"\s?\d+\s?"
    return len(re.split(pattern, text)) - 1 >= inst["num_sections"]


def check_json_format(inst: Instruction, text: str) -> bool:
    """``JsonFormat``: after ``strip()``, removing one leading ````` ```json ````` / ````` ```Json `````
    / ````` ```JSON ````` then ````` ``` ````` (chained ``removeprefix``) and a trailing ````` ``` `````,
    then ``strip()``, ``json.loads`` must succeed."""
    value = (
        text.strip()
        .removeprefix("```json")
        .removeprefix("```Json")
        .removeprefix("```JSON")
        .removeprefix("```")
        .removesuffix("```")
        .strip()
    )
    try:
        json.loads(value)
    except (ValueError, RecursionError):  # the reference only catches ValueError (it would crash)
        return False
    return True


def check_title(inst: Instruction, text: str) -> bool:
    r"""``TitleChecker``: some ``<<[^\n]+>>`` match is non-blank after stripping ``<`` left, ``>`` right."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", text))


# --- combination / start-end / punctuation -----------------------------------------------------------

def check_two_responses(inst: Instruction, text: str) -> bool:
    """``TwoResponsesChecker``: split on ``******``; a blank inner piece fails; exactly two non-blank
    pieces must remain and differ after ``strip()``."""
    valid = []
    pieces = text.split("******")
    for index, piece in enumerate(pieces):
        if not piece.strip():
            if index != 0 and index != len(pieces) - 1:
                return False
        else:
            valid.append(piece)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def check_repeat_prompt(inst: Instruction, text: str) -> bool:
    """``RepeatPromptThenAnswer``: ``text.strip().lower()`` starts with ``prompt_to_repeat.strip().lower()``."""
    return text.strip().lower().startswith(inst["prompt_to_repeat"].strip().lower())


def check_end_checker(inst: Instruction, text: str) -> bool:
    """``EndChecker``: ``text.strip().strip('"').lower()`` ends with ``end_phrase.strip().lower()``."""
    return text.strip().strip('"').lower().endswith(inst["end_phrase"].strip().lower())


def check_quotation(inst: Instruction, text: str) -> bool:
    """``QuotationChecker``: ``text.strip()`` is longer than 1 character and starts and ends with ``"``."""
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def check_no_comma(inst: Instruction, text: str) -> bool:
    """``CommaChecker``: no ``,`` (ASCII comma only) in the text."""
    return "," not in text


#: instruction id -> checker (the reference class is named in each checker's docstring).
CHECKERS: dict[str, Checker] = {
    "keywords:existence": check_keywords_existence,
    "keywords:frequency": check_keywords_frequency,
    "keywords:forbidden_words": check_forbidden_words,
    "keywords:letter_frequency": check_letter_frequency,
    "language:response_language": check_response_language,
    "length_constraints:number_sentences": check_number_sentences,
    "length_constraints:number_paragraphs": check_number_paragraphs,
    "length_constraints:number_words": check_number_words,
    "length_constraints:nth_paragraph_first_word": check_nth_paragraph_first_word,
    "detectable_content:number_placeholders": check_number_placeholders,
    "detectable_content:postscript": check_postscript,
    "detectable_format:number_bullet_lists": check_number_bullet_lists,
    "detectable_format:constrained_response": check_constrained_response,
    "detectable_format:number_highlighted_sections": check_number_highlighted_sections,
    "detectable_format:multiple_sections": check_multiple_sections,
    "detectable_format:json_format": check_json_format,
    "detectable_format:title": check_title,
    "combination:two_responses": check_two_responses,
    "combination:repeat_prompt": check_repeat_prompt,
    "startend:end_checker": check_end_checker,
    "change_case:capital_word_frequency": check_capital_word_frequency,
    "change_case:english_capital": check_english_capital,
    "change_case:english_lowercase": check_english_lowercase,
    "punctuation:no_comma": check_no_comma,
    "startend:quotation": check_quotation,
}


def check_following(inst: Instruction, text: str) -> bool:
    """Whether ``text`` follows ``inst`` (the reference's ``check_following``, without the empty-text rule).

    The evaluation (:mod:`.evaluate`) additionally counts any text whose ``strip()`` is empty as not
    following, as the reference's ``test_instruction_following_strict/loose`` do.
    """
    return CHECKERS[inst.id](inst, text)
