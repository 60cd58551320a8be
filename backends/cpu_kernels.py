"""Numba kernels of the `cpu` backend: the recurrent part of one LSTM layer-direction.

Shapes (all C-contiguous, time-major):
    T steps, B batch, H hidden; G = 4H gate columns in the order i, f, g, o.
    x_proj  (T, B, G)  x @ w_ih.T + bias for every step, computed before the loop by one GEMM
    w_hh    (G, H)     as stored: a step's recurrent product is h (Bc, H) @ w_hh.T
    w_hh_t  (H, G)     w_hh transposed, for the backward recurrence dh = d_pre @ w_hh
    gates   (T, B, G)  the activated gates, saved for backward: written over x_proj in place
    c_all   (T, B, H)  the carried cell state after each step
    h_prev  (T, B, H)  the carried hidden state before each step (also the dW_hh GEMM operand)
    d_pre   (T, B, G)  gradient of the gate pre-activations, input to the GEMMs after the loop
    lengths (B,)       step t of row b is active when t < lengths[b]

Threads: the batch is cut into `n_chunks` contiguous slices and each thread runs the whole
time loop for its slice, so there is one fork/join per call rather than one per step, and
each thread keeps w_hh hot in its own cache. The per-step products are cpu_rowdot.rows_dot
(`wide` picks its AVX-512 blocking); the GEMMs over all steps are BLAS, single-threaded
inside (the caller limits it).

float32 uses a clamped rational tanh (Eigen's form; max abs error ~3e-7) that vectorizes;
math.tanh would stay a scalar libm call since Numba has no SVML here. float64 keeps math.tanh
so that it matches the reference to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .cpu_rowdot import rows_dot

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


@njit(cache=True, error_model="numpy")
def tanh_kernel(z, out):
    """act_tanh over a flat array; exists so tests can measure the approximation's error."""
    for k in range(z.size):
        out[k] = act_tanh(z[k])


@njit(cache=True, parallel=True, error_model="numpy")
def forward_loop(x_proj, w_hh, h0, c0, lengths, reverse, n_chunks, wide, keep,
                 y, h_n, c_n, c_all, h_prev):
    T, B, G = x_proj.shape
    H = G // 4
    for k in prange(n_chunks):
        b0, b1 = chunk(k, n_chunks, B)
        h = h0[b0:b1].copy()
        c = c0[b0:b1].copy()
        z = np.empty((b1 - b0, G), dtype=x_proj.dtype)
        for s in range(T):
            t = T - 1 - s if reverse else s
            if keep:
                h_prev[t, b0:b1] = h
            rows_dot(h, w_hh, z, wide)
            for r in range(b1 - b0):
                b = b0 + r
                g = x_proj[t, b]
                zr = z[r]
                if t < lengths[b]:
                    for j in range(H):
                        i_g = act_sigmoid(zr[j] + g[j])
                        f_g = act_sigmoid(zr[H + j] + g[H + j])
                        g_g = act_tanh(zr[2 * H + j] + g[2 * H + j])
                        o_g = act_sigmoid(zr[3 * H + j] + g[3 * H + j])
                        c_t = f_g * c[r, j] + i_g * g_g
                        h_t = o_g * act_tanh(c_t)
                        c[r, j] = c_t
                        h[r, j] = h_t
                        y[t, b, j] = h_t
                        if keep:
                            g[j] = i_g
                            g[H + j] = f_g
                            g[2 * H + j] = g_g
                            g[3 * H + j] = o_g
                else:
                    y[t, b] = 0
                    if keep:
                        g[:] = 0
                if keep:
                    c_all[t, b] = c[r]
        h_n[b0:b1] = h
        c_n[b0:b1] = c


@njit(cache=True, parallel=True, error_model="numpy")
def backward_loop(gates, c_all, c0, w_hh_t, dy, dh_n, dc_n, lengths, reverse, n_chunks, wide,
                  d_pre, d_bias, dh0, dc0):
    T, B, G = gates.shape
    H = G // 4
    one = gates.dtype.type(1)
    bias_parts = np.zeros((n_chunks, G), dtype=gates.dtype)
    for k in prange(n_chunks):
        b0, b1 = chunk(k, n_chunks, B)
        dh = dh_n[b0:b1].copy()
        dc = dc_n[b0:b1].copy()
        dh_rec = np.empty((b1 - b0, H), dtype=gates.dtype)
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
            rows_dot(d_pre[t, b0:b1], w_hh_t, dh_rec, wide)
            for r in range(b1 - b0):
                if t < lengths[b0 + r]:
                    dh[r] = dh_rec[r]
        dh0[b0:b1] = dh
        dc0[b0:b1] = dc
    d_bias[:] = bias_parts.sum(axis=0)


# The GEMMs over all T*B rows run on Numba's threads too, each thread calling a
# single-threaded BLAS on its own block: a second (BLAS) thread pool would keep spinning
# on the cores after its GEMM and slow the time loop that follows it by ~2x.

@njit(cache=True, parallel=True, error_model="numpy")
def matmul_rows(a, b, out, n_chunks):
    """out = a @ b, the rows of a split across threads."""
    M = a.shape[0]
    for k in prange(n_chunks):
        r0, r1 = chunk(k, n_chunks, M)
        np.dot(a[r0:r1], b, out[r0:r1])


@njit(cache=True, parallel=True, error_model="numpy")
def matmul_tn(a, b, out, n_chunks):
    """out = a.T @ b, the shared rows (the reduction) split across threads."""
    M = a.shape[0]
    parts = np.empty((n_chunks,) + out.shape, dtype=out.dtype)
    for k in prange(n_chunks):
        r0, r1 = chunk(k, n_chunks, M)
        np.dot(a[r0:r1].T, b[r0:r1], parts[k])
    out[:] = parts[0]
    for k in range(1, n_chunks):
        out += parts[k]

