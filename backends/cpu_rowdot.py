"""The per-step recurrent product of the `cpu` backend, register-blocked in Numba.

Shapes (C-contiguous):
    a    (R, K)  R rows of the left operand: a thread's slice of the batch at one step
    w    (N, K)  the right operand stored with the reduction axis K contiguous
    out  (R, N)  out = a @ w.T
Forward, a = h (Bc, H) and w = w_hh (4H, H) as stored: N = 4H gate columns i, f, g, o.
Backward, a = d_pre (Bc, 4H) and w = w_hh.T made contiguous (H, 4H): N = H.

Why not BLAS: these products are thin (R is 1-32 rows) and come one per time step. OpenBLAS
runs them at 40-90 GFLOP/s per core here, as it packs its operands on every call and its
small-M paths are weak. Computing every output as a dot product of two contiguous rows needs
no packing: a block of 8 rows x 2 columns (4x2 without AVX-512's 32 vector registers) keeps
its 16 (8) running sums in vector registers while K streams through, so each loaded vector
feeds several FMAs. Measured on one Zen 5 core (AVX-512), float32: 16x256 @ 256x1024 170,
16x1024 @ 1024x256 210, 4x256 @ 256x1024 110 GFLOP/s; OpenBLAS 76, 90 and 37.

The sums are reassociated ("reassoc" fast-math, nothing else) so that LLVM vectorizes them
along K; results differ from a sequential sum by rounding only.
"""

from __future__ import annotations

import llvmlite.binding as ll
import numba
from numba import njit

_FAST = {"reassoc", "contract"}


def has_wide_vectors() -> bool:
    """Whether Numba compiles for AVX-512 here: 32 vector registers hold an 8x2 block's sums."""
    features = numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


@njit(fastmath=_FAST, error_model="numpy", boundscheck=False, inline="always")
def _block8x2(a, w, out, r, n):
    w0 = w[n]
    w1 = w[n + 1]
    a0 = a[r]
    a1 = a[r + 1]
    a2 = a[r + 2]
    a3 = a[r + 3]
    a4 = a[r + 4]
    a5 = a[r + 5]
    a6 = a[r + 6]
    a7 = a[r + 7]
    s00 = s01 = a.dtype.type(0)
    s10 = s11 = a.dtype.type(0)
    s20 = s21 = a.dtype.type(0)
    s30 = s31 = a.dtype.type(0)
    s40 = s41 = a.dtype.type(0)
    s50 = s51 = a.dtype.type(0)
    s60 = s61 = a.dtype.type(0)
    s70 = s71 = a.dtype.type(0)
    for k in range(a.shape[1]):
        s00 += a0[k] * w0[k]
        s01 += a0[k] * w1[k]
        s10 += a1[k] * w0[k]
        s11 += a1[k] * w1[k]
        s20 += a2[k] * w0[k]
        s21 += a2[k] * w1[k]
        s30 += a3[k] * w0[k]
        s31 += a3[k] * w1[k]
        s40 += a4[k] * w0[k]
        s41 += a4[k] * w1[k]
        s50 += a5[k] * w0[k]
        s51 += a5[k] * w1[k]
        s60 += a6[k] * w0[k]
        s61 += a6[k] * w1[k]
        s70 += a7[k] * w0[k]
        s71 += a7[k] * w1[k]
    out[r, n] = s00
    out[r, n + 1] = s01
    out[r + 1, n] = s10
    out[r + 1, n + 1] = s11
    out[r + 2, n] = s20
    out[r + 2, n + 1] = s21
    out[r + 3, n] = s30
    out[r + 3, n + 1] = s31
    out[r + 4, n] = s40
    out[r + 4, n + 1] = s41
    out[r + 5, n] = s50
    out[r + 5, n + 1] = s51
    out[r + 6, n] = s60
    out[r + 6, n + 1] = s61
    out[r + 7, n] = s70
    out[r + 7, n + 1] = s71


@njit(fastmath=_FAST, error_model="numpy", boundscheck=False, inline="always")
def _block4x2(a, w, out, r, n):
    w0 = w[n]
    w1 = w[n + 1]
    a0 = a[r]
    a1 = a[r + 1]
    a2 = a[r + 2]
    a3 = a[r + 3]
    s00 = s01 = a.dtype.type(0)
    s10 = s11 = a.dtype.type(0)
    s20 = s21 = a.dtype.type(0)
    s30 = s31 = a.dtype.type(0)
    for k in range(a.shape[1]):
        s00 += a0[k] * w0[k]
        s01 += a0[k] * w1[k]
        s10 += a1[k] * w0[k]
        s11 += a1[k] * w1[k]
        s20 += a2[k] * w0[k]
        s21 += a2[k] * w1[k]
        s30 += a3[k] * w0[k]
        s31 += a3[k] * w1[k]
    out[r, n] = s00
    out[r, n + 1] = s01
    out[r + 1, n] = s10
    out[r + 1, n + 1] = s11
    out[r + 2, n] = s20
    out[r + 2, n + 1] = s21
    out[r + 3, n] = s30
    out[r + 3, n + 1] = s31


@njit(fastmath=_FAST, error_model="numpy", boundscheck=False, inline="always")
def _block1x4(a, w, out, r, n):
    w0 = w[n]
    w1 = w[n + 1]
    w2 = w[n + 2]
    w3 = w[n + 3]
    a0 = a[r]
    s00 = s01 = s02 = s03 = a.dtype.type(0)
    for k in range(a.shape[1]):
        s00 += a0[k] * w0[k]
        s01 += a0[k] * w1[k]
        s02 += a0[k] * w2[k]
        s03 += a0[k] * w3[k]
    out[r, n] = s00
    out[r, n + 1] = s01
    out[r, n + 2] = s02
    out[r, n + 3] = s03


@njit(fastmath=_FAST, error_model="numpy", boundscheck=False, inline="always")
def _dot1(a, w, out, r, n):
    w0 = w[n]
    a0 = a[r]
    s00 = a.dtype.type(0)
    for k in range(a.shape[1]):
        s00 += a0[k] * w0[k]
    out[r, n] = s00


@njit(cache=True, fastmath=_FAST, error_model="numpy", boundscheck=False)
def rows_dot(a, w, out, wide):
    """out = a @ w.T. Rows go in blocks of 8 (when `wide`), then 4, then one at a time; a row
    block stays in L1 while all of w streams past it."""
    R = a.shape[0]
    N = w.shape[0]
    N2 = N - N % 2
    N4 = N - N % 4
    r = 0
    if wide:
        while r + 8 <= R:
            for n in range(0, N2, 2):
                _block8x2(a, w, out, r, n)
            for n in range(N2, N):
                for q in range(8):
                    _dot1(a, w, out, r + q, n)
            r += 8
    while r + 4 <= R:
        for n in range(0, N2, 2):
            _block4x2(a, w, out, r, n)
        for n in range(N2, N):
            for q in range(4):
                _dot1(a, w, out, r + q, n)
        r += 4
    while r < R:
        for n in range(0, N4, 4):
            _block1x4(a, w, out, r, n)
        for n in range(N4, N):
            _dot1(a, w, out, r, n)
        r += 1
