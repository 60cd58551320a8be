"""Numba kernels of the `cpu` backend for the layers around the LSTM stack (engine/layers.py).

These are the array work of a training step outside the recurrence that NumPy does slowly:
a running maximum over steps is a Python loop of T vectorized calls, and ``np.add.at`` is a
scatter with per-element dispatch. At the default language-id model's shapes (B 128, T 64,
2x128 units, 48-wide embedding) they take 0.30 and 0.13 ms against NumPy's 5.5 and 4.7, and
a whole training step 152 ms against 173 (T 24: 63 against 69), on the 2-core AVX2 host
(benchmarks/layer_kernels.py, results/layer_kernels.json).

Shapes (C-contiguous, time-major; names of engine/layers.py):
    T steps, B sequences, F features per step, N = T*B tokens, V vocabulary, E embedding width
    outputs (T, B, F)  the top LSTM layer's output, zeros at inactive steps
    lengths (B,)       int64; step t of row b is valid when t < lengths[b], 1 <= lengths[b] <= T
    best    (B, F)     the maximum of outputs[:lengths[b], b, f] (written)
    arg     (B, F)     int64, the first step that holds it (written), for the backward
    tokens  (N,)       int64 ids in [0, V)
    d_out   (N, E)     the gradient of each token's embedding row
    grad    (V, E)     the table's gradient (written: zeroed, then accumulated)
Each kernel does what the NumPy code in engine/layers.py does, in the same order of
operations, so it is equal to it, and the tests hold it to that.
"""

from __future__ import annotations

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


@CPU_KERNELS.jit(error_model="numpy")
def embedding_grad(tokens, d_out, grad):
    """``grad`` = 0, then ``grad[tokens[n]] += d_out[n]`` for n in order, as ``np.add.at``.
    One thread: rows of repeated tokens would race.
        tokens (N,), d_out (N, E), grad (V, E): module docstring
    """
    grad[:] = 0
    N, E = d_out.shape
    for n in range(N):
        row = tokens[n]
        for e in range(E):
            grad[row, e] += d_out[n, e]
