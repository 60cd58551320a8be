"""Numba kernels of the `cpu` backend for the layers around the LSTM stack (engine/layers.py)
and the optimizer's update and gradient norm (engine/optim.py).

These are the array work of a training step outside the recurrence that NumPy does slowly:
a running maximum over steps is a Python loop of T vectorized calls, an n-gram embedding's
sum gathers K rows per step into a (K, T, B, E) array first, ``np.add.at`` is a scatter
with per-element dispatch, Adam's update is eleven passes over each parameter and a scratch
array where one pass does, and a float64 sum of squares is a float64 copy of each gradient
first. At the default language-id model's shapes (B 128, T 64, 2x128 units, 48-wide
embedding, 6.5 million parameters with the n-gram table of 3 orders) they take 0.14, 0.19,
0.08, 2.3 and 0.48 ms against NumPy's 4.1, 2.1, 3.5, 21 and 12.7, and a whole training
step 81 ms against 145 (T 24: 35 against 81), on the 2-core AVX-512 host
(benchmarks/layer_kernels.py, results/layer_kernels.json).

Shapes (C-contiguous, time-major; names of engine/layers.py):
    T steps, B sequences, F features per step, N = T*B tokens, V vocabulary, E embedding width
    outputs (T, B, F)  the top LSTM layer's output, zeros at inactive steps
    lengths (B,)       int64; step t of row b is valid when t < lengths[b], 1 <= lengths[b] <= T
    best    (B, F)     the maximum of outputs[:lengths[b], b, f] (written)
    arg     (B, F)     int64, the first step that holds it (written), for the backward
    tokens  (N,)       int64 ids in [0, V)
    ids     (K, T, B)  int64 ids in [0, V), K per step (one per n-gram order), summed by
                       embedding_sum into out (T, B, E)
    d_out   (N, E)     the gradient of each token's embedding row
    grad    (V, E)     the table's gradient (written: zeroed, then accumulated)
    p, g, m, v (P,)    a parameter, its gradient, Adam's first and second moments, flat
                       (p, m, v updated in place); every scalar of the update is passed in
                       p's dtype, as NumPy casts a Python float against a float32 array
    a       (P,)       a gradient, flat, whose squares sum_of_squares adds up
Each kernel does what the NumPy code in engine/layers.py or engine/optim.py does, in the same
order of operations, so it is equal to it, and the tests hold it to that; the sum of squares
adds in another order (chunks, vector lanes), so it is equal to float64 rounding.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .kernel_cache import CPU_KERNELS


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def max_over_steps(outputs, lengths, best, arg):
    """The running maximum of layers.pool_forward's ``max``, one row per thread: a step
    replaces the best only when strictly greater (the first maximum wins, as argmax; a NaN
    never wins), and steps at or after lengths[b] are never read.
        outputs (T, B, F), lengths (B,), best (B, F) and arg (B, F): module docstring
    """
    T, B, F = outputs.shape
    for b in prange(B):
        for f in range(F):
            best[b, f] = outputs[0, b, f]
            arg[b, f] = 0
        for t in range(1, min(lengths[b], T)):
            for f in range(F):
                # selects, not a branch, so the loop vectorizes
                value, current = outputs[t, b, f], best[b, f]
                better = value > current
                best[b, f] = value if better else current
                arg[b, f] = t if better else arg[b, f]


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def embedding_sum(weight, ids, out):
    """``out[t, b] = weight[ids[0, t, b]] + weight[ids[1, t, b]] + ...`` added in that order,
    as NumPy's sum over the gathered rows' first axis, one step's rows per thread.
        weight (V, E), ids (K, T, B), out (T, B, E) (written): module docstring
    """
    K, T, B = ids.shape
    E = weight.shape[1]
    for t in prange(T):
        for b in range(B):
            first = ids[0, t, b]
            for e in range(E):
                out[t, b, e] = weight[first, e]
            for k in range(1, K):
                row = ids[k, t, b]
                for e in range(E):
                    out[t, b, e] += weight[row, e]


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def embedding_grad(tokens, d_out, grad):
    """``grad`` = 0, then ``grad[tokens[n]] += d_out[n]`` for n in order, as ``np.add.at``.
    The zeroing is split over the threads (the n-gram table's 25 MB: 0.34 ms against 0.77 on
    2 cores); the sum is one thread, since rows of repeated tokens would race.
        tokens (N,), d_out (N, E), grad (V, E): module docstring
    """
    for row in prange(grad.shape[0]):
        grad[row, :] = 0
    N, E = d_out.shape
    for n in range(N):
        row = tokens[n]
        for e in range(E):
            grad[row, e] += d_out[n, e]


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def adam_update(p, g, m, v, l2, decay, b1, c1, b2, c2, bias2, eps, step_size):
    """engine/optim.py's ``adam_update``, element by element in its order of operations:
    g += l2 * p (L2 weight decay) or p *= decay (decoupled), m = b1 m + c1 g,
    v = b2 v + c2 g g, p -= step_size * m / (sqrt(v / bias2) + eps).
        p, g, m, v (P,): module docstring; l2, decay: weight decay (0 and 1: none);
        c1 = 1 - b1, c2 = 1 - b2, bias2 = 1 - b2**step, step_size = lr / (1 - b1**step)
    """
    for i in prange(p.size):
        grad, param = g[i], p[i]
        if l2 != 0:
            grad = grad + l2 * param
        if decay != 1:
            param = param * decay
        first = m[i] * b1 + grad * c1
        second = v[i] * b2 + (grad * grad) * c2
        m[i], v[i] = first, second
        p[i] = param - first / (np.sqrt(second / bias2) + eps) * step_size


#: Elements per partial sum of ``sum_of_squares``: fixed, so that the result does not depend
#: on the number of threads.
SQUARES_CHUNK = 1 << 14


@CPU_KERNELS.jit(parallel=True, fastmath={"reassoc"}, error_model="numpy")
def sum_of_squares(a):
    """engine/optim.py's ``sum_of_squares`` in one pass without a scratch array: each chunk of
    SQUARES_CHUNK elements summed in float64 (in the vector lanes' order: fastmath lets the
    sum be reassociated), the chunks' sums added in order.
        a (P,): module docstring
    """
    chunks = (a.size + SQUARES_CHUNK - 1) // SQUARES_CHUNK
    sums = np.empty(chunks)
    for c in prange(chunks):
        part = a[c * SQUARES_CHUNK:(c + 1) * SQUARES_CHUNK]
        total = 0.0
        for i in range(part.size):
            x = np.float64(part[i])
            total += x * x
        sums[c] = total
    total = 0.0
    for c in range(chunks):
        total += sums[c]
    return total
