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

from .gettext_corpus import catalog_source, package_catalog

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
    locales with a modifier, ``_LEFT_OUT``, anything that is not a catalog: ``gettext_corpus.package_catalog``)."""
    catalog = package_catalog(path, _LOCALE, _LEFT_OUT)
    return None if catalog is None else catalog[0]


SOURCE = catalog_source(
    name="wesnoth",
    description="Battle for Wesnoth campaigns (story and dialogue)",
    packages=[f"wesnoth-{BRANCH}-{campaign}" for campaign in CAMPAIGNS],
    root="usr/share/games/wesnoth/", locale=_LOCALE, message_text=message_text, left_out=_LEFT_OUT,
)
