"""Numba kernels of the `cpu` backend: the recurrent part of one LSTM layer-direction.

Shapes (C-contiguous, time-major):
    T steps, B batch, I inputs, H hidden; G = 4H gate columns in the order i, f, g, o.
    x       (T, B, I)  the layer's input
    bias    (G,)       b_ih + b_hh, added in the loop
    The input projection is either hoisted or fused (`fused`, chosen by the caller):
    hoisted pre     (T, B, G)  x @ w_ih.T for every step, one product before the loop
            w_step  (P, H, NR) w_hh.T packed (cpu_gemm.pack): per step z = h @ w_hh.T + pre[t]
    fused   w_step  (P, I+H, NR) [w_ih, w_hh].T packed: per step z = [x_t, h] @ [w_ih, w_hh].T,
                    so x_proj is never written to memory and read back
    backward w_step (P, G, NR) w_hh packed (hoisted: dh = d_pre @ w_hh, dx after the loop)
                    or [w_ih, w_hh] packed (fused: [dx_t, dh] = d_pre @ [w_ih, w_hh])
    gates   (T, B, G)  the activated gates, saved for backward (hoisted: over pre, in place)
    c_all   (T, B, H)  the carried cell state after each step
    xh      (P, T*B, NR)  row t*B + b of [x, h_prev]: the input and the hidden state before
                       each step, stored packed as the right operand of
                       [dW_ih, dW_hh] = d_pre.T @ [x, h_prev], one product after the loop
    d_pre   (T, B, G)  gradient of the gate pre-activations
    lengths (B,)       step t of row b is active when t < lengths[b]

Threads: the batch is cut into `n_chunks` contiguous slices and each thread runs the whole
time loop for its slice, so there is one fork/join per call rather than one per step, and
each thread keeps the packed w_hh hot in its own L2. The products are cpu_gemm's (`wide`
picks its AVX-512 register blocking).

Numba's on-disk cache of these kernels is keyed on this file alone: after editing
cpu_gemm.py or cpu_sync.py in a source checkout, delete backends/__pycache__/*.nb[ci].

float32 uses a clamped rational tanh (Eigen's form; max abs error ~3e-7) that vectorizes;
math.tanh would stay a scalar libm call since Numba has no SVML here. float64 keeps math.tanh
so that it matches the reference to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .cpu_gemm import gemm, store_packed
from .cpu_sync import barrier

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
    half = _half_like(z)      # 0.5 in z's own precision: a float64 literal would promote
    return half * act_tanh(half * z) + half


def _half_like(z):  # pragma: no cover - replaced by the overload inside compiled code
    return 0.5


@overload(_half_like)
def _half_like_ov(z):
    if z == types.float32:
        return lambda z: _HALF32
    return lambda z: 0.5


@njit(error_model="numpy")
def chunk(k, n_chunks, total):
    """Bounds [lo, hi) of the k-th of n_chunks near-equal contiguous slices of range(total)."""
    return k * total // n_chunks, (k + 1) * total // n_chunks


@njit(error_model="numpy", inline="always")
def cell(zi, zf, zg, zo, c_prev):
    """One unit of the LSTM cell from its four gate pre-activations: the activated gates
    (i, f, g, o), the new cell state and the new hidden state."""
    i_g = act_sigmoid(zi)
    f_g = act_sigmoid(zf)
    g_g = act_tanh(zg)
    o_g = act_sigmoid(zo)
    c_t = f_g * c_prev + i_g * g_g
    return i_g, f_g, g_g, o_g, c_t, o_g * act_tanh(c_t)


@njit(cache=True, error_model="numpy")
def tanh_kernel(z, out):
    """act_tanh over a flat array; exists so tests can measure the approximation's error."""
    for k in range(z.size):
        out[k] = act_tanh(z[k])


@njit(cache=True, parallel=True, error_model="numpy")
def forward_loop(x, pre, bias, w_step, h0, c0, lengths, reverse, n_chunks, wide, fused, keep,
                 y, h_n, c_n, gates, c_all, xh):
    T, B, I = x.shape
    H = h0.shape[1]
    G = 4 * H
    Ix = I if fused else 0              # the step product's operand is [x_t, h] or h
    for k in prange(n_chunks):
        b0, b1 = chunk(k, n_chunks, B)
        a = np.empty((b1 - b0, Ix + H), dtype=x.dtype)
        for r in range(b1 - b0):
            a[r, Ix:] = h0[b0 + r]
        c = c0[b0:b1].copy()
        z = np.empty((b1 - b0, G), dtype=x.dtype)
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
            gemm(a, w_step, z, wide, 0, Ix + H, False)
            for r in range(b1 - b0):
                b = b0 + r
                zr = z[r]
                hr = a[r, Ix:]                  # a view: indexing a[r, Ix + j] would not vectorize
                if not fused:
                    zr += pre[t, b]
                if t < lengths[b]:
                    for j in range(H):
                        i_g, f_g, g_g, o_g, c_t, h_t = cell(
                            zr[j] + bias[j], zr[H + j] + bias[H + j],
                            zr[2 * H + j] + bias[2 * H + j], zr[3 * H + j] + bias[3 * H + j],
                            c[r, j])
                        c[r, j] = c_t
                        hr[j] = h_t
                        y[t, b, j] = h_t
                        if keep:
                            gates[t, b, j] = i_g
                            gates[t, b, H + j] = f_g
                            gates[t, b, 2 * H + j] = g_g
                            gates[t, b, 3 * H + j] = o_g
                else:
                    y[t, b] = 0
                    if keep:
                        gates[t, b] = 0
                if keep:
                    c_all[t, b] = c[r]
        for r in range(b1 - b0):
            h_n[b0 + r] = a[r, Ix:]
        c_n[b0:b1] = c


