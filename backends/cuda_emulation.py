"""The `cuda` backend without a GPU: its orchestration on NumPy, its kernels compiled by g++.

CI has no GPU, yet every line of the backend's .cu files and its time loops, masking, graph,
plan and stream bookkeeping should be tested there. So:

* the same .cu files (lstm_kernels.cu, lstm_persistent.cu) are compiled for the host under
  cuda_compat.h (the CUDA device API on the fiber runtime of cuda_fibers.h: every CUDA thread a
  fiber, blocks on OS threads, a cooperative launch's blocks all at once) into shared
  libraries, loaded with ctypes (cuda_host.py builds and launches them);
* NumPy stands in for CuPy, np.matmul for cuBLAS;
* a "graph" records the GEMMs and launches issued during capture (without running them, as
  stream capture does) and replays them in order, so a workspace's static buffers and the
  graph cache are exercised exactly as on the GPU;
* streams are only logged (there is nothing to overlap on one host thread).

The library is built once per source version into $LSTM_ENGINE_CACHE (default
~/.cache/lstm-engine)/cuda-emulation (see cuda_host.py).

The backend is registered twice, as hidden entries of the registry: `cuda-emulated` (the
graph path) and `cuda-emulated-persistent` (the persistent kernels, planned for the small GPU
EmulatedDevice stands for). Tests ask for them by name (`get_backend("cuda-emulated")`), `auto`
never picks them and `lstm-engine backends` does not list them. Their "device" is the host
compiler: without g++ they are unavailable, with the reason.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import CallOrderError
from . import cuda_host
from .cuda import BLOCK, DTYPES, KERNEL_FILES, CudaBackend, KernelFile, grid_for, kernel_file, kernel_type
from .cuda_compile import GPUS
# The host build's settings live in cuda_host; these names stay importable from here.
from .cuda_host import CACHE_ENV, COMPAT_HEADER, cache_dir, compiler, unavailable_reason  # noqa: F401


def wrapper_source(kernel_file: KernelFile = KERNEL_FILES[0]) -> str:
    """The host translation unit of one .cu file (lstm_kernels.cu by default): one typed entry
    point per kernel instantiation."""
    return cuda_host.wrapper_source(kernel_file.source, kernel_file.kernels, tuple(DTYPES.values()))


def build_library(kernel_file: KernelFile = KERNEL_FILES[0]) -> Path:
    """The compiled emulation library of one .cu file (lstm_kernels.cu by default), built if
    this source version has not been yet."""
    return cuda_host.build_library(kernel_file.source, kernel_file.kernels, tuple(DTYPES.values()))


class EmulatedKernels:
    """The host-compiled kernels of every .cu file of the backend, called like CUDA launches:
    (name, dtype, n_threads, args, block, shared_bytes), `args` by parameter name
    (cuda.KERNELS, cuda.PERSISTENT_KERNELS); a cooperative file's kernels launch cooperatively."""

    def __init__(self):
        self._hosts = {f.source: cuda_host.HostKernels(f.source, f.kernels, tuple(DTYPES.values()),
                                                       path=build_library(f)) for f in KERNEL_FILES}
        self.paths = [str(h.path) for h in self._hosts.values()]

    def __call__(self, name, dtype, n_threads, args: dict, block: int = BLOCK, shared_bytes: int = 0):
        fn, call_args = self.bind(name, dtype, n_threads, args, block, shared_bytes)
        fn(*call_args)

    def bind(self, name, dtype, n_threads, args: dict, block: int = BLOCK, shared_bytes: int = 0):
        """(ctypes function, its arguments) for one launch, every argument checked
        (cuda.kernel_arguments): a capture binds once and its replays call the result, as a
        CUDA graph keeps its launches' pointers."""
        ctype, f = kernel_type(dtype), kernel_file(name)
        host = self._hosts[f.source]
        config = cuda_host.launch_config(grid_for(int(n_threads), block), block, shared_bytes, f.cooperative)
        return host.function(name, ctype), (config, *host.convert(name, ctype, args))


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
    """The `device` of CudaBackend on the host (see the module docstring). For the persistent
    kernels it stands for a small GPU: `multiprocessors` SMs holding one block each, with an
    H100's shared memory per block, and blocks of PERSISTENT_THREADS threads (the kernels read
    blockDim: a GPU runs them with 256; fewer fibers keep CI fast, and two warps still exercise
    every cross-warp path)."""

    xp = np
    multiprocessors = 4
    persistent_threads = 64
    max_shared_per_block = GPUS["sm_90"].shared_per_block_optin

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
                raise CallOrderError("a GEMM inside a graph capture needs a preallocated `out`")
            self._recording.append((self._run_gemm, (a, b, out)))
            return out
        return np.matmul(a, b, out=out)

    def launch(self, name, dtype, n_threads, args: dict, *, block: int = BLOCK, shared_bytes: int = 0):
        if self._recording is not None:
            self._recording.append(self.kernels.bind(name, dtype, n_threads, args, block, shared_bytes))
            self._bound.extend(a for a in args.values() if isinstance(a, np.ndarray))
            return
        self.kernels(name, dtype, n_threads, args, block, shared_bytes)

    def co_resident_blocks(self, name, dtype, threads: int, shared_bytes: int) -> int:
        return self.multiprocessors if shared_bytes <= self.max_shared_per_block else 0

    @contextlib.contextmanager
    def on_stream(self, index: int):
        self.stream_log.append(index)
        yield

    def capture(self, index: int, body):
        if self._recording is not None:
            raise CallOrderError("graph capture is already in progress")
        self._recording, self._bound = [], []
        try:
            body()
            return RecordedGraph(self._recording, index, self._bound)
        finally:
            self._recording = self._bound = None

    def replay(self, graph: RecordedGraph):
        graph.launch()

    def facts(self) -> dict:
        return {"emulated": True, "compiler": compiler(), "kernels": self.kernels.paths,
                "numpy": np.__version__}


class EmulatedCudaBackend(CudaBackend):
    """CudaBackend on NumPy with host-compiled kernels, its time loop the graph path: the
    registry's hidden `cuda-emulated`, for tests; never chosen by `auto`."""

    name = "cuda-emulated"
    needs = ()
    extra = ""
    #: Fixed (not $LSTM_ENGINE_CUDA_RECURRENCE): the parity suite runs each path under its own name.
    recurrence = "graph"

    def __init__(self, device: EmulatedDevice | None = None):
        super().__init__(device or EmulatedDevice(), recurrence=type(self).recurrence)

    @classmethod
    def install_hint(cls) -> str:
        return "apt-get install g++, or set CXX"

    @classmethod
    def _device_reason(cls) -> str:
        return unavailable_reason()

    def __repr__(self):
        return f"{type(self).__name__}()"


class EmulatedPersistentBackend(EmulatedCudaBackend):
    """The same, its time loop the persistent kernels (lstm_persistent.cu under the fiber
    emulator's cooperative launch): the registry's hidden `cuda-emulated-persistent`."""

    name = "cuda-emulated-persistent"
    recurrence = "persistent"


__all__ = ["EmulatedCudaBackend", "EmulatedPersistentBackend", "EmulatedDevice", "EmulatedKernels", "RecordedGraph",
           "build_library", "compiler", "cache_dir", "wrapper_source", "grid_for"]
