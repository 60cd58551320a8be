"""The default language-identification corpus, built from the gettext catalogs of the machine.

A Debian/Ubuntu system carries thousands of translated message catalogs under
``/usr/share/locale/<lang>/LC_MESSAGES/*.mo``: the same English source messages translated
into well over a hundred languages. That is a free, offline, parallel corpus. This module
turns it into ``Splits`` of (text, language) examples.

How the corpus is made, and why:

- Labels are base language codes as the locale folders spell them (ISO 639-1 where it
  exists, else the three-letter code: ``ast``, ``fil``). Territories, scripts and variants
  are merged into their language (``pt_BR`` -> ``pt``, ``sr@latin`` -> ``sr``, ``zh_TW`` ->
  ``zh``), and a few retired codes into their successors (``no`` -> ``nb``, ``mo`` -> ``ro``),
  because a classifier cannot tell them apart from short UI strings anyway.
- English comes from the source strings (msgid) of every catalog. The ``en_*`` catalogs are
  read for their msgids only: their translations are nearly all copies of the msgids.
  Pseudo-locales (``en@quot``, ``en@boldquot``, ``en@shaw``) and ``iso_*`` catalogs (mostly
  names of countries, languages and currencies, not sentences) are skipped.
- Each string is cleaned of what is not language: format specifiers, accelerators, markup,
  entities, option names, URLs, e-mail addresses, paths and identifiers. It is kept only
  with at least ``min_letters`` letters that make up most of it.
- A translation is dropped when it is an untranslated copy of its msgid or reads as English.
  A string that ends up under two labels is ambiguous and is dropped from all of them.
- Texts are de-duplicated per language (exact, case-sensitive, after cleaning).
- The split of every string is decided by a stable hash of its cleaned English source
  message, so a message and all its translations land in one split and the test split holds
  only messages never seen in training, in any language. (A text shared by several source
  messages takes the split of the smallest hash, so it too is in one split only.)
- Languages with fewer than ``min_strings`` texts are dropped; ``max_per_language`` keeps a
  fixed subset (by hash of the text) of larger ones.

The built corpus is cached as one gzip'd JSON file keyed by the options and by a fingerprint
of the catalogs (paths, sizes, modification times), so installing packages rebuilds it.
"""

from __future__ import annotations

import gettext
import hashlib
import io
import json
import logging
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ArgumentError, DataError, DataNotFoundError
from . import SPLITS, Examples, Splits
from .json_cache import read_cache, write_cache
from .lid_source import PackageSource
from .lid_text import cap_order, clean_text, has_enough_letters, normalise_language, reads_as_english
from .text_formats import check_fractions, split_of, stable_unit

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/usr/share/locale"

#: Bump when the cleaning or selection changes, so that old cache files are not reused.
CORPUS_FORMAT = 2


# --- reading the catalogs ---------------------------------------------------------------

@dataclass
class BuildReport:
    """What a build read and dropped, for the ``data`` command and for debugging."""
    root: str = ""
    catalogs_read: int = 0
    catalogs_failed: list[str] = field(default_factory=list)
    catalogs_skipped_iso: int = 0
    folders_skipped: list[str] = field(default_factory=list)
    entries: int = 0
    ambiguous_dropped: int = 0  # (label, text) pairs removed because the text had two labels
    languages_below_min: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    from_cache: bool = False


def _language_folders(root: Path, report: BuildReport) -> list[tuple[str, Path]]:
    folders = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        label = normalise_language(entry.name)
        if label is None:
            report.folders_skipped.append(entry.name)
        else:
            folders.append((label, Path(entry.path)))
    return folders


def _catalog_files(root: Path, report: BuildReport) -> list[tuple[str, Path, os.stat_result]]:
    """(label, path, stat) of every catalog a build reads, in a fixed order."""
    files = []
    for label, folder in _language_folders(root, report):
        messages = folder / "LC_MESSAGES"
        if not messages.is_dir():
            continue
        for entry in sorted(os.scandir(messages), key=lambda e: e.name):
            if not entry.name.endswith(".mo") or not entry.is_file():
                continue
            if entry.name.startswith("iso_"):
                report.catalogs_skipped_iso += 1
                continue
            files.append((label, Path(entry.path), entry.stat()))
    return files


