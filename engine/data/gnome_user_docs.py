"""GNOME's desktop help (``gnome-user-docs``): Mallard XML pages in 42 languages, one package.

The package holds ``usr/share/help/<locale>/<guide>/<page>.page`` for the English original
(locale ``C``) and every translation; the same page in each language is one document (one
split). Read with the stdlib ``xml.etree``; the text is in ``<p>``, ``<title>``, ``<subtitle>``
and the page's ``<desc>``. Skipped: the rest of ``<info>`` (credits, e-mail addresses,
revisions), code and commands (``code``, ``cmd``, ``screen``, ``output``, ``input``, ``sys``,
``file``, ``var``), key names (``key``, ``keyseq``) and anything marked ``its:translate="no"``.
A paragraph a translator left in English is dropped as an untranslated copy of the English page
(``TextCollector.finish``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator

from .lid_source import Document, PackageSource
from .lid_text import normalise_language

_ROOT = "usr/share/help/"
_BLOCKS = {"p", "title", "subtitle", "desc"}
_SKIPPED = {"code", "cmd", "screen", "output", "input", "sys", "file", "var", "key", "keyseq", "media"}
_ITS_TRANSLATE = "{http://www.w3.org/2005/11/its}translate"


def _local(tag) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _skipped(element) -> bool:
    return _local(element.tag) in _SKIPPED or element.get(_ITS_TRANSLATE) == "no"


def _inline_text(element) -> str:
    parts = [element.text or ""]
    for child in element:
        if not _skipped(child):
            parts.append(_inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _blocks(element, in_info: bool = False) -> Iterable[str]:
    for child in element:
        name = _local(child.tag)
        if _skipped(child):
            continue
        if name == "info":
            yield from _blocks(child, in_info=True)
        elif name in _BLOCKS and (not in_info or name == "desc"):
            yield _inline_text(child)
        elif not in_info:
            yield from _blocks(child)


def page_paragraphs(data: bytes) -> list[str]:
    """The text of the paragraphs, titles and description of a Mallard page (empty when the
    page is not well-formed XML)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    return list(_blocks(root))


def _label_and_document(path: str) -> tuple[str | None, str]:
    locale, _, document = path[len(_ROOT):].partition("/")
    return ("en" if locale == "C" else normalise_language(locale)), document


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    for path, data in files:
        page_label, key = _label_and_document(path)
        yield page_label, key, lambda data=data: page_paragraphs(data)


SOURCE = PackageSource(
    name="gnome-user-docs",
    description="GNOME desktop help (Mallard XML prose)",
    packages={"gnome-user-docs": None},
    select=lambda path: path.startswith(_ROOT) and path.endswith(".page"),
    documents=documents,
)
