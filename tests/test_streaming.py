"""Streaming inference: a sequence pushed in chunks of any size gives the outputs and final
states of one whole-sequence forward, on every backend; classifier streams give per-step
probabilities or the running prediction of the prefix seen so far; predictor streams take raw
text or frames; bidirectional models are refused with the reason."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lstm_engine import LSTM, ArgumentError, ArgumentTypeError, runs
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.streaming import predictor_stream
from lstm_engine.predictor import load_predictor
from lstm_engine.tasks import get_task

from helpers import FAST_BACKENDS, tolerance

BACKENDS = ["numpy"] + FAST_BACKENDS
#: Outputs of a chunked run against the whole-sequence forward. The reference is the same
#: arithmetic step for step; the cpu backend's input projection, one product over all T*B rows
#: of a call, rounds differently with the chunk's row count.
EXACT = {dt: tolerance("stream", dt)[1] for dt in (np.float64, np.float32)}


def chunked(T: int, sizes) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of the given sizes (the last size repeats)."""
    bounds, start, k = [], 0, 0
    while start < T:
        size = sizes[min(k, len(sizes) - 1)]
        bounds.append((start, min(T, start + size)))
        start, k = start + size, k + 1
    return bounds


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_chunks_give_the_whole_sequence_forward(backend, dtype):
    lstm = LSTM(5, 7, num_layers=3, dtype=dtype, backend=backend, seed=0)
    rng = np.random.default_rng(1)
    T, B = 23, 3
    x = rng.standard_normal((T, B, 5)).astype(dtype)
    h0, c0 = (rng.standard_normal((3, B, 7)).astype(dtype) for _ in range(2))
    to_np = lstm.backend.to_numpy
    out, h_n, c_n = (to_np(a) for a in _flat(lstm.forward(x, initial_state=(h0, c0), training=False)))
    for sizes in ([1], [3], [7], [2, 5, 1, 15], [T]):
        stream = lstm.stream(batch_size=B, initial_state=(h0, c0))
        got = np.concatenate([to_np(stream.push(x[a:b])) for a, b in chunked(T, sizes)])
        np.testing.assert_allclose(got, out, rtol=0, atol=EXACT[dtype], err_msg=f"outputs, chunks {sizes}")
        np.testing.assert_allclose(to_np(stream.state[0]), h_n, rtol=0, atol=EXACT[dtype], err_msg=f"h, {sizes}")
        np.testing.assert_allclose(to_np(stream.state[1]), c_n, rtol=0, atol=EXACT[dtype], err_msg=f"c, {sizes}")
        assert stream.steps.tolist() == [T] * B


def _flat(result):
    out, (h, c) = result
    return out, h, c


@pytest.mark.parametrize("backend", BACKENDS)
def test_ragged_streams_and_batch_first(backend):
    """Sequences that end early leave the chunk (``rows``) or are padded (``lengths``)."""
    lstm = LSTM(4, 6, num_layers=2, batch_first=True, dtype=np.float64, backend=backend, seed=2)
    rng = np.random.default_rng(3)
    lengths = np.array([11, 4, 1, 8])
    x = rng.standard_normal((4, 11, 4))
    to_np = lstm.backend.to_numpy
    out, h_n, c_n = (to_np(a) for a in _flat(lstm.forward(x, lengths=lengths, training=False)))
    stream = lstm.stream(batch_size=4)
    got = np.zeros_like(out)
    for a, b in chunked(11, [3]):
        live = np.flatnonzero(lengths > a)
        chunk_lengths = np.minimum(lengths[live], b) - a
        got[live, a:b] = to_np(stream.push(x[live, a:b], lengths=chunk_lengths, rows=live))
    np.testing.assert_allclose(got, out, rtol=0, atol=EXACT[np.float64])
    np.testing.assert_allclose(to_np(stream.h), h_n, rtol=0, atol=EXACT[np.float64])
    np.testing.assert_allclose(to_np(stream.c), c_n, rtol=0, atol=EXACT[np.float64])
    assert stream.steps.tolist() == lengths.tolist()
    stream.reset()
    assert stream.steps.tolist() == [0] * 4 and not to_np(stream.h).any()


def test_bidirectional_models_are_refused_with_the_reason():
    with pytest.raises(ArgumentError, match="unidirectional.*reverse direction.*not arrived yet"):
        LSTM(3, 4, bidirectional=True, backend="numpy").stream()
    with pytest.raises(ArgumentError, match="unidirectional"):
        SequenceClassifier(2, input_size=3, hidden_size=4, bidirectional=True, backend="numpy").stream()


