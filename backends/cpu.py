"""The `cpu` backend: Numba-compiled time loops around a SIMD GEMM micro-kernel.

Shapes: T steps, B batch, I inputs, H hidden, G = 4H gates (i, f, g, o); time-major.
Per layer-direction (see cpu_kernels for the shapes):
    forward   time loop in cpu_kernels.forward_loop: per step [x_t, h] @ [w_ih, w_hh].T
              (or h @ w_hh.T plus x @ w_ih.T hoisted out of the loop for thin batch
              slices), bias and the gate math fused after it
    backward  time loop in cpu_kernels.backward_loop: fused gate gradients, then
              [dx_t, dh] = d_pre @ [w_ih, w_hh] per step (or dh only, and dx after the loop)
              [dW_ih, dW_hh] = d_pre.T @ [x, h_prev] as one product over all T*B rows
Weights are packed into panels (cpu_gemm.pack) once per call; everything runs on Numba's
threads, and no BLAS is called. The saved activations (gates, c_prev, xh) are named as in
base.py's glossary.

This module imports without Numba (the registry asks `CpuBackend.unavailable_reason()`
before anything is compiled); numba, threadpoolctl and the kernel modules cpu_gemm and
cpu_kernels are imported when a CpuBackend is made and, for speed of reading, inside the
methods that call them (an import of a loaded module is a dictionary look-up).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..errors import ArgumentError, ArgumentTypeError, CallOrderError
from .base import Backend, check_layer_inputs, check_upstream
from .host import cpu_model, usable_cores

_controller = None
_controller_modules = -1


def _blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded. Scanning them takes milliseconds, so
    it is made again only when modules were imported since (a BLAS library comes with an
    import: scipy brings a second OpenBLAS, which the first view would leave unlimited)."""
    global _controller, _controller_modules
    if _controller is None or len(sys.modules) != _controller_modules:
        from threadpoolctl import ThreadpoolController
        _controller, _controller_modules = ThreadpoolController(), len(sys.modules)
    return _controller


class _Nested:
    """A context any number of threads may be inside at once, nested: ``first()`` runs when
    the first enters and ``last()`` when the last leaves, both under ``lock``."""

    def __init__(self, lock, first, last):
        self.lock, self.first, self.last = lock, first, last
        self.depth = 0

    @contextlib.contextmanager
    def __call__(self):
        with self.lock:
            if not self.depth:
                self.first()
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if not self.depth:
                    self.last()


class _BlasOneThread:
    """Sessions in which numpy's BLAS runs on one thread: the kernels already use every core,
    and a second pool of spinning threads would oversubscribe them. One limit for any number
    of overlapping sessions (several Python threads predicting at once): threadpoolctl's limit
    restores what it saw when it began, so two overlapping ones ending in the other order
    would leave BLAS on one thread for good."""

    def __init__(self):
        self._limit = None
        self.held = _Nested(threading.Lock(), self._on, self._off)

    def _on(self):
        _take_blas_control()
        self._limit = _blas_controller().limit(limits=1, user_api="blas")

    def _off(self):
        _take_blas_control()
        self._limit.restore_original_limits()
        self._limit = None


def _take_blas_control() -> None:
    """Let this thread set OpenBLAS's process-wide thread count. threadpoolctl (3.6+) lets
    only the first thread that set it change it, and silently ignores every other thread
    (so a session opened in a worker thread left BLAS unlimited, and one closed there left it
    limited). _BlasOneThread's lock already serialises our changes."""
    import threadpoolctl
    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


_blas_one_thread = _BlasOneThread()


