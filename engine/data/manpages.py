"""Translated manual pages (``manpages-<lang>``, and ``manpages`` for English): dense technical
prose in 24 languages.

Each package holds gzip'd groff pages under ``usr/share/man/<locale>/man<N>/`` (English:
``usr/share/man/man<N>/``); the same page in every language is one document (one split),
keyed ``man<N>/<page>``. groff is read by hand (there is no maintained Python parser, and
running ``groff`` would need it installed): text lines are joined into paragraphs, and

- every request or macro line (``.PP``, ``.TP``, ``.SH``, ``.Sh``...) ends a paragraph, except
  the inline font macros (``.B``, ``.I``, ``.BR``, ``.Nm``, ``.Fl``...), whose arguments are
  dropped: they are nearly always command names, options and file names;
- the tag line after ``.TP`` (an option list), conditionals (``.if``/``.ie``/``.el``, with
  their ``\\{ ... \\}`` blocks), macro definitions (``.de`` ... ``..``) and no-fill regions
  (``.nf``/``.fi``, ``.EX``/``.EE``, ``.Vb``/``.Ve``, ``.TS``/``.TE``, ``.Bd``/``.Ed``: examples,
  code, tables) are skipped;
- escapes go: fonts (``\\fB``), comments (``\\"``), size and motion (``\\s+1``, ``\\h'..'``),
  strings and registers; special characters (``\\(aq``, ``\\[lq]``, ``\\-``, ``\\[u00E4]``) become
  the characters they draw.

Only the user packages are read (not ``-dev``: C library pages are mostly code), and no page
whose name mentions a tutorial (``debian_packages.deb_files``).

Translators leave paragraphs in English, and most pages (coreutils', grub's, procps'...) have
their English original in the package of the program, not in ``manpages``, so the copy of an
English paragraph cannot be recognised as one. A paragraph written in the words of the English
pages is dropped instead (``english_by_words``, ``lid_text.reads_as_words_of``): 4,133 of the
51,959 strings of Debian 12's translations read before it, up to a fifth of a language's
(Finnish 20%, Polish 19%, Italian 17%, Serbian 11%; German 0.1%).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator

from ..errors import DataError
from .lid_source import Document, PackageSource
from .lid_text import language_of_package_suffix, normalise_language

#: Debian 12's translated man pages (``apt-cache search --names-only ^manpages-``, less the
#: ``-dev`` packages and the empty ``manpages-pt``).
LANGUAGES = "cs da de el es fi fr hu id it ja mk nb nl pl pt-br ro ru sr sv tr uk vi zh".split()

_ROOT = "usr/share/man/"

#: Inline macros: their arguments are code-like, and they do not end a paragraph.
_INLINE = {"B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB", "Nm", "Fl", "Ar", "Cm", "Op", "Xr",
           "Pa", "Ic", "Ev", "Va", "Li", "Ql", "Dq", "Sy", "Em", "Ns", "Tn", "Ux", "Fn", "Fa", "Ft", "Dv",
           "Er", "Sq", "Pq", "Aq", "Oo", "Oc", "Ox", "Bx", "Nx", "Fx", "At", "St", "Lk", "Mt", "UR", "UE",
           "MT", "ME", "IX", "R"}
#: Regions of examples, code, tables: (start, end) requests.
_NO_FILL = {"nf": "fi", "EX": "EE", "Vb": "Ve", "TS": "TE", "Bd": "Ed", "de": ".", "ig": ".", "EQ": "EN"}

_GLYPHS = {"aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’", "em": "—", "en": "–",
           "hy": "-", "mi": "-", "co": "©", "rg": "®", "bu": "•", "pl": "+", "mu": "×", "Fo": "«",
           "Fc": "»", "fo": "‹", "fc": "›", "Bq": "„", "bq": "‚", "ga": "`", "aa": "´", "ti": "~",
           "ha": "^", "rs": "\\", "ba": "|", "sl": "/", "at": "@", "sh": "#", "Do": "$", "ss": "ß",
           "ae": "æ", "oe": "œ", "AE": "Æ", "OE": "Œ", ":a": "ä", ":o": "ö", ":u": "ü", ":A": "Ä",
           ":O": "Ö", ":U": "Ü", "'e": "é", "`e": "è", "^e": "ê", "'a": "á", "`a": "à", ",c": "ç",
           "~n": "ñ", "de": "°", "->": "→", "<-": "←", ">=": "≥", "<=": "≤", "!=": "≠", "..": "…"}

_ESCAPE = re.compile(
    r"\\(?:"
    r"\"(?P<comment>.*)$"                                  # comment to the end of the line
    r"|f(?:\[[^\]]*\]|\(..|.)"                             # font
    r"|s[-+]?(?:\d+|\(\d\d|\[[^\]]*\])"                    # size
    r"|[hvwoLlNDxbXRSZ]'[^']*'"                            # motion, width, drawing, ...
    r"|\*(?:\[[^\]]*\]|\(..|.)"                            # string
    r"|n[-+]?(?:\[[^\]]*\]|\(..|.)"                        # number register
    r"|\((?P<glyph2>..)"                                   # \(xx
    r"|\[(?P<glyph>[^\]]*)\]"                              # \[name]
    r"|(?P<char>.)"                                        # everything else: \- \e \& \c ...
    r")", re.MULTILINE)
_CHARS = {"-": "-", "e": "\\", "E": "\\", ".": ".", " ": " ", "~": " ", "0": " ", "'": "´", "`": "`",
          "t": " "}


def _glyph(name: str) -> str:
    if name in _GLYPHS:
        return _GLYPHS[name]
    match = re.fullmatch(r"u([0-9A-Fa-f]{4,6})", name)
    return chr(int(match.group(1), 16)) if match else ""


def _unescape(line: str) -> str:
    def one(m):
        if m.group("glyph2") is not None:
            return _glyph(m.group("glyph2"))
        if m.group("glyph") is not None:
            return _glyph(m.group("glyph"))
        if m.group("char") is not None:
            return _CHARS.get(m.group("char"), "")
        return ""
    return _ESCAPE.sub(one, line)


def paragraphs(source: str) -> Iterator[str]:
    """The prose paragraphs of a groff page (see the module docstring)."""
    paragraph: list[str] = []
    end_of_region = None      # the request that ends the region being skipped
    braces = 0                # depth of \{ ... \} conditional blocks being skipped
    skip_next_line = False    # the tag line after .TP
    for line in source.splitlines():
        if braces:
            braces += line.count("\\{") - line.count("\\}")
            continue
        if end_of_region is not None:
            request = line[1:].split(maxsplit=1)[0] if line[:1] in ".'" and len(line) > 1 else ""
            if line.strip() == ".." and end_of_region == "." or request == end_of_region:
                end_of_region = None
            continue
        if line[:1] in (".", "'"):
            request = line[1:].strip().split(maxsplit=1)
            name = request[0] if request else ""
            if name.startswith('\\"'):
                continue
            if name in _INLINE:
                continue
            if paragraph:
                yield " ".join(paragraph)
                paragraph = []
            if name in ("if", "ie", "el"):
                braces = max(0, line.count("\\{") - line.count("\\}"))
            elif name in _NO_FILL:
                end_of_region = _NO_FILL[name]
            skip_next_line = name == "TP"
            continue
        if skip_next_line:
            skip_next_line = False
            continue
        text = _unescape(line).strip()
        if text:
            paragraph.append(text)
        elif paragraph:                       # a blank line also ends a paragraph
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def _label_and_document(path: str, package_label: str | None) -> tuple[str | None, str]:
    parts = path[len(_ROOT):].split("/")
    if parts[0].startswith("man"):                     # usr/share/man/man1/ls.1.gz: the package's language
        label, rest = package_label, parts
    else:
        label, rest = normalise_language(parts[0]), parts[1:]
    document = "/".join(rest).removesuffix(".gz")
    return label, document


def _page_paragraphs(path: str, data: bytes) -> list[str]:
    try:
        source = gzip.decompress(data).decode("utf-8", "replace")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a gzip'd page ({e})") from e
    return list(paragraphs(source))


def documents(label: str | None, files: list[tuple[str, bytes]]) -> Iterator[Document]:
    for path, data in files:
        page_label, key = _label_and_document(path, label)
        yield page_label, key, lambda path=path, data=data: _page_paragraphs(path, data)


def _select(path: str) -> bool:
    return path.startswith(_ROOT) and path.endswith(".gz") and "/man" in path[len(_ROOT) - 1:]


SOURCE = PackageSource(
    name="manpages",
    description="manual pages (groff technical prose)",
    packages={"manpages": "en", **{f"manpages-{lang}": language_of_package_suffix(lang) for lang in LANGUAGES}},
    select=_select,
    documents=documents,
    format=2,
    english_by_words=True,
)
