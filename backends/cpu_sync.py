"""A spin barrier for the threads of one Numba parallel loop, from LLVM atomics.

Shapes: counter (1,) int64, zero before the loop; every thread calls barrier(counter, n, s)
once per round s = 1, 2, ... and returns when all n threads have arrived at round s.

Why: with a batch of one or two rows the batch cannot be split across threads, so the
hidden units are: each thread owns a slice of them (and of w_hh, which then fits its L2) and
every time step ends with an exchange of h. A fork/join per step costs about as much as the
step itself (5-10 us); a spin on a shared counter costs well under a microsecond. A thread
that has spun for a while yields its core instead (SPINS_BEFORE_YIELD), so that a partner
that is not running gets one. Numba has
no CPU atomics, hence the intrinsics. It is only safe where every iteration of the prange
runs on its own thread at the same time: the caller checks the threading layer (OpenMP or
workqueue, not TBB, whose tasks may run one after another on a thread).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .kernel_cache import CPU_KERNELS


@intrinsic
def _fetch_add(typingctx, arr, value):
    """Atomically add value to arr[0] (int64, sequentially consistent)."""
    sig = types.int64(arr, value)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", ary.data, args[1], "seq_cst")
    return sig, codegen


@intrinsic
def _load_acquire(typingctx, arr):
    """arr[0] read with acquire ordering (and never hoisted out of a spin loop)."""
    sig = types.int64(arr)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(ary.data, "acquire", 8, typ=ir.IntType(64))
    return sig, codegen


@intrinsic
def _pause(typingctx):
    """x86 `pause`: a spinning core yields its pipeline to its sibling and saves power."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause",
                                              fnty=ir.FunctionType(ir.VoidType(), []))
        builder.call(fn, [])
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _sched_yield(typingctx):
    """libc's sched_yield(): give the core to another runnable thread (a system call, ~1 us)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                            "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return sig, codegen


#: Pauses a thread spins at a barrier before it yields its core at every further check. The
#: partner threads of a step normally arrive within a few microseconds, far inside this
#: (4096 pauses are 100-200 us); one that is not running (a busy machine, another caller's
#: threads, more threads than cores) only gets a core if the spinning ones give theirs up:
#: without yielding, B=1 inference on this 2-core machine with other processes running took
#: 626 ms per call instead of ~1 ms.
SPINS_BEFORE_YIELD = 4096


@njit(error_model="numpy")
def barrier(counter, n_threads, round_):
    """Return once all n_threads threads have called barrier(counter, n_threads, round_).
        counter   (1,) int64  shared by the threads, zero before the first round
        n_threads int         threads taking part (every iteration of the caller's prange)
        round_    int         1 for the first call of a thread, 2 for its second, ...
    """
    _fetch_add(counter, 1)
    target = n_threads * round_
    spins = 0
    while _load_acquire(counter) < target:
        if spins < SPINS_BEFORE_YIELD:
            _pause()
            spins += 1
        else:
            _sched_yield()


@CPU_KERNELS.jit(parallel=True, error_model="numpy")
def _start_threads(out):
    """Starts Numba's thread pool (and so its threading layer).
        out  (n,) int64  out[k] = k, written by the prange's iterations
    """
    for k in prange(out.size):
        out[k] = k


_RUN_TOGETHER: list[bool] = []      # the answer, once known: a process keeps its threading layer


def threads_run_together() -> bool:
    """Whether Numba's threading layer runs the iterations of a prange over at most
    get_num_threads() items on separate threads at once, so a barrier between them is safe."""
    if not _RUN_TOGETHER:
        try:
            layer = numba.threading_layer()
        except ValueError:                      # no parallel region has run yet: start one
            _start_threads(np.zeros(numba.get_num_threads(), np.int64))
            layer = numba.threading_layer()
        _RUN_TOGETHER.append(layer in ("omp", "workqueue"))
    return _RUN_TOGETHER[0]