def _read_catalog(path: Path) -> dict | None:
    """The catalog's entries, or None when it cannot be read. A broken catalog is one lost
    file, not a failed build. (Python's parser also rejects a few real ones: it decodes the
    header as UTF-8 before it reads the header's charset, so a Latin-1 name there fails.)"""
    try:
        with open(path, "rb") as fp:
            return gettext.GNUTranslations(fp)._catalog
    except Exception as e:  # noqa: BLE001
        log.debug("skipping unreadable catalog %s: %s", path, e)
        return None


def parse_catalog(data: bytes) -> dict:
    """The entries of a ``.mo`` file's bytes (other sources' packages hold catalogs too);
    ``DataError`` when they are not a readable catalog."""
    try:
        return gettext.GNUTranslations(io.BytesIO(data))._catalog
    except Exception as e:  # noqa: BLE001
        raise DataError(f"not a readable gettext catalog (.mo): {e}") from e


def catalog_messages(catalog: dict) -> Iterator[tuple[str, str]]:
    """(msgid, msgstr) of every message of a parsed catalog: without the header entry, each
    plural form of a message with its singular msgid, the msgctxt prefix removed."""
    for key, msgstr in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key  # plural forms: (msgid, n)
        if msgid:  # the header entry has none
            yield msgid.rpartition("\x04")[2], msgstr


def _unreadable(path: str, error: DataError):
    raise DataError(f"{path}: {error}")


def package_catalog(path: str, locale: re.Pattern, left_out=frozenset()) -> tuple[str, str] | None:
    """(label, catalog name) of a catalog inside a package, from its path, where ``locale``
    finds (locale folder, catalog name); None for a file not read: not a catalog, English (the
    msgids are the English), a locale with a modifier (``sr@latin``, ``ca@valencia``: the corpus
    writes Serbian in its second script itself, the others are a variety or a transliteration),
    or a label in ``left_out``."""
    match = locale.search(path)
    if match is None or "@" in match[1]:
        return None
    label = normalise_language(match[1])
    return None if label is None or label == "en" or label in left_out else (label, match[2])


def catalog_documents(files: list[tuple[str, bytes]], locale: re.Pattern, message_text: Callable[[str], str],
                      left_out=frozenset()) -> Iterator[tuple[str, str, Callable[[], list[str]]]]:
    """The documents (``lid_source.Document``) of the catalogs among a package's ``files``
    ((path, bytes)), for the sources whose packages carry catalogs of many languages: those
    that ``package_catalog(path, locale, left_out)`` reads. ``message_text`` cleans a message
    of its program's markup. A message and all its translations are one document, keyed
    ``<catalog name>#<msgid>``; English is the msgids themselves (label ``en``, each message
    once), so a translation equal to its msgid is an untranslated copy, dropped. An unreadable
    catalog is one document that says why when it is read: one lost file, not a lost package."""
    english: dict[str, str] = {}      # document key -> msgid
    for path, data in files:
        catalog = package_catalog(path, locale, left_out)
        if catalog is None:
            continue
        label, name = catalog
        try:
            messages = parse_catalog(data)
        except DataError as e:
            yield label, path, lambda e=e, path=path: _unreadable(path, e)
            continue
        for msgid, msgstr in catalog_messages(messages):
            key = f"{name}#{msgid}"
            english.setdefault(key, msgid)
            if msgstr and msgstr != msgid:
                yield label, key, lambda msgstr=msgstr: [message_text(msgstr)]
    for key, msgid in english.items():
        yield "en", key, lambda msgid=msgid: [message_text(msgid)]


def catalog_source(*, name: str, description: str, packages, root: str, locale: re.Pattern,
                   message_text: Callable[[str], str] = str, left_out=frozenset()) -> PackageSource:
    """A ``PackageSource`` of ``packages`` that each carry catalogs of many languages under
    ``root`` (the ones ``locale`` finds: see ``package_catalog``), read by
    ``catalog_documents``; the label of each text comes from its catalog's path. Without
    ``message_text`` a message goes to the shared cleaning as it is."""
    return PackageSource(
        name=name, description=description, packages=dict.fromkeys(packages),
        select=lambda path: path.startswith(root) and locale.search(path) is not None,
        documents=lambda label, files: catalog_documents(files, locale, message_text, left_out))


