"""Matrix products of the `cpu` backend: a SIMD micro-kernel in LLVM IR, driven from Numba.

Shapes:
    a    (R, K)          the left operand, any strides (a transposed view is fine)
    w    (K, N)          the right operand, any strides; packed once into
    wp   (P, K, NR)      P = ceil(N / NR) panels of NR columns, each (K, NR) contiguous and
                         zero-padded past N, so that a panel's row for step k is one or two
                         vector loads and a panel stays in L1/L2 while row blocks pass it
    out  (R, N)          out = a @ w, or out += a @ w
In the LSTM: per step z = h (Bc, H) @ w_hh.T (K = H, N = 4H gates i, f, g, o) forward and
dh = d_pre (Bc, 4H) @ w_hh backward; after the loops the products over all T*B rows.

Why not BLAS or plain Numba loops: the per-step products are thin (1-32 rows) and come once a
step, which OpenBLAS serves at 40-90 GFLOP/s per core here (it packs its operands on every
call; this environment also pins it to AVX2 kernels). LLVM will not keep a register block of
vector sums in registers from a Numba loop nest, so the kernel is written as IR: an MR x NR
block of out lives in MR * NV vector registers (NV vectors of VW lanes across NR = NV * VW
columns); each step k of the reduction loads NV vectors of the panel, broadcasts MR values
of a, and does MR * NV fused multiply-adds. Measured on one Zen 5 core (AVX-512, float32):
200-240 GFLOP/s on 16x256 @ 256x1024 and 16x1024 @ 1024x256; OpenBLAS 76-90.

Register budget: AVX-512 has 32 vector registers: MR = 8, NV = 2 uses 16 for sums. Without
AVX-512 (16 registers) MR = 4, NV = 2 uses 8. Leftover rows go in blocks of 4, 2 and 1. VW
is the vector width in elements of the dtype (64 or 32 bytes), so float64 panels are half as
wide as float32 ones.
"""

from __future__ import annotations

import llvmlite.binding as ll
import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def has_wide_vectors() -> bool:
    """Whether Numba compiles for AVX-512 here (32 vector registers of 64 bytes)."""
    features = numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


NV = 2              # vectors per panel row


