"""The `cuda` backend without a GPU: its orchestration on NumPy, its kernels compiled by g++.

CI has no GPU, yet every line of lstm_kernels.cu and the backend's time loop, masking, graph
and stream bookkeeping should be tested there. So:

* the same lstm_kernels.cu is compiled for the host under cuda_compat.h (the CUDA device API
  on the fiber runtime of cuda_fibers.h: every CUDA thread a fiber, blocks on OS threads) into
  a shared library, loaded with ctypes (cuda_host.py builds and launches it);
* NumPy stands in for CuPy, np.matmul for cuBLAS;
* a "graph" records the GEMMs and launches issued during capture (without running them, as
  stream capture does) and replays them in order, so a workspace's static buffers and the
  graph cache are exercised exactly as on the GPU;
* streams are only logged (there is nothing to overlap on one host thread).

The library is built once per source version into $LSTM_ENGINE_CACHE (default
~/.cache/lstm-engine)/cuda-emulation (see cuda_host.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from . import cuda_host
from .cuda import BLOCK, DTYPES, KERNEL_SOURCE, KERNELS, CudaBackend, grid_for, kernel_type
# The host build's settings live in cuda_host; these names stay importable from here.
from .cuda_host import CACHE_ENV, COMPAT_HEADER, cache_dir, compiler, unavailable_reason  # noqa: F401


def wrapper_source() -> str:
    """The host translation unit of lstm_kernels.cu: one entry point per kernel instantiation."""
    return cuda_host.wrapper_source(KERNEL_SOURCE, KERNELS, tuple(DTYPES.values()))


def build_library() -> Path:
    """The compiled emulation library, built if this source version has not been yet."""
    return cuda_host.build_library(KERNEL_SOURCE, KERNELS, tuple(DTYPES.values()))


class EmulatedKernels:
    """The host-compiled kernels, called like CUDA launches: (name, dtype, n_threads, args)."""

    def __init__(self, path: Path | None = None):
        self._host = cuda_host.HostKernels(KERNEL_SOURCE, KERNELS, tuple(DTYPES.values()),
                                           path=path or build_library())
        self.path = self._host.path

    def __call__(self, name, dtype, n_threads, args):
        fn, call_args = self.bind(name, dtype, n_threads, args)
        fn(*call_args)

    def bind(self, name, dtype, n_threads, args):
        """(ctypes function, its arguments) for one launch, every argument checked: a capture
        binds once and its replays call the result, as a CUDA graph keeps its launches'
        pointers."""
        ctype = kernel_type(dtype)
        kinds = KERNELS[name]
        if len(args) != len(kinds):
            raise TypeError(f"{name} takes {len(kinds)} arguments, got {len(args)}")
        for n, (kind, a) in enumerate(zip(kinds, args)):
            if kind == "p":
                # The kernels index raw memory: a strided view or a wrong dtype would be read
                # wrongly rather than fail, so refuse them here.
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TypeError(f"{name} argument {n} must be a C-contiguous ndarray")
                if a.dtype not in (np.dtype(dtype), np.dtype(np.int64)):
                    raise TypeError(f"{name} argument {n} has dtype {a.dtype}, expected {np.dtype(dtype)} or int64")
        config = cuda_host.launch_config(grid_for(int(n_threads)), BLOCK)
        return self._host.function(name, ctype), (config, *self._host.convert(name, args))


class RecordedGraph:
    """What a stream capture recorded: GEMMs and launches, replayed in order."""

    def __init__(self, ops, stream: int, arrays=()):
        # `arrays`: what the bound launches point into, kept alive as long as the graph
        self.ops, self.stream, self.replays, self._arrays = ops, stream, 0, list(arrays)

    def __len__(self):
        return len(self.ops)

    def launch(self):
        for fn, args in self.ops:
            fn(*args)
        self.replays += 1


class EmulatedDevice:
    """The `device` of CudaBackend on the host (see the module docstring)."""

    xp = np

    def __init__(self, kernels: EmulatedKernels | None = None):
        self._kernels = kernels
        self._recording = self._bound = None
        self.stream_log: list[int] = []       # which stream each forward/backward ran on

    @property
    def kernels(self) -> EmulatedKernels:
        if self._kernels is None:
            self._kernels = EmulatedKernels()
        return self._kernels

    def prepare(self):
        self.kernels                          # build/load before capture, as NVRTC must

    def _run_gemm(self, a, b, out):
        np.matmul(a, b, out=out)

    def gemm(self, a, b, out=None):
        if self._recording is not None:
            if out is None:
                raise RuntimeError("a GEMM inside a graph capture needs a preallocated `out`")
            self._recording.append((self._run_gemm, (a, b, out)))
            return out
        return np.matmul(a, b, out=out)

    def launch(self, name, dtype, n_threads, args):
        if self._recording is not None:
            self._recording.append(self.kernels.bind(name, dtype, n_threads, args))
            self._bound.extend(a for a in args if isinstance(a, np.ndarray))
            return
        self.kernels(name, dtype, n_threads, args)

    @contextlib.contextmanager
    def on_stream(self, index: int):
        self.stream_log.append(index)
        yield

    def capture(self, index: int, body):
        if self._recording is not None:
            raise RuntimeError("graph capture is already in progress")
        self._recording, self._bound = [], []
        try:
            body()
            return RecordedGraph(self._recording, index, self._bound)
        finally:
            self._recording = self._bound = None

    def replay(self, graph: RecordedGraph):
        graph.launch()

    def facts(self) -> dict:
        return {"emulated": True, "compiler": compiler(), "kernels": str(self.kernels.path),
                "numpy": np.__version__}


class EmulatedCudaBackend(CudaBackend):
    """CudaBackend on NumPy with host-compiled kernels; for tests, never chosen by `auto`."""

    name = "cuda-emulated"
    #: pytest names a parameter by its __name__: tests read "cuda-emulated", not "backend3".
    __name__ = name

    def __init__(self, device: EmulatedDevice | None = None):
        super().__init__(device or EmulatedDevice())

    @classmethod
    def unavailable_reason(cls) -> str:
        return unavailable_reason()

    def __repr__(self):
        return "EmulatedCudaBackend()"


__all__ = ["EmulatedCudaBackend", "EmulatedDevice", "EmulatedKernels", "RecordedGraph",
           "build_library", "compiler", "cache_dir", "wrapper_source", "grid_for"]
