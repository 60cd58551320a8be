"""Firefox's language packs (``firefox-esr-l10n-<locale>``): sentence-like interface text in
about 100 locales, many of them (af, br, cy, gd, hsb, ia, kab, xh...) found nowhere else here.

Each package holds one ``langpack-<locale>@firefox-esr.mozilla.org.xpi`` (a zip) with the
browser's strings as Fluent (``.ftl``), Java-style ``.properties`` and, in older releases, XML
``.dtd`` entity files. The same message in every locale is one document (one split): its key
is the file path without the locale plus the message id.

- ``.ftl`` is parsed with Mozilla's ``fluent.syntax``: the text of each message value and
  attribute, with ``{ -brand-short-name }``-style terms replaced by the term's value in that
  language, string literals kept, variables (``{ $count }``), numbers and message references
  removed, and the default variant of a select expression.
- ``.properties`` (``key = value``, continuation lines, ``\\uXXXX`` escapes) and ``.dtd``
  (``<!ENTITY key "value">``) are read with two small regular expressions: there is no
  maintained library for either that is worth a dependency, and the formats are this small.
- ``#1``-style plural placeholders, unknown ``&entity;`` references and ``%S`` specifiers go;
  markup and the rest go in ``clean_text``. English comes from the en-GB and en-CA packs, and
  a string another pack left in English is an untranslated copy (``TextCollector.finish``).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import re
import zipfile
from collections.abc import Iterator

from ..errors import DataError
from .lid_source import Document, PackageSource
from .lid_text import language_of_package_suffix

#: Debian 12's language packs (``apt-cache search --names-only ^firefox-esr-l10n-``, less the
#: ``-all`` meta-package).
LOCALES = ("ach af an ar ast az be bg bn br bs ca ca-valencia cak cs cy da de dsb el en-ca en-gb eo "
           "es-ar es-cl es-es es-mx et eu fa ff fi fr fur fy-nl ga-ie gd gl gn gu-in he hi-in hr hsb hu "
           "hy-am ia id is it ja ka kab kk km kn ko lij lt lv mk mr ms my nb-no ne-np nl nn-no oc pa-in "
           "pl pt-br pt-pt rm ro ru sat sc sco si sk skr sl son sq sr sv-se szl ta te tg th tl tr trs uk "
           "ur uz vi xh zh-cn zh-tw").split()

_PLACEHOLDER = re.compile(r"#\d+")
_ENTITY_REF = re.compile(r"&[A-Za-z][\w.-]*;")
_DTD_ENTITY = re.compile(r"<!ENTITY\s+([\w.-]+)\s+(\"([^\"]*)\"|'([^']*)')\s*>", re.DOTALL)
_FTL_ENTRY = re.compile(r"^(-?[A-Za-z][\w-]*)[ \t]*=[ \t]*(.*)$")
_FTL_ATTRIBUTE = re.compile(r"^[ \t]+\.([A-Za-z][\w-]*)[ \t]*=[ \t]*(.*)$")
_VARIANT = re.compile(r"(?:^|\n)[ \t]*(\*?)\[[^\]\n]*\]")
_PROPERTIES_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.DOTALL)
_ESCAPED = {"n": "\n", "t": "\t", "r": "\r", "f": "\f"}


# --- the three formats ------------------------------------------------------------------

def _depths(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(index, placeable nesting depth after it) of every brace of ``text[start:end]``, counted
    from 0 at ``start``; braces inside string literals do not count."""
    depth, i, end = 0, start, len(text) if end is None else end
    while i < end:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < end and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
            yield i, depth
        i += 1


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` that closes the ``{`` at ``start``, or -1."""
    return next((i for i, depth in _depths(text, start) if depth == 0), -1)


def _default_variant(variants: str) -> str:
    """The pattern of the default (``*[key]``) variant of a select expression's variant list.
    Variants start on their own lines; those of a select nested in a variant are skipped."""
    keys, depth, position = [], 0, 0
    for match in _VARIANT.finditer(variants):
        depth += sum(1 if variants[i] == "{" else -1 for i, _ in _depths(variants, position, match.start()))
        position = match.start()
        if depth == 0:
            keys.append(match)
    for i, key in enumerate(keys):
        if key.group(1):   # (Fluent trims a variant's pattern, like any other)
            return variants[key.end():keys[i + 1].start() if i + 1 < len(keys) else len(variants)].strip()
    return " "


def _placeable(inner: str, terms: dict[str, str]) -> str:
    arrow, brace = inner.find("->"), inner.find("{")
    if arrow >= 0 and (brace < 0 or arrow < brace):           # a select expression
        return _resolve(_default_variant(inner[arrow + 2:]), terms)
    if inner.startswith('"') and inner.endswith('"'):          # a string literal
        return _unescape_properties(inner[1:-1])
    if inner.startswith("-"):                                  # a term: its value in this language
        return terms.get(re.split(r"[.(\s]", inner[1:], maxsplit=1)[0], " ")
    if inner.startswith("{"):                                  # { { ... } }
        return _resolve(inner, terms)
    return " "                                                 # variables, numbers, functions, messages


def _resolve(text: str, terms: dict[str, str]) -> str:
    """A Fluent pattern's text in its default form (see the module docstring)."""
    parts, i = [], 0
    while True:
        brace = text.find("{", i)
        if brace < 0:
            parts.append(text[i:])
            return "".join(parts)
        end = _closing_brace(text, brace)
        if end < 0:                                            # unbalanced: keep the text before it
            parts.append(text[i:brace])
            return "".join(parts)
        parts.append(text[i:brace])
        parts.append(_placeable(text[brace + 1:end].strip(), terms))
        i = end + 1


def ftl_entries(source: str) -> Iterator[tuple[str, str]]:
    """(id, raw pattern) of the messages (``id``), their attributes (``id.attr``) and terms
    (``-id``) of a Fluent file: an entry starts at column 0, an attribute on an indented
    ``.name =`` line, and indented lines (and blank lines between them) continue a pattern.
    Fluent's own parser (``fluent.syntax``) gives the same text on every message of a real
    language pack but takes ~4 s per pack, 20 times longer: too slow for 100 packs."""
    message, key, lines = None, None, []
    for line in source.splitlines():
        if line[:1] in (" ", "\t", "}", "[", "*") or not line.strip():   # (a placeable may close at column 0)
            attribute = _FTL_ATTRIBUTE.match(line) if message is not None else None
            if attribute is None:
                lines.append(line)
                continue
            new_key, first = f"{message}.{attribute.group(1)}", attribute.group(2)
        else:                                     # column 0: an entry, a comment or junk
            entry = _FTL_ENTRY.match(line)
            message = entry.group(1) if entry else None
            new_key, first = message, entry.group(2) if entry else ""
        if key is not None:
            yield key, "\n".join(lines).strip()
        key, lines = new_key, [first]
    if key is not None:
        yield key, "\n".join(lines).strip()


def ftl_strings(resources: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(file, message id, text) of every message value and attribute of some ``.ftl`` files;
    terms (``-brand-short-name``) are collected from all the files first."""
    entries = {name: list(ftl_entries(source)) for name, source in resources.items()}
    terms: dict[str, str] = {}
    for pairs in entries.values():
        for key, raw in pairs:
            if key.startswith("-") and "." not in key:
                terms[key[1:]] = _resolve(raw, {}).strip()
    for name, pairs in entries.items():
        for key, raw in pairs:
            if not key.startswith("-") and raw:
                yield name, key, _resolve(raw, terms)


def _unescape_properties(value: str) -> str:
    return _PROPERTIES_ESCAPE.sub(
        lambda m: chr(int(m.group(1), 16)) if m.group(1) else _ESCAPED.get(m.group(2), m.group(2)), value)


def properties_strings(source: str) -> Iterator[tuple[str, str]]:
    """(key, value) of a ``.properties`` file."""
    lines = iter(source.splitlines())
    for line in lines:
        line = line.lstrip()
        if not line or line[0] in "#!":
            continue
        # A value continues on the next line after an odd number of trailing backslashes.
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1] + next(lines, "").lstrip()
        match = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", line)
        if match:
            yield _unescape_properties(match.group(1)), _unescape_properties(match.group(2))


def dtd_strings(source: str) -> Iterator[tuple[str, str]]:
    """(entity name, value) of a ``.dtd`` file."""
    for match in _DTD_ENTITY.finditer(source):
        yield match.group(1), match.group(3) if match.group(3) is not None else match.group(4)


# --- reading a language pack ------------------------------------------------------------

def _without_entities(text: str) -> str:
    """Known HTML entities decoded, the others (``&brandShortName;``) removed."""
    def one(match):
        decoded = html.unescape(match.group())
        return decoded if decoded != match.group() else " "
    return _ENTITY_REF.sub(one, text)


def _document(name: str, locale: str, key: str) -> str:
    return "/".join(part for part in name.split("/") if part != locale) + "#" + key


def langpack_strings(xpi: bytes) -> Iterator[tuple[str, str]]:
    """(document key, text) of every string of a language pack (an ``.xpi`` file's bytes)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(xpi))
    except zipfile.BadZipFile as e:
        raise DataError(f"not a language pack (zip): {e}") from e
    with archive:
        try:
            locale = json.loads(archive.read("manifest.json"))["langpack_id"]
        except (KeyError, ValueError) as e:
            raise DataError(f"language pack without a usable manifest.json ({e})") from e
        names = sorted(archive.namelist())

        def text(name):
            return archive.read(name).decode("utf-8", "replace")
        ftl = {name: text(name) for name in names if name.endswith(".ftl")}
        for name, key, value in ftl_strings(ftl):
            yield _document(name, locale, key), value
        for name in names:
            if name.endswith(".properties"):
                pairs = properties_strings(text(name))
            elif name.endswith(".dtd"):
                pairs = dtd_strings(text(name))
            else:
                continue
            for key, value in pairs:
                yield _document(name, locale, key), value


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    for path, data in files:
        for key, value in langpack_strings(data):
            yield label, key, lambda value=value: [_without_entities(_PLACEHOLDER.sub(" ", value))]


def _is_langpack(path: str) -> bool:
    return path.endswith(".xpi") and "/extensions/langpack-" in path


SOURCE = PackageSource(
    name="firefox-l10n",
    description="Firefox language packs (.ftl/.properties/.dtd interface text)",
    packages={f"firefox-esr-l10n-{locale}": language_of_package_suffix(locale) for locale in LOCALES},
    select=_is_langpack,
    documents=documents,
    format=2,
)

#: Debian 12's Thunderbird language packs (``apt-cache search --names-only
#: ^thunderbird-l10n-``, less ``-all``): the same format, and the mail client's own text
#: (messages, accounts, calendar) besides the strings it shares with Firefox, which the corpus
#: keeps once, for Firefox. Fewer locales than Firefox: Croatian and Serbian, not Bosnian.
THUNDERBIRD_LOCALES = ("af ar ast be bg br ca cak cs cy da de dsb el en-ca en-gb es-ar es-es es-mx et eu fi fr "
                       "fy-nl ga-ie gd gl he hr hsb hu hy-am id is it ja ka kab kk ko lt lv ms nb-no nl nn-no "
                       "pa-in pl pt-br pt-pt rm ro ru sk sl sq sr sv-se th tr uk uz vi zh-cn zh-tw").split()

#: Firefox's source with other packages: one reader, so one reader format for both caches.
THUNDERBIRD_SOURCE = dataclasses.replace(
    SOURCE, name="thunderbird-l10n", description="Thunderbird language packs (mail client interface text)",
    packages={f"thunderbird-l10n-{locale}": language_of_package_suffix(locale) for locale in THUNDERBIRD_LOCALES})