def test_bad_chunks_name_what_was_expected():
    stream = LSTM(3, 4, backend="numpy").stream(batch_size=2)
    with pytest.raises(ArgumentError, match=r"chunk must be \(T, b, input_size\) with b = 2"):
        stream.push(np.zeros((5, 3, 3), np.float32))
    with pytest.raises(ArgumentError, match=r"chunk must be"):
        stream.push(np.zeros((5, 3), np.float32))
    with pytest.raises(ArgumentError, match=r"distinct indices in \[0, 2\)"):
        stream.push(np.zeros((5, 2, 3), np.float32), rows=[0, 2])
    with pytest.raises(TypeError, match="float64"):
        stream.push(np.zeros((5, 2, 3)))
    with pytest.raises(ArgumentError, match="batch_size must be a positive integer"):
        LSTM(3, 4, backend="numpy").stream(batch_size=0)
    assert stream.steps.tolist() == [0, 0]                 # nothing was kept from the failures


@pytest.mark.parametrize("ngram_buckets", [0, 7], ids=["chars", "ngrams"])
@pytest.mark.parametrize("head", ["last", "mean", "max", "per_step"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_classifier_stream_equals_the_classifier_on_each_prefix(backend, head, ngram_buckets):
    model = SequenceClassifier(3, vocab_size=10, embedding_dim=5, hidden_size=6, num_layers=2, pooling=head
                               if head != "per_step" else "last", per_step=head == "per_step",
                               ngram_buckets=ngram_buckets, dtype=np.float64, backend=backend, seed=4)
    rng = np.random.default_rng(5)
    T, B = 13, 2
    tokens = rng.integers(1, 10, size=(T, B))
    stream = model.stream(batch_size=B)
    if head != "per_step":
        assert np.isnan(stream.probabilities()).all()
    steps = []
    for a, b in chunked(T, [1, 4, 3]):
        peeked = stream.peek(tokens[a:b])
        got = stream.push(tokens[a:b])
        np.testing.assert_array_equal(peeked, got)            # peek left the stream as it was
        if head == "per_step":
            steps.append(got)
            continue
        want = model.predict_proba(tokens[:b], np.full(B, b))   # the classifier on the prefix
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"after step {b}")
        np.testing.assert_allclose(stream.probabilities(), want, rtol=0, atol=1e-12)
    if head == "per_step":
        np.testing.assert_allclose(np.concatenate(steps), model.predict_proba(tokens, np.full(B, T)),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ngram_stream_carries_each_sequences_last_tokens_over_ragged_chunks_and_rows(backend, order):
    """A sequence's n-grams that span chunks (pushed ragged, some rows at a time, one step at a
    time) are its n-grams in one forward."""
    model = SequenceClassifier(3, vocab_size=10, embedding_dim=4, hidden_size=5, pooling="max", ngram_buckets=13,
                               ngram_order=order, dtype=np.float64, backend=backend, seed=6)
    rng = np.random.default_rng(7)
    texts = [rng.integers(1, 10, size=n) for n in (9, 1, 6)]
    stream = model.stream(batch_size=3)
    pushes = [([0, 1, 2], [2, 1, 3]), ([0], [1]), ([2, 0], [1, 4]), ([0, 2], [2, 2])]
    seen = [0, 0, 0]
    for rows, lengths in pushes:
        chunk = np.zeros((max(lengths), len(rows)), dtype=np.int64)
        for j, (r, n) in enumerate(zip(rows, lengths)):
            chunk[:n, j] = texts[r][seen[r]:seen[r] + n]
            seen[r] += n
        got = stream.push(chunk, np.array(lengths), rows=np.array(rows))
        prefixes = [texts[r][:seen[r]] for r in rows]
        padded = np.zeros((max(seen[r] for r in rows), len(rows)), dtype=np.int64)
        for j, p in enumerate(prefixes):
            padded[:len(p), j] = p
        want = model.predict_proba(padded, np.array([len(p) for p in prefixes]))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"after {rows} {lengths}")
    with pytest.raises(ValueError, match="b = 2 sequences"):
        stream.push(np.ones((2, 3), dtype=np.int64), rows=np.array([0, 1]))


@pytest.fixture(scope="module")
def uni_lid(tmp_path_factory, lid_tsv):
    """A trained unidirectional language-id predictor with a short max_length."""
    out = tmp_path_factory.mktemp("uni_lid")
    runs.run("language-id", {"data": str(lid_tsv), "epochs": 1, "hidden_size": 8, "embedding_dim": 6,
                             "batch_size": 32, "warmup_steps": 0, "bidirectional": False, "pooling": "mean",
                             "max_length": 24}, out, backend="numpy", test=False, progress=False)
    return load_predictor(out, backend="numpy")


def test_text_stream_equals_the_predictor_on_the_text_so_far(uni_lid):
    # whitespace runs across chunks, a combining mark arriving after its letter (NFC changes the
    # letter: a + U+0300 is one character, unknown to this vocabulary), leading whitespace, an
    # empty chunk, upper case (lower-cased by the encoder; 'İ' stays), and text past max_length (24)
    assert uni_lid.encoder["lowercase"]
    pieces = [["  ab", "A", "", " \t", "\u0300", "cD  ", "  dab", "\u0301x", "cab" * 9, "dd"],
              ["", " ", "WxY", "z zw", "", "\u0300\u0301", " w", "\u0130", "", "xyzw"]]
    stream = uni_lid.stream(batch_size=2)
    assert np.isnan(stream.push(["", "  "])).all()           # nothing to classify yet
    seen = ["", "  "]
    for step in range(len(pieces[0])):
        chunks = [pieces[0][step], pieces[1][step]]
        got = stream.push(chunks)
        seen = [s + c for s, c in zip(seen, chunks)]
        for k, text in enumerate(seen):
            if text.strip():
                np.testing.assert_allclose(got[k], uni_lid.predict_proba([text])[0], rtol=0, atol=1e-6,
                                           err_msg=f"stream {k} after {text!r}")
            else:
                assert np.isnan(got[k]).all()
    single = predictor_stream(uni_lid)                        # batch_size 1 takes a bare chunk
    np.testing.assert_allclose(single.push("abc d"), uni_lid.predict_proba(["abc d"]), atol=1e-6)


def test_feature_stream_equals_the_predictor(tmp_path, speech_npz):
    runs.run("speech-digits", {"data": str(speech_npz), "epochs": 1, "hidden_size": 8, "num_layers": 2,
                               "bidirectional": False, "pooling": "max", "warmup_steps": 0},
             tmp_path, backend="numpy", test=False, progress=False)
    pred = load_predictor(tmp_path, backend="numpy")
    rng = np.random.default_rng(6)
    utterances = [rng.standard_normal((n, 5)).astype(np.float32) for n in (9, 5)]
    stream = predictor_stream(pred, batch_size=2)
    for a, b in chunked(9, [2, 1, 4]):
        got = stream.push([u[a:b] for u in utterances])            # the second one ends early
        want = pred.predict_proba([u[:b] for u in utterances])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"after frame {b}")
    with pytest.raises(ArgumentError, match="a list of 2 chunks"):
        stream.push(utterances[0])
    with pytest.raises(ValueError, match=r"must be \(frames, 5\)"):
        stream.push([np.zeros((2, 4), np.float32), np.zeros((2, 5), np.float32)])