class _Collector:
    """Accumulates cleaned texts per label, each with the stable unit number (of its English
    source) that decides its split."""

    def __init__(self, min_letters: int):
        self.min_letters = min_letters
        self.texts: dict[str, dict[str, float]] = {}
        # msgids repeat in every language's copy of a catalog: clean each once.
        self._sources: dict[str, tuple[str, float]] = {}

    def source(self, msgid: str) -> tuple[str, float]:
        """(cleaned msgid, its split unit) -- and the msgid is an English text."""
        known = self._sources.get(msgid)
        if known is None:
            cleaned = clean_text(msgid)
            known = (cleaned, stable_unit(cleaned or msgid))
            self._sources[msgid] = known
            if has_enough_letters(cleaned, self.min_letters):
                self._add("en", cleaned, known[1])
        return known

    def translation(self, label: str, msgid: str, msgstr: str) -> None:
        source, key = self.source(msgid)  # the English text, even if this translation is dropped
        # Cheap rejections first: most entries are short UI labels or untranslated copies.
        if msgstr == msgid or len(msgstr) < self.min_letters:
            return
        text = clean_text(msgstr)
        if (not has_enough_letters(text, self.min_letters) or text.casefold() == source.casefold()
                or reads_as_english(text)):
            return
        self._add(label, text, key)

    def _add(self, label: str, text: str, key: float) -> None:
        texts = self.texts.setdefault(label, {})
        old = texts.get(text)
        texts[text] = key if old is None else min(old, key)


def _collect(files, min_letters: int, report: BuildReport) -> dict[str, dict[str, float]]:
    collector = _Collector(min_letters)
    for label, path, _ in files:
        catalog = _read_catalog(path)
        if catalog is None:
            report.catalogs_failed.append(str(path))
            continue
        report.catalogs_read += 1
        for msgid, msgstr in catalog_messages(catalog):
            report.entries += 1
            if label == "en":
                collector.source(msgid)
            else:
                collector.translation(label, msgid, msgstr)
    return collector.texts


# --- selecting and splitting ------------------------------------------------------------

def _drop_ambiguous(texts: dict[str, dict[str, float]], report: BuildReport) -> None:
    """A string under two labels cannot be classified: remove it from every label."""
    seen = Counter(text for per_label in texts.values() for text in per_label)
    shared = {text for text, count in seen.items() if count > 1}
    for per_label in texts.values():
        for text in shared.intersection(per_label):
            del per_label[text]
            report.ambiguous_dropped += 1


def _select_and_split(texts, min_strings, max_per_language, fractions, report) -> dict[str, dict[str, list[str]]]:
    """{split: {label: [texts]}}; within a label the order is a fixed pseudo-random one (hash
    of the text), so that a cap or a prefix is not biased towards any kind of message."""
    parts = {name: {} for name in SPLITS}
    for label in sorted(texts):
        per_label = texts[label]
        if len(per_label) < min_strings:
            report.languages_below_min[label] = len(per_label)
            continue
        ordered = sorted(per_label, key=cap_order)
        if max_per_language is not None:
            ordered = ordered[:max_per_language]
        for text in ordered:
            split = split_of(per_label[text], fractions)
            parts[split].setdefault(label, []).append(text)
    return parts


def _to_splits(parts: dict[str, dict[str, list[str]]]) -> Splits:
    splits = {}
    for name in SPLITS:
        inputs, labels = [], []
        for label in sorted(parts[name]):
            inputs.extend(parts[name][label])
            labels.extend([label] * len(parts[name][label]))
        splits[name] = Examples(inputs, labels)
    return splits


# --- errors -----------------------------------------------------------------------------

_HOW_TO_GET_DATA = (
    "The default language-identification corpus is built from the gettext catalogs in "
    "/usr/share/locale/<lang>/LC_MESSAGES/*.mo, which Debian/Ubuntu packages install with "
    "their translations (e.g. `apt-get install gettext coreutils` already ship some; desktop "
    "and system packages add many more). Docker images often strip /usr/share/locale "
    "(a dpkg path-exclude in /etc/dpkg/dpkg.cfg.d/); remove that rule and reinstall packages, "
    "or bring your own data with --data: a WiLI-2018 folder, a Tatoeba sentences.csv, or a "
    "label<TAB>text TSV file.")


def _missing_root(root: Path) -> DataNotFoundError:
    return DataNotFoundError(f"no gettext catalogs: {root} does not exist. {_HOW_TO_GET_DATA}")


