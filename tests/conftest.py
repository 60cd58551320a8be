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
