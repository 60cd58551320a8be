"""The `cuda` backend without a GPU: its orchestration on NumPy, its kernels compiled by g++.

CI has no GPU, yet every line of lstm_kernels.cu and the backend's time loop, masking, graph
and stream bookkeeping should be tested there. So:

* the same lstm_kernels.cu is compiled for the host under cuda_compat.h (CUDA built-ins as
  plain C++, a launch = a loop over the grid) into a shared library, loaded with ctypes;
* NumPy stands in for CuPy, np.matmul for cuBLAS;
* a "graph" records the GEMMs and launches issued during capture (without running them, as
  stream capture does) and replays them in order, so a workspace's static buffers and the
  graph cache are exercised exactly as on the GPU;
* streams are only logged (there is nothing to overlap on one host thread).

The library is built once per source version into $LSTM_ENGINE_CACHE (default
~/.cache/lstm-engine)/cuda-emulation, keyed by a hash of the sources, the flags and the
compiler, and moved into place atomically so concurrent test processes do not race.

The backend is registered as `cuda-emulated`, a hidden entry of the registry: tests ask for
it by name (`get_backend("cuda-emulated")`), `auto` never picks it and `lstm-engine
backends` does not list it. Its "device" is the host compiler: without g++ it is
unavailable, with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BackendError, CallOrderError
from .cuda import (
    BLOCK,
    DTYPES,
    KERNEL_SOURCE,
    KERNELS,
    CudaBackend,
    grid_for,
    kernel_arguments,
    kernel_type,
)

COMPAT_HEADER = Path(__file__).with_name("cuda_compat.h")
CACHE_ENV = "LSTM_ENGINE_CACHE"
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Werror")


def compiler() -> str | None:
    """$CXX, else g++, else c++ on PATH; None when there is none."""
    cxx = os.environ.get("CXX", "").strip()
    if cxx:
        return shutil.which(cxx) or (cxx if os.path.isfile(cxx) else None)
    return shutil.which("g++") or shutil.which("c++")


def unavailable_reason() -> str:
    if compiler() is None:
        return "no host C++ compiler (g++) to build the emulated CUDA kernels (apt-get install g++, or set CXX)"
    return ""


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV, "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "lstm-engine"
    return base / "cuda-emulation"


def wrapper_source() -> str:
    """One extern "C" entry point per kernel instantiation, emu_<kernel>_<type>(grid, block,
    params...), its parameters typed as in cuda.KERNELS: a table that disagrees with the
    kernel's own types fails to compile (names are checked by a test that parses the .cu)."""
    lines = ['#include "cuda_compat.h"', '#include "lstm_kernels.cu"', ""]
    for name, params in KERNELS.items():
        for ctype in DTYPES.values():
            decl = ", ".join(p.c_declaration(ctype) for p in params)
            args = ", ".join(p.name for p in params)
            lines += [f'extern "C" void emu_{name}_{ctype}(unsigned grid, unsigned block, {decl}) {{',
                      f"    emu_launch(dim3(grid), dim3(block), &{name}<{ctype}>, {args});",
                      "}"]
    return "\n".join(lines) + "\n"


def _compiler_id(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return cxx + "\n" + (out.stdout.splitlines() or [""])[0]


def build_library() -> Path:
    """The compiled emulation library, built if this source version has not been yet."""
    cxx = compiler()
    if cxx is None:
        raise BackendError(unavailable_reason())
    wrapper = wrapper_source()
    digest = hashlib.sha256()
    for part in (KERNEL_SOURCE.read_bytes(), COMPAT_HEADER.read_bytes(), wrapper.encode(),
                 " ".join(FLAGS).encode(), _compiler_id(cxx).encode()):
        digest.update(part)
        digest.update(b"\0")
    out_dir = cache_dir()
    target = out_dir / f"lstm_kernels-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        src = Path(tmp) / "lstm_kernels_host.cpp"
        src.write_text(wrapper)
        built = Path(tmp) / target.name
        cmd = [cxx, *FLAGS, "-I", str(KERNEL_SOURCE.parent), str(src), "-o", str(built)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendError(f"building the emulated CUDA kernels failed ({' '.join(cmd)}):\n{proc.stderr}")
        os.replace(built, target)          # atomic: readers see no file or a whole one
    return target


class EmulatedKernels:
    """The host-compiled kernels, called like CUDA launches: (name, dtype, n_threads, args),
    `args` by parameter name (cuda.KERNELS)."""

    def __init__(self, path: Path | None = None):
        self.path = path or build_library()
        self._lib = ctypes.CDLL(str(self.path))
        self._fns = {}
        for name, params in KERNELS.items():
            for ctype in DTYPES.values():
                fn = getattr(self._lib, f"emu_{name}_{ctype}")
                fn.restype = None
                fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [
                    ctypes.c_void_p if p.is_array else ctypes.c_int for p in params]
                self._fns[name, ctype] = fn

    def __call__(self, name, dtype, n_threads, args: dict):
        fn, call_args = self.bind(name, dtype, n_threads, args)
        fn(*call_args)

    def bind(self, name, dtype, n_threads, args: dict):
        """(ctypes function, its arguments) for one launch, every argument checked
        (cuda.kernel_arguments): a capture binds once and its replays call the result, as a
        CUDA graph keeps its launches' pointers."""
        conv = [a.ctypes.data if isinstance(a, np.ndarray) else int(a)
                for a in kernel_arguments(name, dtype, args)]
        return self._fns[name, kernel_type(dtype)], (grid_for(int(n_threads)), BLOCK, *conv)


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
                raise CallOrderError("a GEMM inside a graph capture needs a preallocated `out`")
            self._recording.append((self._run_gemm, (a, b, out)))
            return out
        return np.matmul(a, b, out=out)

    def launch(self, name, dtype, n_threads, args: dict):
        if self._recording is not None:
            self._recording.append(self.kernels.bind(name, dtype, n_threads, args))
            self._bound.extend(a for a in args.values() if isinstance(a, np.ndarray))
            return
        self.kernels(name, dtype, n_threads, args)

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
        return {"emulated": True, "compiler": compiler(), "kernels": str(self.kernels.path),
                "numpy": np.__version__}


class EmulatedCudaBackend(CudaBackend):
    """CudaBackend on NumPy with host-compiled kernels: the registry's hidden `cuda-emulated`,
    for tests; never chosen by `auto`."""

    name = "cuda-emulated"
    needs = ()
    extra = ""

    def __init__(self, device: EmulatedDevice | None = None):
        super().__init__(device or EmulatedDevice())

    @classmethod
    def install_hint(cls) -> str:
        return "apt-get install g++, or set CXX"

    @classmethod
    def _device_reason(cls) -> str:
        return unavailable_reason()

    def __repr__(self):
        return "EmulatedCudaBackend()"


__all__ = ["EmulatedCudaBackend", "EmulatedDevice", "EmulatedKernels", "RecordedGraph",
           "build_library", "compiler", "cache_dir", "wrapper_source", "grid_for"]
