"""Warzone 2100's messages (``warzone2100-data``, 143 MB): the campaigns' briefings and radio
dialogue ("Commander, we have found the New Paradigm's command centre") besides the game's
interface, in 36 languages. For Croatian it is the only story text outside GNOME's help (118
Wesnoth lines aside), and Serbian and Bosnian have no catalog in it: with it, a run that holds
GNOME's help out took far fewer long Croatian help sentences for Serbian (``lid_corpus``).

The package holds one gettext catalog per locale,
``usr/share/locale/<locale>/LC_MESSAGES/warzone2100.mo``. A message and all its translations
are one document (one split), keyed by the msgid; English is the msgids themselves, so the
``en_GB`` catalog is not read, and a translation equal to its msgid is an untranslated copy,
dropped (``gettext_corpus.catalog_documents``). Left out: Latin (``la``), which no other source
has, and locales with a modifier.
"""

from __future__ import annotations

import re

from .gettext_corpus import catalog_source

_LOCALE = re.compile(r"/locale/([^/]+)/LC_MESSAGES/(warzone2100)\.mo$")
_LEFT_OUT = {"la"}

# its messages need no cleaning of their own: the shared one removes their format specifiers
SOURCE = catalog_source(
    name="warzone2100",
    description="Warzone 2100 (campaign briefings and dialogue, game interface)",
    packages=["warzone2100-data"],
    root="usr/share/locale/", locale=_LOCALE, left_out=_LEFT_OUT,
)
