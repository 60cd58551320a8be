"""Numba kernel of the CTC loss: the alpha-beta recursions in log space, per sequence of a
ragged batch, with the gradient with respect to the logits.

Shapes (time-major, as the per-step head of ``SequenceClassifier`` produces them):
    T steps, B sequences, C classes (the blank among them), S_b labels of sequence b
    logits         (T, B, C)  unnormalised scores; the kernel takes their log_softmax
    targets        (sum S_b,) every sequence's labels one after another (int64)
    target_starts  (B,)       where sequence b's labels begin in ``targets``
    target_lengths (B,)       S_b >= 0
    input_lengths  (B,)       the valid steps T_b of sequence b, 1 <= T_b <= T
    scale          (B,)       the factor of sequence b's gradient (its weight in the reduction)
    nll            (B,) out   -log p(labels_b | logits_b); +inf where no alignment exists
    d_logits       (T, B, C) out  scale[b] * d nll_b / d logits; 0 at steps t >= T_b and for
                              a sequence whose nll is infinite

The extended label sequence of sequence b has L = 2 S_b + 1 states: a blank before, between
and after the labels. ``alpha[t, s]`` is the log-probability of all prefixes of paths that
are in state s at step t (emission at t included); ``beta[s]`` at step t the log-probability
of the rest of the paths from state s at step t (emission at t included, Graves' convention),
so the occupancy of state s at step t is alpha + beta - log y_t(l'_s) - log p. With
log-probabilities lp = log_softmax(logits), the gradient of nll with respect to the logits is

    d nll / d logits[t, c] = softmax[t, c] - sum_{s: l'_s = c} occupancy[t, s]

(the softmax Jacobian folded in), which needs neither the gradient with respect to the
log-probabilities nor a second pass through the softmax, and stays bounded (both terms are
probabilities). Beta is kept as two rows and the gradient of step t is written as soon as
beta at t is known, so one sequence holds its log-probabilities and alpha, (T_b, C + L).

Everything is computed in float64 whatever the dtype of ``logits``; the outputs take the
dtype of their arrays. ``prange`` runs the sequences of the batch on Numba's threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_NEG_INF = -np.inf


@njit(cache=True, inline="always")
def _logaddexp(a, b):
    """log(exp(a) + exp(b)) without overflow; -inf + -inf stays -inf."""
    if a < b:
        a, b = b, a
    if b == _NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@njit(cache=True, inline="always")
def _logaddexp3(a, b, c):
    """log(exp(a) + exp(b) + exp(c)): one logarithm instead of two."""
    top = max(a, b, c)
    if top == _NEG_INF:
        return top
    return top + math.log(math.exp(a - top) + math.exp(b - top) + math.exp(c - top))


@njit(cache=True)
def _log_softmax_rows(logits, b, steps, out):
    """out[t] = log_softmax(logits[t, b]) in float64 for t < steps; out (>= steps, C)."""
    C = logits.shape[2]
    for t in range(steps):
        top = _NEG_INF
        for c in range(C):
            v = float(logits[t, b, c])
            if v > top:
                top = v
        total = 0.0
        for c in range(C):
            total += math.exp(float(logits[t, b, c]) - top)
        norm = top + math.log(total)
        for c in range(C):
            out[t, c] = float(logits[t, b, c]) - norm


@njit(cache=True, parallel=True)
def ctc_loss_kernel(logits, targets, target_starts, target_lengths, input_lengths, blank, scale,
                    nll, d_logits):
    """Fill ``nll`` (B,) and ``d_logits`` (T, B, C) for the whole batch (see the module
    docstring for every argument); ``blank`` is the blank's class id."""
    T, B, C = logits.shape
    for b in prange(B):
        steps = input_lengths[b]
        S = target_lengths[b]
        L = 2 * S + 1
        start = target_starts[b]
        ext = np.empty(L, dtype=np.int64)           # the extended labels: blank, l1, blank, l2...
        for s in range(L):
            ext[s] = targets[start + s // 2] if s % 2 == 1 else blank
        # a transition s-2 -> s skips the blank between two labels: allowed unless they repeat
        skip = np.zeros(L, dtype=np.bool_)
        for s in range(3, L, 2):
            skip[s] = ext[s] != ext[s - 2]
        lp = np.empty((steps, C))
        _log_softmax_rows(logits, b, steps, lp)

        alpha = np.full((steps, L), _NEG_INF)
        alpha[0, 0] = lp[0, ext[0]]
        if L > 1:
            alpha[0, 1] = lp[0, ext[1]]
        for t in range(1, steps):
            # states s < L - 2 (steps - t) cannot reach the end any more, nor can states
            # s > 2 (t + 1) have been reached: the recursion skips both
            lo = max(0, L - 2 * (steps - t))
            hi = min(L, 2 * (t + 1))
            for s in range(lo, hi):
                if skip[s]:
                    a = _logaddexp3(alpha[t - 1, s], alpha[t - 1, s - 1], alpha[t - 1, s - 2])
                elif s > 0:
                    a = _logaddexp(alpha[t - 1, s], alpha[t - 1, s - 1])
                else:
                    a = alpha[t - 1, s]
                alpha[t, s] = a + lp[t, ext[s]]
        log_p = alpha[steps - 1, L - 1]
        if L > 1:
            log_p = _logaddexp(log_p, alpha[steps - 1, L - 2])
        nll[b] = -log_p
        for t in range(steps, T):
            for c in range(C):
                d_logits[t, b, c] = 0.0
        if log_p == _NEG_INF:                       # no alignment: the caller decides
            for t in range(steps):
                for c in range(C):
                    d_logits[t, b, c] = 0.0
            continue

        w = scale[b]
        beta = np.full(L, _NEG_INF)                 # beta at step t + 1, then at t
        nxt = np.full(L, _NEG_INF)
        occupancy = np.empty(C)
        for t in range(steps - 1, -1, -1):
            if t == steps - 1:
                beta[L - 1] = lp[t, ext[L - 1]]
                if L > 1:
                    beta[L - 2] = lp[t, ext[L - 2]]
            else:
                for s in range(L):
                    nxt[s] = beta[s]
                for s in range(L):
                    if s + 2 < L and skip[s + 2]:
                        v = _logaddexp3(nxt[s], nxt[s + 1], nxt[s + 2])
                    elif s + 1 < L:
                        v = _logaddexp(nxt[s], nxt[s + 1])
                    else:
                        v = nxt[s]
                    beta[s] = v + lp[t, ext[s]]
            for c in range(C):
                occupancy[c] = _NEG_INF
            for s in range(L):
                occupancy[ext[s]] = _logaddexp(occupancy[ext[s]], alpha[t, s] + beta[s])
            for c in range(C):
                # occupancy - lp[t, c] - log_p: alpha and beta both hold the emission at t
                posterior = math.exp(occupancy[c] - lp[t, c] + nll[b])
                d_logits[t, b, c] = w * (math.exp(lp[t, c]) - posterior)