def _no_languages(root: Path, min_strings: int, report: BuildReport) -> DataError:
    found = ", ".join(f"{lang}={n}" for lang, n in sorted(report.languages_below_min.items())) or "none"
    return DataError(f"no language in {root} has at least {min_strings} usable strings "
                      f"({report.catalogs_read} catalogs read; strings per language: {found}). "
                      f"{_HOW_TO_GET_DATA}")


# --- building ---------------------------------------------------------------------------

def _build(root: Path, files, *, min_strings, max_per_language, min_letters, fractions,
           report: BuildReport) -> dict[str, dict[str, list[str]]]:
    start = time.perf_counter()
    texts = _collect(files, min_letters, report)
    _drop_ambiguous(texts, report)
    parts = _select_and_split(texts, min_strings, max_per_language, fractions, report)
    report.seconds = time.perf_counter() - start
    if not any(parts[name] for name in SPLITS):
        raise _no_languages(root, min_strings, report)
    return parts


def _check_options(min_strings, max_per_language, min_letters, fractions):
    """The options as ints and a fractions tuple (settings may arrive as strings)."""
    min_strings, min_letters = int(min_strings), int(min_letters)
    max_per_language = None if max_per_language is None else int(max_per_language)
    if min_strings < 1:
        raise ArgumentError(f"min_strings must be at least 1, got {min_strings}")
    if max_per_language is not None and max_per_language < 1:
        raise ArgumentError(f"max_per_language must be at least 1 or None, got {max_per_language}")
    if min_letters < 1:
        raise ArgumentError(f"min_letters must be at least 1, got {min_letters}")
    return min_strings, max_per_language, min_letters, check_fractions(fractions)


def build_gettext_corpus(root=DEFAULT_ROOT, *, min_strings=1000, max_per_language=None, min_letters=10,
                         fractions=(0.8, 0.1, 0.1)) -> tuple[Splits, BuildReport]:
    """Build the corpus from scratch (no cache); also returns what the build read and dropped."""
    return load_gettext_corpus_with_report(root, min_strings=min_strings, max_per_language=max_per_language,
                                           min_letters=min_letters, fractions=fractions, use_cache=False)


# --- cache ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """``$LSTM_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/lstm-engine``, else ``~/.cache/lstm-engine``."""
    if os.environ.get("LSTM_ENGINE_CACHE"):
        return Path(os.environ["LSTM_ENGINE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "lstm-engine"
    return Path.home() / ".cache" / "lstm-engine"


def _cache_key(root: Path, files, options: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CORPUS_FORMAT, "root": str(root.resolve()), **options},
                             sort_keys=True).encode())
    for label, path, stat in files:
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _read_cache(path: Path, key: str):
    """(parts, report) from a cache file, or None when it is missing, stale or corrupt."""
    data = read_cache(path, format=CORPUS_FORMAT, key=key)
    if data is None:
        return None
    try:
        parts = {name: {str(label): list(texts) for label, texts in data["splits"][name].items()}
                 for name in SPLITS}
        report = BuildReport(**data["report"])
    except (KeyError, TypeError, AttributeError) as e:
        log.warning("rebuilding the gettext corpus: cache file %s is unreadable (%s)", path, e)
        return None
    return parts, report


def _write_cache(path: Path, key: str, parts, report: BuildReport) -> None:
    write_cache(path, {"report": asdict(report), "splits": parts}, format=CORPUS_FORMAT, key=key)


def load_gettext_corpus_with_report(root=DEFAULT_ROOT, *, min_strings=1000, max_per_language=None,
                                    min_letters=10, fractions=(0.8, 0.1, 0.1), cache_dir=None,
                                    use_cache=True) -> tuple[Splits, BuildReport]:
    """``load_gettext_corpus`` that also returns the build report (``from_cache`` says whether
    the cache answered)."""
    min_strings, max_per_language, min_letters, fractions = _check_options(
        min_strings, max_per_language, min_letters, fractions)
    root = Path(root)
    if not root.is_dir():
        raise _missing_root(root)
    report = BuildReport(root=str(root))
    files = _catalog_files(root, report)
    options = {"min_strings": min_strings, "max_per_language": max_per_language, "min_letters": min_letters,
               "fractions": list(fractions)}
    cache_path = None
    if use_cache:
        key = _cache_key(root, files, options)
        cache_path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cache_path = cache_path / f"gettext-corpus-{key}.json.gz"
        cached = _read_cache(cache_path, key)
        if cached is not None:
            parts, report = cached
            report.from_cache = True
            return _to_splits(parts), report
    parts = _build(root, files, min_strings=min_strings, max_per_language=max_per_language,
                   min_letters=min_letters, fractions=fractions, report=report)
    if cache_path is not None:
        _write_cache(cache_path, key, parts, report)
    return _to_splits(parts), report


