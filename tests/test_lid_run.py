"""language-id runs on its default data, the many-source corpus, built from fixture packages
served by a fake apt and fixture catalogs (nothing is downloaded): the corpus settings, the
manifest in every checkpoint and in results.json, the held-out sources tested after training,
a run without package lists, and ``evaluate`` on a corpus that changed since training."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_engine import runs, settings
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.cli.main import main as cli
from lstm_engine.data import debian_packages, lid_corpus
from lstm_engine.errors import ArgumentError
from lstm_engine.predictor import load_predictor
from lstm_engine.tasks import get_task
from lstm_engine.tasks.language_id import lower_chars
from test_lid_corpus import make_deb, repository
from test_lid_sources import FakeApt
from test_text_data import locale_root  # noqa: F401 -- a fixture

TINY = {"epochs": 1, "hidden_size": 6, "embedding_dim": 4, "batch_size": 16, "warmup_steps": 0,
        "sources": "gettext,libreoffice-help,gnome-user-docs,fortunes"}


@pytest.fixture
def fixture_corpus(monkeypatch, tmp_path, locale_root):
    """Every load of the default corpus reads the fixture catalogs and the fixture packages of
    ``.apt`` (a FakeApt that a test may change), with a cache in tmp_path; ``.seen`` holds the
    options of the last load."""
    real = lid_corpus.load_lid_corpus
    state = SimpleNamespace(apt=FakeApt(repository()), seen={})

    def build(**options):
        state.seen = dict(options)
        return real(locale_root=locale_root, cache_dir=tmp_path / "cache", apt=state.apt, workers=1,
                    progress=False, **{**options, "min_strings": 1})
    monkeypatch.setattr(lid_corpus, "load_lid_corpus", build)
    return state


# --- settings -----------------------------------------------------------------------------

def test_corpus_settings_in_the_schema():
    task = get_task("language-id")
    schema = settings.task_schema(task)
    assert schema["sources"].default == ",".join(lid_corpus.DEFAULTS["sources"])       # the opt-in ones left out
    assert schema["held_out_sources"].default == ""
    assert schema["max_per_source"].default == lid_corpus.DEFAULTS["max_per_source"] and schema["max_per_source"].optional
    assert schema["download"].default is True and schema["min_letters"].default == lid_corpus.DEFAULTS["min_letters"]
    config = settings.resolve(task, {"sources": "gettext", "max_per_source": "none", "download": False})
    options = task.data_options(config)
    assert {k: options[k] for k in ("sources", "max_per_source", "download")} == \
        {"sources": "gettext", "max_per_source": None, "download": False}
    with pytest.raises(ValueError, match="setting 'download'"):
        settings.resolve(task, {"download": "maybe"})


def test_the_settings_reach_the_corpus(fixture_corpus, tmp_path):
    task = get_task("language-id")
    config = settings.resolve(task, {"sources": "gettext,fortunes", "held_out_sources": "fortunes",
                                     "max_per_source": 50, "min_letters": 12, "download": False})
    data = task.load(task.data_options(config))
    assert fixture_corpus.seen == {"sources": "gettext,fortunes", "held_out_sources": "fortunes", "min_strings": 1000,
                                   "max_per_source": 50, "max_per_language": lid_corpus.DEFAULTS["max_per_language"],
                                   "min_letters": 12, "extra_data": None,
                                   "download": False}
    assert data.manifest["options"]["sources"] == ["gettext", "fortunes"] and data.manifest["options"]["min_letters"] == 12
    with pytest.raises(ArgumentError, match="unknown source.*nonsense"):
        task.load(task.data_options(settings.resolve(task, {"sources": "gettext,nonsense"})))


def test_data_from_a_file_has_no_manifest(lid_tsv):
    task = get_task("language-id")
    data = task.load(task.data_options(settings.resolve(task, {"data": str(lid_tsv)})))
    assert data.manifest is None and data.held_out == {} and len(data.splits["train"]) > 0


# --- a run --------------------------------------------------------------------------------

def test_a_run_keeps_the_manifest_and_tests_the_held_out_source(fixture_corpus, tmp_path):
    out = tmp_path / "run"
    summary = runs.run("language-id", {**TINY, "held_out_sources": "fortunes"}, out, backend="numpy", progress=False)
    corpus = lid_corpus.load_lid_corpus(sources=TINY["sources"], held_out_sources="fortunes")
    manifest = corpus.manifest
    for name in ("best.safetensors", "last.safetensors"):
        stored = load_checkpoint(out / name).task["corpus"]
        assert stored["key"] == manifest["key"] and stored["sources"]["fortunes"]["packages"] == {"fortunes-de": "0.35-1"}
        assert stored["sources"]["fortunes"]["held_out"] and stored["totals"] == manifest["totals"]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["corpus"]["key"] == manifest["key"] and results["data_messages"] == []
    held = results["held_out"]["fortunes"]
    assert held["n"] == len(corpus.held_out["fortunes"]) > 0 and "confusion" not in held
    assert set(held["accuracy_by_length"]) == {"<=20", "21-50", ">50"}
    assert summary["held_out"] == results["held_out"]
    assert load_predictor(out, backend="numpy").manifest["key"] == manifest["key"]


def test_without_package_lists_the_run_goes_on_with_the_other_sources(fixture_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(debian_packages, "is_root", lambda: False)
    fixture_corpus.apt = FakeApt(repository(), lists=False)
    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--backend", "numpy", "--no-progress"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert fixture_corpus.apt.updates == 0 and not fixture_corpus.apt.downloads
    # said at the end, after the figures, where it is not lost among the progress bars
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert [n.split(":")[1].strip() for n in notes] == ["libreoffice-help", "gnome-user-docs", "fortunes"]
    assert all("packages missing" in n and "apt-get update" in n for n in notes)
    assert result.stdout.index("test: accuracy") < result.stdout.index("run folder:")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["corpus"]["sources"]["fortunes"]["status"] == "missing"
    assert results["corpus"]["sources"]["gettext"]["status"] == "ok"
    assert set(results["corpus"]["languages"]["de"]["sources"]) == {"gettext"}
    assert len(results["data_messages"]) == 3


# --- evaluate -----------------------------------------------------------------------------

def test_evaluate_says_when_the_corpus_changed(fixture_corpus, tmp_path):
    out = tmp_path / "run"
    runs.run("language-id", {**TINY, "held_out_sources": "fortunes"}, out, backend="numpy", progress=False)
    runner = CliRunner()
    same = runner.invoke(cli, ["evaluate", str(out), "--backend", "numpy"])
    assert same.exit_code == 0, same.output
    assert "warning" not in same.stderr and same.stdout.startswith("test: accuracy")
    held = runner.invoke(cli, ["evaluate", str(out), "--backend", "numpy", "--split", "held-out", "--json"])
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert json.loads(held.stdout)["accuracy"] == results["held_out"]["fortunes"]["accuracy"]

    # A new version of a package: the corpus is rebuilt from it, and evaluate says so.
    repo = repository()
    repo["fortunes-de"] = ("0.36-1", make_deb({"usr/share/games/fortunes/de/sprueche":
                                               "\n%\n".join(f"Ein neuer Spruch Nummer {k} sagt viel." for k in range(9))
                                               .encode()}))
    fixture_corpus.apt = FakeApt(repo)
    changed = runner.invoke(cli, ["evaluate", str(out), "--backend", "numpy", "--json"])
    assert changed.exit_code == 0, changed.output
    assert "warning: the data rebuilt for this evaluation differs" in changed.stderr
    assert "fortunes-de 0.35-1 -> 0.36-1" in changed.stderr
    assert any("fortunes-de 0.35-1 -> 0.36-1" in c for c in json.loads(changed.stdout)["data_changes"])

    no_held = runner.invoke(cli, ["evaluate", str(out), "--split", "held-out", "--data", str(tmp_path / "none.tsv")])
    assert no_held.exit_code != 0


def test_manifest_changes():
    base = {"key": "a", "options": {"sources": ["gettext"]}, "totals": {"train": 10, "validation": 1, "test": 1},
            "sources": {"gettext": {"status": "ok", "version": "x1", "packages": {}},
                        "fortunes": {"status": "ok", "version": "", "packages": {"fortunes-de": "1"}}}}
    assert lid_corpus.manifest_changes(base, base) == []
    later = json.loads(json.dumps(base))
    later.update(key="b", totals={"train": 12, "validation": 1, "test": 1})
    later["sources"]["gettext"]["version"] = "x2"
    later["sources"]["fortunes"].update(status="missing", packages={})
    changes = lid_corpus.manifest_changes(base, later)
    assert changes == ["gettext: version x1 then, x2 now", "fortunes: ok then, missing now",
                       "fortunes: 1 package(s) changed (fortunes-de 1 -> -)", "strings: train 10 -> 12"]
    assert lid_corpus.manifest_changes(base, {**base, "key": "c"}) == [
        "the corpus format changed (a newer lstm-engine builds it differently)"]


def test_training_texts_are_cut_shorter_than_classified_ones(tmp_path, lid_tsv, monkeypatch):
    from lstm_engine import trainer
    trained = []
    real = trainer.bucket_batches

    def spy(lengths, *args):
        trained.append(int(max(lengths)))
        return real(lengths, *args)
    monkeypatch.setattr(trainer, "bucket_batches", spy)
    runs.run("language-id", {"data": str(lid_tsv), **TINY, "max_length": 40, "train_length": 6,
                             "crop_fraction": 0.0}, tmp_path, backend="numpy", progress=False)
    assert trained == [6]
    pred = load_predictor(tmp_path, backend="numpy")
    assert pred.encoder["max_length"] == 40
    assert [len(x) for x in pred.task.encode_inputs(["abcd " * 20, "abc"], pred.encoder)] == [40, 3]
    assert json.loads((tmp_path / "config.json").read_text())["train_length"] == 6


def test_lower_chars_is_the_per_character_rule():
    """The fast path (str.lower) agrees with the rule character by character, capital sigma
    (which str.lower writes as a final sigma at a word's end) and 'İ' included."""
    def rule(text):
        return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    every = "".join(chr(c) for c in range(0x20, 0x30000) if not 0xD800 <= c < 0xE000)
    assert lower_chars(every) == rule(every)
    for text in ("ΟΔΟΣ ΚΑΙ ΣΟΦΙΑ", "İSTANBUL", "Straße ẞ", "Ǆemal", "ΑΣ", "plain"):
        assert lower_chars(text) == rule(text) and len(lower_chars(text)) == len(text)
    assert lower_chars("ΟΔΟΣ") == "οδοσ" != "ΟΔΟΣ".lower()


def test_texts_are_lower_cased_unless_the_setting_is_off(tmp_path):
    """One id per letter whatever its case (the default), in training (the vocabulary) and in
    prediction; a character whose lower case is longer ('İ') keeps its length; lowercase=false
    and an encoder from before the setting (no 'lowercase') keep the case."""
    tsv = tmp_path / "cased.tsv"
    lines = [f"aa\t{w}" for w in ("Abba Cab", "ABBA CAB", "abba cab", "Dab ad")] * 12 \
        + [f"xx\t{w}" for w in ("Wxyz Yz", "WXYZ YZ", "wxyz yz", "Zyx wy")] * 12
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings_ = {"data": str(tsv), **TINY, "min_char_count": 1, "crop_fraction": 0.0}
    runs.run("language-id", settings_, tmp_path / "lower", backend="numpy", progress=False)
    pred = load_predictor(tmp_path / "lower", backend="numpy")
    assert pred.encoder["lowercase"] is True and pred.encoder["chars"] == pred.encoder["chars"].lower()
    encode = pred.task.encode_inputs
    assert [list(x) for x in encode(["ABBA Wxy", "abba wxy"], pred.encoder)] == \
        [list(x) for x in encode(["abba wxy"] * 2, pred.encoder)]
    assert len(encode(["\u0130a"], pred.encoder)[0]) == 2            # 'İ'.lower() is two code points
    np.testing.assert_array_equal(pred.predict_proba(["CAB"]), pred.predict_proba(["cab"]))

    runs.run("language-id", {**settings_, "lowercase": False}, tmp_path / "cased", backend="numpy", progress=False)
    cased = load_predictor(tmp_path / "cased", backend="numpy")
    assert cased.encoder["lowercase"] is False and {"A", "a", "W", "w"} <= set(cased.encoder["chars"])
    assert list(encode(["A"], cased.encoder)[0]) != list(encode(["a"], cased.encoder)[0])
    older = {k: v for k, v in cased.encoder.items() if k != "lowercase"}
    assert list(encode(["Aa"], older)[0]) == list(encode(["Aa"], cased.encoder)[0])
    with pytest.raises(ArgumentError, match="lowercase"):
        cased.task.check_encoder({**cased.encoder, "lowercase": "yes"}, cased.model.config)


def test_label_smoothing_trains_on_the_mixed_targets_and_validates_on_plain_cross_entropy(tmp_path, lid_tsv):
    """The same seed and data: label smoothing changes the training loss (it has a floor above
    0) but validation reports plain cross-entropy, so the two runs' val_loss compare."""
    def run(smoothing, out):
        runs.run("language-id", {"data": str(lid_tsv), **TINY, "label_smoothing": smoothing}, out,
                 backend="numpy", test=False, progress=False)
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    plain, smoothed = run(0.0, tmp_path / "plain"), run(0.5, tmp_path / "smoothed")
    assert smoothed["train_loss"] > plain["train_loss"]
    assert json.loads((tmp_path / "smoothed" / "config.json").read_text())["label_smoothing"] == 0.5
    from lstm_engine.data.text_formats import load_text_data
    pred = load_predictor(tmp_path / "smoothed", backend="numpy")
    encoded, _ = pred.task.encode(load_text_data(str(lid_tsv))["validation"], pred.encoder, pred.labels)
    assert pred.objective.evaluate(pred.model, encoded)["loss"] == pytest.approx(smoothed["val_loss"], rel=1e-9)
