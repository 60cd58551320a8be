"""What a source of the language-identification corpus is: a name, what it reads, and a reader.

Every source turns some real text into ``{label: {text: unit}}`` (see ``lid_text.TextCollector``)
plus counts of what it read. Most sources are Debian packages (``PackageSource``): the corpus
builder fetches their ``.deb`` files (``debian_packages``) and the source's ``documents``
function gets, package by package, the files its ``select`` chose, as (path, bytes), and names
the documents in them: (label, document key, a function that gives the document's paragraphs).
Readers never see the network or the file system, which is what makes them testable on
fixtures built in the tests.

Documents are read in a fixed pseudo-random order (a hash of the key, ``reading_order``), and a
label stops taking documents once it holds ``budget`` strings: a source offers far more text than the
corpus keeps (LibreOffice's help alone is 40,000 sentences per language), and cleaning it all
would take minutes. Because the order depends on the key only, every language reads the
translations of the same documents first. A label fed by several packages (``zh-cn`` and
``zh-tw``, four Spanish Firefox packs) gives each package an equal share of the budget.

The gettext catalogs and the word lists are read in their own modules and join the corpus
through the same result type.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import DataError
from .debian_packages import FetchedPackage, deb_files
from .lid_text import TextCollector, reading_order

#: (label, document key, the document's paragraphs when asked); a None label: not a language.
Document = tuple["str | None", str, Callable[[], Iterable[str]]]

#: (the package's label or None, its selected files as (path, contents)) -> its documents.
DocumentReader = Callable[["str | None", list[tuple[str, bytes]]], Iterable[Document]]


@dataclass
class SourceResult:
    """One source's strings and what it read, for the corpus and its manifest."""
    name: str
    texts: dict[str, dict[str, float]] = field(default_factory=dict)   # {label: {text: unit}}
    packages: dict[str, str] = field(default_factory=dict)              # package -> version read
    failed: dict[str, str] = field(default_factory=dict)                # package or file -> why
    passages: dict[str, int] = field(default_factory=dict)              # per label: paragraphs/messages offered
    files: int = 0
    unreadable: list[str] = field(default_factory=list)                 # files that could not be read
    seconds: float = 0.0
    cpu_seconds: float = 0.0       # the reading process's CPU time (wall time depends on the machine's load)
    version: str = ""              # what the text came from, when it is not packages (e.g. a wheel)

    def strings_per_language(self) -> dict[str, int]:
        return {label: len(texts) for label, texts in sorted(self.texts.items())}


@dataclass(frozen=True)
class PackageSource:
    """A source made of Debian packages.

    ``packages`` maps each package to the label of its text, or to None when the reader finds
    the label in each file's path (one package, many languages). ``format`` is bumped whenever
    the reader changes what it keeps, so that cached results of the old reader are not reused."""
    name: str
    description: str
    packages: Mapping[str, str | None]
    select: Callable[[str], bool]
    documents: DocumentReader
    format: int = 1
    min_letters: int | None = None     # None: the corpus's min_letters
    translated: bool = True            # translations of English documents (see TextCollector)
    english_by_words: bool = False     # untranslated paragraphs known by their words (see TextCollector)


def collect_packages(source: PackageSource, fetched: Mapping[str, FetchedPackage], min_letters: int,
                     budget: int | None = None) -> SourceResult:
    """Read the documents of the packages that were fetched (in name order), each package's in
    reading order, until each label holds ``budget`` strings (None: all).

    In a translated source English is read last, and its copy of every document another
    language read is read whatever the budget: it is what tells an untranslated paragraph
    from a translated one (``TextCollector.finish``). A package that cannot be read is
    recorded in ``failed`` (what was read before the damage is kept); the others still count."""
    start, cpu = time.perf_counter(), time.process_time()
    collector = TextCollector(source.name, source.min_letters or min_letters, source.translated,
                              source.english_by_words)
    result = SourceResult(source.name)
    packages = sorted(name for name in fetched if name in source.packages)
    packages_per_label = Counter(source.packages[name] for name in packages)
    english_packages = [name for name in packages if source.translated and source.packages[name] == "en"]
    english: list[Document] = []      # read last
    read_keys: set[str] = set()

    def package_documents(package):
        try:
            files = list(deb_files(fetched[package].path, source.select))
            documents = list(source.documents(source.packages[package], files))
        except DataError as e:
            result.failed[package] = str(e)
            return []
        result.packages[package] = fetched[package].version
        result.files += len(files)
        return documents

    def read(documents, default, always=frozenset()):
        limits: dict[str, float] = {}
        for label, key, paragraphs in sorted(documents, key=lambda d: reading_order(source.name, d[1])):
            if label is None:
                continue
            if label not in limits:
                share = budget if budget is None or default is None else -(-budget // max(1, packages_per_label[label]))
                limits[label] = float("inf") if share is None else collector.count(label) + share
            if collector.count(label) >= limits[label] and key not in always:
                continue
            read_keys.add(key)
            try:
                for paragraph in paragraphs():
                    collector.add_passage(label, paragraph, key)
            except DataError as e:
                collector.skip(key, str(e))

    for package in packages:
        if package in english_packages:
            continue
        documents = package_documents(package)
        if source.translated:
            english += [d for d in documents if d[0] == "en"]
            documents = [d for d in documents if d[0] != "en"]
        read(documents, source.packages[package])
    for package in english_packages:
        english += package_documents(package)
    read(english, None, always=frozenset(read_keys))
    result.texts = collector.finish()
    result.passages = dict(sorted(collector.passages.items()))
    result.unreadable = collector.unreadable
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result
