"""Fortune cookies (``fortunes``, ``fortunes-<lang>``): jokes, proverbs, quotations and
dialogue, the most conversational text a Debian machine can fetch.

A fortune file is plain UTF-8 text, entries separated by lines holding only ``%`` (the
``.dat`` files beside them are indexes). Each entry is one document; its attribution lines
(``-- Author``) are dropped, the rest is joined and cut into sentences. Package suffixes are
not language codes here (``fortunes-br`` is Brazilian Portuguese), so every package is mapped
by hand; ``fortunes-cs`` holds one Slovak file (``klasik-sk``). Left out: the ``off/``
(offensive) sections, the ``-off`` packages, the ASCII/ISO-8859-3 copies of the Esperanto
set, and the English collections that are not prose (``-min`` repeats ``fortunes``,
``-bofh-excuses``, ``-debian-hints``, ``-mario``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .lid_source import Document, PackageSource

#: Debian 12's fortune packages with prose in one language, and that language.
PACKAGES = {"fortunes": "en", "fortunes-bg": "bg", "fortunes-br": "pt", "fortunes-cs": "cs",
            "fortunes-de": "de", "fortunes-eo": "eo", "fortunes-es": "es", "fortunes-ga": "ga",
            "fortunes-it": "it", "fortunes-pl": "pl", "fortunes-ru": "ru", "fortunes-zh": "zh"}

#: Files whose language is not their package's.
_FILE_LANGUAGE = {"klasik-sk": "sk"}

_ROOT = "usr/share/games/fortunes/"
_SEPARATOR = re.compile(r"^%[ \t]*$", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^\s*(?:--|—|―|~~)\s*\S")


def entries(source: str) -> list[str]:
    """The entries of a fortune file, each without its attribution lines."""
    out = []
    for entry in _SEPARATOR.split(source):
        lines = [line for line in entry.splitlines() if not _ATTRIBUTION.match(line)]
        text = " ".join(" ".join(lines).split())
        if text:
            out.append(text)
    return out


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    for path, data in files:
        file_label = _FILE_LANGUAGE.get(path.rpartition("/")[2], label)
        for index, entry in enumerate(entries(data.decode("utf-8", "replace"))):
            yield file_label, f"{path}#{index}", lambda entry=entry: [entry]


def _select(path: str) -> bool:
    return (path.startswith(_ROOT) and not path.endswith((".dat", ".u8")) and "/off/" not in path)


SOURCE = PackageSource(
    name="fortunes",
    description="fortune cookies (jokes, proverbs, quotations, dialogue)",
    packages=PACKAGES,
    select=_select,
    documents=documents,
    translated=False,
)
