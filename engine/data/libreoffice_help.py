"""LibreOffice's help pages (``libreoffice-help-<lang>``): help prose in HTML, 33 languages.

Each package holds the whole help of one language as HTML under
``usr/share/libreoffice/help/<lang>/text/...``: the same ~2,500 pages in every language (and in
English, ``libreoffice-help-en-us``). The text is in ``<p>`` and ``<h1>``-``<h6>`` elements.
Read with the stdlib ``html.parser``; skipped: scripts, styles, the navigation (``header``,
``aside``, ``nav``), code (``pre``, ``code`` and the ``bascode``/``code`` blocks of the Basic
help), and ``hidden`` elements (the macOS/other-system alternatives of a key name, of which the
page shows one). A page is one document: its translations share its split.

``libreoffice-help-en-gb`` is left out (a near copy of en-us), as is ``-common`` (no text).
"""

from __future__ import annotations

import html.parser
from collections.abc import Iterator

from .lid_source import Document, PackageSource
from .lid_text import language_of_package_suffix

#: Debian 12's help packages (``apt-cache search --names-only ^libreoffice-help-``).
LANGUAGES = ("ca cs da de dz el en-us es et eu fi fr gl hi hu id it ja km ko nl om pl pt pt-br ru sk "
             "sl sv tr vi zh-cn zh-tw").split()

_ROOT = "usr/share/libreoffice/help/"
_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
_SKIPPED = {"script", "style", "header", "footer", "aside", "nav", "pre", "code"}
_SKIPPED_CLASSES = {"bascode", "code", "input", "literal", "debug", "bug"}
# Elements that never have an end tag: they must not enter the skip stack.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
         "track", "wbr"}


class _HelpPage(html.parser.HTMLParser):
    """The paragraphs of one help page, in order. An end tag closes the elements opened after
    its start tag, so an unclosed ``<p>`` or ``<li>`` does not derail the rest of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._open: list[tuple[str, bool]] = []   # (tag, starts a skipped region)
        self._skipping = 0                          # > 0 inside a skipped element
        self._block: list[str] | None = None        # the text of the paragraph being read
        self._block_depth = 0                       # len(self._open) when it started

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        attrs = dict(attrs)
        skips = (tag in _SKIPPED or "hidden" in attrs
                 or not _SKIPPED_CLASSES.isdisjoint((attrs.get("class") or "").split()))
        self._open.append((tag, skips))
        self._skipping += skips
        if tag in _BLOCKS and self._block is None and not self._skipping:
            self._block, self._block_depth = [], len(self._open)

    def handle_endtag(self, tag):
        if tag in _VOID or all(name != tag for name, _ in self._open):
            return
        while True:
            if self._block is not None and len(self._open) == self._block_depth:
                self.paragraphs.append("".join(self._block))
                self._block = None
            name, skips = self._open.pop()
            self._skipping -= skips
            if name == tag:
                return

    def handle_data(self, data):
        if self._block is not None and not self._skipping:
            self._block.append(data)


def page_paragraphs(markup: str) -> list[str]:
    """The text of the paragraphs and headings of a help page (of its display area, where the
    page marks one: the rest is navigation, and skipping it halves the parsing time)."""
    start = markup.find('<div id="DisplayArea"')
    end = markup.find("<footer", start) if start >= 0 else -1
    if start >= 0:
        markup = markup[start:end if end >= 0 else len(markup)]
    parser = _HelpPage()
    parser.feed(markup)
    parser.close()
    return parser.paragraphs


def _document(path: str) -> str | None:
    """``text/swriter/guide/auto_off.html`` for any language's copy of that page."""
    rest = path[len(_ROOT):]
    _, _, page = rest.partition("/")
    return page if page.startswith("text/") else None


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    for path, data in files:
        key = _document(path)
        if key is not None:
            yield label, key, lambda data=data: page_paragraphs(data.decode("utf-8", "replace"))


SOURCE = PackageSource(
    name="libreoffice-help",
    description="LibreOffice help pages (HTML prose)",
    packages={f"libreoffice-help-{lang}": language_of_package_suffix(lang) for lang in LANGUAGES},
    select=lambda path: path.startswith(_ROOT) and path.endswith(".html") and "/text/" in path,
    documents=documents,
)
