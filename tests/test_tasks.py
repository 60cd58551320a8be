"""Both tasks end to end, small and fast: through the library on every backend and through the
CLI; resuming; and bad input at every door."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_engine import get_backend, runs
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.cli.main import main
from lstm_engine.predictor import load_predictor
from lstm_engine.tasks import get_task
from lstm_engine.trainer import Callback

from helpers import FAST_BACKENDS

TINY_LID = {"epochs": 2, "hidden_size": 12, "embedding_dim": 8, "batch_size": 16, "warmup_steps": 0}
TINY_SPEECH = {"epochs": 2, "hidden_size": 10, "batch_size": 16, "warmup_steps": 0}


@pytest.mark.parametrize("backend", ["numpy"] + FAST_BACKENDS)
def test_language_id_trains_and_tests_on_every_backend(tmp_path, lid_tsv, backend):
    summary = runs.run("language-id", {**TINY_LID, "data": str(lid_tsv), "epochs": 4, "lr": 0.01}, tmp_path,
                       backend=backend, progress=False)
    assert summary["status"] == "completed" and summary["backend"] == get_backend(backend).name
    assert summary["test"]["n"] == summary["sizes"]["test"] > 0
    assert summary["test"]["accuracy"] > 0.6           # three easy "languages"; chance is 1/3
    assert set(summary["test"]["accuracy_by_length"]) == {"<=20", "21-50", ">50"}
    for name in ("config.json", "metrics.jsonl", "results.json", "best.safetensors", "last.safetensors"):
        assert (tmp_path / name).exists(), name
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("backend", ["numpy"] + FAST_BACKENDS)
def test_speech_task_trains_on_feature_sequences_on_every_backend(tmp_path, speech_npz, backend):
    summary = runs.run("speech-digits", {**TINY_SPEECH, "data": str(speech_npz), "epochs": 6}, tmp_path,
                       backend=backend, progress=False)
    assert summary["test"]["accuracy"] > 0.6
    assert summary["test"]["labels"] == ["high", "low", "mid"]


@pytest.mark.slow
def test_resume_after_ctrl_c_matches_an_uninterrupted_run(tmp_path, lid_tsv, monkeypatch):
    settings = {**TINY_LID, "data": str(lid_tsv), "epochs": 3, "dropout": 0.2}
    full = runs.run("language-id", settings, tmp_path / "full", backend="numpy", progress=False)

    class CtrlC(Callback):          # a real SIGINT half-way through epoch 2
        def on_batch_end(self, trainer, loss, lr):
            if trainer.state.epoch == 1 and trainer.state.batch == 3:
                os.kill(os.getpid(), signal.SIGINT)

    original = runs.ProgressBar
    monkeypatch.setattr(runs, "ProgressBar", lambda disable=None: CtrlC())
    part = runs.run("language-id", settings, tmp_path / "part", backend="numpy")
    monkeypatch.setattr(runs, "ProgressBar", original)
    assert part["status"] == "interrupted" and "--resume" in part["resume"]
    saved = load_checkpoint(tmp_path / "part" / "last.safetensors")
    assert (saved.train["state"]["epoch"], saved.train["state"]["batch"]) == (1, 3)

    resumed = runs.run("language-id", {"epochs": 3}, tmp_path / "part", backend="numpy", resume=True, progress=False)
    assert resumed["status"] == "completed" and resumed["steps"] == full["steps"]
    a = load_checkpoint(tmp_path / "full" / "last.safetensors").tensors
    b = load_checkpoint(tmp_path / "part" / "last.safetensors").tensors
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed["test"]["accuracy"] == full["test"]["accuracy"]


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path, lid_run):
    with pytest.raises(ValueError, match="cannot change hidden_size"):
        runs.run("language-id", {"hidden_size": 99}, lid_run, resume=True, backend="numpy")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        runs.run("language-id", {}, tmp_path, resume=True)


# -- the CLI ---------------------------------------------------------------------------------
def _cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def test_cli_run_predict_evaluate(tmp_path, lid_tsv):
    cfg = tmp_path / "c.toml"
    cfg.write_text('epochs = 9\nhidden_size = 12\nembedding_dim = 8\n[train]\nbatch_size = 16\n')
    out = tmp_path / "run"
    r = _cli("run", "--data", lid_tsv, "--config", cfg, "--epochs", 3, "--lr", 0.01, "--out", out,
             "--backend", "numpy", "--json", "--set", "warmup_steps=0")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["epochs"] == 3                       # the flag beats the file
    config = json.loads((out / "config.json").read_text())
    assert config["batch_size"] == 16 and config["hidden_size"] == 12 and config["warmup_steps"] == 0

    r = _cli("predict", out, "aaa bbb ccc", "xxx yyy", "--top", 2)
    lines = r.output.splitlines()
    assert len(lines) == 2 and all(len(line.split("\t")) == 4 for line in lines)
    r = _cli("predict", out / "best.safetensors", input="aab ba\n\n☃☃ unknown ☃\n")
    lines = r.output.split("\n")
    assert lines[1] == "" and len(lines[0].split("\t")) == 2 and len(lines[2].split("\t")) == 2
    label, prob = lines[2].split("\t")
    assert label in summary["test"]["labels"] and 0 < float(prob) <= 1

    r = _cli("evaluate", out, "--split", "all", "--json")
    assert json.loads(r.stdout)["n"] == sum(summary["sizes"].values())
    r = _cli("run", "--data", lid_tsv, "--out", out)
    assert r.exit_code != 0 and "already holds a run" in r.output


def test_cli_data_export_round_trip(tmp_path, lid_tsv, speech_npz):
    r = _cli("data", "--data", lid_tsv, "--export", tmp_path / "x.tsv", "--json")
    stats = json.loads(r.stdout)
    again = json.loads(_cli("data", "--data", tmp_path / "x.tsv", "--json").stdout)
    assert stats["labels"] == again["labels"]
    r = _cli("data", "speech-digits", "--data", speech_npz, "--export", tmp_path / "s.npz")
    assert r.exit_code == 0 and "exported" in r.output
    assert (tmp_path / "s.npz").exists()


def test_cli_speech_predict_on_npz_and_refuses_wav_without_feature_settings(tmp_path, speech_npz):
    out = tmp_path / "run"
    assert _cli("run", "speech-digits", "--data", speech_npz, "--out", out, "--epochs", 1,
                "--backend", "numpy", "--hidden-size", 8).exit_code == 0
    r = _cli("predict", out, speech_npz)
    assert len(r.output.splitlines()) == 150 and r.output.splitlines()[0].endswith(f"{speech_npz}[0]")
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    r = CliRunner().invoke(main, ["predict", str(out), str(wav)])
    assert r.exit_code == 1 and "trained on precomputed features" in r.output


@pytest.mark.parametrize("args, match", [
    (["run", "nope"], "expected one of"),
    (["run", "--data", "/no/such/file.tsv", "--backend", "numpy"], "/no/such/file.tsv"),
    (["run", "--set", "colour=blue", "--backend", "numpy"], "unknown setting 'colour'"),
    (["run", "--set", "oops"], "expected KEY=VALUE"),
    (["run", "--resume"], "--resume needs --out"),
    (["run", "--config", "/no/such.toml"], "file not found"),
    (["run", "--backend", "warp-drive"], "unknown backend"),
    (["run", "--threads", "0"], "--threads"),
])
def test_cli_errors_name_what_is_wrong(args, match):
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0 and match in r.output, r.output


def test_bad_data_files_get_clear_errors(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("# only a comment\n")
    r = CliRunner().invoke(main, ["run", "--data", str(empty), "--backend", "numpy"])
    assert r.exit_code == 1 and "no examples" in r.output
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("de\tgrüße\n".encode("utf-8") + "fr\tété\n".encode("latin-1"))
    r = CliRunner().invoke(main, ["run", "--data", str(latin1), "--backend", "numpy"])
    assert r.exit_code == 1 and "line 2" in r.output and "UTF-8" in r.output
    bad_ckpt = tmp_path / "bad.safetensors"
    bad_ckpt.write_bytes(b"\x00" * 100)
    r = CliRunner().invoke(main, ["predict", str(bad_ckpt), "hello"])
    assert r.exit_code == 1 and "truncated or corrupted" in r.output
    r = CliRunner().invoke(main, ["predict", str(tmp_path), "hello"])
    assert r.exit_code == 1 and "no checkpoint in" in r.output


def test_unknown_characters_map_to_the_unknown_id(lid_run):
    pred = load_predictor(lid_run, backend="numpy")
    ids = pred.task.encode_inputs(["a☃\u0301b"], pred.encoder)[0]
    assert 1 in ids.tolist() and 0 not in ids.tolist()
    with pytest.raises(ValueError, match="empty"):
        pred.predict(["   "])


def test_language_id_reads_text_longer_than_its_training_in_windows(lid_run):
    from lstm_engine.data import Examples
    pred = load_predictor(lid_run, backend="numpy")
    assert pred.encoder["window"] == {"above": 64, "size": 16, "stride": 8}      # the defaults
    long_text = "abba cd " * 12
    encoded, _ = pred.task.encode(Examples([long_text], ["aa"]), pred.encoder, pred.labels)
    assert encoded.window == pred.encoder["window"]           # evaluation reads windows too
    with_windows = pred.predict_proba([long_text, "abba cd"])
    whole = {**pred.encoder}
    del whole["window"]
    pred_whole = load_predictor(lid_run, backend="numpy")
    pred_whole.encoder = whole
    without = pred_whole.predict_proba([long_text, "abba cd"])
    assert not np.allclose(with_windows[0], without[0]) and np.allclose(with_windows[1], without[1])

    config = {"max_vocab": 50, "min_char_count": 1, "lowercase": True, "train_length": 64, "max_length": 256}
    train = Examples(["abc def", "xyz"], ["a", "b"])
    for window, want in ((32, {"above": 64, "size": 32, "stride": 16}), (5, {"above": 64, "size": 5, "stride": 2}),
                         (0, None), (64, None)):
        assert pred.task.fit_encoder(train, {**config, "window": window}).get("window") == want
    assert pred.task.fit_encoder(train, {**config, "window": 8, "max_length": 8}).get("window") is None
    for bad in ({"above": 64, "size": 64, "stride": 1}, {"above": 64, "size": 8}, {"above": 64, "size": 8, "stride": 0},
                {"above": 64, "size": 8.0, "stride": 4}, [64, 8, 4]):
        with pytest.raises(ValueError, match="'window' must be"):
            pred.task.check_encoder({**pred.encoder, "window": bad}, pred.model.config)


# -- the default data (skipped where it is not on this machine) ------------------------------
@pytest.mark.slow
def test_language_id_on_the_default_gettext_corpus(tmp_path):
    from lstm_engine.data.gettext_corpus import load_gettext_corpus
    try:
        load_gettext_corpus(min_strings=200, max_per_language=30)
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"no gettext corpus here: {e}")
    # the catalogs alone, from this machine (the other sources are downloads: test_lid_run.py's fixtures)
    summary = runs.run("language-id", {**TINY_LID, "epochs": 1, "sources": "gettext", "download": False,
                                       "min_strings": 30, "max_per_language": 30},
                       tmp_path, backend="auto", progress=False)
    assert summary["num_classes"] >= 10 and summary["test"]["n"] > 0


def test_speech_digits_on_the_default_data(tmp_path):
    try:
        get_task("speech-digits").load_data({})
    except FileNotFoundError as e:
        pytest.skip(str(e))
    summary = runs.run("speech-digits", {**TINY_SPEECH, "epochs": 1}, tmp_path, backend="auto", progress=False)
    assert summary["num_classes"] == 10 and summary["sizes"] == {"train": 2400, "validation": 300, "test": 300}


def test_device_id_selects_the_gpu_for_the_cuda_backend(monkeypatch):
    from lstm_engine.backends.cuda import DEVICE_ENV
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))     # the option writes here; undone after
    r = CliRunner().invoke(main, ["backends", "--device-id", "3", "--json"])
    assert r.exit_code == 0 and os.environ[DEVICE_ENV] == "3"
    r = CliRunner().invoke(main, ["backends", "--device-id", "-1"])
    assert r.exit_code != 0 and "--device-id" in r.output


# -- choosing among some labels (Predictor.predict*(among=...), predict --among) ------------
def test_a_predictor_chooses_among_the_labels_it_is_given(lid_run, lid_tsv):
    pred = load_predictor(lid_run, backend="numpy")
    assert sorted(pred.labels) == ["aa", "mm", "xx"]
    # short texts, and one far over train_length, read as windows too
    texts = ["abcd dcba", "wxyz zz", "klmn", "abcd wxyz klmn", "ab " * 70]
    assert pred.task.window(pred.encoder) is not None and len(texts[-1]) > pred.encoder["window"]["above"]
    full = pred.predict_proba(texts)
    among = ["xx", "aa"]
    chosen = pred.predict_proba(texts, among=among)
    keep = np.isin(pred.labels, among)
    np.testing.assert_allclose(chosen[:, keep], full[:, keep] / full[:, keep].sum(axis=1, keepdims=True))
    assert (chosen[:, ~keep] == 0).all()
    np.testing.assert_allclose(chosen.sum(axis=1), 1.0)
    assert pred.predict(texts, among=among) == [pred.labels[i] for i in chosen.argmax(axis=1)]
    top = pred.predict_top(texts, k=3, among=among)                   # at most as many as named
    assert [len(row) for row in top] == [2] * len(texts)
    for row, probs in zip(top, chosen):
        assert [label for label, _ in row] == sorted(among, key=lambda label: -probs[pred.labels.index(label)])
        assert sum(p for _, p in row) == pytest.approx(1.0)
    assert pred.predict_top(texts[:2], k=1, among=["mm"]) == [[("mm", 1.0)], [("mm", 1.0)]]
    assert pred.predict(texts) == [pred.labels[i] for i in full.argmax(axis=1)]   # unchanged without


@pytest.mark.parametrize("among, error, match", [
    (["aa", "zz"], "ArgumentError", "among must name labels of the model, got 'zz'; the model's labels: aa, mm, xx"),
    ([], "ArgumentError", "among must name labels of the model, got none"),
    ("aa", "ArgumentTypeError", "among must be a list of labels, got str"),
])
def test_among_names_what_is_wrong(lid_run, among, error, match):
    from lstm_engine import errors
    pred = load_predictor(lid_run, backend="numpy")
    for call in (pred.predict_proba, pred.predict, pred.predict_top):
        with pytest.raises(getattr(errors, error), match=match):
            call(["abcd"], among=among)
    with pytest.raises(errors.ArgumentError, match="k must be a positive integer, got 0"):
        pred.predict_top(["abcd"], 0, among=["aa"])


def test_cli_predict_among(lid_run):
    r = _cli("predict", lid_run, "abcd dcba", "klmn", "--top", 3, "--among", "xx, mm")
    lines = r.output.splitlines()
    assert r.exit_code == 0 and len(lines) == 2
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 4 and {fields[0], fields[2]} == {"xx", "mm"}
        assert float(fields[1]) + float(fields[3]) == pytest.approx(1.0, abs=2e-4)
    r = CliRunner().invoke(main, ["predict", str(lid_run), "abcd", "--among", "xx,qq"])
    assert r.exit_code != 0 and "among must name labels of the model, got 'qq'" in r.output
