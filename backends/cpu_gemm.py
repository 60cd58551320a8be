"""Matrix products of the `cpu` backend: a SIMD micro-kernel in LLVM IR, driven from Numba.

Shapes:
    a    (R, K)          the left operand, any strides (a transposed view is fine)
    w    (K, N)          the right operand, any strides; packed once into
    wp   (P, K, NR)      P = ceil(N / NR) panels of NR columns, each (K, NR) contiguous and
                         zero-padded past N, so that a panel's row for step k is one or two
                         vector loads and a panel stays in L1/L2 while row blocks pass it
    out  (R, N)          out = a @ w, or out += a @ w
In the LSTM (names of base.py's glossary): per step h_prev (Bc, H) @ w_hh.T (K = H, N = 4H
gates i, f, g, o), the recurrent part of `pre`, forward and d_pre (Bc, 4H) @ w_hh backward;
after the loops the products over all T*B rows.

Why not BLAS or plain Numba loops: the per-step products are thin (1-32 rows) and come once a
step, which OpenBLAS serves at 40-90 GFLOP/s per core here (it packs its operands on every
call; this environment also pins it to AVX2 kernels). LLVM will not keep a register block of
vector sums in registers from a Numba loop nest, so the kernel is written as IR: an MR x NR
block of out lives in MR * NV vector registers (NV vectors of VW lanes across NR = NV * VW
columns); each step k of the reduction loads NV vectors of the panel, broadcasts MR values
of a, and does MR * NV fused multiply-adds. Measured on one Zen 5 core (AVX-512, float32):
200-240 GFLOP/s on 16x256 @ 256x1024 and 16x1024 @ 1024x256; OpenBLAS 76-90.

The IR is checked against `block_twin`, the same kernel in plain Numba loops, and NumPy
(tests/test_cpu_kernels.py); each IR idiom it relies on is explained where it is used.

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

from .kernel_cache import CPU_KERNELS


def has_wide_vectors() -> bool:
    """Whether Numba compiles for AVX-512 here (32 vector registers of 64 bytes)."""
    features = numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


NV = 2              # vectors per panel row


def _block(MR: int, vector_bytes: int, KU: int = 1):
    """The register-blocked kernel for MR rows, as a Numba intrinsic (callable from compiled
    code only); `block_twin(MR)` is the same computation in plain loops, its test oracle.

    kernel(a, wp, out, r, p, k0, k1, ncols, acc), for i < MR and c < ncols:
        out[r + i, p*NR + c] (+)= sum over k0 <= k < k1 of a[r + i, k] * wp[p, k, c]
    a      (R, K)      the left operand, any strides; rows r .. r+MR-1 are read
    wp     (P, K, NR)  the packed right operand (`pack`); panel p is read
    out    (R, N)      the product, any strides; rows r .. r+MR-1, columns p*NR .. +ncols
    r      int64       the block's first row
    p      int64       the panel: output columns p*NR .. p*NR + NR - 1
    k0, k1 int64       the part of the reduction summed, [k0, k1)
    ncols  int64       how many of the panel's NR columns exist in out (the last panel's
                       padding columns are neither read nor written)
    acc    bool        add to out's values (True) or overwrite them (False)
    MR rows of NR = NV * VW columns: VW = vector_bytes / itemsize lanes per vector. KU sets
    of sums take the reduction steps in turn (KU > 1 for thin blocks, see below).
    """

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
            # IR idiom, byte strides: Numba's array strides count bytes, so an element's
            # address is computed as an integer, data + sum(index * stride), and cast back
            # with inttoptr. That serves any strides (a transposed `a` is a plain view).
            a_s = cgutils.unpack_tuple(builder, A.strides, 2)
            w_s = cgutils.unpack_tuple(builder, W.strides, 3)
            o_s = cgutils.unpack_tuple(builder, O.strides, 2)
            a_base = builder.ptrtoint(A.data, i64)
            w_base = builder.ptrtoint(W.data, i64)
            o_base = builder.ptrtoint(O.data, i64)
            # IR idiom, opaque pointers: LLVM (15 and later, here through llvmlite) has one
            # pointer type without an element type, so every load names the type it reads
            # (`typ=`), and the overloaded intrinsics are named by address space (`.p0`),
            # not by what the pointer points to.
            vptr, sptr = vty.as_pointer(), fty.as_pointer()
            name = f"v{VW}f{size * 8}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                                 f"llvm.fma.{name}")
            # IR idiom, masked loads and stores: `out` has no padding, so the last panel's
            # vectors may reach past its last column (or past the array). A masked load or
            # store touches only the lanes whose mask bit is set; the others are not
            # accessed at all (no fault) and a masked load gives the pass-through value there.
            mload = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vptr, i32, mty, vty]),
                f"llvm.masked.load.{name}.p0")
            mstore = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [vty, vptr, i32, mty]),
                f"llvm.masked.store.{name}.p0")
            # panels and rows of out are aligned to an element only, not to a vector
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
            # set would wait on the FMA latency (4 cycles) instead of loading the next step.
            # IR idiom, allocas for mem2reg: each vector of sums is a stack slot (alloca_once
            # puts it in the entry block), loaded and stored around every FMA. LLVM's
            # mem2reg/SROA pass turns such slots into SSA values, so the MR * NV sums live in
            # vector registers for the whole loop, which a Numba loop nest does not achieve.
            sums = [[[cgutils.alloca_once(builder, vty) for _ in range(NV)] for _ in range(MR)]
                    for _ in range(KU)]
            # IR idiom, zero constants: a Constant with value None is LLVM's zeroinitializer
            # (a vector of 0.0 here), also the masked load's pass-through for unused lanes.
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
                # a broadcast is an insertelement into lane 0 and a shufflevector whose
                # mask is all zeros (LLVM's splat idiom; it becomes one vbroadcastss/sd)
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


def block_twin(MR: int):
    """The kernel of `_block(MR, ...)` in plain Numba loops: same arguments, same result up
    to rounding (it sums k in order, without FMA). The test oracle of the IR kernels."""

    @njit(error_model="numpy", boundscheck=True)
    def twin(a, wp, out, r, p, k0, k1, ncols, acc):
        NR = wp.shape[2]
        for i in range(MR):
            for c in range(ncols):
                s = out[r + i, p * NR + c] if acc else out.dtype.type(0)
                for k in range(k0, k1):
                    s += a[r + i, k] * wp[p, k, c]
                out[r + i, p * NR + c] = s
    return twin


#: Every block kernel gemm uses, by (rows MR, wide), for the tests.
BLOCKS = {(8, True): _WIDE8, (4, True): _WIDE4, (2, True): _WIDE2, (1, True): _WIDE1,
          (4, False): _NARROW4, (2, False): _NARROW2, (1, False): _NARROW1}


def panel_width(dtype_size: int, wide: bool) -> int:
    """NR: columns per panel for an item size in bytes (wide: AVX-512's 64-byte vectors)."""
    return NV * (64 if wide else 32) // dtype_size


def pack(w, wide: bool):
    """w (K, N), any strides -> wp (P, K, NR), P = ceil(N / NR) panels of NR columns, each
    (K, NR) contiguous, zero past column N (see the module docstring); `wide` picks NR."""
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
    """Write a row segment into packed panels: the layout of `pack` built one row at a time.
        wp   (P, M, NR)  the packed panels of an (M, N) matrix, written in place
        m    int         the row written
        src  (n,)        the values, for columns col .. col + n - 1 of row m
        col  int         the first column written
    """
    NR = wp.shape[2]
    i = 0
    while i < src.size:
        q, off = col // NR, col % NR
        n = min(NR - off, src.size - i)
        wp[q, m, off:off + n] = src[i:i + n]
        i += n
        col += n


@CPU_KERNELS.jit(error_model="numpy", boundscheck=False)
def gemm(a, wp, out, wide, k0, k1, acc):
    """out (+)= a[:, k0:k1] @ w[k0:k1] for w packed as wp, on the calling thread.
        a      (R, K)      the left operand, any strides
        wp     (P, K, NR)  w (K, N) packed by `pack` with the same `wide`
        out    (R, N)      the product, written (acc False) or added to (acc True)
        wide   bool        AVX-512 register blocking (8-row blocks of 64-byte vectors)
        k0, k1 int         the part of the reduction summed, [k0, k1)
        acc    bool        add to out instead of overwriting it
    """
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


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def gemm_rows(a, wp, out, wide, n_chunks):
    """out = a @ w for many rows: the rows split across threads (in multiples of 8), the
    reduction cut into blocks of KC.
        a        (R, K)      the left operand, any strides
        wp       (P, K, NR)  w (K, N) packed by `pack` with the same `wide`
        out      (R, N)      the product, overwritten
        wide     bool        AVX-512 register blocking
        n_chunks int         threads (row slices) to split the rows across
    """
    R, K = a.shape
    for c in prange(n_chunks):
        r0 = min(R, (c * R // n_chunks + 7) // 8 * 8)
        r1 = R if c == n_chunks - 1 else min(R, ((c + 1) * R // n_chunks + 7) // 8 * 8)
        for k0 in range(0, K, KC):
            gemm(a[r0:r1], wp, out[r0:r1], wide, k0, min(k0 + KC, K), k0 > 0)
