"""Text utilities of the IFEval reference: NLTK tokenisation, language detection, loose variants.

Reference: ``instructions_util.py`` (``count_words``, ``count_sentences``) and ``instructions.py``
(``nltk.word_tokenize``, ``langdetect.detect``) of google-research ``instruction_following_eval/``, and
``evaluation_lib.py::test_instruction_following_loose`` for the loose variants.

NLTK data is never downloaded. The Punkt sentence model (``tokenizers/punkt_tab/english/``, which
``nltk.data.load("nltk:tokenizers/punkt/english.pickle")`` resolves to in NLTK >= 3.9) is looked up in:

1. a directory given to :func:`configure_nltk_data` (explicit path);
2. else the first entry of the ``NLTK_DATA`` environment variable that holds ``tokenizers/punkt_tab``;
3. else ``$CAPDRIFT_DATA_DIR/nltk_data``;
4. else ``<repo>/../shared/data/nltk_data`` (``<repo>`` = the checkout holding ``capdrift_fast/``);
5. else NLTK's own search path (``~/nltk_data``, ...).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import nltk

__all__ = [
    "configure_nltk_data",
    "count_sentences",
    "count_words",
    "nltk_word_class",
    "word_tokenize",
    "detect_language",
    "loose_variants",
]

_PUNKT = "tokenizers/punkt_tab/english"
_REPO_ROOT = Path(__file__).resolve().parents[3]
_configured: Path | None = None


def _has_punkt(directory: Path) -> bool:
    return (directory / _PUNKT).is_dir()


def _default_nltk_dirs() -> list[Path]:
    dirs = [Path(p).expanduser() for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if os.environ.get("CAPDRIFT_DATA_DIR"):
        dirs.append(Path(os.environ["CAPDRIFT_DATA_DIR"]).expanduser() / "nltk_data")
    dirs.append(_REPO_ROOT.parent / "shared" / "data" / "nltk_data")
    return dirs


def configure_nltk_data(path: str | os.PathLike[str] | None) -> None:
    """Put an offline NLTK data directory first on ``nltk.data.path``; never downloads.

    Args:
        path: a directory holding ``tokenizers/punkt_tab/english/`` (NLTK's ``punkt_tab`` package), or
            None to use the first such directory among ``$NLTK_DATA`` entries, ``$CAPDRIFT_DATA_DIR/nltk_data``
            and ``<repo>/../shared/data/nltk_data``.

    Raises:
        FileNotFoundError: the directory (or, for None, every candidate) lacks ``tokenizers/punkt_tab/english``.
    """
    global _configured
    candidates = [Path(path).expanduser()] if path is not None else _default_nltk_dirs()
    for directory in candidates:
        if _has_punkt(directory):
            directory = directory.resolve()
            if str(directory) in nltk.data.path:
                nltk.data.path.remove(str(directory))
            nltk.data.path.insert(0, str(directory))
            _configured = directory
            return
    tried = ", ".join(str(d) for d in candidates) or "(none)"
    raise FileNotFoundError(
        f"no NLTK punkt_tab data ({_PUNKT}/) in: {tried}. IFEval sentence/word counts need it; pass the "
        "directory to configure_nltk_data(), or set NLTK_DATA (it is never downloaded)"
    )


def _ensure_nltk_data() -> None:
    if _configured is not None:
        return
    try:
        configure_nltk_data(None)
    except FileNotFoundError:
        try:  # NLTK's own search path may still have it (e.g. ~/nltk_data)
            nltk.data.find(_PUNKT + "/")
        except LookupError:
            raise FileNotFoundError(
                f"NLTK punkt_tab data not found (looked in {', '.join(map(str, _default_nltk_dirs()))} and "
                f"nltk.data.path). Call configure_nltk_data(<dir with {_PUNKT}/>) or set NLTK_DATA; "
                "capdrift_fast never downloads NLTK data"
            ) from None


@functools.cache
def _sentence_tokenizer() -> nltk.tokenize.PunktTokenizer:
    _ensure_nltk_data()
    return nltk.tokenize.PunktTokenizer("english")


def count_sentences(text: str) -> int:
    """Number of Punkt (English) sentences, as the reference ``instructions_util.count_sentences``."""
    return len(_sentence_tokenizer().tokenize(text))


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize`` (Punkt sentences, then the Treebank word tokenizer), as the reference."""
    _sentence_tokenizer()  # makes sure the data is configured
    return nltk.word_tokenize(text)


@functools.cache
def _word_tokenizer() -> nltk.tokenize.RegexpTokenizer:
    return nltk.tokenize.RegexpTokenizer(r"\w+")


def count_words(text: str) -> int:
    r"""Number of ``\w+`` tokens of ``nltk.tokenize.RegexpTokenizer(r"\w+")`` (reference ``count_words``).

    NLTK itself is called because ``\w`` depends on its version: NLTK >= 3.10 compiles tokenizer
    patterns with the ``regex`` engine (Unicode word characters, combining marks included), older
    NLTK with ``re`` (``str.isalnum`` or ``_``). Either way we equal the reference run with the same NLTK.
    """
    return len(_word_tokenizer().tokenize(text))


@functools.cache
def nltk_word_class() -> str:
    r"""The characters NLTK's ``\w+`` tokenizer treats as word characters, as a Rust-regex class.

    Derived empirically (every code point, ~0.3 s once) so that the Polars count ``[class]+`` equals
    :func:`count_words` whatever regex engine the installed NLTK uses.
    """
    from .pycompat import ranges_class

    chars = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    word_chars = set(_word_tokenizer().tokenize("\n".join(chars)))
    return ranges_class(word_chars.__contains__)


@functools.cache
def _language_factory():  # noqa: ANN202 - langdetect has no type hints
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)
    return factory


def detect_language(text: str) -> str | None:
    """``langdetect.detect(text)`` with a fixed seed (0); None where langdetect raises.

    The reference calls ``langdetect.detect`` unseeded, whose sampling is random; we use our own
    ``DetectorFactory`` seeded with 0 (no global state is touched) so verdicts are reproducible. The
    reference counts a ``LangDetectException`` (e.g. no letters in the text) as "instruction followed";
    callers map None accordingly.
    """
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(text)
    try:
        return detector.detect()
    except LangDetectException:
        return None


def loose_variants(response: str) -> list[str]:
    """The 8 texts the reference's loose evaluation tries, in its order.

    ``evaluation_lib.test_instruction_following_loose``: the response; the response with every ``*``
    removed; the response without its first line, without its last line, without both (each
    ``strip()``-ped); and the last three with ``*`` removed. Lines are split on ``"\\n"`` only.
    """
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    star = response.replace("*", "")
    return [response, star, first, last, both, first.replace("*", ""), last.replace("*", ""), both.replace("*", "")]
