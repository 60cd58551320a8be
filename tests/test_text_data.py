"""The language-identification data layer: the gettext corpus and the user data formats."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import pytest
from lstm_engine.data import SPLITS, Examples
from lstm_engine.data import gettext_corpus as gc
from lstm_engine.data.text_formats import (
    export_tsv,
    load_tatoeba,
    load_text_data,
    load_tsv,
    load_wili,
    split_for_key,
    stable_unit,
)

# --- a fake locale tree -----------------------------------------------------------------


def write_mo(path: Path, messages: dict, charset: str = "UTF-8") -> Path:
    """A GNU .mo file. Keys are msgids (``"ctx\\x04id"`` for a context) or (singular, plural)
    tuples, whose values are tuples of plural forms."""
    header = f"Content-Type: text/plain; charset={charset}\nPlural-Forms: nplurals=2; plural=(n != 1);\n"
    entries = [(b"", header.encode("ascii"))]
    for key, value in messages.items():
        key = "\x00".join(key) if isinstance(key, tuple) else key
        value = "\x00".join(value) if isinstance(value, tuple) else value
        entries.append((key.encode(charset), value.encode(charset)))
    entries.sort()
    n = len(entries)
    data_start = 28 + 16 * n
    blob, originals, translations = b"", [], []
    for table, index in ((originals, 0), (translations, 1)):
        for entry in entries:
            table.append((len(entry[index]), data_start + len(blob)))
            blob += entry[index] + b"\x00"
    out = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    out += b"".join(struct.pack("<2I", *pair) for pair in originals + translations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out + blob)
    return path


def letters(i: int) -> str:
    """A distinct lower-case word for every number (so that generated texts differ)."""
    return "".join("abcdefghij"[int(d)] for d in str(i + 10))


N_BULK = 60

#: Source message -> the special translations of the German catalog.
SPECIAL_DE = {
    "_Open the selected document %s": "_Öffnen Sie das gewählte Dokument %s",
    "<b>Bold</b> text with the --foo-bar option and -x": "<b>Fetter</b> Text mit der Option --foo-bar und -x",
    "See https://example.org/help or mail help@example.org, {0} {name} ${HOME}":
        "Siehe https://example.org/help oder schreiben Sie help@example.org, {0} {name} ${HOME}",
    "Cannot read %1$s: %(reason)s at %'d in /usr/share/doc/foo":
        "Kann %1$s nicht lesen: %(reason)s bei %'d in /usr/share/doc/foo",
    "menu\x04Quit the whole application": "Die ganze Anwendung beenden",
    ("One file was deleted", "%d files were deleted"): ("Eine Datei wurde gelöscht", "%d Dateien wurden gelöscht"),
    "This message stays untranslated": "This message stays untranslated",
    "Reading of the disk went wrong": "Could not read the data from the disk",
    "First way to say saving went wrong": "Speichern der Datei ist fehlgeschlagen",
    "Second way to say saving went wrong": "Speichern der Datei ist fehlgeschlagen",
    "Short": "Kurz",
}


def bulk(lang: str) -> dict[str, str]:
    words = {"de": "Nachricht Nummer", "pt": "Mensagem numero", "sr": "Poruka broj", "es": "Mensaje numero"}[lang]
    return {f"Message number {letters(i)}": f"{words} {letters(i)}" for i in range(N_BULK)}


@pytest.fixture
def locale_root(tmp_path) -> Path:
    root = tmp_path / "locale"
    write_mo(root / "de/LC_MESSAGES/app.mo", {**bulk("de"), **SPECIAL_DE})
    write_mo(root / "de/LC_MESSAGES/iso_3166.mo", {"United States of America": "Vereinigte Staaten von Amerika"})
    # Portuguese from two territories, Serbian in two scripts: one label each.
    write_mo(root / "pt/LC_MESSAGES/app.mo", dict(list(bulk("pt").items())[:30]))
    write_mo(root / "pt_BR/LC_MESSAGES/app.mo", {**dict(list(bulk("pt").items())[30:]),
                                                  "A shared sentence for two": "Uma frase compartilhada aqui"})
    write_mo(root / "sr/LC_MESSAGES/app.mo", dict(list(bulk("sr").items())[:30]))
    write_mo(root / "sr@latin/LC_MESSAGES/app.mo", dict(list(bulk("sr").items())[30:]))
    write_mo(root / "es/LC_MESSAGES/app.mo", {**bulk("es"),
                                              "A shared sentence for two": "Uma frase compartilhada aqui"},
             charset="ISO-8859-1")
    # English catalogs: their msgids count, their translations do not.
    write_mo(root / "en_GB/LC_MESSAGES/app.mo", {"The colour of the English catalog": "The colour, British"})
    write_mo(root / "en@quot/LC_MESSAGES/app.mo", {"Quoted “pseudo” locale here": "Quoted “pseudo” locale here"})
    write_mo(root / "ja/LC_MESSAGES/app.mo", {"Open the file now": "ファイルを今すぐ開いてください(_O)"})
    (root / "fr/LC_MESSAGES").mkdir(parents=True)
    (root / "fr/LC_MESSAGES/broken.mo").write_bytes(b"this is not a catalog at all")
    (root / "C/LC_MESSAGES").mkdir(parents=True)
    (root / "locale.alias").write_text("# not a folder\n")
    return root


def texts_of(splits, label: str) -> list[str]:
    return [text for name in SPLITS for text, lab in zip(splits[name].inputs, splits[name].labels) if lab == label]


def build(root, **options):
    options.setdefault("min_strings", 3)
    return gc.build_gettext_corpus(root, **options)


# --- the gettext corpus -----------------------------------------------------------------


@pytest.mark.parametrize("name, label", [
    ("de", "de"), ("pt_BR", "pt"), ("sr@latin", "sr"), ("zh_CN", "zh"), ("zh_TW", "zh"), ("ca@valencia", "ca"),
    ("en_GB", "en"), ("be@latin", "be"), ("az_IR", "az"), ("ast", "ast"), ("zh_Hant", "zh"), ("no", "nb"),
    ("en@quot", None), ("en@boldquot", None), ("en@shaw", None), ("C", None), ("POSIX", None),
    ("locale.alias", None), ("x", None), ("english", None),
])
def test_language_codes(name, label):
    assert gc.normalise_language(name) == label


@pytest.mark.parametrize("raw, clean", [
    ("_Open %s", "Open"),
    ("Pre_ferences", "Preferences"),
    ("&File &amp; more", "File & more"),
    ("ファイルを開く(_O)", "ファイルを開く"),
    ("<b>Bold</b> <span foo='1'>text</span>", "Bold text"),
    ("Use --foo-bar=X or -x, not e-mail", "Use or , not e-mail"),
    ("%d of %s, %1$s %(name)s %'d %-10.3f %lld %%", "of ,"),
    ("{0} and {name} and ${HOME} and $PATH", "and and and"),
    ("See http://x.org/a or www.gnu.org, mail a.b@c.org", "See or mail"),
    ("Read /usr/share/doc and/or ~/.config", "Read and/or"),
    ("line one\n\tline two", "line one line two"),
    ("cannot stat '%s': %s", "cannot stat :"),
    ("git branch [<%s>] [%s | %s]", "git branch"),
    ("50% of the disk", "50% of the disk"),
    ("LC_ALL and org.gnome.Foo and calendar:MY", "and and"),
])
def test_clean_text(raw, clean):
    assert gc.clean_text(raw) == clean


def test_letters_rule():
    assert gc.has_enough_letters("Datei nicht gefunden", 10)
    assert not gc.has_enough_letters("Kurz", 10)
    assert not gc.has_enough_letters("abcdefghij 1234567890 !!!!", 10)  # mostly not letters
    assert gc.has_enough_letters("हिन्दी भाषा में अनुवाद", 10)  # vowel signs are not isalpha()


def test_corpus_from_catalogs(locale_root):
    splits, report = build(locale_root)
    de, en = set(texts_of(splits, "de")), set(texts_of(splits, "en"))
    assert {"Öffnen Sie das gewählte Dokument", "Fetter Text mit der Option und",
            "Die ganze Anwendung beenden", "Eine Datei wurde gelöscht", "Dateien wurden gelöscht"} <= de
    assert "Siehe oder schreiben Sie ," in de and "Kann nicht lesen: bei in" in de
    assert "Kurz" not in de  # too few letters
    assert "This message stays untranslated" not in de  # an untranslated copy ...
    assert "This message stays untranslated" in en  # ... but a fine English source
    assert "Could not read the data from the disk" not in de  # left in English
    assert texts_of(splits, "de").count("Speichern der Datei ist fehlgeschlagen") == 1  # de-duplicated
    assert "Vereinigte Staaten von Amerika" not in de  # iso_* catalogs are skipped
    assert "Open the selected document" in en and "Quit the whole application" in en
    assert "The colour of the English catalog" in en and "The colour, British" not in en
    assert not any("pseudo" in text for text in en)
    assert len(texts_of(splits, "pt")) == N_BULK and len(texts_of(splits, "sr")) == N_BULK
    # The same string under two labels is dropped from both.
    assert "Uma frase compartilhada aqui" not in texts_of(splits, "pt") + texts_of(splits, "es")
    assert report.ambiguous_dropped == 2
    assert len(texts_of(splits, "es")) == N_BULK  # read through its ISO-8859-1 charset
    assert "ja" in report.languages_below_min  # one string is below min_strings
    assert report.catalogs_failed == [str(locale_root / "fr/LC_MESSAGES/broken.mo")]
    assert report.catalogs_skipped_iso == 1
    assert {"C", "en@quot"} <= set(report.folders_skipped)
    assert set(texts_of(splits, "ja")) == set()
    assert set(splits["train"].labels) == {"de", "en", "es", "pt", "sr"}


def test_cjk_accelerator_and_min_strings(locale_root):
    splits, _ = build(locale_root, min_strings=1)
    assert texts_of(splits, "ja") == ["ファイルを今すぐ開いてください"]


def test_split_follows_the_source_message(locale_root):
    splits, _ = build(locale_root)
    split_of_text = {(label, text): name for name in SPLITS
                     for text, label in zip(splits[name].inputs, splits[name].labels)}
    assert all(len(splits[name]) > 0 for name in SPLITS)
    for i in range(N_BULK):
        word = letters(i)
        group = {split_of_text[key] for key in [("en", f"Message number {word}"), ("de", f"Nachricht Nummer {word}"),
                                                 ("pt", f"Mensagem numero {word}"), ("sr", f"Poruka broj {word}"),
                                                 ("es", f"Mensaje numero {word}")]}
        assert len(group) == 1, word
    train, held_out = set(splits["train"].inputs), set(splits["validation"].inputs) | set(splits["test"].inputs)
    assert not train & held_out


def test_deterministic_and_capped(locale_root):
    first, _ = build(locale_root)
    second, _ = build(locale_root)
    assert all(first[n].inputs == second[n].inputs and first[n].labels == second[n].labels for n in SPLITS)
    capped, _ = build(locale_root, max_per_language=7)
    stats = gc.corpus_stats(capped)
    assert all(counts["total"] == 7 for counts in stats["languages"].values())
    again, _ = build(locale_root, max_per_language=7)
    assert capped["train"].inputs == again["train"].inputs


def test_a_cap_keeps_every_language_in_every_split(locale_root):
    # English texts are their own source messages: a cap must not choose them by split hash.
    capped, _ = build(locale_root, max_per_language=40)
    for label in ("en", "de"):
        assert all(label in capped[name].labels for name in SPLITS), label


def test_fractions(locale_root):
    splits, _ = build(locale_root, fractions=(1.0, 0.0, 0.0))
    assert len(splits["validation"]) == len(splits["test"]) == 0
    with pytest.raises(ValueError, match="fractions"):
        build(locale_root, fractions=(0.5, 0.2, 0.2))


def test_corpus_stats(locale_root):
    splits, _ = build(locale_root)
    stats = gc.corpus_stats(splits)
    assert stats["total"] == sum(len(splits[n]) for n in SPLITS)
    assert stats["num_languages"] == 5 and stats["languages"]["pt"]["total"] == N_BULK
    assert abs(sum(stats["length_buckets"].values()) - 1.0) < 1e-9
    assert stats["per_language"]["min"] <= stats["per_language"]["median"] <= stats["per_language"]["max"]


def test_cache_round_trip(locale_root, tmp_path):
    cache = tmp_path / "cache"
    built, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
    assert not report.from_cache
    files = list(cache.glob("gettext-corpus-*.json.gz"))
    assert len(files) == 1 and not list(cache.glob(".*tmp"))
    cached, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
    assert report.from_cache and report.catalogs_failed  # the build's report comes back too
    assert all(built[n].inputs == cached[n].inputs and built[n].labels == cached[n].labels for n in SPLITS)

    # Other options, other key.
    _, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=4, cache_dir=cache)
    assert not report.from_cache and len(list(cache.glob("gettext-corpus-*"))) == 2

    # A changed catalog changes the fingerprint.
    write_mo(locale_root / "pt/LC_MESSAGES/extra.mo", {"A new message for Portugal": "Uma nova mensagem"})
    splits, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
    assert not report.from_cache and "Uma nova mensagem" in texts_of(splits, "pt")

    # A corrupt cache file is rebuilt.
    path = files[0]
    for damage in (b"garbage", gzip.compress(b"{\"format\": 1")):
        os.unlink(locale_root / "pt/LC_MESSAGES/extra.mo")
        path.write_bytes(damage)
        os.utime(path)
        splits, report = gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)
        assert not report.from_cache and splits["train"].inputs == built["train"].inputs
        assert gc.load_gettext_corpus_with_report(locale_root, min_strings=3, cache_dir=cache)[1].from_cache
        write_mo(locale_root / "pt/LC_MESSAGES/extra.mo", {})

    # The plain API returns just the splits; use_cache=False writes nothing.
    fresh = tmp_path / "fresh"
    splits = gc.load_gettext_corpus(locale_root, min_strings=3, cache_dir=fresh, use_cache=False)
    assert isinstance(splits["train"], Examples) and not fresh.exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_ENGINE_CACHE", str(tmp_path / "a"))
    assert gc.default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LSTM_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gc.default_cache_dir() == tmp_path / "xdg" / "lstm-engine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert gc.default_cache_dir() == Path.home() / ".cache" / "lstm-engine"


def test_missing_or_empty_locale_tree(tmp_path, locale_root):
    with pytest.raises(FileNotFoundError, match="apt-get"):
        gc.load_gettext_corpus(tmp_path / "nowhere", use_cache=False)
    with pytest.raises(ValueError, match="--data"):
        gc.load_gettext_corpus(locale_root, min_strings=10_000, use_cache=False)


def _real_language_dirs(root=Path(gc.DEFAULT_ROOT)) -> list[Path]:
    if not root.is_dir():
        return []
    return [d for d in root.iterdir() if gc.normalise_language(d.name) and (d / "LC_MESSAGES").is_dir()]


@pytest.mark.skipif(len(_real_language_dirs()) < 20, reason="fewer than 20 language folders in /usr/share/locale")
def test_real_catalogs(tmp_path):
    """The real catalogs of this machine. Reading all of them takes ~15 s, so by default this
    reads two common domains of every language; LSTM_ENGINE_FULL_CORPUS_TEST=1 reads all."""
    if os.environ.get("LSTM_ENGINE_FULL_CORPUS_TEST") == "1":
        root, min_strings = Path(gc.DEFAULT_ROOT), 1000
    else:
        root, min_strings = tmp_path / "locale", 50
        for folder in _real_language_dirs():
            for domain in ("coreutils.mo", "glib20.mo"):
                if (folder / "LC_MESSAGES" / domain).is_file():
                    (root / folder.name / "LC_MESSAGES").mkdir(parents=True, exist_ok=True)
                    (root / folder.name / "LC_MESSAGES" / domain).symlink_to(folder / "LC_MESSAGES" / domain)
    splits = gc.load_gettext_corpus(root, min_strings=min_strings, use_cache=False)
    stats = gc.corpus_stats(splits)
    if stats["num_languages"] < 20:
        pytest.skip(f"only {stats['num_languages']} languages with {min_strings} strings here")
    assert "en" in stats["languages"]
    sets = [set(splits[name].inputs) for name in SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert all(len(splits[name]) > 0 for name in SPLITS)


# --- user data formats ------------------------------------------------------------------


def test_stable_split_helpers():
    assert stable_unit("abc") == stable_unit("abc") and 0 <= stable_unit("abc") < 1
    assert split_for_key("abc") in SPLITS


def test_wili(tmp_path):
    texts = [f"Text number {i} in some language" for i in range(100)]
    labels = ["deu" if i % 2 else "eng" for i in range(100)]
    (tmp_path / "x_train.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (tmp_path / "y_train.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (tmp_path / "x_test.txt").write_text("Ein Test\nA test\n", encoding="utf-8")
    (tmp_path / "y_test.txt").write_text("deu\neng\n", encoding="utf-8")
    (tmp_path / "labels.csv").write_text("ignored;entirely\n", encoding="utf-8")
    splits = load_wili(tmp_path)
    assert splits["test"].inputs == ["Ein Test", "A test"] and splits["test"].labels == ["deu", "eng"]
    assert len(splits["train"]) + len(splits["validation"]) == 100
    assert 0 < len(splits["validation"]) < 30
    assert set(splits["train"].labels) == {"deu", "eng"}
    assert load_text_data(tmp_path)["validation"].inputs == splits["validation"].inputs

    (tmp_path / "y_test.txt").write_text("deu\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x_test\.txt has 2 lines.*y_test\.txt has 1"):
        load_wili(tmp_path)


def test_tatoeba(tmp_path):
    path = tmp_path / "sentences.csv"
    rows = [f"{i}\t{'deu' if i % 2 else 'eng'}\tSentence {i}" for i in range(1, 41)]
    path.write_text("\n".join(rows + ["41\t\\N\tNo language here", ""]) + "\n", encoding="utf-8")
    splits = load_tatoeba(path)
    assert sum(len(splits[n]) for n in SPLITS) == 40
    assert "No language here" not in splits["train"].inputs + splits["validation"].inputs + splits["test"].inputs
    assert splits["train"].inputs == load_tatoeba(path)["train"].inputs
    # Dispatch by name and by content.
    assert load_text_data(path)["test"].inputs == splits["test"].inputs
    other = tmp_path / "export.txt"
    other.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_text_data(other)["test"].inputs == splits["test"].inputs


def test_tsv(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("# a comment\n\nde\tGuten Tag\ttrain\nen\tGood day\ttest\nfr\tBonjour\tdev\n"
                    "es\tBuenos días\n", encoding="utf-8")
    splits = load_tsv(path)
    assert splits["train"].labels[:1] == ["de"] and splits["test"].inputs[:1] == ["Good day"]
    assert splits["validation"].inputs[:1] == ["Bonjour"]
    assert "Buenos días" in splits[split_for_key("Buenos días")].inputs
    assert load_text_data(path)["train"].inputs == splits["train"].inputs


def test_export_round_trip(tmp_path):
    splits = {"train": Examples(["Guten Tag", "a\ttab and a\nnewline"], ["de", "en"]),
              "validation": Examples(["Bonjour"], ["fr"]), "test": Examples(["Hola"], ["es"])}
    path = export_tsv(splits, tmp_path / "out" / "data.tsv")
    back = load_text_data(path)
    assert back["train"].inputs == ["Guten Tag", "a tab and a newline"]
    assert all(back[n].labels == splits[n].labels for n in SPLITS)
    assert back["validation"].inputs == ["Bonjour"] and back["test"].inputs == ["Hola"]


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        load_text_data(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"de\tGuten Tag\n" + b"fr\tCaf\xe9\n")
    with pytest.raises(ValueError, match=r"bad\.tsv, line 2: .*must be UTF-8"):
        load_tsv(bad)
    no_tab = tmp_path / "notab.tsv"
    no_tab.write_text("de\tGuten Tag\njust text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"notab\.tsv, line 2: no TAB"):
        load_text_data(no_tab)
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no examples in"):
        load_text_data(empty)
    bad_split = tmp_path / "split.tsv"
    bad_split.write_text("de\tGuten Tag\ttraining\n", encoding="utf-8")
    with pytest.raises(ValueError, match="split column"):
        load_tsv(bad_split)
    with pytest.raises(ValueError, match="x_train.txt"):
        load_text_data(tmp_path)  # a folder that is not WiLI
    (tmp_path / "x_train.txt").write_text("a\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="y_train.txt"):
        load_wili(tmp_path)
