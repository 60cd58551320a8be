"""The sequence classifier and tagger: finite-difference gradients on the reference in float64,
every fast backend against the reference, and the layers' edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_engine.classifier import SequenceClassifier
from lstm_engine.errors import ArgumentError

from helpers import FAST_BACKENDS, assert_close, tolerance

CASES = {
    "tokens-last": dict(vocab_size=11, embedding_dim=5, pooling="last"),
    "tokens-last-bi": dict(vocab_size=9, embedding_dim=3, pooling="last", bidirectional=True),
    "features-mean-bi-deep": dict(input_size=4, pooling="mean", bidirectional=True, num_layers=2),
    "features-max-bi": dict(input_size=4, pooling="max", bidirectional=True),
    "tagger-bi": dict(input_size=3, per_step=True, bidirectional=True),
    "tokens-dropout": dict(vocab_size=7, embedding_dim=4, pooling="mean", dropout=0.3, num_layers=2),
    # 7 buckets for up to 24 distinct n-grams: rows shared by several, as a hashed table's are
    "tokens-ngrams-max-bi": dict(vocab_size=11, embedding_dim=4, ngram_buckets=7, pooling="max",
                                 bidirectional=True),
    # 4-grams too: 9 buckets for up to 30 n-grams, which reach back 3 steps
    "tokens-ngrams4-mean": dict(vocab_size=11, embedding_dim=4, ngram_buckets=9, ngram_order=4, pooling="mean"),
}
LENGTHS = np.array([6, 3, 1, 5])


def _batch(kw, rng, T=6, B=4):
    if "vocab_size" in kw:
        x = rng.integers(1, kw["vocab_size"], (T, B))
        x[np.arange(T)[:, None] >= LENGTHS[None, :B]] = 0                  # padding id
    else:
        x = rng.standard_normal((T, B, kw["input_size"]))
    y = rng.integers(0, 3, (T, B)) if kw.get("per_step") else rng.integers(0, 3, B)
    return x, y


def _loss_and_grads(model, x, y, seed_state=None, smoothing=0.0):
    if seed_state is not None:
        model.rng.bit_generator.state = seed_state
    logits = model.forward(x, LENGTHS, training=True)
    loss, d = model.loss(logits, y, LENGTHS, label_smoothing=smoothing)
    return loss, model.backward(d)


@pytest.mark.parametrize("name, smoothing", [(name, 0.0) for name in sorted(CASES)]
                         + [("tokens-last-bi", 0.3), ("tagger-bi", 0.2)])
def test_gradients_match_finite_differences(name, smoothing):
    kw = CASES[name]
    rng = np.random.default_rng(1)
    model = SequenceClassifier(3, hidden_size=5, dtype=np.float64, backend="numpy", seed=2, **kw)
    x, y = _batch(kw, rng)
    state = model.rng.bit_generator.state        # the same dropout masks for every evaluation
    _, grads = _loss_and_grads(model, x, y, state, smoothing)
    for pname, p in model.parameters().items():
        flat = p.reshape(-1)
        picks = rng.choice(flat.size, min(8, flat.size), replace=False)
        for k in picks:
            old = flat[k]
            flat[k] = old + 1e-6
            up, _ = _loss_and_grads(model, x, y, state, smoothing)
            flat[k] = old - 1e-6
            down, _ = _loss_and_grads(model, x, y, state, smoothing)
            flat[k] = old
            numeric = (up - down) / 2e-6
            assert abs(numeric - grads[pname].reshape(-1)[k]) < 1e-7 + 1e-5 * abs(numeric), (pname, k)
    if "vocab_size" in kw:
        assert not grads["embedding.weight"][0].any(), "the padding row must get no gradient"


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_backend_matches_reference(backend, name, dtype):
    kw = CASES[name]
    x, y = _batch(kw, np.random.default_rng(3))
    results = []
    smoothing = 0.1 if name == "tagger-bi" else 0.0     # the loss runs on the backend's array module
    for b in ("numpy", backend):
        model = SequenceClassifier(3, hidden_size=6, dtype=dtype, backend=b, seed=4, **kw)
        loss, grads = _loss_and_grads(model, x, y, smoothing=smoothing)
        to_np = model.backend.to_numpy
        results.append((loss, {k: to_np(v) for k, v in grads.items()}))
    (loss_ref, g_ref), (loss_fast, g_fast) = results
    assert loss_fast == pytest.approx(loss_ref, rel=tolerance("backend", dtype)[0])
    for k in g_ref:
        assert_close(g_fast[k], g_ref[k], dtype, err_msg=k)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
def test_label_smoothing_is_cross_entropy_against_the_mixed_targets(smoothing):
    """The loss is -sum_c q_c log p_c with q = (1 - s) one-hot + s / C, weighted over rows;
    d_logits is its derivative (finite differences in float64)."""
    from lstm_engine.layers import cross_entropy
    from helpers import numeric_gradient
    rng = np.random.default_rng(5)
    N, C = 7, 5
    logits = rng.standard_normal((N, C)) * 3
    targets = rng.integers(0, C, N)
    weights = np.array([1, 1, 0, 1, 0, 1, 1], dtype=np.float64)
    q = np.full((N, C), smoothing / C)
    q[np.arange(N), targets] += 1 - smoothing
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    want = -(q * log_p).sum(axis=1) @ weights / weights.sum()
    loss, d = cross_entropy(np, logits.copy(), targets, weights, smoothing)
    assert loss == pytest.approx(want, rel=1e-12)
    numeric = numeric_gradient(lambda: cross_entropy(np, logits.copy(), targets, weights, smoothing)[0], logits)
    np.testing.assert_allclose(d, numeric, rtol=1e-6, atol=1e-9)
    assert not d[weights == 0].any()


def test_label_smoothing_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    logits, targets = rng.standard_normal((9, 6)), rng.integers(0, 6, 9)
    model = SequenceClassifier(6, input_size=2, hidden_size=3, backend="numpy", dtype=np.float64)
    loss, d = model.loss(logits, targets, label_smoothing=0.15)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(targets), label_smoothing=0.15)
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(d, t_logits.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("value", [1.0, -0.1, True, "0.1", None])
def test_label_smoothing_out_of_range_is_refused(value):
    model = SequenceClassifier(3, input_size=2, hidden_size=3, backend="numpy")
    with pytest.raises(ArgumentError, match=r"label_smoothing must be a number in \[0, 1\)"):
        model.loss(np.zeros((2, 3), np.float32), np.array([0, 1]), label_smoothing=value)


def test_max_pooling_ignores_padding_even_when_outputs_are_negative():
    model = SequenceClassifier(2, input_size=2, hidden_size=3, pooling="max", backend="numpy", seed=0,
                               dtype=np.float64)
    x = np.full((4, 2, 2), -5.0)
    x[2:, 0] = 100.0                           # garbage in the padding of sequence 0
    lengths = np.array([2, 4])
    short = model.forward(x[:2, :1], np.array([2]))
    padded = model.forward(x, lengths)
    np.testing.assert_allclose(padded[0], short[0], rtol=1e-12)


def test_max_pooling_takes_the_first_maximum_of_the_valid_steps():
    """Ties (saturated outputs) send the gradient to one step, the first, as argmax would."""
    from lstm_engine.layers import pool_backward, pool_forward
    rng = np.random.default_rng(0)
    for _ in range(100):
        T, B, DH = (int(v) for v in rng.integers(1, 7, 3))
        out = rng.integers(-2, 3, (T, B, DH)).astype(np.float64)     # many ties
        lengths = rng.integers(1, T + 1, B)
        valid = np.arange(T)[:, None, None] < lengths[None, :, None]
        want_arg = np.where(valid, out, -np.inf).argmax(axis=0)
        pooled, arg = pool_forward(np, "max", out, None, lengths, 1)
        np.testing.assert_array_equal(arg, want_arg)
        np.testing.assert_array_equal(pooled, np.take_along_axis(out, want_arg[None], 0)[0])
        d_out, _ = pool_backward(np, "max", np.ones((B, DH)), arg, out.shape, lengths, 1)
        assert d_out.sum() == B * DH and not d_out[~valid.repeat(DH, axis=2)].any()


def test_last_pooling_uses_both_ends_of_a_bidirectional_stack():
    model = SequenceClassifier(2, input_size=2, hidden_size=3, pooling="last", bidirectional=True,
                               backend="numpy", seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 1, 2))
    out, (h_n, _) = model.lstm.forward(x, np.array([3]), training=False)
    logits = model.forward(x, np.array([3]))
    pooled = np.concatenate([out[2, 0, :3], out[0, 0, 3:]])   # forward at its last step, reverse at 0
    np.testing.assert_allclose(logits[0], model.extra["head.weight"] @ pooled + model.extra["head.bias"])


def test_state_dict_round_trip_and_errors():
    a = SequenceClassifier(4, vocab_size=10, embedding_dim=3, hidden_size=5, backend="numpy", seed=0)
    b = SequenceClassifier(4, vocab_size=10, embedding_dim=3, hidden_size=5, backend="numpy", seed=1)
    b.load_state_dict(a.state_dict())
    tokens = np.array([[2, 3], [4, 0]])
    np.testing.assert_array_equal(a.forward(tokens, [2, 1]), b.forward(tokens, [2, 1]))
    assert list(a.state_dict())[:2] == ["embedding.weight", "lstm.weight_ih_l0"]
    bad = a.state_dict()
    bad["head.weight"] = bad["head.weight"][:2]
    with pytest.raises(ValueError, match="head.weight"):
        b.load_state_dict(bad)
    with pytest.raises(ArgumentError, match="missing"):
        b.load_state_dict({})


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of vocab_size"),
    (dict(vocab_size=5, input_size=3), "exactly one of vocab_size"),
    (dict(vocab_size=5, pooling="sum"), "pooling must be one of"),
    (dict(vocab_size=5, dropout=1.5), "dropout must be"),
    (dict(vocab_size=5, ngram_buckets=-1), "ngram_buckets must be an integer >= 0"),
    (dict(vocab_size=5, ngram_buckets=2.5), "ngram_buckets must be an integer >= 0"),
    (dict(input_size=3, ngram_buckets=4), "needs token input"),
    (dict(vocab_size=5, ngram_buckets=4, ngram_order=1), "ngram_order must be an integer from 2 to 5"),
    (dict(vocab_size=5, ngram_buckets=4, ngram_order=6), "ngram_order must be an integer from 2 to 5"),
    (dict(vocab_size=5, ngram_buckets=4, ngram_order=True), "ngram_order must be an integer from 2 to 5"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(3, backend="numpy", **kwargs)


def test_token_input_must_be_integer_ids():
    model = SequenceClassifier(3, vocab_size=5, embedding_dim=2, hidden_size=3, backend="numpy")
    with pytest.raises(ValueError, match="integer token ids"):
        model.forward(np.zeros((2, 2, 1)), [2, 2])


@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_ngram_ids_hash_the_tokens_that_end_at_each_step(T, order):
    from lstm_engine import layers
    rng = np.random.default_rng(T)
    tokens = rng.integers(0, 4000, (T, 3))
    ids = layers.ngram_ids(np, tokens, 1009, order=order)
    assert ids.shape == (order - 1, T, 3) and ids.dtype == np.int64
    # a longer order only adds n-grams: the bigram and trigram ids stay those of order 3
    np.testing.assert_array_equal(ids[:2], layers.ngram_ids(np, tokens, 1009)[:order - 1])
    for i, n in enumerate(range(2, order + 1)):
        for t in range(T):
            for b in range(3):
                gram = [int(tokens[t - k, b]) if t - k >= 0 else 0 for k in range(n)]   # 0: before the start
                want = (layers.NGRAM_SALTS[n] + sum(g * m for g, m in zip(gram, layers.NGRAM_MULTIPLIERS))) % 1009
                assert ids[i, t, b] == want


def test_a_config_from_before_the_ngram_settings_loads_without_ngrams():
    """Checkpoints written before ngram_buckets and ngram_order existed have neither key."""
    old = {"num_classes": 3, "vocab_size": 9, "embedding_dim": 3, "hidden_size": 4}
    model = SequenceClassifier.from_config(old, backend="numpy", seed=1)
    assert model.config["ngram_buckets"] == 0 and model.config["ngram_order"] == 3
    assert "ngram.weight" not in SequenceClassifier.parameter_shapes_of(old)
    with_ngrams = SequenceClassifier.from_config({**old, "ngram_buckets": 5}, backend="numpy", seed=1)
    assert with_ngrams.config["ngram_order"] == 3


def test_ngram_embeddings_add_the_rows_of_the_ngrams_ending_at_each_step():
    """The model's input is its token's row plus one row per n-gram order: a model whose
    n-gram table is zero is the model without one."""
    kw = dict(vocab_size=9, embedding_dim=3, hidden_size=4, pooling="mean", dtype=np.float64, backend="numpy", seed=5)
    plain, hashed = SequenceClassifier(3, **kw), SequenceClassifier(3, ngram_buckets=5, **kw)
    assert set(hashed.parameters()) == set(plain.parameters()) | {"ngram.weight"}
    assert SequenceClassifier.parameter_shapes_of(hashed.config)["ngram.weight"] == (5, 3)
    x, _ = _batch(dict(vocab_size=9), np.random.default_rng(6))
    hashed.load_state_dict({**plain.state_dict(), "ngram.weight": np.zeros((5, 3))})
    np.testing.assert_array_equal(hashed.predict_proba(x, LENGTHS), plain.predict_proba(x, LENGTHS))
    hashed.extra["ngram.weight"][:] = 1.0
    assert not np.allclose(hashed.predict_proba(x, LENGTHS), plain.predict_proba(x, LENGTHS))


def test_window_starts_cover_a_long_sequence_in_whole_windows():
    from lstm_engine.batching import window_starts
    window = {"above": 10, "size": 4, "stride": 2}
    assert window_starts(10, window) == []                   # not longer than above: whole only
    assert window_starts(11, window) == [0, 2, 4, 6, 7]      # and one that ends with the sequence
    assert window_starts(12, window) == [0, 2, 4, 6, 8]


def test_long_sequences_are_also_read_in_windows():
    """predict_proba with a window: the normalised product of the whole sequence's probabilities
    and its windows', each window as the classifier reads it on its own; short ones unchanged."""
    from lstm_engine.batching import Encoded
    from lstm_engine.evaluation import predict_proba
    model = SequenceClassifier(3, vocab_size=7, embedding_dim=3, hidden_size=4, bidirectional=True,
                               pooling="max", ngram_buckets=11, backend="numpy", dtype=np.float64, seed=3)
    rng = np.random.default_rng(0)
    items = [rng.integers(1, 7, n) for n in (1, 5, 10, 11, 23)]
    window = {"above": 10, "size": 4, "stride": 3}
    got = predict_proba(model, Encoded(items, [0] * 5, window), batch_size=2)

    def alone(seq):
        return model.predict_proba(np.asarray(seq)[:, None], np.array([len(seq)]))[0]
    for item, row in zip(items, got):
        log_p = np.log(alone(item))
        if len(item) > 10:
            starts = list(range(0, len(item) - 3, 3))
            starts += [len(item) - 4] if starts[-1] + 4 < len(item) else []
            log_p = log_p + sum(np.log(alone(item[s:s + 4])) for s in starts)
        want = np.exp(log_p - log_p.max())
        np.testing.assert_allclose(row, want / want.sum(), rtol=1e-9, err_msg=f"length {len(item)}")
    assert np.allclose(got[:3], predict_proba(model, Encoded(items, [0] * 5))[:3])