@njit(cache=True, parallel=True, error_model="numpy")
def backward_loop(gates, c_all, c0, w_step, dy, dh_n, dc_n, lengths, reverse, n_chunks, wide,
                  fused, d_pre, d_bias, dx, dh0, dc0):
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
            t_before = t + 1 if reverse else t - 1        # the step forward ran just before t
            for r in range(b1 - b0):
                b = b0 + r
                dpr = d_pre[t, b]
                if t < lengths[b]:
                    gt = gates[t, b]
                    ct = c_all[t, b]
                    cp = c0[b] if (t_before < 0 or t_before >= T) else c_all[t_before, b]
                    dyr = dy[t, b]
                    for j in range(H):
                        i_g = gt[j]
                        f_g = gt[H + j]
                        g_g = gt[2 * H + j]
                        o_g = gt[3 * H + j]
                        tc = act_tanh(ct[j])
                        dh_t = dh[r, j] + dyr[j]
                        dc_t = dc[r, j] + dh_t * o_g * (one - tc * tc)
                        dpr[j] = dc_t * g_g * i_g * (one - i_g)
                        dpr[H + j] = dc_t * cp[j] * f_g * (one - f_g)
                        dpr[2 * H + j] = dc_t * i_g * (one - g_g * g_g)
                        dpr[3 * H + j] = dh_t * tc * o_g * (one - o_g)
                        dc[r, j] = dc_t * f_g
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


@njit(cache=True, parallel=True, error_model="numpy")
def forward_split_loop(pre, bias, w_parts, h0, c0, lengths, reverse, n_chunks, wide, counter,
                       y, h_n, c_n):
    """Inference (nothing kept) for batches too thin to split across threads: thread k owns
    the hidden units [j0, j1) = chunk(k, n_chunks, H) for the whole sequence.
        pre      (T, B, G)            x @ w_ih.T, hoisted
        w_parts  (n_chunks, P, H, NR) per thread, w_hh.T's columns of its units' four gates
                                      (i, f, g, o blocks of j1 - j0 each), packed
        hbuf     (2, B, H)            h before and after the current step: every thread
                                      reads all of it and writes its units; a barrier ends
                                      each step (cpu_sync), so one buffer is read while the
                                      other is written
    """
    T, B, G = pre.shape
    H = G // 4
    hbuf = np.empty((2, B, H), dtype=pre.dtype)
    hbuf[0] = h0
    for k in prange(n_chunks):
        j0, j1 = chunk(k, n_chunks, H)
        n = j1 - j0
        c = np.empty((B, n), dtype=pre.dtype)
        for b in range(B):
            c[b] = c0[b, j0:j1]
        z = np.empty((B, 4 * n), dtype=pre.dtype)
        # views of this thread's units in each gate block: indexing bias[q * H + j0 + j]
        # directly would not vectorize (numba cannot prove the index non-negative)
        bi, bf = bias[j0:j1], bias[H + j0:H + j1]
        bg, bo = bias[2 * H + j0:2 * H + j1], bias[3 * H + j0:3 * H + j1]
        for s in range(T):
            t = T - 1 - s if reverse else s
            cur = hbuf[s % 2]
            nxt = hbuf[(s + 1) % 2]
            gemm(cur, w_parts[k], z, wide, 0, H, False)
            for b in range(B):
                hn = nxt[b, j0:j1]
                yb = y[t, b, j0:j1]
                if t < lengths[b]:
                    pr = pre[t, b]
                    zi, zf, zg, zo = z[b, :n], z[b, n:2 * n], z[b, 2 * n:3 * n], z[b, 3 * n:]
                    pi, pf = pr[j0:j1], pr[H + j0:H + j1]
                    pg, po = pr[2 * H + j0:2 * H + j1], pr[3 * H + j0:3 * H + j1]
                    cb = c[b]
                    for j in range(n):
                        _, _, _, _, c_t, h_t = cell(zi[j] + pi[j] + bi[j], zf[j] + pf[j] + bf[j],
                                                    zg[j] + pg[j] + bg[j], zo[j] + po[j] + bo[j],
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
