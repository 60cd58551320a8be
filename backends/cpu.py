"""The `cpu` backend: Numba-compiled time loops around BLAS GEMMs.

Shapes: T steps, B batch, I inputs, H hidden, G = 4H gates (i, f, g, o); time-major.
Per layer-direction:
    forward   x_proj = x (T*B, I) @ w_ih.T + bias      one GEMM over all steps
              time loop in cpu_kernels.forward_loop     per step h @ w_hh.T (cpu_rowdot) and fused gate math
    backward  time loop in cpu_kernels.backward_loop    fused gate gradients, dh = d_pre @ w_hh
                                                        (cpu_rowdot), dbias
              dx = d_pre @ w_ih, dW_ih = d_pre.T @ x, dW_hh = d_pre.T @ h_prev
              as GEMMs over all T*B rows after the loop
All of it runs on Numba's threads, each calling a single-threaded BLAS on its own block.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (loaded now so threadpoolctl sees its BLAS)
from threadpoolctl import ThreadpoolController

from . import cpu_kernels as K
from ..bench import cpu_model
from .base import Backend
from .cpu_rowdot import has_wide_vectors

_controller = None


def _blas_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def _blas_single_threaded():
    """Context in which every BLAS (numpy's and SciPy's, used by Numba) runs on one thread:
    the kernels already use a thread per block, and two pools would oversubscribe the cores."""
    return _blas_controller().limit(limits=1, user_api="blas")


class CpuBackend(Backend):
    name = "cpu"
    xp = np
    #: Whether the per-step products use the 8-row blocking that needs AVX-512's registers.
    wide = has_wide_vectors()

    def facts(self) -> dict:
        return {
            "threads": numba.get_num_threads(),
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "numba": numba.__version__,
            "threading_layer": _threading_layer(),
            "blas": ", ".join(f"{lib['internal_api']} {lib.get('version')} ({lib.get('architecture')})"
                              for lib in _blas_controller().info() if lib.get("user_api") == "blas"),
        }

    def asarray(self, a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype)

    def session(self):
        # Numba's OpenMP threads keep spinning between kernels; numpy's BLAS threads in the
        # glue between them would compete with those for the cores (2x slower steps, measured).
        return _blas_single_threaded()

    @staticmethod
    def _chunks(count: int) -> int:
        """Threads for work that splits into `count` independent rows."""
        return max(1, min(numba.get_num_threads(), count))

    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep):
        T, B, I = x.shape
        H = w_hh.shape[1]
        dt = x.dtype
        n = self._chunks(B)
        x = np.ascontiguousarray(x)
        x_proj = np.empty((T, B, 4 * H), dt)          # becomes the saved gates when keep
        y = np.empty((T, B, H), dt)
        h_n = np.empty((B, H), dt)
        c_n = np.empty((B, H), dt)
        if keep:
            c_all = np.empty((T, B, H), dt)
            h_prev = np.empty((T, B, H), dt)
        else:
            c_all = h_prev = np.empty((1, 1, 1), dt)
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        with _blas_single_threaded():
            K.matmul_rows(x.reshape(T * B, I), np.ascontiguousarray(w_ih.T),
                          x_proj.reshape(T * B, 4 * H), self._chunks(T * B))
            x_proj += bias
            K.forward_loop(x_proj, np.ascontiguousarray(w_hh), np.ascontiguousarray(h0),
                           np.ascontiguousarray(c0), lengths, bool(reverse), n, self.wide,
                           bool(keep), y, h_n, c_n, c_all, h_prev)
        cache = None
        if keep:
            cache = dict(x=x, w_ih=np.ascontiguousarray(w_ih), w_hh=np.ascontiguousarray(w_hh),
                         gates=x_proj, c_all=c_all, h_prev=h_prev,
                         c0=np.ascontiguousarray(c0), lengths=lengths, reverse=bool(reverse))
        return y, h_n, c_n, cache

    def layer_backward(self, cache, dy, dh_n, dc_n):
        x, w_ih, w_hh, gates = cache["x"], cache["w_ih"], cache["w_hh"], cache["gates"]
        T, B, I = x.shape
        G = gates.shape[2]
        H = G // 4
        dt = x.dtype
        n = self._chunks(B)
        d_pre = np.empty((T, B, G), dt)
        dbias = np.empty(G, dt)
        dh0 = np.empty((B, H), dt)
        dc0 = np.empty((B, H), dt)
        dx = np.empty((T, B, I), dt)
        dw_ih = np.empty((G, I), dt)
        dw_hh = np.empty((G, H), dt)
        with _blas_single_threaded():
            K.backward_loop(gates, cache["c_all"], cache["c0"], np.ascontiguousarray(w_hh.T),
                            np.ascontiguousarray(dy, dtype=dt), np.ascontiguousarray(dh_n, dtype=dt),
                            np.ascontiguousarray(dc_n, dtype=dt), cache["lengths"],
                            cache["reverse"], n, self.wide, d_pre, dbias, dh0, dc0)
            flat = d_pre.reshape(T * B, G)
            n_rows = self._chunks(T * B)
            K.matmul_rows(flat, w_ih, dx.reshape(T * B, I), n_rows)
            K.matmul_tn(flat, x.reshape(T * B, I), dw_ih, n_rows)
            K.matmul_tn(flat, cache["h_prev"].reshape(T * B, H), dw_hh, n_rows)
        return dx, dw_ih, dw_hh, dbias, dh0, dc0


def _threading_layer() -> str:
    try:
        return numba.threading_layer()          # known once a parallel kernel has run
    except ValueError:
        return f"{numba.config.THREADING_LAYER} (not started yet)"
