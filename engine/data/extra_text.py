"""Text a user brings, as one more source of the default corpus (``extra_data=PATH``).

``--data`` replaces the corpus; this adds to it, the way a ``ConcatDataset`` adds a dataset: a
few thousand sentences of a language or domain the corpus lacks (Croatian prose, say, whose
only source here is GNOME's help) join the many-source corpus, under its rules: cleaned,
cut into sentences, de-duplicated against every other source, capped like any source, split
by document, and listed in the manifest (the file's name and SHA-256, strings per language).
``held_out_sources=extra`` instead keeps it out of training and tests on it: the model scored
on a domain of the user's that it never saw.

``PATH`` is anything ``--data`` reads (``text_formats.load_text_data``): a ``label<TAB>text``
TSV, a Tatoeba ``sentences.csv`` or a WiLI-2018 folder. What a file says about splits is not
used: every line is a document of its own, whose split the corpus decides (its sentences stay
together). Labels become the corpus's: locale names as the catalogs' are (``pt_BR`` -> ``pt``),
and ISO 639-3 codes, Tatoeba's and WiLI's, by ``langcodes`` (``hrv`` -> ``hr``, ``cmn`` ->
``zh``). A label the corpus does not otherwise have is
a new class, if it has ``min_strings`` strings.

The file's content (its SHA-256) keys the source's and the corpus's cache files: an edited
file is read again, a moved one is not.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections import defaultdict
from pathlib import Path

from ..errors import ArgumentError
from .lid_source import SourceResult
from .lid_text import TextCollector, cap_order, normalise_language
from .text_formats import load_text_data

NAME = "extra"
DESCRIPTION = "text you bring (extra_data: a label<TAB>text TSV, a Tatoeba sentences.csv or a WiLI-2018 folder)"
FORMAT = 1


def check_path(value) -> str:
    """``extra_data`` as an absolute path that exists (ArgumentError names the setting)."""
    path = Path(str(value)).expanduser()
    if not path.exists():
        raise ArgumentError(f"extra_data: no such file or folder: {path} (expected a label<TAB>text TSV, a "
                            f"Tatoeba sentences.csv or a WiLI-2018 folder)")
    return str(path.resolve())


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of the data's bytes (of a folder's files, in name order, with their names)."""
    files = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in _files(Path(path)))
    return _sha256(Path(path).is_dir(), files)


@functools.lru_cache(maxsize=8)
def _sha256(folder: bool, files: tuple) -> str:
    # keyed by the files' sizes and times too: a corpus build asks three times, an edit reads again
    digest = hashlib.sha256()
    for name, _, _ in files:
        if folder:
            digest.update(Path(name).name.encode() + b"\0")
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def corpus_label(label: str) -> str | None:
    """The corpus's label for a label of the user's data, None when it names no language
    (``und``, Tatoeba's ``\\N``)."""
    tag = label.strip().replace("_", "-")
    if not tag or tag.lower() in ("und", "\\n", "zxx", "mul"):
        return None
    # Locale names (pt_BR, sr@latin, no) first, as the catalogs' are read.
    locale = normalise_language(label.strip())
    if locale is not None and len(locale) == 2:
        return locale
    import langcodes                     # here: import lstm_engine stays fast
    try:
        language = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).language
    except (ValueError, LookupError):
        language = None
    language = language or tag.partition("-")[0].lower()
    return normalise_language(language) or language


def collect(path: str | os.PathLike, min_letters: int = 10, budget: int | None = None) -> SourceResult:
    """The data at ``path`` as a source result: each language's lines read in a fixed
    pseudo-random order (``cap_order``) until it holds ``budget`` strings (None: all)."""
    start, cpu = time.perf_counter(), time.process_time()
    splits = load_text_data(path)
    by_label: dict[str, set[str]] = defaultdict(set)
    for examples in splits.values():
        for text, label in zip(examples.inputs, examples.labels):
            name = corpus_label(str(label))
            if name is not None:
                by_label[name].add(str(text))
    collector = TextCollector(NAME, min_letters, translated=False)
    for label in sorted(by_label):
        for line in sorted(by_label[label], key=cap_order):
            if budget is not None and collector.count(label) >= budget:
                break
            collector.add_passage(label, line, f"{label}\t{line}")
    result = SourceResult(NAME, version=f"{Path(path).name} sha256:{fingerprint(path)[:16]}",
                          files=len(_files(Path(path))))
    result.texts = collector.finish()
    result.passages = dict(sorted(collector.passages.items()))
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result
