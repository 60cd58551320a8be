"""Fixtures shared by the test files (helpers that are not fixtures live in helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FAST_BACKENDS


@pytest.fixture(params=FAST_BACKENDS or [pytest.param("none", marks=pytest.mark.skip("no fast backend here"))])
def fast_backend(request):
    """The name of each backend that runs here besides the reference (cuda-emulated too)."""
    return request.param


@pytest.fixture(scope="session")
def lid_tsv(tmp_path_factory):
    """A label<TAB>text file of three made-up languages with their own letters, 5-80 characters."""
    rng = np.random.default_rng(0)
    alphabets = {"aa": "abcd ", "xx": "wxyz ", "mm": "klmn "}
    lines = []
    for label, letters in alphabets.items():
        for _ in range(120):
            text = "".join(rng.choice(list(letters), size=rng.integers(5, 80))).strip() or letters[0]
            lines.append(f"{label}\t{text}")
    path = tmp_path_factory.mktemp("lid") / "tiny.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def speech_npz(tmp_path_factory):
    """Feature sequences of three classes told apart by their mean (a generic .npz dataset)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, 150)
    y = np.arange(150) % 3
    X = np.concatenate([rng.standard_normal((n, 5)) + c for n, c in zip(lengths, y)]).astype(np.float32)
    path = tmp_path_factory.mktemp("speech") / "feats.npz"
    np.savez(path, X=X, lengths=lengths, y=y, labels=np.array(["low", "mid", "high"]))
    return path


@pytest.fixture(scope="session")
def lid_run(tmp_path_factory, lid_tsv):
    """A small trained language-id run folder (numpy backend)."""
    from lstm_engine import runs
    out = tmp_path_factory.mktemp("lid_run")
    runs.run("language-id", {"data": str(lid_tsv), "epochs": 2, "hidden_size": 12, "embedding_dim": 8,
                             "batch_size": 16, "warmup_steps": 0}, out, backend="numpy", progress=False)
    return out


def write_transcribed_npz(path, n=160, seed=0, features=5, alphabet="abc", splits=(0.8, 0.1)):
    """An .npz of transcribed feature sequences (X, lengths, y transcripts, split) a small CTC
    model learns in a few epochs: each character of a 1-4 character transcript is 2-3 frames
    of its own one-hot feature, with 1-2 noisy silent frames after each (so repeats are
    separable)."""
    rng = np.random.default_rng(seed)
    X, lengths, y, split = [], [], [], []
    for i in range(n):
        text = "".join(rng.choice(list(alphabet), size=int(rng.integers(1, 5))))
        frames = [np.zeros((int(rng.integers(0, 2)), features))]
        for ch in text:
            block = np.zeros((int(rng.integers(2, 4)), features))
            block[:, alphabet.index(ch)] = 2.0
            frames += [block, np.zeros((int(rng.integers(1, 3)), features))]
        x = np.concatenate(frames)
        X.append(x + 0.3 * rng.standard_normal(x.shape))
        lengths.append(len(x))
        y.append(text)
        split.append("train" if i < splits[0] * n else "validation" if i < sum(splits) * n else "test")
    np.savez(path, X=np.concatenate(X).astype(np.float32), lengths=np.array(lengths), y=np.array(y),
             split=np.array(split))
    return path


@pytest.fixture(scope="session")
def transcribed_npz(tmp_path_factory):
    """160 transcribed feature sequences of the characters a, b, c (128 train, 16 validation,
    16 test): speech-recognition's data in the generic .npz format."""
    return write_transcribed_npz(tmp_path_factory.mktemp("transcribed") / "transcribed.npz")
