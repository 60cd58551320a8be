"""Language codes of the off-the-shelf LID libraries, mapped onto the scheme of our gold labels.

Our gold labels are Debian locale directory names reduced to the base language: ISO 639-1
where it exists, else ISO 639-3 (``de``, ``pt``, ``zh``, ``sr``, ``nb``, ``nn``, ``ast``,
``fil``, ``haw``, ``ckb``, ``kab``, ...). Region and script parts are gone (``pt_BR`` -> ``pt``,
``zh_TW`` -> ``zh``, ``sr@latin`` -> ``sr``).

A library's label reaches that scheme in two steps:

1. ``normalise_code`` (fixed, per label): drop fastText's ``__label__`` prefix, lower-case,
   drop region and script subtags, and rename codes that are deprecated or that a library
   uses for another language than ISO does (``RENAMES``).
2. ``resolve`` (depends on the gold label set): a code that is not itself a gold label but
   whose language the gold set names by another code is moved onto that code (``FALLBACKS``,
   e.g. ``no`` -> ``nb`` when the gold set has ``nb`` and not ``no``). Doing this only when the
   code itself is absent keeps two gold labels apart whenever the corpus does distinguish them.

Both steps are applied to a library's whole label list too, which gives the set of gold
languages the library can name at all (``supported_languages``); the comparison is restricted
to strings of those languages.
"""

from __future__ import annotations

from collections.abc import Iterable

#: CLD3's output labels. gcld3 (and cld3-py, which installs as gcld3) has no API that lists
#: them, so they are copied from ``kLanguageNames`` in google/cld3 src/task_context_params.cc,
#: the table of the model that gcld3 3.0.13 and cld3-py 3.1.0 compile in (the longer codes,
#: hmn, haw, fil, ceb and every xx-Latn, are among the strings of cld3-py 3.1.0's extension
#: module). 109 labels: 103 languages, six of them also romanised (``xx-Latn``), which
#: ``normalise_code`` folds into the language.
CLD3_LANGUAGES = (
    "eo", "co", "eu", "ta", "de", "mt", "ps", "te", "su", "uz", "zh-Latn", "ne",
    "nl", "sw", "sq", "hmn", "ja", "no", "mn", "so", "ko", "kk", "sl", "ig",
    "mr", "th", "zu", "ml", "hr", "bs", "lo", "sd", "cy", "hy", "uk", "pt",
    "lv", "iw", "cs", "vi", "jv", "be", "km", "mk", "tr", "fy", "am", "zh",
    "da", "sv", "fi", "ht", "af", "la", "id", "fil", "sm", "ca", "el", "ka",
    "sr", "it", "sk", "ru", "ru-Latn", "bg", "ny", "fa", "haw", "gl", "et",
    "ms", "gd", "bg-Latn", "ha", "is", "ur", "mi", "hi", "bn", "hi-Latn", "fr",
    "yi", "hu", "xh", "my", "tg", "ro", "ar", "lb", "el-Latn", "st", "ceb",
    "kn", "az", "si", "ky", "mg", "en", "gu", "es", "pl", "ja-Latn", "ga", "lt",
    "sn", "yo", "pa", "ku",
)

#: Labels that mean "no language found" (CLD3 und, py3langid zxx, langdetect unknown): they never
#: equal a gold label, and are counted apart.
NO_ANSWER = frozenset({"und", "zxx", "unknown"})

#: Code -> our code, whatever the gold set. Applied after subtags are dropped.
RENAMES = {
    # Deprecated ISO 639-1 codes that Google's tools (CLD3) still emit.
    "iw": "he",   # Hebrew
    "in": "id",   # Indonesian
    "ji": "yi",   # Yiddish
    "jw": "jv",   # Javanese (Google's old code; CLD3 itself says jv)
    "mo": "ro",   # Moldavian = Romanian
    # The one three-letter label (of py3langid's 140 and fastText's 176) whose language has an
    # ISO 639-1 code, which our scheme prefers.
    "kik": "ki",  # Kikuyu (py3langid)
    # fastText lid.176 labels are Wikipedia edition codes; two of them are not the ISO code
    # of that Wikipedia's language.
    "als": "gsw",  # als.wikipedia is Alemannic (ISO als is Tosk Albanian)
    "bh": "bho",   # bh.wikipedia is Bhojpuri (ISO bh is the Bihari group)
}

#: Code -> our codes to try, in order, when the code itself is not a gold label. Each is the
#: same language under another code: a macrolanguage and its member, or two names for it.
FALLBACKS = {
    # Norwegian: langdetect, CLD3, fastText and py3langid say "no"; the written standard their
    # training text is overwhelmingly in is Bokmål, which Debian calls nb. (nn stays nn.)
    "no": ("nb",),
    # Filipino is the standardised form of Tagalog; Debian has locales under both codes.
    "tl": ("fil",),
    "fil": ("tl",),
    # Kurdish: ku is the macrolanguage, Northern Kurdish (Kurmanji, kmr) its Latin-script
    # member that Debian's ku locales are written in. Sorani (ckb) stays apart.
    "ku": ("kmr",),
    "kmr": ("ku",),
    # Varieties that libraries label separately from the macrolanguage Debian uses.
    "arz": ("ar",),   # Egyptian Arabic (fastText, py3langid)
    "ary": ("ar",),   # Moroccan Arabic (py3langid)
    "yue": ("zh",),   # Cantonese (fastText, py3langid): zh_HK locales are normalised to zh
    "wuu": ("zh",),   # Wu Chinese (fastText, py3langid)
    "azb": ("az",),   # South Azerbaijani (fastText)
    "uzs": ("uz",),   # Southern Uzbek (py3langid)
    "gug": ("gn",),   # Paraguayan Guaraní (py3langid)
    "fuv": ("ff",),   # Nigerian Fulfulde (py3langid)
    "pnb": ("pa",),   # Western Panjabi (fastText)
    "gom": ("kok",),  # Goan Konkani (fastText, py3langid)
    # Not here: fastText's "sh" (Serbo-Croatian). It covers sr, hr and bs alike, so moving it
    # onto any one of them would favour that one; it stays "sh" and counts as wrong.
}


def normalise_code(label: str) -> str:
    """A library's label in our code style: ``__label__pt`` -> ``pt``, ``zh-TW`` -> ``zh``,
    ``ru-Latn`` -> ``ru``, ``iw`` -> ``he``. Gold labels are base languages, so a region or a
    script (CLD3's romanised ``xx-Latn``) does not change which language a label names."""
    code = label.removeprefix("__label__").strip().lower()
    code = code.replace("_", "-").split("-", 1)[0]
    return RENAMES.get(code, code)


def resolve(code: str, gold: Iterable[str]) -> str:
    """``code`` (already normalised) as a gold label: itself when the gold set has it, else its
    first FALLBACKS entry the gold set has, else unchanged (then it simply never matches)."""
    gold = gold if isinstance(gold, (set, frozenset)) else set(gold)
    if code in gold:
        return code
    for alternative in FALLBACKS.get(code, ()):
        if alternative in gold:
            return alternative
    return code


def to_gold(label: str | None, gold: Iterable[str]) -> str | None:
    """A raw library label mapped onto the gold scheme; None (no answer) stays None."""
    return None if label is None else resolve(normalise_code(label), gold)


def supported_languages(library_labels: Iterable[str], gold: Iterable[str]) -> set[str]:
    """The gold labels a library can output, given its raw label list."""
    gold = set(gold)
    return {to_gold(label, gold) for label in library_labels} & gold
