"""CTC decoding: best path and prefix beam search on hand-made log-probabilities with known
answers, beam search against brute-force enumeration of every path, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lstm_engine import layers
from lstm_engine.ctc_decode import beam_search_decode, collapse, greedy_decode, prefix_beam_search
from lstm_engine.errors import ArgumentError, ArgumentTypeError


def _batch(*probabilities):
    """Log-probabilities (T, B, C) from per-sequence (T_b, C) probability tables, padded
    with a uniform row (which must never be read)."""
    T = max(len(p) for p in probabilities)
    C = len(probabilities[0][0])
    out = np.full((T, len(probabilities), C), np.log(1.0 / C))
    for b, p in enumerate(probabilities):
        out[:len(p), b] = np.log(np.asarray(p, dtype=np.float64))
    return out, np.array([len(p) for p in probabilities])


def test_collapse_merges_repeats_then_drops_blanks():
    assert collapse([1, 1, 0, 1, 2, 2, 0, 0, 3]) == (1, 1, 2, 3)
    assert collapse([0, 0, 0]) == ()
    assert collapse([]) == ()
    assert collapse([2, 2, 1, 2], blank=2) == (1,)


def test_greedy_decodes_the_best_path_per_sequence():
    log_probs, lengths = _batch(
        [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]],  # a a _ a b
        [[0.6, 0.3, 0.1]],                                                                      # _
        [[0.1, 0.1, 0.8], [0.2, 0.1, 0.7]],                                                     # b b
    )
    assert greedy_decode(log_probs, lengths) == [(1, 1, 2), (), (2,)]
    # logits decode as their log-probabilities do; padded steps are never read
    logits = log_probs * 1.0 + 3.0
    logits[4:, 1:] = 100.0
    assert greedy_decode(logits, lengths) == [(1, 1, 2), (), (2,)]


def test_beam_search_finds_the_labelling_that_greedy_misses():
    # Each step: blank 0.6, "a" 0.4. Best path: blank blank -> "" (0.36); but "a" has the
    # paths aa, a_, _a: 0.16 + 0.24 + 0.24 = 0.64.
    log_probs, lengths = _batch([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_decode(log_probs, lengths) == [()]
    assert beam_search_decode(log_probs, lengths, beam_width=2) == [(1,)]
    ranked = prefix_beam_search(log_probs[:, 0], beam_width=4)
    assert [p for p, _ in ranked] == [(1,), ()]
    np.testing.assert_allclose(np.exp([s for _, s in ranked]), [0.64, 0.36])


def test_beam_search_keeps_repeats_separated_by_a_blank():
    # a _ a is (1, 1); a a is (1,): the beam must keep both prefixes apart
    log_probs, lengths = _batch([[0.05, 0.9, 0.05], [0.8, 0.1, 0.1], [0.05, 0.9, 0.05]])
    assert beam_search_decode(log_probs, lengths, beam_width=4) == [(1, 1)]
    log_probs, lengths = _batch([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    assert beam_search_decode(log_probs, lengths, beam_width=4) == [(1,)]


def _labelling_probabilities(log_probs, blank=0):
    T, C = log_probs.shape
    table: dict = {}
    for path in itertools.product(range(C), repeat=T):
        key = collapse(path, blank)
        table[key] = table.get(key, 0.0) + np.exp(log_probs[np.arange(T), list(path)].sum())
    return table


@pytest.mark.parametrize("seed", range(6))
def test_a_wide_beam_is_exact(seed):
    rng = np.random.default_rng(seed)
    T, C = int(rng.integers(1, 6)), int(rng.integers(2, 4))
    blank = int(rng.integers(0, C))
    log_probs = layers.log_softmax(np, rng.standard_normal((T, C)) * 2)
    exact = _labelling_probabilities(log_probs, blank)
    ranked = prefix_beam_search(log_probs, beam_width=10_000, blank=blank)
    assert len(ranked) == len(exact)                     # every labelling of nonzero probability
    for labelling, score in ranked:
        np.testing.assert_allclose(np.exp(score), exact[labelling], rtol=1e-10)
    assert ranked[0][0] == max(exact, key=exact.get)


def test_beam_width_one_is_not_worse_than_a_path_and_wider_beams_score_higher():
    rng = np.random.default_rng(7)
    log_probs = layers.log_softmax(np, rng.standard_normal((8, 4)))
    scores = [prefix_beam_search(log_probs, beam_width=w)[0][1] for w in (1, 2, 4, 16)]
    assert scores == sorted(scores)
    best_path = log_probs.max(axis=1).sum()
    assert scores[0] >= best_path - 1e-12


@pytest.mark.parametrize("call, message", [
    (lambda: greedy_decode(np.zeros((3, 2)), [3, 3]), r"\(T, B, C\)"),
    (lambda: greedy_decode(np.zeros((3, 2, 4)), [3]), "lengths must be 2"),
    (lambda: greedy_decode(np.zeros((3, 2, 4)), [3, 4]), r"lengths must be in \[1, T=3\]"),
    (lambda: greedy_decode(np.zeros((3, 2, 4)), [3, 3], blank=4), "blank"),
    (lambda: beam_search_decode(np.zeros((3, 2, 4)), [3, 3], beam_width=0), "beam_width"),
    (lambda: prefix_beam_search(np.zeros((3, 2, 4))), r"\(T, C\)"),
    (lambda: prefix_beam_search(np.zeros((3, 4)), blank=-1), "blank"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ArgumentError, match=message):
        call()


def test_integer_logits_are_a_type_error():
    with pytest.raises(ArgumentTypeError, match="float array, got dtype int64"):
        greedy_decode(np.zeros((3, 2, 4), dtype=np.int64), [3, 3])
