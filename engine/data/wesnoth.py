"""The Battle for Wesnoth's campaigns (``wesnoth-1.16-<campaign>``): story and dialogue, the
everyday, spoken-style text ("Flee while you can!", "But now where am I?") that interface
strings and help pages lack, in about 40 languages.

Each campaign package holds its messages as gettext catalogs,
``usr/share/games/wesnoth/<branch>/locale/<locale>/LC_MESSAGES/wesnoth-<campaign>.mo``. A
message and all its translations are one document (one split): its key is the catalog's name
plus the msgid. English is the msgids themselves (the original text), so the ``en_GB``
catalogs are not read, and a translation equal to its msgid is an untranslated copy, dropped.
Left out:

- locales with a modifier (``sr@latin``, ``sr@ijekavian``, ``sr@ijekavianlatin``,
  ``ca@valencia``, ``en@shaw``): the Serbian ones are written from the ``sr`` translation (the
  corpus writes Serbian in its second script itself), the others are a variety or a
  transliteration;
- Latin and Old English (``la``, ``ang``): no other source has them, and game dialogue alone
  would not make a class that stands for a language.

Wesnoth writes a disambiguation context before a ``^`` at the start of a msgid ("female^",
"scenario name^") and puts unit names and numbers in ``$variables`` (``$unit.name|``): both
are removed before the shared cleaning (``clean_text``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..errors import DataError
from .gettext_corpus import catalog_messages, parse_catalog
from .lid_source import Document, PackageSource
from .lid_text import normalise_language

#: The branch Debian 12 packages (``apt-cache search --names-only ^wesnoth-1.16-``).
BRANCH = "1.16"

#: Its mainline campaigns, one package each (the -data, -core, -music, -tools and -server
#: packages hold no story text).
CAMPAIGNS = ("did", "dm", "dw", "ei", "httt", "l", "low", "nr", "sof", "sota", "sotbe", "thot", "trow", "tsg",
             "ttb", "utbs")

_LEFT_OUT = {"la", "ang"}
_CONTEXT = re.compile(r"^[^\^\n]{1,40}\^")
_VARIABLE = re.compile(r"\$[\w.\[\]]+\|?")
_LOCALE = re.compile(r"/locale/([^/]+)/LC_MESSAGES/([^/]+)\.mo$")


def message_text(text: str) -> str:
    """A message without its ``context^`` prefix and ``$variables``."""
    return _VARIABLE.sub(" ", _CONTEXT.sub("", text))


def catalog_label(path: str) -> str | None:
    """The label of a catalog's text from its path; None for the catalogs not read (English,
    locales with a modifier, ``_LEFT_OUT``, anything that is not a catalog)."""
    match = _LOCALE.search(path)
    if match is None or "@" in match[1]:
        return None
    label = normalise_language(match[1])
    return None if label in _LEFT_OUT or label == "en" else label


def _unreadable(path: str, error: DataError):
    raise DataError(f"{path}: {error}")


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    english: dict[str, str] = {}      # document key -> msgid, each message once
    for path, data in files:
        file_label = catalog_label(path)
        if file_label is None:
            continue
        name = _LOCALE.search(path)[2]
        try:
            catalog = parse_catalog(data)
        except DataError as e:      # one lost file: the document says why when it is read
            yield file_label, path, lambda e=e, path=path: _unreadable(path, e)
            continue
        for msgid, msgstr in catalog_messages(catalog):
            key = f"{name}#{msgid}"
            english.setdefault(key, msgid)
            if msgstr and msgstr != msgid:
                yield file_label, key, lambda msgstr=msgstr: [message_text(msgstr)]
    for key, msgid in english.items():
        yield "en", key, lambda msgid=msgid: [message_text(msgid)]


def _select(path: str) -> bool:
    return path.startswith("usr/share/games/wesnoth/") and _LOCALE.search(path) is not None


SOURCE = PackageSource(
    name="wesnoth",
    description="Battle for Wesnoth campaigns (story and dialogue)",
    packages={f"wesnoth-{BRANCH}-{campaign}": None for campaign in CAMPAIGNS},
    select=_select,
    documents=documents,
)