def _block(MR: int, vector_bytes: int, KU: int = 1):
    """An intrinsic kernel(a, wp, out, r, p, k0, k1, ncols, acc): for rows r..r+MR-1 of a and
    panel p, out[r + i, p*NR + c] (+)= sum_{k0 <= k < k1} a[r + i, k] * wp[p, k, c] for the
    first `ncols` columns c of the panel (the rest are padding and are not stored)."""

    @intrinsic
    def kernel(typingctx, a, wp, out, r, p, k0, k1, ncols, acc):
        sig = types.void(a, wp, out, r, p, k0, k1, ncols, acc)

        def codegen(context, builder, sig, args):
            aty, wty, oty = sig.args[:3]
            fty = context.get_value_type(aty.dtype)
            size = aty.dtype.bitwidth // 8
            VW = vector_bytes // size
            vty = ir.VectorType(fty, VW)
            i64, i32, i1 = ir.IntType(64), ir.IntType(32), ir.IntType(1)
            mty = ir.VectorType(i1, VW)
            A = context.make_array(aty)(context, builder, args[0])
            W = context.make_array(wty)(context, builder, args[1])
            O = context.make_array(oty)(context, builder, args[2])
            r_, p_, k0_, k1_, ncols_, acc_ = args[3:]
            a_s = cgutils.unpack_tuple(builder, A.strides, 2)
            w_s = cgutils.unpack_tuple(builder, W.strides, 3)
            o_s = cgutils.unpack_tuple(builder, O.strides, 2)
            a_base = builder.ptrtoint(A.data, i64)
            w_base = builder.ptrtoint(W.data, i64)
            o_base = builder.ptrtoint(O.data, i64)
            vptr, sptr = vty.as_pointer(), fty.as_pointer()
            name = f"v{VW}f{size * 8}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.{name}")
            mload = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vptr, i32, mty, vty]),
                f"llvm.masked.load.{name}.p0")
            mstore = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vty, vptr, i32, mty]),
                f"llvm.masked.store.{name}.p0")
            align = ir.Constant(i32, size)

            def const(v):
                return ir.Constant(i64, v)

            def at(base, strides, *idx):
                off = base
                for i, s in zip(idx, strides, strict=False):
                    off = builder.add(off, builder.mul(i, s))
                return off

            # lanes of vector j that hold real columns: j*VW + lane < ncols
            lanes = ir.Constant(ir.VectorType(i64, VW), list(range(VW)))
            masks = []
            for j in range(NV):
                limit = builder.sub(ncols_, const(j * VW))
                splat = builder.shuffle_vector(
                    builder.insert_element(ir.Constant(ir.VectorType(i64, VW), ir.Undefined),
                                           limit, ir.Constant(i32, 0)),
                    ir.Constant(ir.VectorType(i64, VW), ir.Undefined),
                    ir.Constant(ir.VectorType(i32, VW), [0] * VW))
                masks.append(builder.icmp_signed("<", lanes, splat))

            def out_ptr(i, j):
                row = builder.add(r_, const(i))
                col = builder.add(builder.mul(p_, const(NV * VW)), const(j * VW))
                return builder.inttoptr(at(o_base, o_s, row, col), vptr)

            # KU sets of sums take consecutive reduction steps in turn: with one row, a single
            # set would wait on the FMA latency (4 cycles) instead of loading the next step
            sums = [[[cgutils.alloca_once(builder, vty) for _ in range(NV)] for _ in range(MR)]
                    for _ in range(KU)]
            zero = ir.Constant(vty, None)
            for u in range(KU):
                for i in range(MR):
                    for j in range(NV):
                        builder.store(zero, sums[u][i][j])
            # the sums start at zero, or at out's values when accumulating
            with builder.if_then(builder.icmp_unsigned("!=", acc_, ir.Constant(acc_.type, 0))):
                for i in range(MR):
                    for j in range(NV):
                        builder.store(builder.call(mload, [out_ptr(i, j), align, masks[j], zero]),
                                      sums[0][i][j])

            zero_idx = ir.Constant(ir.VectorType(i32, VW), [0] * VW)
            undef = ir.Constant(vty, ir.Undefined)

            def step(k, u):
                panel_row = at(w_base, w_s, p_, k)
                wv = [builder.load(builder.inttoptr(builder.add(panel_row, const(j * VW * size)),
                                                    vptr), align=size, typ=vty)
                      for j in range(NV)]
                for i in range(MR):
                    s = builder.load(builder.inttoptr(
                        at(a_base, a_s, builder.add(r_, const(i)), k), sptr), typ=fty)
                    bcast = builder.shuffle_vector(
                        builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, zero_idx)
                    for j in range(NV):
                        cur = builder.load(sums[u][i][j], typ=vty)
                        builder.store(builder.call(fma, [bcast, wv[j], cur]), sums[u][i][j])

            steps = builder.sub(k1_, k0_)
            rounds = builder.sdiv(steps, const(KU))
            with cgutils.for_range(builder, rounds) as loop:
                base = builder.add(k0_, builder.mul(loop.index, const(KU)))
                for u in range(KU):
                    step(builder.add(base, const(u)), u)
            done = builder.mul(rounds, const(KU))
            with cgutils.for_range(builder, builder.sub(steps, done)) as loop:
                step(builder.add(builder.add(k0_, done), loop.index), 0)

            for i in range(MR):
                for j in range(NV):
                    total = builder.load(sums[0][i][j], typ=vty)
                    for u in range(1, KU):
                        total = builder.fadd(total, builder.load(sums[u][i][j], typ=vty))
                    builder.call(mstore, [total, out_ptr(i, j), align, masks[j]])
            return context.get_dummy_value()

        return sig, codegen

    return kernel


