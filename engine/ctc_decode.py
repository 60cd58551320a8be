"""Decoding a per-step CTC head into label sequences: best path (greedy) and prefix beam
search, without a language model.

Shapes (host NumPy arrays, time-major as ``SequenceClassifier(per_step=True)`` gives them):
    T steps, B sequences, C classes including the blank
    logits   (T, B, C)  logits or log-probabilities: both decode the same, because the
                        decoders take a log_softmax, which leaves log-probabilities as
                        they are (probabilities are not accepted: take their log first)
    lengths  (B,)       valid steps of each sequence (right padding)
A decoded sequence is a tuple of class ids (the blank never appears in it).

CTC maps a path (one class per step) to a labelling by merging repeated classes and then
dropping blanks, so "a a _ a" is "a a" and "a a a" is "a". The best path is the most likely
*path*; the most likely *labelling* sums over all its paths, which prefix beam search
approximates by keeping the ``beam_width`` best prefixes, each with two scores: the paths
that end in a blank and those that end in its last label (a repeat of that label extends it
only after a blank).
"""

from __future__ import annotations

import numpy as np

from . import layers
from .ctc import check_blank as _check_blank
from .errors import ArgumentError, ArgumentTypeError


def _check(logits, lengths, blank: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(logits)
    if scores.dtype.kind != "f":
        raise ArgumentTypeError(f"logits must be a float array, got dtype {scores.dtype}")
    if scores.ndim != 3 or 0 in scores.shape:
        raise ArgumentError(f"logits must be (T, B, C) with every size >= 1, got shape {scores.shape}")
    T, B, C = scores.shape
    steps = np.asarray(lengths)
    if steps.shape != (B,) or steps.dtype.kind not in "iu":
        raise ArgumentError(f"lengths must be {B} integers (one per sequence), got dtype {steps.dtype} shape {steps.shape}")
    if steps.min() < 1 or steps.max() > T:
        raise ArgumentError(f"lengths must be in [1, T={T}], got {steps.min()}..{steps.max()}")
    _check_blank(blank, C)
    return scores, steps.astype(np.int64)


def _check_beam_width(beam_width) -> None:
    if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ArgumentError(f"beam_width must be a positive integer, got {beam_width!r}")


def collapse(path, blank: int = 0) -> tuple[int, ...]:
    """The labelling of one path: repeats merged, then blanks dropped."""
    path = np.asarray(path, dtype=np.int64)
    if path.size == 0:
        return ()
    keep = np.ones(path.shape, dtype=bool)
    keep[1:] = path[1:] != path[:-1]
    return tuple(int(c) for c in path[keep & (path != blank)])


def greedy_decode(logits, lengths, blank: int = 0) -> list[tuple[int, ...]]:
    """Best path decoding: the most likely class at each valid step, collapsed."""
    scores, steps = _check(logits, lengths, blank)
    best = scores.argmax(axis=2)                                     # (T, B)
    return [collapse(best[:steps[b], b], blank) for b in range(scores.shape[1])]


def prefix_beam_search(log_probs, beam_width: int = 8, blank: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """Prefix beam search over one sequence's log-probabilities (T, C).

    Returns up to ``beam_width`` (labelling, log-probability) pairs, best first; the
    log-probability sums over every path of the labelling that stayed in the beam (all of
    them when the beam is wide enough to hold every prefix)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim != 2 or 0 in lp.shape:
        raise ArgumentError(f"log_probs must be (T, C) for one sequence, got shape {lp.shape}")
    _check_beam_width(beam_width)
    T, C = lp.shape
    _check_blank(blank, C)
    labels = np.array([c for c in range(C) if c != blank], dtype=np.int64)
    position = {int(c): k for k, c in enumerate(labels)}
    prefixes: list[tuple[int, ...]] = [()]
    p_blank = np.zeros(1)                                            # log 1: the empty prefix
    p_label = np.full(1, -np.inf)
    for t in range(T):
        row = lp[t]
        total = np.logaddexp(p_blank, p_label)
        last = np.array([p[-1] if p else -1 for p in prefixes], dtype=np.int64)
        # the prefix itself: a blank after anything, or its last label repeated (merged)
        stay_blank = total + row[blank]
        stay_label = np.where(last >= 0, p_label + row[np.maximum(last, 0)], -np.inf)
        # the prefix extended by each label; equal to its last label only after a blank
        extend = total[:, None] + row[labels][None, :]
        repeat = labels[None, :] == last[:, None]
        extend[repeat] = (p_blank[:, None] + row[labels][None, :])[repeat]
        # an extension that is already in the beam adds to that prefix instead
        index = {p: i for i, p in enumerate(prefixes)}
        for j, p in enumerate(prefixes):
            parent = index.get(p[:-1]) if p else None
            if parent is not None:
                k = position[p[-1]]
                stay_label[j] = np.logaddexp(stay_label[j], extend[parent, k])
                extend[parent, k] = -np.inf
        W = len(prefixes)
        candidates = np.concatenate([np.logaddexp(stay_blank, stay_label), extend.ravel()])
        order = np.argsort(-candidates, kind="stable")[:beam_width]
        order = order[np.isfinite(candidates[order])]
        new_prefixes, new_blank, new_label = [], [], []
        for idx in order.tolist():
            if idx < W:
                new_prefixes.append(prefixes[idx])
                new_blank.append(stay_blank[idx])
                new_label.append(stay_label[idx])
            else:
                i, k = divmod(idx - W, len(labels))
                new_prefixes.append(prefixes[i] + (int(labels[k]),))
                new_blank.append(-np.inf)
                new_label.append(extend[i, k])
        prefixes, p_blank, p_label = new_prefixes, np.array(new_blank), np.array(new_label)
    total = np.logaddexp(p_blank, p_label)
    order = np.argsort(-total, kind="stable")
    return [(prefixes[i], float(total[i])) for i in order.tolist()]


def beam_search_decode(logits, lengths, beam_width: int = 8, blank: int = 0) -> list[tuple[int, ...]]:
    """The best labelling of each sequence by prefix beam search (``beam_width`` prefixes)."""
    scores, steps = _check(logits, lengths, blank)
    _check_beam_width(beam_width)
    log_probs = layers.log_softmax(np, scores.astype(np.float64))
    return [prefix_beam_search(log_probs[:steps[b], b], beam_width, blank)[0][0]
            for b in range(scores.shape[1])]


__all__ = ["collapse", "greedy_decode", "prefix_beam_search", "beam_search_decode"]