def load_gettext_corpus(root=DEFAULT_ROOT, *, min_strings=1000, max_per_language=None, min_letters=10,
                        fractions=(0.8, 0.1, 0.1), cache_dir=None, use_cache=True) -> Splits:
    """The language-identification corpus built from the gettext catalogs under ``root``
    (see the module docstring), from the cache when it is up to date.

    Within each split the examples are grouped by language (sorted) and, inside a language,
    in a fixed pseudo-random order: shuffle before training.

    Raises FileNotFoundError when ``root`` is missing and ValueError when no language has
    ``min_strings`` usable strings; both messages say how to get data."""
    splits, _ = load_gettext_corpus_with_report(
        root, min_strings=min_strings, max_per_language=max_per_language, min_letters=min_letters,
        fractions=fractions, cache_dir=cache_dir, use_cache=use_cache)
    return splits


# --- as one source of the many-source corpus -------------------------------------------

def catalogs_fingerprint(root=DEFAULT_ROOT) -> str | None:
    """A digest of the catalogs a build would read (paths, sizes, modification times), or
    None when ``root`` does not exist."""
    root = Path(root)
    if not root.is_dir():
        return None
    return _cache_key(root, _catalog_files(root, BuildReport()), {})


def collect_catalogs(root=DEFAULT_ROOT, *, min_letters=10, budget: int | None = None):
    """The catalogs as a source of ``lid_corpus``: a ``SourceResult`` with every label's texts
    and split units, strings under two labels dropped (exactly: over all the catalogs), then at
    most ``budget`` per label (a fixed subset, by hash of the text). Raises like
    ``load_gettext_corpus`` when ``root`` is missing."""
    from .lid_source import SourceResult

    start, cpu = time.perf_counter(), time.process_time()
    root = Path(root)
    if not root.is_dir():
        raise _missing_root(root)
    report = BuildReport(root=str(root))
    texts = _collect(_catalog_files(root, report), int(min_letters), report)
    _drop_ambiguous(texts, report)
    if budget is not None:
        texts = {label: {text: per_label[text] for text in sorted(per_label, key=cap_order)[:budget]}
                 for label, per_label in texts.items()}
    result = SourceResult("gettext", texts={label: t for label, t in sorted(texts.items()) if t},
                          failed={path: "unreadable catalog" for path in report.catalogs_failed},
                          files=report.catalogs_read, version=catalogs_fingerprint(root) or "")
    result.passages = {}
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result


# --- statistics -------------------------------------------------------------------------

def corpus_stats(splits: Splits) -> dict:
    """Counts per language and split, totals, and text lengths (in characters)."""
    languages: dict[str, dict[str, int]] = {}
    lengths = []
    for name in SPLITS:
        examples = splits.get(name, Examples())
        for text, label in zip(examples.inputs, examples.labels):
            counts = languages.setdefault(label, {split: 0 for split in SPLITS})
            counts[name] += 1
            lengths.append(len(text))
    for counts in languages.values():
        counts["total"] = sum(counts[split] for split in SPLITS)
    totals = sorted(counts["total"] for counts in languages.values())
    n = len(lengths)
    return {
        "languages": dict(sorted(languages.items())),
        "num_languages": len(languages),
        "total": n,
        "per_split": {name: len(splits.get(name, Examples())) for name in SPLITS},
        "per_language": {"min": totals[0], "median": statistics.median(totals), "max": totals[-1]} if totals else {},
        "mean_length": sum(lengths) / n if n else 0.0,
        "median_length": statistics.median(lengths) if n else 0,
        "length_buckets": {
            "<=20": sum(l <= 20 for l in lengths) / n if n else 0.0,
            "21-50": sum(20 < l <= 50 for l in lengths) / n if n else 0.0,
            ">50": sum(l > 50 for l in lengths) / n if n else 0.0,
        },
    }