# The wide kernels compile on any x86-64 host (LLVM splits 64-byte vectors where AVX-512 is
# missing), so both sets are always available and the tests run both.
# Fewer rows than 8 (4) are done in blocks of 4, 2 and 1, so that the panel is streamed
# once per block; the thin blocks take two or four sets of sums (see KU).
_WIDE8, _WIDE4 = _block(8, 64), _block(4, 64)
_WIDE2, _WIDE1 = _block(2, 64, KU=2), _block(1, 64, KU=4)
_NARROW4, _NARROW2, _NARROW1 = _block(4, 32), _block(2, 32, KU=2), _block(1, 32, KU=4)


def panel_width(dtype_size: int, wide: bool) -> int:
    """NR: columns per panel for this item size."""
    return NV * (64 if wide else 32) // dtype_size


def pack(w, wide: bool):
    """w (K, N), any strides -> wp (P, K, NR), zero-padded: see the module docstring."""
    K, N = w.shape
    NR = panel_width(w.itemsize, wide)
    P = -(-N // NR)
    if N != P * NR:
        padded = np.zeros((K, P * NR), w.dtype)
        padded[:, :N] = w
        w = padded
    # splitting N is a view for any strides; numpy's copy then reads a transposed w in order
    return np.ascontiguousarray(w.reshape(K, P, NR).transpose(1, 0, 2))


@njit(error_model="numpy", boundscheck=False)
def store_packed(wp, m, src, col):
    """Write src (1D) into row m of packed panels wp (P, M, NR), from column `col` on: the
    packed layout of a (M, N) matrix built one row at a time."""
    NR = wp.shape[2]
    i = 0
    while i < src.size:
        q, off = col // NR, col % NR
        n = min(NR - off, src.size - i)
        wp[q, m, off:off + n] = src[i:i + n]
        i += n
        col += n


@njit(cache=True, error_model="numpy", boundscheck=False)
def gemm(a, wp, out, wide, k0, k1, acc):
    """out (+)= a[:, k0:k1] @ w[k0:k1] for w packed as wp, on the calling thread."""
    R = a.shape[0]
    N = out.shape[1]
    NR = wp.shape[2]
    for p in range(wp.shape[0]):
        ncols = min(NR, N - p * NR)
        r = 0
        while wide and r + 8 <= R:
            _WIDE8(a, wp, out, r, p, k0, k1, ncols, acc)
            r += 8
        while r + 4 <= R:
            if wide:
                _WIDE4(a, wp, out, r, p, k0, k1, ncols, acc)
            else:
                _NARROW4(a, wp, out, r, p, k0, k1, ncols, acc)
            r += 4
        if r + 2 <= R:
            if wide:
                _WIDE2(a, wp, out, r, p, k0, k1, ncols, acc)
            else:
                _NARROW2(a, wp, out, r, p, k0, k1, ncols, acc)
            r += 2
        if r < R:
            if wide:
                _WIDE1(a, wp, out, r, p, k0, k1, ncols, acc)
            else:
                _NARROW1(a, wp, out, r, p, k0, k1, ncols, acc)


#: Reduction steps per pass over a panel in the products over all rows: a block of 8 rows
#: of a and a panel's (KC, NR) slab stay in L1 together (8 * 256 * 4 + 256 * 32 * 4 = 40 KiB).
KC = 256


@njit(cache=True, parallel=True, error_model="numpy")
def gemm_rows(a, wp, out, wide, n_chunks):
    """out = a @ w for many rows: the rows split across threads (in multiples of 8), the
    reduction cut into blocks of KC."""
    R, K = a.shape
    for c in prange(n_chunks):
        r0 = min(R, (c * R // n_chunks + 7) // 8 * 8)
        r1 = R if c == n_chunks - 1 else min(R, ((c + 1) * R // n_chunks + 7) // 8 * 8)
        for k0 in range(0, K, KC):
            gemm(a[r0:r1], wp, out[r0:r1], wide, k0, min(k0 + KC, K), k0 > 0)
