"""IFEval instruction ids and their keyword arguments: parsing and validation.

Source of the definitions: the reference implementation's ``instructions_registry.py`` (the ids, see
``INSTRUCTION_DICT``) and ``instructions.py`` (each class's ``build_description`` signature and
normalisation), google-research ``instruction_following_eval/`` (Zhou et al. 2023, arXiv:2311.07911,
Section 2 / Table 1), as shipped in lm-evaluation-harness ``lm_eval/tasks/ifeval/``.

The reference's ``build_description`` draws *random* values for every argument that is missing (or,
in lm-eval, falsy) and for some invalid ones (a negative threshold, ``nth_paragraph`` out of range, a
multi-character ``letter``). A random threshold makes a score meaningless and irreproducible, so here
such kwargs are rejected with a :class:`ValueError` naming the instruction id and the argument. Values
the reference accepts deterministically are accepted and normalised exactly as it does (e.g.
``keyword.strip()``, ``first_word.lower()``, a ``frequency`` of 0).

The one released-data case where the reference draws at random is ``keywords:letter_frequency`` with a
``letter`` that is not an ASCII letter (IFEval keys 1122 ``'#'`` and 1129 ``'!'``): the 2023 reference
(and lm-eval 0.4.x) then checks a random ASCII letter instead. Current google-research code drops that
test and counts the character that was asked for. We count the requested character (deterministic,
and what the prompt asks); see :func:`parse_instruction`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INSTRUCTION_IDS",
    "LANGUAGE_CODES",
    "RELATIONS",
    "Instruction",
    "UnknownInstructionError",
    "parse_instruction",
]

#: Relations of the counting instructions (reference ``_COMPARISON_RELATION``): ``"less than"`` means
#: ``count < threshold``, ``"at least"`` means ``count >= threshold``.
RELATIONS = ("less than", "at least")

#: ISO 639-1 codes accepted by ``language:response_language`` (reference ``instructions_util.LANGUAGE_CODES``;
#: the reference raises ``KeyError`` for any other code).
LANGUAGE_CODES: Mapping[str, str] = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi",
    "fr": "French", "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian",
    "bn": "Bengali", "uk": "Ukrainian", "th": "Thai", "ur": "Urdu", "ta": "Tamil",
    "te": "Telugu", "bg": "Bulgarian", "ko": "Korean", "pl": "Polish", "he": "Hebrew",
    "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili", "kn": "Kannada",
    "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish",
}

# Argument kinds: "int" (non-negative unless noted), "str" (non-empty after the reference's
# normalisation), "relation" (one of RELATIONS), "words" (non-empty list of non-empty strings).
_SPECS: dict[str, dict[str, str]] = {
    "keywords:existence": {"keywords": "words"},
    "keywords:frequency": {"keyword": "str", "frequency": "int", "relation": "relation"},
    "keywords:forbidden_words": {"forbidden_words": "words"},
    "keywords:letter_frequency": {"letter": "str", "let_frequency": "int", "let_relation": "relation"},
    "language:response_language": {"language": "str"},
    "length_constraints:number_sentences": {"num_sentences": "int", "relation": "relation"},
    "length_constraints:number_paragraphs": {"num_paragraphs": "int"},
    "length_constraints:number_words": {"num_words": "int", "relation": "relation"},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": "int", "nth_paragraph": "int", "first_word": "str",
    },
    "detectable_content:number_placeholders": {"num_placeholders": "int"},
    "detectable_content:postscript": {"postscript_marker": "str"},
    "detectable_format:number_bullet_lists": {"num_bullets": "int"},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {"num_highlights": "int"},
    "detectable_format:multiple_sections": {"section_spliter": "str", "num_sections": "int"},
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": "str"},
    "startend:end_checker": {"end_phrase": "str"},
    "change_case:capital_word_frequency": {"capital_frequency": "int", "capital_relation": "relation"},
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
    "startend:quotation": {},
}

#: Every instruction id of the released benchmark (the 25 registered in the reference's
#: ``instructions_registry.INSTRUCTION_DICT``).
INSTRUCTION_IDS: frozenset[str] = frozenset(_SPECS)

# Arguments the reference interprets as regular expressions (re.search / re.findall / re.split).
_REGEX_ARGS = {"keywords", "keyword", "forbidden_words", "section_spliter", "postscript_marker"}


class UnknownInstructionError(ValueError):
    """An instruction id that is not one of :data:`INSTRUCTION_IDS`.

    The message names the id, suggests the closest valid ids (``difflib``) and lists all valid ids.
    ``instruction_id`` and ``suggestions`` are kept as attributes.
    """

    def __init__(self, instruction_id: str) -> None:
        self.instruction_id = instruction_id
        valid = sorted(INSTRUCTION_IDS)
        self.suggestions = difflib.get_close_matches(str(instruction_id), valid, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, self.suggestions))}?" if self.suggestions else ""
        super().__init__(
            f"unknown IFEval instruction id {instruction_id!r}.{hint} Valid ids: {', '.join(valid)}"
        )


@dataclass(frozen=True)
class Instruction:
    """One instruction of a prompt with validated, normalised arguments.

    Attributes:
        id: the instruction id (one of :data:`INSTRUCTION_IDS`).
        args: the normalised keyword arguments as ``(name, value)`` pairs in spec order (lists become
            tuples), so instances are hashable. See :func:`parse_instruction` for the normalisation.
    """

    id: str
    args: tuple[tuple[str, Any], ...]

    def __getitem__(self, name: str) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        raise KeyError(f"{self.id} has no argument {name!r}")

    @property
    def less_than(self) -> bool:
        """For counting instructions: True for relation ``'less than'``, False for ``'at least'``."""
        for key, value in self.args:
            if key.endswith("relation"):
                return value == RELATIONS[0]
        raise KeyError(f"{self.id} has no relation argument")


def _bad(instruction_id: str, name: str, problem: str) -> ValueError:
    return ValueError(f"IFEval instruction {instruction_id!r}: kwarg {name!r} {problem}")


def _as_int(instruction_id: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(instruction_id, name, f"must be an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise _bad(instruction_id, name, f"must be an integer, got {value!r}")
        value = int(value)
    return value


def parse_instruction(instruction_id: str, kwargs: Mapping[str, Any] | None) -> Instruction:
    """Validate and normalise one instruction's kwargs (one object of IFEval's ``kwargs`` array).

    ``None`` values mean "unset" (the HF ``google/IFEval`` rows carry every key, unset ones as null).
    Normalisation follows the reference ``build_description`` methods (``instructions.py``):
    ``keyword``, ``end_phrase``, ``postscript_marker``, ``section_spliter`` are ``strip()``-ped,
    ``first_word`` and ``letter`` are lower-cased (``letter`` also stripped), keyword lists are kept as
    given (the reference sorts / de-duplicates them, which does not change any verdict).

    ``letter`` may be any single non-blank character: a non-letter (``'#'``, ``'!'``) is counted
    literally, as current google-research code does, where the 2023 reference / lm-eval would check a
    random ASCII letter instead (see the module docstring).

    Args:
        instruction_id: an id of :data:`INSTRUCTION_IDS`.
        kwargs: the instruction's kwargs object, or None for none.

    Returns:
        The :class:`Instruction`.

    Raises:
        UnknownInstructionError: ``instruction_id`` is not an IFEval id.
        ValueError: a required kwarg is missing (the reference would draw it at random), has the wrong
            type or an invalid value (negative count, unknown relation or language code, ``nth_paragraph``
            outside ``1..num_paragraphs``, an invalid regular expression, ...), or an unexpected kwarg
            is set. The message names the instruction id and the kwarg.
    """
    if instruction_id not in _SPECS:
        raise UnknownInstructionError(instruction_id)
    spec = _SPECS[instruction_id]
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    extra = sorted(set(given) - set(spec))
    if extra:
        allowed = ", ".join(spec) if spec else "none"
        raise _bad(instruction_id, extra[0], f"is not an argument of this instruction (arguments: {allowed})")
    args: list[tuple[str, Any]] = []
    for name, kind in spec.items():
        if name not in given:
            raise _bad(instruction_id, name, "is required (the reference would draw a random value)")
        value = given[name]
        if kind == "int":
            value = _as_int(instruction_id, name, value)
            # capital_frequency is the one count the reference does not check for < 0.
            if value < 0 and name != "capital_frequency":
                raise _bad(instruction_id, name, f"must be >= 0, got {value}")
        elif kind == "relation":
            if value not in RELATIONS:
                raise _bad(instruction_id, name, f"must be one of {RELATIONS}, got {value!r}")
        elif kind == "words":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise _bad(instruction_id, name, f"must be a non-empty list of strings, got {value!r}")
            if not all(isinstance(w, str) and w for w in value):
                raise _bad(instruction_id, name, f"must contain non-empty strings only, got {value!r}")
            value = tuple(value)
        else:  # str
            if not isinstance(value, str):
                raise _bad(instruction_id, name, f"must be a string, got {value!r}")
            value = _normalise_str(instruction_id, name, value)
        if name in _REGEX_ARGS:
            for pattern in value if isinstance(value, tuple) else (value,):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise _bad(instruction_id, name, f"is used as a regular expression by the reference "
                                                     f"and {pattern!r} does not compile: {exc}") from None
        args.append((name, value))
    inst = Instruction(instruction_id, tuple(args))
    if instruction_id == "length_constraints:nth_paragraph_first_word":
        if not 1 <= inst["nth_paragraph"] <= inst["num_paragraphs"]:
            raise _bad(instruction_id, "nth_paragraph",
                       f"must be in 1..num_paragraphs ({inst['num_paragraphs']}), got {inst['nth_paragraph']}")
    return inst


def _normalise_str(instruction_id: str, name: str, value: str) -> str:
    if name == "letter":
        # Reference: a missing or multi-character letter is replaced by a random one.
        if len(value) != 1 or not value.strip():
            raise _bad(instruction_id, name, f"must be a single non-blank character, got {value!r}")
        return value.strip().lower()
    if name == "language":
        if value not in LANGUAGE_CODES:
            raise _bad(instruction_id, name, f"must be one of {', '.join(LANGUAGE_CODES)}, got {value!r}")
        return value
    if name == "first_word":
        value = value.lower()
    elif name in ("keyword", "end_phrase", "postscript_marker", "section_spliter"):
        value = value.strip()
    if not value.strip():
        raise _bad(instruction_id, name, f"must be a non-empty string, got {value!r}")
    return value
