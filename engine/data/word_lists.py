"""Phrases of frequent words of 41 languages from the ``wordfreq`` package: the everyday
vocabulary that interface strings and help pages lack, and short-text material.

Every other source is software text: a model trained only on it has seen a few thousand
distinct words per language (4,871 in English, and 71% of its 1,000 commonest) and takes plain
sentences ("Kindness is the beginning of cruelty.") for another language. ``wordfreq`` (PyPI,
optional: ``pip install "lstm-engine[corpus]"``; 57 MB of compressed word lists, most of them
Wikipedia, subtitles, news, books and web text) gives, per language, its words by frequency.
From its top ``TOP_WORDS`` words each language gets phrases of 1 to ``MAX_PHRASE_WORDS``
words (a seeded draw per language; the word of rank r with weight r ** -``RANK_POWER``, so the
common words come often and the rest still come), joined by spaces (without them in Chinese
and Japanese, which write none). A phrase is its own document (the same phrase in two languages
shares its document, so its split, and is dropped as ambiguous by the corpus anyway). Kept
words (``usable_words``): letters (and combining marks, inner apostrophes and hyphens); one
letter only among the language's top ``SHORT_WORD_RANKS`` (Polish "w", Italian "e"; further
down they are the pieces of "l'" and "don't"); not English that the web text quotes (a word
of English's top words whose rank in the language is over ``ENGLISH_RANK_FACTOR`` times its
English rank plus ``ENGLISH_RANK_SLACK``: "the" is 193rd in Finnish); not in Latin letters in
a language that is written in another script. A one-word phrase needs 3 letters, 2 in
scripts that write words with few characters (Han, kana, Hangul). ``sh`` (Serbo-Croatian as
one list) is left out: the corpus labels Serbian, Croatian and Bosnian apart.

Phrases instead of the top words one by one (``benchmarks/lid_tuning.py``,
``...-ng64k-phrases`` against ``...-ng64k``, the held-out run): fortunes 93.2% against 92.4%
(English 14.5% wrong against 17.6%), GNOME help 94.9% against 95.1% (more Danish, Indonesian
and Galician help taken for Norwegian, Malay, Portuguese), 94.5% against 94.4% in all; 25 of
the 27 example sentences against 23.
"""

from __future__ import annotations

import time
import unicodedata
import zlib
from importlib import metadata

import numpy as np

from .lid_source import SourceResult
from .lid_text import TextCollector, document_unit, normalise_language

NAME = "wordfreq"
DESCRIPTION = "phrases of frequent words (wordfreq word lists)"
TOP_WORDS = 10000
MAX_PHRASE_WORDS = 5
RANK_POWER = 0.5
SHORT_WORD_RANKS = 100
ENGLISH_RANK_FACTOR, ENGLISH_RANK_SLACK = 4, 50
#: Phrases per language when the corpus sets no budget.
PHRASES = 3000
FORMAT = 2
_LEFT_OUT = {"sh"}
_NO_SPACES = {"zh", "ja"}


def version() -> str | None:
    """The installed wordfreq version, or None when it is not installed."""
    try:
        return metadata.version("wordfreq")
    except metadata.PackageNotFoundError:
        return None


def _dense_script(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def letter_run(word: str) -> int:
    """The number of letters of ``word`` when it is letters (and combining marks, inner
    apostrophes and hyphens), else 0."""
    letters = 0
    for i, ch in enumerate(word):
        if ch.isalpha():
            letters += 1
        elif unicodedata.category(ch).startswith("M"):
            continue
        elif ch in "'’-" and 0 < i < len(word) - 1:
            continue
        else:
            return 0
    return letters


def is_word(word: str) -> bool:
    """Whether ``word`` may stand alone as a phrase: letters, and enough of them."""
    return letter_run(word) >= (2 if word and _dense_script(word[0]) else 3)


def usable_words(words: list[str], english: dict[str, int] | None) -> list[str]:
    """The words of a language (by frequency, commonest first) that phrases use (see the module
    docstring); ``english`` maps English's top words to their ranks (None for English)."""
    latin = sum(any("a" <= ch <= "z" for ch in word) for word in words[:SHORT_WORD_RANKS])
    other_script = latin < SHORT_WORD_RANKS // 2 <= len(words[:SHORT_WORD_RANKS])
    kept = []
    for rank, word in enumerate(words):
        letters = letter_run(word)
        if not letters or letters == 1 and rank >= SHORT_WORD_RANKS:
            continue
        if english is not None and rank > ENGLISH_RANK_FACTOR * english.get(word, rank) + ENGLISH_RANK_SLACK:
            continue
        if other_script and any("a" <= ch <= "z" for ch in word.lower()):
            continue
        kept.append(word)
    return kept


def phrases(words: list[str], count: int, seed: int, separator: str = " ") -> list[str]:
    """``count`` phrases (not all distinct) of 1 to MAX_PHRASE_WORDS of ``words`` (by
    frequency, commonest first), drawn with weight rank ** -RANK_POWER."""
    if not words:
        return []
    weights = np.arange(1, len(words) + 1, dtype=np.float64) ** -RANK_POWER
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, MAX_PHRASE_WORDS + 1, size=count)
    picks = rng.choice(len(words), size=int(sizes.sum()), p=weights / weights.sum())
    out, at = [], 0
    for size in sizes:
        chosen = [words[i] for i in picks[at:at + size]]
        at += size
        if size > 1 or is_word(chosen[0]):
            out.append(separator.join(chosen))
    return out


def collect(count: int = PHRASES) -> SourceResult:
    """``count`` phrases per language as a source result (raises MissingDependencyError without
    wordfreq)."""
    from ..errors import require

    wordfreq = require("wordfreq", "corpus", "the word-list source of the language-id corpus")
    start, cpu = time.perf_counter(), time.process_time()
    collector = TextCollector(NAME, translated=False)
    english = {word: rank for rank, word in enumerate(wordfreq.top_n_list("en", TOP_WORDS))}
    for code in sorted(wordfreq.available_languages("best")):
        label = normalise_language(code)
        if label is None or code in _LEFT_OUT:
            continue
        words = usable_words(wordfreq.top_n_list(code, TOP_WORDS), None if label == "en" else english)
        for phrase in phrases(words, count, zlib.crc32(code.encode()), "" if label in _NO_SPACES else " "):
            collector.passages[label] += 1
            collector.add(label, phrase, document_unit(NAME, phrase))
    result = SourceResult(NAME, version=version() or "")
    result.texts = collector.finish()
    result.passages = dict(sorted(collector.passages.items()))
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result