class ArrayPool:
    """Large arrays a step is done with (saved gates, cell states, xh, d_pre, x_proj), kept
    while a session is open and handed out again for the next step's arrays, within a byte cap.

    Without reuse each step's large arrays are fresh pages from the kernel (malloc maps them
    and unmaps them on free), and faulting them in and zero-filling them costs ~10% of a char
    training step (benchmarks/cpu_kernels.py, workspace). Reuse by exact (shape, dtype), as
    this pool first did, grows without bound under length-bucketed batches: every distinct T
    keeps its own arrays for the whole session (4.5 GiB in the default language-id run,
    issue 11). So blocks are kept by size class instead: a request of n bytes is served by a
    free block of its class or of a class up to 2x larger (a view of its first n bytes, C
    contiguous, of the requested shape and dtype), and a new block is made in its class
    otherwise. Classes are 8 per doubling (a block is at most 9% larger than the request
    that made it). The free blocks held never exceed `cap` bytes: giving one back beyond it
    drops the least recently given ones. Arrays never given back (a forward without its
    backward) are freed by Python as usual. Thread-safe; cleared when the last session
    closes."""

    #: Size classes per doubling of the size.
    CLASSES_PER_DOUBLING = 8

    def __init__(self, cap: int):
        self.cap = cap
        self._lock = threading.Lock()
        self.opened = _Nested(self._lock, lambda: None, self._clear)
        self._made = weakref.WeakValueDictionary()     # id -> every block made, while alive
        self._free: dict[int, list[int]] = {}          # class -> ids of free blocks
        self._held: OrderedDict = OrderedDict()        # id -> (class, block), oldest given first
        self.held = 0                                  # bytes of the free blocks
        self.hits = self.misses = self.evicted = 0

    @classmethod
    def size_class(cls, nbytes: int) -> int:
        """The smallest class whose blocks hold ``nbytes``."""
        if nbytes <= 4096:
            # every class below a page's holds one page: without this the loop below walks
            # down through all of them (~100 steps: a tenth of a B=1 streaming step)
            return 0
        c = max(0, math.ceil(math.log2(max(nbytes, 1)) * cls.CLASSES_PER_DOUBLING))
        while c and cls.class_bytes(c - 1) >= nbytes:   # guard the rounding of log2
            c -= 1
        while cls.class_bytes(c) < nbytes:
            c += 1
        return c

    @classmethod
    def class_bytes(cls, c: int) -> int:
        """Bytes of a block of class ``c``: 2**(c / CLASSES_PER_DOUBLING) in whole pages."""
        size = math.ceil(2.0 ** (c / cls.CLASSES_PER_DOUBLING))
        return -(-size // 4096) * 4096

    def empty(self, shape, dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        c = self.size_class(nbytes)
        block = None
        with self._lock:
            for cc in range(c, c + self.CLASSES_PER_DOUBLING + 1):
                if self._free.get(cc):
                    _, block = self._held.pop(self._free[cc].pop())
                    self.held -= block.nbytes
                    self.hits += 1
                    break
            else:
                self.misses += 1
        if block is None:
            block = np.empty(self.class_bytes(c), np.uint8)
            with self._lock:
                self._made[id(block)] = block
        return block[:nbytes].view(dtype).reshape(shape)

    def give(self, *arrays) -> None:
        """Arrays from ``empty`` that nothing reads any more (anything else is ignored)."""
        with self._lock:
            if not self.opened.depth:
                return
            for a in arrays:
                block = a
                while isinstance(block.base, np.ndarray):
                    block = block.base
                key = id(block)
                if self._made.get(key) is not block or key in self._held:
                    continue
                c = self.size_class(block.nbytes)
                self._free.setdefault(c, []).append(key)
                self._held[key] = (c, block)
                self.held += block.nbytes
            while self.held > self.cap:
                key, (c, block) = self._held.popitem(last=False)
                self._free[c].remove(key)
                self.held -= block.nbytes
                self.evicted += 1

    def _clear(self):
        self._free.clear()
        self._held.clear()
        self.held = 0


class _PackedWeights:
    """One layer-direction's weights in the layouts the forward variants multiply by, each
    packed into product panels (cpu_gemm.pack) the first time it is asked for and kept:
    for one call (what layer_forward makes when it gets no `prepared`), or for as long as the
    caller keeps it (CpuBackend.prepare: streams, predictors; packing costs about as much as a
    step of a short sequence: 0.2 ms at H=256, 1.8 ms at H=512 with I=512)."""

    def __init__(self, w_ih, w_hh, bias, wide: bool):
        self.w_ih, self.w_hh = np.ascontiguousarray(w_ih), np.ascontiguousarray(w_hh)
        self.bias = np.ascontiguousarray(bias, dtype=self.w_hh.dtype)
        self.wide = wide
        self._packs: dict = {}

    def _get(self, key, make):
        packed = self._packs.get(key)
        if packed is None:
            packed = self._packs[key] = make()
        return packed

    def fused(self):
        """[w_ih, w_hh].T: the step product of [x_t, h] (I + H, G)."""
        from .cpu_gemm import pack
        return self._get("fused", lambda: pack(np.concatenate([self.w_ih, self.w_hh], axis=1).T, self.wide))

    def ih(self):
        """w_ih.T (I, G): the hoisted input projection."""
        from .cpu_gemm import pack
        return self._get("ih", lambda: pack(self.w_ih.T, self.wide))

    def hh(self):
        """w_hh.T (H, G): the step product of h when the projection is hoisted."""
        from .cpu_gemm import pack
        return self._get("hh", lambda: pack(self.w_hh.T, self.wide))

    def units(self, n: int):
        """(n, P, H, NR): for each thread of forward_split_loop, w_hh.T's columns of its
        hidden units' four gates, packed; panels past a thread's columns stay zero."""
        return self._get(("units", n), lambda: self._unit_parts(n))

    def _unit_parts(self, n: int):
        from .cpu_gemm import pack
        w_hh = self.w_hh
        H = w_hh.shape[1]
        parts = []
        for k in range(n):
            units = np.arange(k * H // n, (k + 1) * H // n)
            rows = np.concatenate([units + q * H for q in range(4)])
            parts.append(pack(w_hh[rows].T, self.wide))
        out = np.zeros((n, max(p.shape[0] for p in parts)) + parts[0].shape[1:], w_hh.dtype)
        for k, p in enumerate(parts):
            out[k, :p.shape[0]] = p
        return out


class CpuBackend(Backend):
    name = "cpu"
    xp = np
    needs = ("numba", "threadpoolctl")
    #: A thread with at least this many batch rows folds the input projection into its
    #: per-step product ([x_t, h] @ [w_ih, w_hh].T), so x @ w_ih.T is never written out and
    #: read back; thinner slices hoist it into one product over all steps, since their
    #: per-step products are bound by loading the weights (a 1-row block runs at ~1/4 the
    #: rate of an 8-row one).
    fuse_from_rows = 4
    #: Inference on fewer batch rows than threads splits the hidden units across the threads
    #: instead (each owns a slice of w_hh, and a barrier ends every step), where each thread
    #: gets at least this many units (latency shape: benchmarks/cpu_kernels.py, hidden_split).
    split_units_from = 32
    #: Bytes of free arrays a session keeps for the next steps (ArrayPool): one training step
    #: of the largest standard benchmark shapes has 170-200 MiB of them outstanding at once
    #: (char, speech-2L-bi), the default language-id run 70 MiB; the cap holds those, so
    #: their steps all reuse, and bounds the rest (benchmarks/memory.py).
    pool_cap = 256 * 2 ** 20
    #: Adam's update as one compiled pass over each parameter (cpu_layers.adam_update) instead
    #: of NumPy's eleven: 2.3 ms against 21 per step for the default language-id model's 6.5
    #: million parameters, most of them its n-gram table (benchmarks/layer_kernels.py).
    compiled_adam = True
    #: The gradients' squared norm (for clipping) as one compiled float64 pass over each
    #: gradient (cpu_layers.sum_of_squares) instead of a float64 copy and its sum: 0.48 ms
    #: against 12.7 for the default language-id model's; a whole training step took 81 ms
    #: against 90 with the float32 sum that clipping used before, at T 64 (benchmarks/layer_kernels.py).
    compiled_norm = True

    def __init__(self):
        from . import cpu_gemm, cpu_kernels, cpu_layers  # noqa: F401  (Numba and the kernels load now)
        #: Whether the products use the 64-byte vectors and 8-row register blocks of AVX-512.
        self.wide = cpu_gemm.has_wide_vectors()
        self._pool = ArrayPool(self.pool_cap)
        self._cores = usable_cores()            # read once: a system call, slow on some VMs

    def facts(self) -> dict:
        import numba
        return {
            "threads": numba.get_num_threads(),
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "numba": numba.__version__,
            "threading_layer": _threading_layer(),
            "gemm": ("SIMD micro-kernel, 64-byte vectors, 8-row blocks (AVX-512)" if self.wide
                     else "SIMD micro-kernel, 32-byte vectors, 4-row blocks"),
            # numpy's, for the glue and the suite's GEMM-rate reference; the kernels call none
            "numpy_blas": ", ".join(f"{b['internal_api']} {b.get('version')} ({b.get('architecture')})"
                                    for b in _blas_controller().info() if b.get("user_api") == "blas"),
        }

    def asarray(self, a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype)

    @contextlib.contextmanager
    def session(self):
        # Numba's threads keep spinning between kernels; numpy's BLAS threads in the glue
        # between them would compete with those for the cores (2x slower steps, measured).
        # Inside, each backward step's arrays are reused by the next step (ArrayPool).
        with _blas_one_thread.held(), self._pool.opened():
            yield

    @staticmethod
    def _threads() -> int:
        """Numba's thread count for this call (set_num_threads may change it between calls),
        read once per call: each read takes Numba's launch lock. Numba's setting is per
        calling thread, so a Python thread other than the one that called set_num_threads
        would start at every core: the request is applied here in whichever thread calls."""
        import numba

        from . import requested_threads
        n, wanted = numba.get_num_threads(), requested_threads()
        if wanted is not None and n != wanted:
            numba.set_num_threads(wanted)
            n = wanted
        return n

    @staticmethod
    def _chunks(count: int, threads: int) -> int:
        """Threads for work that splits into `count` independent rows."""
        return max(1, min(threads, count))

    def _fused(self, B: int, threads: int) -> bool:
        return B // self._chunks(B, threads) >= self.fuse_from_rows

    def _split_units(self, B: int, H: int, threads: int) -> int:
        """Threads to split the hidden units across (0: split the batch)."""
        from .cpu_sync import threads_run_together
        # more spinning threads than cores would wait on descheduled ones at every barrier
        n = min(threads, self._cores, H // self.split_units_from)
        if B >= threads or n < 2 or not threads_run_together():
            return 0
        return n

    def prepare(self, w_ih, w_hh, bias):
        return _PackedWeights(w_ih, w_hh, bias, self.wide)

    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep, prepared=None):
        from . import cpu_kernels
        check_layer_inputs(x, w_ih, w_hh, bias, h0, c0, lengths)
        T, B, I = x.shape
        H = w_hh.shape[1]
        G = 4 * H
        dt = x.dtype
        threads = self._threads()
        fused = self._fused(B, threads)
        # without `prepared`, this call's packs are made as they are needed and then dropped
        packs = prepared if prepared is not None else _PackedWeights(w_ih, w_hh, bias, self.wide)
        if not isinstance(packs, _PackedWeights) or packs.w_ih.shape != w_ih.shape \
                or packs.w_hh.shape != w_hh.shape or packs.w_hh.dtype != dt:
            # the kernels index with the packs' shapes: another layer's would read out of bounds
            raise ArgumentError("prepared must be what this backend's prepare() returned for "
                                "weights of these shapes and dtype")
        x = np.ascontiguousarray(x)
        y = np.empty((T, B, H), dt)
        h_n = np.empty((B, H), dt)
        c_n = np.empty((B, H), dt)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        unused = np.empty((1, 1, 1), dt)                 # for the arguments a variant ignores
        n_split = 0 if keep else self._split_units(B, H, threads)
        if n_split:
            x_proj = self._project(x, packs.ih(), G, threads)
            cpu_kernels.forward_split_loop(
                x_proj, packs.bias, packs.units(n_split), np.ascontiguousarray(h0),
                np.ascontiguousarray(c0), lengths, bool(reverse), n_split, self.wide,
                np.zeros(1, np.int64), y, h_n, c_n)
            self._pool.give(x_proj)
            return y, h_n, c_n, None
        if fused:
            x_proj = unused
            w_step = packs.fused()
            gates = self._pool.empty((T, B, G), dt) if keep else unused
        else:
            x_proj = self._project(x, packs.ih(), G, threads)
            w_step = packs.hh()
            gates = x_proj                                # overwritten in place when keep
        if keep:
            from .cpu_gemm import panel_width
            c_prev = self._pool.empty((T, B, H), dt)
            NR = panel_width(dt.itemsize, self.wide)
            xh = self._pool.empty((-(-(I + H) // NR), T * B, NR), dt)
        else:
            c_prev, xh = unused, unused
        cpu_kernels.forward_loop(x, x_proj, packs.bias, w_step, np.ascontiguousarray(h0),
                                 np.ascontiguousarray(c0), lengths, bool(reverse),
                                 self._chunks(B, threads), self.wide, fused, bool(keep), y, h_n, c_n,
                                 gates, c_prev, xh)
        if not keep:
            self._pool.give(x_proj)
        cache = None
        if keep:
            cache = dict(I=I, w_ih=packs.w_ih, w_hh=packs.w_hh, gates=gates, c_prev=c_prev, xh=xh,
                         lengths=lengths, reverse=bool(reverse))
        return y, h_n, c_n, cache

    def _project(self, x, w_ih_packed, G: int, threads: int):
        """x_proj = x @ w_ih.T for every step, (T, B, G), as one product over all T*B rows."""
        from .cpu_gemm import gemm_rows
        T, B, I = x.shape
        x_proj = self._pool.empty((T, B, G), x.dtype)
        gemm_rows(x.reshape(T * B, I), w_ih_packed, x_proj.reshape(T * B, G), self.wide,
                  self._chunks(T * B, threads))
        return x_proj

    def layer_backward(self, cache, dy, dh_n, dc_n):
        from . import cpu_gemm, cpu_kernels
        if not isinstance(cache, dict) or "gates" not in cache:
            raise ArgumentTypeError("cache must be what this backend's layer_forward(keep=True) returned")
        if cache.get("spent"):
            # its arrays went back to the pool and may already hold another step's values
            raise CallOrderError("this forward cache was already backpropagated (each forward can be "
                                 "backpropagated once)")
        I, w_ih, w_hh, gates = cache["I"], cache["w_ih"], cache["w_hh"], cache["gates"]
        T, B, G = gates.shape
        H = G // 4
        check_upstream(T, B, H, dy, dh_n, dc_n)
        dt = gates.dtype
        threads = self._threads()
        wide, fused = self.wide, self._fused(B, threads)
        w_step = cpu_gemm.pack(np.concatenate([w_ih, w_hh], axis=1) if fused else w_hh, wide)
        d_pre = self._pool.empty((T, B, G), dt)
        dbias = np.empty(G, dt)
        dh0 = np.empty((B, H), dt)
        dc0 = np.empty((B, H), dt)
        dx = np.empty((T, B, I), dt)
        cpu_kernels.backward_loop(gates, cache["c_prev"], w_step,
                                  np.ascontiguousarray(dy, dtype=dt),
                                  np.ascontiguousarray(dh_n, dtype=dt),
                                  np.ascontiguousarray(dc_n, dtype=dt), cache["lengths"],
                                  cache["reverse"], self._chunks(B, threads), wide, fused, d_pre, dbias,
                                  dx, dh0, dc0)
        flat = d_pre.reshape(T * B, G)
        if not fused:
            cpu_gemm.gemm_rows(flat, cpu_gemm.pack(w_ih, wide), dx.reshape(T * B, I), wide,
                               self._chunks(T * B, threads))
        dw = np.empty((G, I + H), dt)                     # [dW_ih, dW_hh] in one product
        cpu_gemm.gemm_rows(flat.T, cache["xh"], dw, wide, self._chunks(G, threads))
        # the tape is used up (each forward is backpropagated once)
        cache["spent"] = True
        self._pool.give(gates, cache["c_prev"], cache["xh"], d_pre)
        return dx, np.ascontiguousarray(dw[:, :I]), np.ascontiguousarray(dw[:, I:]), dbias, dh0, dc0

    # -- the layers around the stack: compiled (cpu_layers), equal to engine/layers.py's ----
    def max_over_steps(self, outputs, lengths):
        from ..errors import ArgumentError
        from . import cpu_layers
        outputs = np.ascontiguousarray(outputs)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        if outputs.ndim != 3 or outputs.shape[0] < 1 or lengths.shape != outputs.shape[1:2] \
                or (lengths.size and lengths.min() < 1):
            raise ArgumentError(f"max_over_steps needs outputs (T, B, F) with T >= 1 and lengths (B,) "
                                f">= 1, got shapes {outputs.shape} and {lengths.shape}")
        B, F = outputs.shape[1:]
        best, arg = np.empty((B, F), outputs.dtype), np.empty((B, F), np.int64)
        cpu_layers.max_over_steps(outputs, lengths, best, arg)
        return best, arg

    def embedding_sum(self, weight, ids):
        from ..errors import ArgumentError
        from . import cpu_layers
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != 3 or not ids.shape[0] or weight.ndim != 2 \
                or (ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0])):
            raise ArgumentError(f"embedding_sum needs ids (K>=1, T, B) in [0, {weight.shape[0]}), got shape "
                                f"{ids.shape}")
        out = np.empty(ids.shape[1:] + weight.shape[1:], dtype=weight.dtype)
        cpu_layers.embedding_sum(np.ascontiguousarray(weight), ids, out)
        return out

    def embedding_grad(self, weight, tokens, d_out, out=None):
        from ..errors import ArgumentError
        from . import cpu_layers
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        d_out = np.ascontiguousarray(d_out, dtype=weight.dtype)
        V, E = weight.shape
        if tokens.ndim != 1 or d_out.shape != (tokens.size, E) \
                or (tokens.size and (tokens.min() < 0 or tokens.max() >= V)):
            raise ArgumentError(f"embedding_grad needs tokens (N,) in [0, {V}) and d_out (N, {E}), got "
                                f"shapes {tokens.shape} and {d_out.shape}")
        if out is not None and (out.shape != weight.shape or out.dtype != weight.dtype
                                or not out.flags.c_contiguous):
            raise ArgumentError(f"embedding_grad's out must be a C-contiguous {weight.dtype} array of shape "
                                f"{weight.shape}, got {out.dtype} {out.shape}")
        grad = np.empty_like(weight) if out is None else out
        cpu_layers.embedding_grad(tokens, d_out, grad)
        return grad

    def sum_of_squares(self, a):
        from . import cpu_layers
        if not self.compiled_norm or a.dtype.kind != "f" or not a.flags.c_contiguous:
            return super().sum_of_squares(a)
        return np.float64(cpu_layers.sum_of_squares(a.reshape(-1)))

    def adam_update(self, p, g, m, v, *, lr, betas, eps, step, weight_decay, decoupled):
        from . import cpu_layers
        arrays = (p, g, m, v)
        if not self.compiled_adam or p.dtype.kind != "f" \
                or any(a.dtype != p.dtype or a.shape != p.shape or not a.flags.c_contiguous for a in arrays):
            return super().adam_update(p, g, m, v, lr=lr, betas=betas, eps=eps, step=step,
                                       weight_decay=weight_decay, decoupled=decoupled)
        real = p.dtype.type
        b1, b2 = betas
        l2, decay = (0.0, 1.0 - lr * weight_decay) if decoupled else (weight_decay, 1.0)
        cpu_layers.adam_update(*(a.reshape(-1) for a in arrays), real(l2), real(decay), real(b1), real(1.0 - b1),
                               real(b2), real(1.0 - b2), real(1.0 - b2 ** step), real(eps),
                               real(lr / (1.0 - b1 ** step)))


def _threading_layer() -> str:
    import numba
    try:
        return numba.threading_layer()          # known once a parallel kernel has run
    except ValueError:
        return f"{numba.config.THREADING_LAYER} (not started yet)"
