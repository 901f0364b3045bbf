"""IFEval scoring (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models",
arXiv:2311.07911): the 25 verifiable-instruction checkers, strict and loose, prompt and instruction level.

Behaviour follows the reference implementation, google-research ``instruction_following_eval/``
(``instructions.py``, ``instructions_util.py``, ``instructions_registry.py``, ``evaluation_lib.py``), also
shipped by lm-evaluation-harness as ``lm_eval/tasks/ifeval/``; ``tests/metrics/test_ifeval_reference.py``
checks per-instruction agreement with lm-eval on the released GPT-4 and text-bison responses.

Deliberate, documented differences (all make the result deterministic):

- kwargs the reference would fill with *random* values (missing, invalid) raise ``ValueError``;
- ``keywords:letter_frequency`` with a non-letter ``letter`` (keys 1122 ``'#'``, 1129 ``'!'``) counts that
  character, as current google-research code does, instead of a random letter (2023 code, lm-eval);
- langdetect is seeded (0).

Modules: :mod:`.registry` (ids, kwargs validation), :mod:`.checkers` (Python checkers = the spec),
:mod:`.vectorized` (Polars checkers), :mod:`.evaluate` (strict/loose over a frame), :mod:`.text` (NLTK,
langdetect, loose variants), :mod:`.pycompat` (Python-``re``-compatible classes for Polars regexes).
"""

from .checkers import CHECKERS, check_following
from .evaluate import OUTPUT_COLUMNS, evaluate_response, ifeval_accuracies, parse_kwargs, score_ifeval
from .registry import INSTRUCTION_IDS, LANGUAGE_CODES, Instruction, UnknownInstructionError, parse_instruction
from .text import configure_nltk_data, loose_variants

__all__ = [
    "score_ifeval",
    "ifeval_accuracies",
    "INSTRUCTION_IDS",
    "UnknownInstructionError",
    "configure_nltk_data",
    "OUTPUT_COLUMNS",
    "Instruction",
    "parse_instruction",
    "parse_kwargs",
    "evaluate_response",
    "check_following",
    "CHECKERS",
    "LANGUAGE_CODES",
    "loose_variants",
]
