"""Frequent words of 40 languages from the ``wordfreq`` package: short-text material.

Every other source gives sentences; a model trained only on them has never seen a lone word.
``wordfreq`` (PyPI, optional: ``pip install "lstm-engine[corpus]"``; 57 MB of compressed word
lists, most of them Wikipedia, subtitles, news, books and web text) gives, per language, its
words by frequency. Its top ``TOP_WORDS`` words per language are taken, each a document of its
own (the same word in two languages shares its document, so its split, and is dropped as
ambiguous by the corpus anyway). Kept: words of letters (and combining marks, inner
apostrophes and hyphens) with at least 3 letters, 2 in scripts that write words with few
characters (Han, kana, Hangul). ``sh`` (Serbo-Croatian as one list) is left out: the corpus
labels Serbian, Croatian and Bosnian apart.
"""

from __future__ import annotations

import time
import unicodedata
from importlib import metadata

from .lid_source import SourceResult
from .lid_text import TextCollector, document_unit, normalise_language

NAME = "wordfreq"
DESCRIPTION = "frequent words (wordfreq word lists)"
TOP_WORDS = 5000
FORMAT = 1
_LEFT_OUT = {"sh"}


def version() -> str | None:
    """The installed wordfreq version, or None when it is not installed."""
    try:
        return metadata.version("wordfreq")
    except metadata.PackageNotFoundError:
        return None


def _dense_script(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def is_word(word: str) -> bool:
    letters = 0
    for i, ch in enumerate(word):
        if ch.isalpha():
            letters += 1
        elif unicodedata.category(ch).startswith("M"):
            continue
        elif ch in "'’-" and 0 < i < len(word) - 1:
            continue
        else:
            return False
    return letters >= (2 if word and _dense_script(word[0]) else 3)


def collect(top: int = TOP_WORDS) -> SourceResult:
    """The word lists as a source result (raises MissingDependencyError without wordfreq)."""
    from ..errors import require

    wordfreq = require("wordfreq", "corpus", "the word-list source of the language-id corpus")
    start, cpu = time.perf_counter(), time.process_time()
    collector = TextCollector(NAME, translated=False)
    for code in sorted(wordfreq.available_languages("best")):
        label = normalise_language(code)
        if label is None or code in _LEFT_OUT:
            continue
        for word in wordfreq.top_n_list(code, top):
            collector.passages[label] += 1
            if is_word(word):
                collector.add(label, word, document_unit(NAME, word))
    result = SourceResult(NAME, version=version() or "")
    result.texts = collector.finish()
    result.passages = dict(sorted(collector.passages.items()))
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result
