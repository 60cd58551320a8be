"""LibreOffice's interface translations (``libreoffice-l10n-<lang>``): menus, dialogs, messages
and the tooltips of every control, about 80 languages; the tooltips are whole sentences ("Inserts
a new row above the current row."), the office suite's own words.

Each package holds its language's gettext catalogs,
``usr/lib/libreoffice/program/resource/<locale>/LC_MESSAGES/<module>.mo`` (``sw``, ``sc``,
``cui``...). A message and all its translations are one document (one split): its key is the
module plus the msgid. English is the msgids themselves, so the ``en-gb`` and ``en-za`` packages
are not fetched, and a translation equal to its msgid is an untranslated copy, dropped.
Left out:

- locales with a modifier (``sr@latin``, in the Serbian package): the corpus writes Serbian in
  its second script itself;
- the languages that no other source of the corpus has (Amharic, Guarani, Kurmanji, Kinyarwanda,
  Zhuang, and the South African languages but Afrikaans, Northern Sotho and Xhosa): interface text of
  one program alone would not make a class that stands for a language.

A source read only when asked (``lid_corpus.OPT_IN_SOURCES``: ``sources=...,libreoffice-l10n``):
in the held-out tuning run it made Croatian right more often and the languages it has, where
their small neighbour has none of it, taken for the neighbour more often (Indonesian for Malay).

LibreOffice marks a menu entry's accelerator with ``~`` inside the word ("St~ilovi") and names
what it fills in as ``%PRODUCTNAME``, ``%1``, ``$(ARG1)``, ``$1$`` or ``#1``: the product name
becomes "LibreOffice", the rest is removed before the shared cleaning (``clean_text``).
"""

from __future__ import annotations

import re

from .gettext_corpus import catalog_source, package_catalog

#: Debian 12's interface packages (``apt-cache search --names-only ^libreoffice-l10n-``).
_DEBIAN = ("af am ar as ast be bg bn br bs ca cs cy da de dz el en-gb en-za eo es et eu fa fi fr ga gd gl gu "
           "gug he hi hr hu id in is it ja ka kk km kmr kn ko lt lv mk ml mn mr nb ne nl nn nr nso oc om or "
           "pa-in pl pt pt-br ro ru rw si sk sl sr ss st sv szl ta te tg th tn tr ts ug uk uz ve vi xh za "
           "zh-cn zh-tw zu").split()

#: Packages not fetched: English (the msgids are the English), ``in`` (a meta-package, no
#: catalogs) and the languages that no other source has (see the module docstring).
_LEFT_OUT = {"en-gb", "en-za", "in", "am", "gug", "kmr", "nr", "rw", "ss", "st", "tn", "ts", "ve", "za", "zu"}

LANGUAGES = [lang for lang in _DEBIAN if lang not in _LEFT_OUT]

_ROOT = "usr/lib/libreoffice/program/resource/"
_LOCALE = re.compile(r"/resource/([^/]+)/LC_MESSAGES/([^/]+)\.mo$")
_PRODUCT = re.compile(r"%PRODUCTNAME\b")
# %PRODUCTVERSION, %FILENAME, %1, $(ARG1), $1$, #1: what the program fills in
_PLACEHOLDER = re.compile(r"%[A-Z][A-Z0-9_]*|%\d+|\$\([A-Za-z0-9_]+\)|\$\d+\$|#\d+")


def message_text(text: str) -> str:
    """A message with its accelerator marks and placeholders gone, the product named."""
    return _PLACEHOLDER.sub(" ", _PRODUCT.sub("LibreOffice", text)).replace("~", "")


def catalog_label(path: str) -> str | None:
    """The label of a catalog's text from its path; None for the catalogs not read (English,
    locales with a modifier, anything that is not a catalog: ``gettext_corpus.package_catalog``)."""
    catalog = package_catalog(path, _LOCALE)
    return None if catalog is None else catalog[0]


SOURCE = catalog_source(
    name="libreoffice-l10n",
    description="LibreOffice interface translations (menus, dialogs, tooltips)",
    packages=[f"libreoffice-l10n-{lang}" for lang in LANGUAGES],
    root=_ROOT, locale=_LOCALE, message_text=message_text,
)