def test_per_step_feature_stream_and_bad_predictors():
    model = SequenceClassifier(3, input_size=4, hidden_size=5, per_step=True, dtype=np.float64,
                               backend="numpy", seed=7)
    pred = SimpleNamespace(model=model, task=get_task("speech-digits"), labels=["a", "b", "c"],
                           encoder={"type": "features", "input_size": 4, "features": None})
    frames = np.random.default_rng(8).standard_normal((7, 4))
    stream = predictor_stream(pred, batch_size=2)
    got = [[], []]
    for a, b in chunked(7, [3, 1]):
        for k, probs in enumerate(stream.push([frames[a:b], frames[a:min(b, 2)]])):
            got[k].append(probs)
    want = model.predict_proba(frames[:, None].astype(np.float32), [7])[:, 0]
    np.testing.assert_allclose(np.concatenate(got[0]), want, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(got[1]), want[:2], atol=1e-6)
    text = SimpleNamespace(**{**vars(pred), "task": get_task("language-id"),
                              "encoder": {"type": "chars", "chars": "ab", "max_length": 5}})
    with pytest.raises(ArgumentTypeError, match="chunk 0 must be a str"):
        predictor_stream(text).push([b"ab"])
    with pytest.raises(ArgumentError, match="cannot stream encoder type 'bytes'"):
        predictor_stream(SimpleNamespace(**{**vars(pred), "encoder": {"type": "bytes"}}))
    with pytest.raises(ArgumentTypeError, match="SequenceClassifier has no .model"):
        predictor_stream(model)
