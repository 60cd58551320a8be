"""Text helpers shared by every language-identification source: language codes, cleaning,
sentences, and the collector that turns a source's passages into labelled strings.

One home for what every source does the same way, so that a gettext message, a help page, a
Firefox string, a fortune and a man page are judged by the same rules:

- ``normalise_language`` reduces a locale name (``pt_BR``, ``sr@latin``, ``zh_TW``) to the
  label the corpus uses (``pt``, ``sr``, ``zh``); ``language_of_package_suffix`` does the same
  for the suffix of a Debian package name (``pt-br``, ``zh-tw``, ``ca-valencia``).
- ``clean_text`` removes what is not language (format specifiers, accelerators, markup,
  entities, option names, URLs, e-mail addresses, paths, identifiers); ``has_enough_letters``
  and ``reads_as_english`` decide whether what is left is worth keeping (``reads_as_words_of``
  too, for a source whose English originals it partly lacks).
- ``SECOND_SCRIPT`` rewrites text of a language that its users write in two scripts (Serbian:
  Cyrillic and Latin) from the script the sources favour into the other.
- ``split_sentences`` cuts prose (help pages, man pages, fortunes) into sentences, so that an
  example is about one sentence long whatever the source.
- ``TextCollector`` applies all of this to one source's passages and records, for every kept
  string, the stable unit number of the document it came from, which later decides its split
  (all translations of one document share the document's key, so they share a split).
"""

from __future__ import annotations

import hashlib
import html
import re
import struct
import unicodedata
from collections import Counter

from .text_formats import stable_unit

#: Letters must make up at least this share of a text's non-space characters.
MIN_LETTER_FRACTION = 0.6

#: Locale folder names: language, optional _TERRITORY or _Script, optional @modifier.
_LOCALE_DIR = re.compile(r"^(?P<lang>[a-z]{2,3})(?:_(?:[A-Z]{2}|[A-Z][a-z]+|\d{3}))?(?:@(?P<mod>\w+))?$")

#: Modifiers that mark a transliteration or typography of English, not a language.
_PSEUDO_MODIFIERS = {"quot", "boldquot", "shaw"}

#: Retired or duplicate codes that name the same language as another folder.
_ALIASES = {"no": "nb", "mo": "ro", "iw": "he", "in": "id", "ji": "yi", "jw": "jv"}

#: Lower-case words that are English and not words of the other languages written in Latin
#: script. Upper-case ones do not count: SQL and shell keywords (WHERE, NOT NULL, FOR EACH)
#: are left in English on purpose inside real translations.
_ENGLISH_MARKER_WORDS = (
    "the and with this that you your from which cannot could should would been were "
    "failed unable invalid please does there their when into only must not each "
    "specified without other after before these those what where how being using used "
    "current found")
_ENGLISH_MARKERS = frozenset(_ENGLISH_MARKER_WORDS.split())

#: A "translation" reads as English when at least this many of its words, and this share of
#: them, are English markers: one stray English word is common in real translations.
_ENGLISH_MIN_MARKERS, _ENGLISH_MIN_SHARE = 2, 0.25
_WORD = re.compile(r"[^\W\d_]+")

#: A string reads as its source's English (``TextCollector``, ``english_by_words``) when it has
#: at least this many words, all in ASCII letters, and this share of them are words of the
#: source's English strings. In Debian's translated man pages, 0.75 keeps nearly only English
#: (above it: "rm - remove files or directories", "The exit status is zero if no pattern
#: matches."), and the few translations it takes ("total storlek, i byte") are mostly code
#: and English words anyway.
_VOCABULARY_MIN_WORDS, _VOCABULARY_MIN_SHARE = 3, 0.75


# --- language codes ---------------------------------------------------------------------

def normalise_language(dirname: str) -> str | None:
    """The label for a locale folder name, or None for folders that are not a language."""
    match = _LOCALE_DIR.match(dirname)
    if match is None or match["mod"] in _PSEUDO_MODIFIERS:
        return None
    lang = match["lang"]
    return _ALIASES.get(lang, lang)


# --- cleaning ---------------------------------------------------------------------------

