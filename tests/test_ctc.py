"""The CTC loss: against torch.nn.functional.ctc_loss in float64 (loss and the gradient with
respect to the logits, every reduction and target layout), against brute-force enumeration
of every path, against finite differences (also through a SequenceClassifier), and the
awkward cases: empty targets, repeated labels, inputs just long enough and too short, ragged
batches, B=1, T=1, a blank that is not 0, float32, arrays of another backend."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import numeric_gradient

from lstm_engine import layers
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.ctc import ctc_loss, flatten_targets, min_input_lengths
from lstm_engine.ctc_decode import collapse
from lstm_engine.errors import ArgumentError, ArgumentTypeError, DataError



@pytest.fixture
def torch_module():
    return pytest.importorskip("torch", reason="parity with torch.nn.CTCLoss needs torch")


def _case(T, B, C, input_lengths, targets, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((T, B, C)) * scale
    return logits, np.asarray(input_lengths), [np.asarray(t, dtype=np.int64) for t in targets]


# Each case: T, B, C, input lengths, target sequences, blank.
CASES = {
    "ragged": (12, 5, 6, [12, 10, 7, 3, 1], [[1, 2, 2, 3], [4, 4, 4], [], [5, 1], [3]], 0),
    "B=1": (9, 1, 4, [9], [[1, 3, 1]], 0),
    "T=1": (1, 3, 4, [1, 1, 1], [[], [2], [3]], 0),
    "empty targets": (6, 3, 5, [6, 2, 1], [[], [], []], 0),
    "just long enough": (6, 3, 5, [6, 4, 3], [[1, 1, 2, 2], [3, 3], [1, 2, 3]], 0),
    "blank last": (8, 4, 5, [8, 8, 5, 2], [[0, 1, 1], [3, 2, 0, 1], [2], [0]], 4),
    "long targets": (40, 2, 7, [40, 33], [[1, 2, 3, 4, 5, 6] * 3, [2, 2, 3, 3, 4, 4, 5, 5, 6, 6] + [1] * 5], 0),
}


def _torch_ctc(torch, logits, input_lengths, targets, blank, reduction, zero_infinity=False):
    x = torch.tensor(logits, requires_grad=True)
    lengths = [len(t) for t in targets]
    flat = torch.tensor(np.concatenate(targets) if sum(lengths) else np.zeros(0, np.int64), dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(x.log_softmax(-1), flat, torch.tensor(input_lengths),
                                        torch.tensor(lengths), blank=blank, reduction=reduction,
                                        zero_infinity=zero_infinity)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


def _layouts(targets):
    """The same targets as a list, padded (B, S) and concatenated, with target_lengths."""
    lengths = np.array([len(t) for t in targets])
    padded = np.full((len(targets), max(1, lengths.max())), 7, dtype=np.int64)   # padding never read
    for b, t in enumerate(targets):
        padded[b, :len(t)] = t
    flat = np.concatenate(targets).astype(np.int64)
    return {"list": (list(targets), None), "padded": (padded, lengths), "concatenated": (flat, lengths)}


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_in_float64(torch_module, name, reduction):
    T, B, C, input_lengths, targets, blank = CASES[name]
    logits, input_lengths, targets = _case(T, B, C, input_lengths, targets)
    want_loss, want_grad = _torch_ctc(torch_module, logits, input_lengths, targets, blank, reduction)
    for layout, (tgt, tl) in _layouts(targets).items():
        loss, d_logits = ctc_loss(logits, tgt, input_lengths, tl, blank=blank, reduction=reduction)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12, atol=1e-12, err_msg=layout)
        np.testing.assert_allclose(d_logits, want_grad, rtol=1e-10, atol=1e-12, err_msg=layout)
        assert d_logits.dtype == np.float64 and d_logits.shape == logits.shape


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_zero_infinity_matches_torch(torch_module, reduction):
    # sequence 1 needs 4 steps (two repeats) and has 3; sequence 3 needs 3 and has 2
    logits, input_lengths, targets = _case(7, 4, 5, [7, 3, 5, 2], [[1, 2], [3, 3, 3], [4], [1, 2, 3]])
    want_loss, want_grad = _torch_ctc(torch_module, logits, input_lengths, targets, 0, reduction, zero_infinity=True)
    loss, d_logits = ctc_loss(logits, targets, input_lengths, reduction=reduction, zero_infinity=True)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_logits, want_grad, rtol=1e-10, atol=1e-12)
    assert not d_logits[:, [1, 3]].any()
    # torch without zero_infinity: an infinite loss for exactly those sequences
    torch_none, _ = _torch_ctc(torch_module, logits, input_lengths, targets, 0, "none")
    assert np.isinf(torch_none).tolist() == [False, True, False, True]


def test_too_short_input_is_an_error_naming_the_sequence():
    logits, input_lengths, targets = _case(7, 4, 5, [7, 3, 5, 2], [[1, 2], [3, 3, 3], [4], [1, 2, 3]])
    with pytest.raises(DataError, match=r"sequence 1 of the batch has 3 target labels with 2 repeated "
                                        r"neighbour\(s\).*at least 5 input steps, but its input has 3.*\[3\]"):
        ctc_loss(logits, targets, input_lengths)
    loss, d = ctc_loss(logits, targets, input_lengths, reduction="none", zero_infinity=True)
    assert loss[1] == 0 and loss[3] == 0 and np.all(loss[[0, 2]] > 0)


def _brute_force_nll(log_probs, target, blank=0):
    """-log of the summed probability of every path that collapses to the target."""
    T, C = log_probs.shape
    total = 0.0
    for path in itertools.product(range(C), repeat=T):
        if collapse(path, blank) == tuple(target):
            total += np.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
    return -np.log(total) if total > 0 else np.inf


@pytest.mark.parametrize("target", [[], [1], [1, 1], [1, 2], [2, 1, 2], [1, 1, 2]])
def test_loss_is_the_sum_over_all_alignments(target):
    T, C = 5, 3
    logits, _, _ = _case(T, 1, C, [T], [target], seed=len(target))
    loss, _ = ctc_loss(logits, [np.array(target, dtype=np.int64)], [T], reduction="sum")
    want = _brute_force_nll(layers.log_softmax(np, logits[:, 0]), target)
    np.testing.assert_allclose(loss, want, rtol=1e-12)


def _numeric_ctc_gradient(logits, targets, input_lengths, reduction, eps=1e-6):
    """Central differences of the reduced loss with respect to every logit, in one call per
    sequence: a batch of perturbed copies of it, whose losses are independent ('none')."""
    T, B, C = logits.shape
    lengths = np.array([len(t) for t in targets])
    weight = {"sum": np.ones(B), "mean": 1.0 / np.maximum(lengths, 1) / B}[reduction]
    grad = np.zeros_like(logits)
    for b in range(B):
        copies = np.repeat(logits[:, b:b + 1], 2 * T * C, axis=1)
        for k, (t, c) in enumerate(np.ndindex(T, C)):
            copies[t, 2 * k, c] += eps
            copies[t, 2 * k + 1, c] -= eps
        losses, _ = ctc_loss(copies, [targets[b]] * (2 * T * C), np.full(2 * T * C, input_lengths[b]),
                             reduction="none")
        grad[:, b] = weight[b] * ((losses[0::2] - losses[1::2]) / (2 * eps)).reshape(T, C)
    return grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_matches_finite_differences(reduction):
    T, B, C, input_lengths, targets, blank = CASES["ragged"]
    logits, input_lengths, targets = _case(T, B, C, input_lengths, targets, seed=3)
    loss, d_logits = ctc_loss(logits, targets, input_lengths, blank=blank, reduction=reduction)
    numeric = _numeric_ctc_gradient(logits, targets, input_lengths, reduction)
    np.testing.assert_allclose(d_logits, numeric, rtol=1e-6, atol=1e-8)
    for b, n in enumerate(input_lengths):
        assert not d_logits[n:, b].any()                    # padded steps get no gradient


def test_gradient_flows_through_the_classifier():
    """d_logits from ctc_loss into SequenceClassifier.backward gives the gradient of the CTC
    loss with respect to the LSTM and head parameters (checked by finite differences)."""
    T, B, F = 9, 3, 4
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, F))
    lengths = np.array([9, 6, 4])
    targets = [np.array([1, 2, 2]), np.array([3]), np.array([2, 1])]
    model = SequenceClassifier(4, input_size=F, hidden_size=5, bidirectional=True, per_step=True,
                               dtype=np.float64, backend="numpy", seed=0)
    _, d_logits = ctc_loss(model.forward(x, lengths, training=True), targets, lengths)
    grads = model.backward(d_logits)
    params = model.parameters()
    for name in ("head.weight", "head.bias", "lstm.weight_hh_l0", "lstm.weight_ih_l0_reverse"):
        flat = rng.choice(params[name].size, size=min(8, params[name].size), replace=False)
        entries = [np.unravel_index(i, params[name].shape) for i in flat]
        numeric = numeric_gradient(lambda: ctc_loss(model.forward(x, lengths), targets, lengths)[0],
                                   params[name], entries)
        np.testing.assert_allclose([grads[name][i] for i in entries], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_float32_follows_float64():
    T, B, C, input_lengths, targets, blank = CASES["long targets"]
    logits, input_lengths, targets = _case(T, B, C, input_lengths, targets)
    loss64, d64 = ctc_loss(logits, targets, input_lengths)
    loss32, d32 = ctc_loss(logits.astype(np.float32), targets, input_lengths)
    assert d32.dtype == np.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-6)
    np.testing.assert_allclose(d32, d64, rtol=1e-4, atol=1e-6)


def test_a_confident_correct_model_has_small_loss_and_gradient():
    C = 4                                                   # class 0 is the blank
    path = [1, 0, 2, 2, 0, 2]                               # collapses to (1, 2, 2)
    logits = np.full((len(path), 1, C), -20.0)
    logits[np.arange(len(path)), 0, path] = 20.0
    loss, d = ctc_loss(logits, [np.array([1, 2, 2])], [len(path)], reduction="sum")
    assert loss < 1e-12 and np.abs(d).max() < 1e-12


class _Wrapped:
    """An array of a pretend device: only the fake backend can read it."""

    def __init__(self, array):
        self.array = array


class _FakeBackend:
    def __init__(self):
        self.calls = []

    def to_numpy(self, a):
        self.calls.append("to_numpy")
        return a.array

    def asarray(self, a, dtype=None):
        self.calls.append("asarray")
        return _Wrapped(np.asarray(a, dtype=dtype))


def test_backend_arrays_are_moved_once_each_way():
    T, B, C, input_lengths, targets, blank = CASES["ragged"]
    logits, input_lengths, targets = _case(T, B, C, input_lengths, targets)
    backend = _FakeBackend()
    loss, d = ctc_loss(_Wrapped(logits.astype(np.float32)), targets, input_lengths, backend=backend)
    assert backend.calls == ["to_numpy", "asarray"] and isinstance(d, _Wrapped)
    want_loss, want_d = ctc_loss(logits.astype(np.float32), targets, input_lengths)
    assert loss == want_loss and np.array_equal(d.array, want_d) and d.array.dtype == np.float32


def test_min_input_lengths_counts_repeats_per_sequence():
    assert min_input_lengths([np.array([1, 1, 2, 2]), np.array([], np.int64), np.array([3]),
                              np.array([2, 2]), np.array([2, 3])]).tolist() == [6, 0, 1, 3, 2]
    # a repeat across two sequences of the concatenation is not a repeat
    assert min_input_lengths(np.array([1, 1, 1]), [1, 2]).tolist() == [1, 3]


def test_flatten_targets_layouts_agree():
    targets = [np.array([1, 2]), np.array([], np.int64), np.array([3, 3, 1])]
    results = [flatten_targets(t, tl) for t, tl in _layouts(targets).values()]
    for labels, starts, lengths in results:
        assert labels.tolist() == [1, 2, 3, 3, 1] and starts.tolist() == [0, 2, 2] and lengths.tolist() == [2, 0, 3]


@pytest.mark.parametrize("call, error, message", [
    (lambda lg: ctc_loss(lg, [[1]] * 2, [3, 3], reduction="avg"), ArgumentError, "reduction"),
    (lambda lg: ctc_loss(lg, [[1]] * 2, [3, 3], blank=4), ArgumentError, "blank"),
    (lambda lg: ctc_loss(lg, [np.array([0])] * 2, [3, 3]), ArgumentError, "other than the blank 0"),
    (lambda lg: ctc_loss(lg, [np.array([1]), np.array([4])], [3, 3]), ArgumentError, "targets of sequence 1"),
    (lambda lg: ctc_loss(lg, [np.array([1])] * 2, [3, 4]), ArgumentError, "input_lengths must be in"),
    (lambda lg: ctc_loss(lg, [np.array([1])] * 2, [3]), ArgumentError, "one entry per sequence"),
    (lambda lg: ctc_loss(lg, [np.array([1])] * 3, [3, 3]), ArgumentError, "batch has 2"),
    (lambda lg: ctc_loss(lg, np.array([1, 2, 3]), [3, 3], [1, 1]), ArgumentError, "sum to 2"),
    (lambda lg: ctc_loss(lg, np.array([[1, 2]] * 2), [3, 3]), ArgumentError, "target_lengths is needed"),
    (lambda lg: ctc_loss(lg, np.array([[1, 2]] * 2), [3, 3], [1, 3]), ArgumentError, "beyond the padded"),
    (lambda lg: ctc_loss(lg.astype(np.int32), [[1]] * 2, [3, 3]), ArgumentTypeError, "float32 or float64"),
    (lambda lg: ctc_loss(lg[0], [[1]] * 2, [3, 3]), ArgumentError, r"\(T, B, C\)"),
])
def test_bad_input_is_named(call, error, message):
    logits = np.zeros((3, 2, 4))
    with pytest.raises(error, match=message):
        call(logits)
