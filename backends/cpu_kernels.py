"""Numba kernels of the `cpu` backend: the recurrent part of one LSTM layer-direction.

Shapes (C-contiguous, time-major; names of base.py's glossary):
    T steps, B batch, I inputs, H hidden; G = 4H gate columns in the order i, f, g, o.
    x       (T, B, I)  the layer's input
    bias    (G,)       b_ih + b_hh, added in the loop
    The input projection is either hoisted or fused (`fused`, chosen by the caller):
    hoisted x_proj  (T, B, G)  x @ w_ih.T for every step, one product before the loop
            w_step  (P, H, NR) w_hh.T packed (cpu_gemm.pack): per step
                               pre = h_prev @ w_hh.T + x_proj[t] (+ bias)
    fused   w_step  (P, I+H, NR) [w_ih, w_hh].T packed: per step
                               pre = [x_t, h_prev] @ [w_ih, w_hh].T (+ bias), so x_proj is
                               never written to memory and read back
    backward w_step (P, G, NR) w_hh packed (hoisted: dh = d_pre @ w_hh, dx after the loop)
                    or [w_ih, w_hh] packed (fused: [dx_t, dh] = d_pre @ [w_ih, w_hh])
    Saved for backward (when `keep`):
    gates   (T, B, G)  the activated gates i, f, g, o, zero at inactive steps (hoisted: the
                       x_proj array, overwritten in place)
    c_prev  (T, B, H)  the cell state entering each step; backward recomputes
                       c = f * c_prev + i * g from it and the gates
    xh      (P, T*B, NR)  row t*B + b of [x, h_prev]: the input and the hidden state entering
                       each step, stored packed as the right operand of
                       [dW_ih, dW_hh] = d_pre.T @ [x, h_prev], one product after the loop
    d_pre   (T, B, G)  gradient of the gate pre-activations
    lengths (B,)       step t of row b is active when t < lengths[b]
The math of one step is reference.step_forward / reference.step_backward, which the tests
hold these kernels to.

Threads: the batch is cut into `n_chunks` contiguous slices and each thread runs the whole
time loop for its slice, so there is one fork/join per call rather than one per step, and
each thread keeps the packed w_hh hot in its own L2. The products are cpu_gemm's (`wide`
picks its AVX-512 register blocking).

The compiled kernels are cached on disk under a stamp of every kernel file (cpu_gemm.py,
cpu_layers.py, cpu_sync.py, this one: kernel_cache.CPU_KERNELS), so an edit to any of them
recompiles.

float32 uses a clamped rational tanh (Eigen's form; max abs error ~3e-7) that vectorizes;
math.tanh would stay a scalar libm call since Numba has no SVML here. float64 keeps math.tanh
so that it matches the reference to rounding. The sigmoid is 0.5 * tanh(z / 2) + 0.5 as in
the reference (one definition here: act_sigmoid).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .cpu_gemm import gemm, store_packed
from .cpu_sync import barrier
from .kernel_cache import CPU_KERNELS

_CLAMP = np.float32(7.90531110763549805)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF32 = np.float32(0.5)


def act_tanh(z):  # pragma: no cover - replaced by the overload inside compiled code
    """tanh(z) for one float32 or float64 value z: the rational approximation for float32,
    math.tanh for float64 (see the module docstring)."""
    return math.tanh(z)


@overload(act_tanh)
def _act_tanh(z):
    if z == types.float32:
        def fast(z):
            # select rather than min/max: keeps the loop branch-free and NaN-propagating
            z = _CLAMP if z > _CLAMP else z
            z = -_CLAMP if z < -_CLAMP else z
            z2 = z * z
            p = z2 * _A13 + _A11
            p = z2 * p + _A9
            p = z2 * p + _A7
            p = z2 * p + _A5
            p = z2 * p + _A3
            p = z2 * p + _A1
            p = z * p
            q = z2 * _B6 + _B4
            q = z2 * q + _B2
            q = z2 * q + _B0
            return p / q
        return fast

    def exact(z):
        return math.tanh(z)
    return exact


@njit(error_model="numpy")
def act_sigmoid(z):
    """sigmoid(z) = 0.5 * tanh(z / 2) + 0.5 for one value z, in z's precision (the tanh
    form never overflows exp())."""
    half = _half_like(z)      # 0.5 in z's own precision: a float64 literal would promote
    return half * act_tanh(half * z) + half


def _half_like(z):  # pragma: no cover - replaced by the overload inside compiled code
    """0.5 in the precision of the float z (float32 or float64)."""
    return 0.5


@overload(_half_like)
def _half_like_ov(z):
    if z == types.float32:
        return lambda z: _HALF32
    return lambda z: 0.5


@njit(error_model="numpy")
def chunk(k, n_chunks, total):
    """Bounds [lo, hi) of the k-th of n_chunks near-equal contiguous slices of range(total).
        k         int  which slice, 0 <= k < n_chunks
        n_chunks  int  how many slices
        total     int  the length cut into slices (B rows, or H units)
    """
    return k * total // n_chunks, (k + 1) * total // n_chunks


@njit(error_model="numpy", inline="always")
def cell(pre_i, pre_f, pre_g, pre_o, c_prev):
    """One unit of the LSTM cell (reference.step_forward for one element of an active step).
        pre_i, pre_f, pre_g, pre_o  scalar  the unit's four gate pre-activations (with bias)
        c_prev                      scalar  the unit's cell state entering the step
    Returns the activated gates i, f, g, o, the new cell state c and the new hidden state h.
    """
    i = act_sigmoid(pre_i)
    f = act_sigmoid(pre_f)
    g = act_tanh(pre_g)
    o = act_sigmoid(pre_o)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * act_tanh(c)


@CPU_KERNELS.jit(error_model="numpy")
def tanh_kernel(z, out):
    """act_tanh over a flat array; exists so tests can measure the approximation's error.
        z    (n,)  float32 or float64 inputs
        out  (n,)  act_tanh(z), same dtype
    """
    for k in range(z.size):
        out[k] = act_tanh(z[k])


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def forward_loop(x, x_proj, bias, w_step, h0, c0, lengths, reverse, n_chunks, wide, fused, keep,
                 y, h_n, c_n, gates, c_prev, xh):
    """One layer-direction forward, the batch split across threads (module docstring).
        x        (T, B, I)   the input (read when fused, or packed into xh when keep)
        x_proj   (T, B, G)   x @ w_ih.T when hoisted (read); unused when fused
        bias     (G,)        b_ih + b_hh
        w_step   (P, K, NR)  the step product's right operand, packed: [w_ih, w_hh].T when
                             fused (K = I + H), w_hh.T when hoisted (K = H)
        h0, c0   (B, H)      the state entering the first step
        lengths  (B,) int64  step t of row b is active when t < lengths[b]
        reverse  bool        walk t = T-1 .. 0 instead of 0 .. T-1
        n_chunks int         threads; each runs the whole sequence for a slice of the batch
        wide     bool        AVX-512 register blocking of the products
        fused    bool        the input projection inside the step product (see w_step)
        keep     bool        save gates, c_prev and xh for backward
        y        (T, B, H)   out: h after each step, zero at inactive steps
        h_n, c_n (B, H)      out: the state after each row's last active step
        gates    (T, B, G)   out when keep: i, f, g, o per step, zero where inactive (hoisted:
                             may be x_proj itself, each step's row read before it is written)
        c_prev   (T, B, H)   out when keep: the cell state entering each step
        xh       (P, T*B, NR) out when keep: rows [x_t, h_prev] packed (cpu_gemm.pack layout)
    """
    T, B, I = x.shape
    H = h0.shape[1]
    G = 4 * H
    Ix = I if fused else 0              # the step product's left operand is [x_t, h_prev] or h_prev
    for k in prange(n_chunks):
        b0, b1 = chunk(k, n_chunks, B)
        a = np.empty((b1 - b0, Ix + H), dtype=x.dtype)
        for r in range(b1 - b0):
            a[r, Ix:] = h0[b0 + r]
        c = c0[b0:b1].copy()
        pre = np.empty((b1 - b0, G), dtype=x.dtype)     # pre-activations without the bias
        for s in range(T):
            t = T - 1 - s if reverse else s
            for r in range(b1 - b0):
                if fused:
                    a[r, :I] = x[t, b0 + r]
                if keep:
                    # the row t*B + b of [x, h_prev], stored packed for dW = d_pre.T @ xh
                    m = t * B + b0 + r
                    if not fused:
                        store_packed(xh, m, x[t, b0 + r], 0)
                    store_packed(xh, m, a[r], I - Ix)
                    c_prev[t, b0 + r] = c[r]
            gemm(a, w_step, pre, wide, 0, Ix + H, False)
            for r in range(b1 - b0):
                b = b0 + r
                pr = pre[r]
                hr = a[r, Ix:]                  # a view: indexing a[r, Ix + j] would not vectorize
                if not fused:
                    pr += x_proj[t, b]
                if t < lengths[b]:
                    for j in range(H):
                        i, f, g, o, c_t, h_t = cell(
                            pr[j] + bias[j], pr[H + j] + bias[H + j],
                            pr[2 * H + j] + bias[2 * H + j], pr[3 * H + j] + bias[3 * H + j],
                            c[r, j])
                        c[r, j] = c_t
                        hr[j] = h_t
                        y[t, b, j] = h_t
                        if keep:
                            gates[t, b, j] = i
                            gates[t, b, H + j] = f
                            gates[t, b, 2 * H + j] = g
                            gates[t, b, 3 * H + j] = o
                else:
                    y[t, b] = 0
                    if keep:
                        gates[t, b] = 0
        for r in range(b1 - b0):
            h_n[b0 + r] = a[r, Ix:]
        c_n[b0:b1] = c


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def backward_loop(gates, c_prev, w_step, dy, dh_n, dc_n, lengths, reverse, n_chunks, wide,
                  fused, d_pre, d_bias, dx, dh0, dc0):
    """One layer-direction backward, the batch split across threads (module docstring).
        gates    (T, B, G)   the forward's saved gates (zero at inactive steps)
        c_prev   (T, B, H)   the forward's saved cell states entering each step
        w_step   (P, K, NR)  packed: [w_ih, w_hh] when fused (K = G, gives [dx_t, dh]),
                             w_hh when not (gives dh; dx is the caller's product after)
        dy       (T, B, H)   gradient of y
        dh_n, dc_n (B, H)    gradient of the final state
        lengths  (B,) int64  as forward
        reverse  bool        the direction forward walked (backward walks the other way)
        n_chunks int         threads; each runs the whole sequence for a slice of the batch
        wide     bool        AVX-512 register blocking of the products
        fused    bool        see w_step
        d_pre    (T, B, G)   out: gradient of the pre-activations, zero at inactive steps
        d_bias   (G,)        out: d_pre summed over steps and rows
        dx       (T, B, I)   out when fused: gradient of x (left alone when not)
        dh0, dc0 (B, H)      out: gradient of the initial state
    """
    T, B, G = gates.shape
    H = G // 4
    Ix = dx.shape[2] if fused else 0    # the step product gives [dx_t, dh] or dh
    one = gates.dtype.type(1)
    bias_parts = np.zeros((n_chunks, G), dtype=gates.dtype)
    for k in prange(n_chunks):
        b0, b1 = chunk(k, n_chunks, B)
        dh = dh_n[b0:b1].copy()
        dc = dc_n[b0:b1].copy()
        back = np.empty((b1 - b0, Ix + H), dtype=gates.dtype)
        db = bias_parts[k]
        for s in range(T):
            # backward visits steps in the opposite order of forward
            t = s if reverse else T - 1 - s
            for r in range(b1 - b0):
                b = b0 + r
                dpr = d_pre[t, b]
                if t < lengths[b]:
                    gt = gates[t, b]
                    cp = c_prev[t, b]
                    dyr = dy[t, b]
                    for j in range(H):
                        i = gt[j]
                        f = gt[H + j]
                        g = gt[2 * H + j]
                        o = gt[3 * H + j]
                        # recomputed rather than saved: two products instead of a (T, B, H) array
                        tanh_c = act_tanh(f * cp[j] + i * g)
                        dh_t = dh[r, j] + dyr[j]
                        dc_t = dc[r, j] + dh_t * o * (one - tanh_c * tanh_c)
                        dpr[j] = dc_t * g * i * (one - i)
                        dpr[H + j] = dc_t * cp[j] * f * (one - f)
                        dpr[2 * H + j] = dc_t * i * (one - g * g)
                        dpr[3 * H + j] = dh_t * tanh_c * o * (one - o)
                        dc[r, j] = dc_t * f
                    db += dpr
                else:
                    dpr[:] = 0
            gemm(d_pre[t, b0:b1], w_step, back, wide, 0, G, False)
            for r in range(b1 - b0):
                if fused:
                    dx[t, b0 + r] = back[r, :Ix]
                if t < lengths[b0 + r]:
                    dh[r] = back[r, Ix:]
        dh0[b0:b1] = dh
        dc0[b0:b1] = dc
    d_bias[:] = bias_parts.sum(axis=0)


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def forward_split_loop(x_proj, bias, w_parts, h0, c0, lengths, reverse, n_chunks, wide, counter,
                       y, h_n, c_n):
    """Inference (nothing kept) for batches too thin to split across threads: thread k owns
    the hidden units [j0, j1) = chunk(k, n_chunks, H) for the whole sequence.
        x_proj   (T, B, G)            x @ w_ih.T, hoisted
        bias     (G,)                 b_ih + b_hh
        w_parts  (n_chunks, P, H, NR) per thread, w_hh.T's columns of its units' four gates
                                      (i, f, g, o blocks of j1 - j0 each), packed
        h0, c0   (B, H)               the state entering the first step
        lengths  (B,) int64           step t of row b is active when t < lengths[b]
        reverse  bool                 walk t = T-1 .. 0
        n_chunks int                  threads, each with its own units; all must run at
                                      once (cpu_sync.threads_run_together)
        wide     bool                 AVX-512 register blocking of the products
        counter  (1,) int64           the barrier's counter, zero on entry
        y        (T, B, H)            out: h after each step, zero at inactive steps
        h_n, c_n (B, H)               out: the state after each row's last active step
    Inside, hbuf (2, B, H) holds h before and after the current step: every thread reads all
    of it and writes its units; a barrier ends each step (cpu_sync), so one buffer is read
    while the other is written.
    """
    T, B, G = x_proj.shape
    H = G // 4
    hbuf = np.empty((2, B, H), dtype=x_proj.dtype)
    hbuf[0] = h0
    for k in prange(n_chunks):
        j0, j1 = chunk(k, n_chunks, H)
        n = j1 - j0
        c = np.empty((B, n), dtype=x_proj.dtype)
        for b in range(B):
            c[b] = c0[b, j0:j1]
        rec = np.empty((B, 4 * n), dtype=x_proj.dtype)   # h_prev @ w_hh.T for this thread's units
        # views of this thread's units in each gate block: indexing bias[q * H + j0 + j]
        # directly would not vectorize (numba cannot prove the index non-negative)
        bi, bf = bias[j0:j1], bias[H + j0:H + j1]
        bg, bo = bias[2 * H + j0:2 * H + j1], bias[3 * H + j0:3 * H + j1]
        for s in range(T):
            t = T - 1 - s if reverse else s
            cur = hbuf[s % 2]
            nxt = hbuf[(s + 1) % 2]
            gemm(cur, w_parts[k], rec, wide, 0, H, False)
            for b in range(B):
                hn = nxt[b, j0:j1]
                yb = y[t, b, j0:j1]
                if t < lengths[b]:
                    xp = x_proj[t, b]
                    ri, rf, rg, ro = rec[b, :n], rec[b, n:2 * n], rec[b, 2 * n:3 * n], rec[b, 3 * n:]
                    xi, xf = xp[j0:j1], xp[H + j0:H + j1]
                    xg, xo = xp[2 * H + j0:2 * H + j1], xp[3 * H + j0:3 * H + j1]
                    cb = c[b]
                    for j in range(n):
                        _, _, _, _, c_t, h_t = cell(ri[j] + xi[j] + bi[j], rf[j] + xf[j] + bf[j],
                                                    rg[j] + xg[j] + bg[j], ro[j] + xo[j] + bo[j],
                                                    cb[j])
                        cb[j] = c_t
                        hn[j] = h_t
                        yb[j] = h_t
                else:
                    hn[:] = cur[b, j0:j1]
                    yb[:] = 0
            barrier(counter, n_chunks, s + 1)
        for b in range(B):
            h_n[b, j0:j1] = hbuf[T % 2, b, j0:j1]
            c_n[b, j0:j1] = c[b]