_ENTITY = re.compile(r"&(?:[A-Za-z]+|#\d+|#[xX][0-9A-Fa-f]+);")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# "(_F)" / "(&F)" after a CJK label: the accelerator key of a menu entry.
_ACCEL_SUFFIX = re.compile(r"\s*[(（]\s*[_&][A-Za-z0-9]\s*[)）]")
# Non-language pieces, each with the characters one of which it cannot do without: a regex
# runs only on the texts that hold one, which keeps cleaning a million strings fast.
_NOISE = [(trigger, re.compile(pattern)) for trigger, pattern in [
    (("://",), r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+"),                       # URLs
    (("www.",), r"\bwww\.\S+"),
    (("@",), r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),                             # e-mail addresses
    (("/",), r"(?<![\w.])(?:~|\.{1,2})?/[\w.@+-]+(?:/[\w.@+-]*)*"),       # paths (not and/or)
    (("-",), r"(?<![\w-])--?[A-Za-z][\w-]*(?:=\S*)?"),                    # options: --foo-bar, -x
    # %(name)s; printf %s %d %1$s %'d %-10.3f %lld %%, and the custom letters of binutils
    # (%P %H %B); no space flag, so that "50% of" stays text; Qt-style %1.
    (("%",), (r"%\([^)\s]*\)[-+ #0]*\d*(?:\.\d+)?[a-zA-Z%]"
              r"|%(?:\d+\$)?[-+#0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|ll|[hlLqjzZt]|I64|I32)?[A-Za-z%]"
              r"|%\d+")),
    (("$",), r"\$\{?[A-Za-z_]\w*\}?"),                                      # ${VAR} $VAR
    (("{",), r"\{[\w.:!\[\]-]*\}"),                                         # {0} {name} {0:d} {}
    (("_",), r"\b[A-Z0-9]+_[A-Z0-9_]+\b|\b[A-Za-z0-9]+(?:_[A-Za-z0-9]+){2,}\b"),  # CONSTANTS, snake_case_names
    # identifiers and keys: a.b, file.txt, a::b, a->b, calendar:MY (but not "e. g" or "10:30")
    ((".", ":", "->"), r"(?<![A-Za-z0-9_.])[A-Za-z][A-Za-z0-9_]*(?:(?:::?|\.|->)[A-Za-z0-9_]+)+"),
]]
# Accelerator marks inside a word: "_File", "Pre_ferences", "&Open".
_ACCEL = re.compile(r"[_&](?=\w)")
# What cleaning leaves behind: quotes and brackets around nothing but punctuation ("''",
# "[ | ]", "< >"), stray separators at the start.
_OPENERS, _CLOSERS = "`'\"‘“«„‚「『([<{", "’'\"”»“‘」』)]>}"
_EMPTY_PAIR = re.compile(f"[{re.escape(_OPENERS)}][^\\w{re.escape(_OPENERS + _CLOSERS)}]{{0,6}}[{re.escape(_CLOSERS)}]")
_LEADING = re.compile(r"^[\s:;,.|/\\-]+")


def clean_text(text: str) -> str:
    """``text`` without what is not language (see the module docstring), on one line."""
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "(" in text or "（" in text:
        text = _ACCEL_SUFFIX.sub("", text)
    for triggers, pattern in _NOISE:
        if any(trigger in text for trigger in triggers):
            text = pattern.sub(" ", text)
    text = _ACCEL.sub("", text).replace("_", " ")
    for _ in range(3):  # nested: "[<%s>]" -> "[< >]" -> "[ ]" -> ""
        text, found = _EMPTY_PAIR.subn(" ", text)
        if not found:
            break
    return _LEADING.sub("", " ".join(text.split()))


def has_enough_letters(text: str, min_letters: int) -> bool:
    """At least ``min_letters`` letters, and letters are most of the non-space characters."""
    letters = sum(map(str.isalpha, text))
    if letters < min_letters:
        return False
    others = len(text) - letters - text.count(" ")
    if letters >= MIN_LETTER_FRACTION * (letters + others):
        return True
    # Vowel signs and other combining marks are not isalpha() but belong to the letters of
    # Indic and other scripts; count them only here, where it matters (it is slow).
    marks = sum(unicodedata.category(ch).startswith("M") for ch in text if not ch.isalpha())
    return letters + marks >= MIN_LETTER_FRACTION * (letters + others)


def reads_as_english(text: str) -> bool:
    words = _WORD.findall(text)
    markers = sum(word in _ENGLISH_MARKERS for word in words)
    return markers >= _ENGLISH_MIN_MARKERS and markers >= _ENGLISH_MIN_SHARE * len(words)


def words_of(texts) -> set[str]:
    """The words (case-folded) of ``texts``."""
    return {word.casefold() for text in texts for word in _WORD.findall(text)}


def reads_as_words_of(text: str, vocabulary: set[str]) -> bool:
    """Whether ``text`` is written in the words of ``vocabulary`` (see _VOCABULARY_MIN_SHARE)."""
    words = [word.casefold() for word in _WORD.findall(text)]
    if len(words) < _VOCABULARY_MIN_WORDS or not all(map(str.isascii, words)):
        return False
    return sum(word in vocabulary for word in words) >= _VOCABULARY_MIN_SHARE * len(words)



# --- package names ----------------------------------------------------------------------

def language_of_package_suffix(suffix: str) -> str | None:
    """The label for the language part of a Debian package name (``libreoffice-help-pt-br``
    -> ``pt``, ``firefox-esr-l10n-ca-valencia`` -> ``ca``), or None when it names none."""
    lang, _, rest = suffix.partition("-")
    if not rest:
        return normalise_language(lang)
    if re.fullmatch(r"[a-z]{2}", rest):
        return normalise_language(f"{lang}_{rest.upper()}")
    if re.fullmatch(r"[a-z]+", rest):
        return normalise_language(f"{lang}@{rest}")
    return None


# --- sentences --------------------------------------------------------------------------

#: A full stop, question or exclamation mark (with the closing quotes or brackets after it,
#: which close the other way round in German) and a space end a sentence; the CJK full-width marks end one without a space.
_SENTENCE_END = re.compile(r"([.!?…][\"'»«”“’‘›‹)\]]*)\s+|([。！？][」』”’）]*)\s*")


def split_sentences(text: str) -> list[str]:
    """``text`` (on one line) cut into sentences, naively: an abbreviation also ends one (the
    pieces that are too short are dropped later by the letters rule)."""
    marked = _SENTENCE_END.sub(lambda m: (m.group(1) or m.group(2)) + "\n", text)
    return [part for part in (piece.strip() for piece in marked.split("\n")) if part]


# --- scripts ----------------------------------------------------------------------------

#: Serbian Cyrillic to Serbian Latin (Gaj's alphabet): one letter or one fixed pair each way.
_SERBIAN_LATIN = dict(zip(
    "АБВГДЂЕЖЗИЈКЛЉМНЊОПРСТЋУФХЦЧЏШабвгдђежзијклљмнњопрстћуфхцчџш",
    "A B V G D Đ E Ž Z I J K L Lj M N Nj O P R S T Ć U F H C Č Dž Š "
    "a b v g d đ e ž z i j k l lj m n nj o p r s t ć u f h c č dž š".split()))
_SERBIAN_TABLE = str.maketrans(_SERBIAN_LATIN)


def serbian_latin(text: str) -> str:
    """``text`` with its Serbian Cyrillic letters written in Latin letters, as Serbian is written
    every day in either script (Љ Њ Џ become Lj Nj Dž)."""
    return text.translate(_SERBIAN_TABLE)


def in_cyrillic(text: str) -> bool:
    """More Cyrillic letters than others."""
    letters = [ch for ch in text if ch.isalpha()]
    return sum("\u0400" <= ch <= "\u04ff" for ch in letters) * 2 > len(letters)


#: Languages written in two scripts whose sources are nearly all in one: label -> (is the
#: text in the first script, its rewriting in the second). The corpus writes every other
#: string of the first script in the second, so that the model knows the language in both
#: (the catalogs and Firefox have Serbian in Cyrillic, ~8% in Latin; users write both).
SECOND_SCRIPT = {"sr": (in_cyrillic, serbian_latin)}


# --- order ------------------------------------------------------------------------------

def cap_order(text: str) -> bytes:
    """The sort key that decides which strings a cap keeps: a fixed pseudo-random order, so that
    a cap or a prefix is not biased towards any kind of message. Salted: a text's split unit
    (``stable_unit``) can be a hash of the same text, and a cap that keeps the smallest would
    then put every kept text in train."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"cap-order").digest()


def pick_unit(a: float, b: float) -> float:
    """The unit a string found in two documents (units ``a`` and ``b``) takes: one of the two,
    chosen by a hash of their values. Not the smaller: boilerplate sentences occur in many
    documents, and the smallest of several units is nearly always a training one (the min of
    four units is below 0.8 with probability 0.998), which left test with 4-6% instead of 10%."""
    def rank(unit: float) -> bytes:
        return hashlib.blake2b(struct.pack("<d", unit), digest_size=8, person=b"unit-pick").digest()
    return a if rank(a) <= rank(b) else b


def reading_order(source: str, document: str) -> bytes:
    """The order in which a source reads its documents up to its budget. Not the split unit
    (``document_unit``): reading the smallest units first would read only training documents."""
    return hashlib.blake2b(f"{source}\x1f{document}".encode("utf-8"), digest_size=8, person=b"read-order").digest()


# --- collecting -------------------------------------------------------------------------

#: Longer "sentences" are tables, lists or code glued together, not prose.
MAX_SENTENCE_CHARS = 500


def document_unit(source: str, document: str) -> float:
    """The stable unit number of a document of a source: it decides the split of every string
    of the document, in every language."""
    return stable_unit(f"{source}\x1f{document}")


class TextCollector:
    """The cleaned, de-duplicated strings of one source per label, each with the unit number of
    its document (one of them, ``pick_unit``, when a string occurs in several documents).

    In a ``translated`` source (translations of English documents), a string under another
    label than English that equals (ignoring case) a string of the same source under English
    is an untranslated copy: ``finish`` removes it. (In other sources such a string is just
    shared, and the corpus drops it as ambiguous.) With ``english_by_words``, for a source whose
    English originals are partly in packages it does not read, ``finish`` also removes the
    strings of other labels written in the words of its English (``reads_as_words_of``).
    ``passages`` counts what was offered per label, ``texts`` holds what was kept,
    ``unreadable`` the files that could not be read."""

    def __init__(self, source: str, min_letters: int = 10, translated: bool = True,
                 english_by_words: bool = False):
        self.source = source
        self.translated = translated
        self.english_by_words = english_by_words
        self.min_letters = int(min_letters)
        self.texts: dict[str, dict[str, float]] = {}
        self.passages: Counter = Counter()
        self.unreadable: list[str] = []     # files a reader could not decode

    def skip(self, path: str, reason: str) -> None:
        """Record a file that could not be read (the rest of its package still counts)."""
        self.unreadable.append(f"{path}: {reason}")

    def add_passage(self, label: str, raw: str, document: str, *, sentences: bool = True) -> int:
        """Clean ``raw`` (one paragraph, message or entry), cut it into sentences and keep those
        that pass the letters rule and (for other labels than English) do not read as English.
        Returns the number of strings kept."""
        self.passages[label] += 1
        text = clean_text(raw)
        if not text:
            return 0
        unit = document_unit(self.source, document)
        kept = 0
        for piece in split_sentences(text) if sentences else [text]:
            if len(piece) > MAX_SENTENCE_CHARS or not has_enough_letters(piece, self.min_letters):
                continue
            if label != "en" and reads_as_english(piece):
                continue
            self.add(label, piece, unit)
            kept += 1
        return kept

    def count(self, label: str) -> int:
        """How many strings ``label`` holds so far."""
        return len(self.texts.get(label, ()))

    def add(self, label: str, text: str, unit: float) -> None:
        """Keep an already clean ``text`` under ``label``."""
        texts = self.texts.setdefault(label, {})
        old = texts.get(text)
        texts[text] = unit if old is None else pick_unit(old, unit)

    def finish(self) -> dict[str, dict[str, float]]:
        """{label: {text: unit}}, without the untranslated copies of a translated source's English."""
        english = {text.casefold() for text in self.texts.get("en", ())} if self.translated else ()
        vocabulary = words_of(self.texts.get("en", ())) if self.english_by_words else ()
        if english:
            for label, texts in self.texts.items():
                if label != "en":
                    for text in [t for t in texts if t.casefold() in english
                                 or vocabulary and reads_as_words_of(t, vocabulary)]:
                        del texts[text]
        return {label: texts for label, texts in self.texts.items() if texts}
