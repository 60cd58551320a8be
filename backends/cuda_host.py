"""Host builds of CUDA C files for the fiber emulator: g++ compiles a .cu file against
cuda_compat.h (the device API) and cuda_fibers.h (the runtime: every CUDA thread a fiber,
blocks on a pool of OS threads), ctypes loads the result, and a launch is a call with a grid,
a block, dynamic shared memory, a cooperative flag and a schedule order.

Entry points: for each kernel instantiation `name<T>` the generated wrapper defines
`extern "C" int emu_<name>_<T>(const emu_launch_config*, params...)`, its parameters declared
with the C types of the kernel's table of cuda.KernelParam (cuda.KERNELS for the backend;
cuda.kernel_signatures() of a test's .cu file for its kernels), so a table that disagrees with
the kernel's own types fails to compile. A launch takes its arguments by parameter name,
checked by cuda.kernel_arguments (arrays C-contiguous with the parameter's dtype, scalars of
its C type: int, unsigned, long long, float, double or T).

Schedules: `order` is "forward" (threads of a block resumed in index order), "reverse",
"random" (a permutation per round from `seed`) or None, which takes $LSTM_ENGINE_EMU_ORDER
(forward | reverse | random[:seed], default forward). Kernel tests run under several: a
missing barrier shows under some orders only (tests/test_cuda_emulator.py).

Libraries are built once per version of the sources into $LSTM_ENGINE_CACHE (default
~/.cache/lstm-engine)/cuda-emulation, keyed by a hash of the sources, the headers, the flags
and the compiler, and moved into place atomically so that concurrent test processes do not
race. cuda_emulation.py builds the backend's lstm_kernels.cu this way.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, BackendError
from .cuda import KernelParam, kernel_arguments, kernel_source_text

HERE = Path(__file__).parent
COMPAT_HEADER = HERE / "cuda_compat.h"
COOPERATIVE_GROUPS = HERE / "cuda_cooperative_groups.h"
#: The emulator's own headers, all part of every library's cache key.
RUNTIME_HEADERS = (COMPAT_HEADER, HERE / "cuda_fibers.h", COOPERATIVE_GROUPS)
CACHE_ENV = "LSTM_ENGINE_CACHE"
#: -fvisibility=hidden: each library keeps its own runtime (thread-locals, pool, counters); default
#: visibility would bind them process-wide (GNU unique symbols) to the first library loaded.
#: -Wno-unknown-pragmas: `#pragma unroll` is a hint for NVRTC that g++ does not know.
FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-pthread", "-Wall", "-Werror",
         "-Wno-unknown-pragmas")
ORDERS = {None: 0, "forward": 1, "reverse": 2, "random": 3}


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


#: The C types each kernel is instantiated for: one list for all kernels, or one per kernel name
#: (a kernel missing from the mapping, or given no types, is not a template).
Types = Sequence[str] | Mapping[str, Sequence[str]]
#: A kernel table: kernel name -> its parameters in order.
Kernels = Mapping[str, Sequence[KernelParam]]
#: The dtype of T for each C type a kernel is instantiated for.
TEMPLATE_DTYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}


def instantiations(kernels: Mapping, types: Types) -> list[tuple[str, str | None]]:
    """(kernel, C type) for every instantiation, (kernel, None) for a kernel that is not a
    template."""
    def of(kernel):
        return tuple(types.get(kernel, ())) if isinstance(types, Mapping) else tuple(types)
    return [(k, t) for k in kernels for t in (of(k) or (None,))]


def entry_point(kernel: str, ctype: str | None) -> str:
    """The C name of one instantiation's entry point: emu_<kernel>[_<type>]."""
    return f"emu_{kernel}" + ("" if ctype is None else "_" + re.sub(r"\W+", "_", ctype))


def wrapper_source(source: Path, kernels: Kernels, types: Types) -> str:
    """The host translation unit: the emulator, the .cu file, one extern "C" entry point per
    instantiation with the kernel's parameters as its table types them."""
    # By name, found through -I its folder: the text (and so the cache key) does not depend on
    # where the file lies.
    lines = ['#include "cuda_compat.h"', f'#include "{Path(source).name}"', ""]
    for name, ctype in instantiations(kernels, types):
        params = "".join(", " + p.c_declaration(ctype) for p in kernels[name])
        args = "".join(", " + p.name for p in kernels[name])
        symbol = name if ctype is None else f"{name}<{ctype}>"
        lines += [f'extern "C" __attribute__((visibility("default"))) int '
                  f"{entry_point(name, ctype)}(const emu_launch_config* config{params}) {{",
                  f'    emu_launch(*config, "{symbol}", &{symbol}{args});',
                  "    return 0;",
                  "}"]
    return "\n".join(lines) + "\n"


def _compiler_id(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return cxx + "\n" + (out.stdout.splitlines() or [""])[0]


def build_library(source: Path, kernels: Kernels, types: Types,
                  defines: Iterable[str] = ()) -> Path:
    """The compiled library of `source` under the emulator, built if this version of the
    sources has not been yet (the key covers the .cu file with the headers it includes from
    its own folder, and the emulator headers). `defines`: extra -D macros (e.g.
    EMU_FIBERS_UCONTEXT)."""
    cxx = compiler()
    if cxx is None:
        raise BackendError(unavailable_reason())
    source = Path(source)
    wrapper = wrapper_source(source, kernels, types)
    flags = [*FLAGS, *(f"-D{d}" for d in defines)]
    digest = hashlib.sha256()
    for part in (kernel_source_text(source).encode(), *(h.read_bytes() for h in RUNTIME_HEADERS), wrapper.encode(),
                 " ".join(flags).encode(), _compiler_id(cxx).encode()):
        digest.update(part)
        digest.update(b"\0")
    out_dir = cache_dir()
    target = out_dir / f"{source.stem}-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        built = Path(tmp) / target.name
        proc = subprocess.run(compile_command(source, wrapper, Path(tmp), built, flags), capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendError(f"building {source.name} for the CUDA emulator failed ({' '.join(proc.args)}):\n{proc.stderr}")
        os.replace(built, target)          # atomic: readers see no file or a whole one
    return target


def compile_command(source: Path, wrapper: str, work_dir: Path, out: Path | None, flags=FLAGS) -> list[str]:
    """The compiler command that builds `wrapper` (written into work_dir) to `out`; with `out`
    None, a syntax check only (what tests of "does not build" need)."""
    cxx = compiler()
    if cxx is None:
        raise BackendError(unavailable_reason())
    src = Path(work_dir) / f"{Path(source).stem}_host.cpp"
    src.write_text(wrapper)
    # <cooperative_groups.h> must be the emulator's subset: a forwarding header in the work
    # folder, searched first (a file of that name among the package's would shadow nothing on
    # the GPU, but would confuse a reader).
    (Path(work_dir) / "cooperative_groups.h").write_text(f'#include "{COOPERATIVE_GROUPS.name}"\n')
    includes = [arg for d in (work_dir, HERE, Path(source).resolve().parent) for arg in ("-I", str(d))]
    target = ["-o", str(out)] if out is not None else ["-fsyntax-only"]
    return [cxx, *flags, *includes, str(src), *target]


class LaunchConfig(ctypes.Structure):
    """emu_launch_config of cuda_fibers.h."""

    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("shared_bytes", ctypes.c_ulonglong), ("cooperative", ctypes.c_int),
                ("order", ctypes.c_int), ("seed", ctypes.c_ulonglong)]


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise ArgumentError(f"{what} must be a positive int or 1-3 positive ints, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def launch_config(grid, block, shared_bytes: int = 0, cooperative: bool = False,
                  order: str | None = None, seed: int = 0) -> LaunchConfig:
    """One launch's configuration; `order` None means $LSTM_ENGINE_EMU_ORDER."""
    if order not in ORDERS:
        raise ArgumentError(f"order must be one of forward, reverse, random or None, got {order!r}")
    if shared_bytes < 0:
        raise ArgumentError(f"shared_bytes must be >= 0, got {shared_bytes}")
    return LaunchConfig((ctypes.c_uint * 3)(*_dims(grid, "grid")), (ctypes.c_uint * 3)(*_dims(block, "block")),
                        int(shared_bytes), int(bool(cooperative)), ORDERS[order], int(seed))


#: The ctypes type of each scalar parameter's dtype.
_CTYPES = {np.dtype(np.int32): ctypes.c_int, np.dtype(np.uint32): ctypes.c_uint,
           np.dtype(np.int64): ctypes.c_longlong, np.dtype(np.uint64): ctypes.c_ulonglong,
           np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


class HostKernels:
    """One .cu file built for the emulator and loaded: launch its kernels by name and type,
    with the arguments by parameter name."""

    def __init__(self, source: Path, kernels: Kernels, types: Types = (),
                 defines: Iterable[str] = (), path: Path | None = None):
        self.source, self.kernels, self.types = Path(source), {k: tuple(v) for k, v in kernels.items()}, types
        self.path = path or build_library(self.source, self.kernels, self.types, defines)
        self._lib = ctypes.CDLL(str(self.path))
        self._fns = {}
        for name, ctype in instantiations(self.kernels, self.types):
            fn = getattr(self._lib, entry_point(name, ctype))
            fn.restype = ctypes.c_int
            dtype = TEMPLATE_DTYPES.get(ctype)
            fn.argtypes = [ctypes.POINTER(LaunchConfig)] + [
                ctypes.c_void_p if p.is_array else _CTYPES[p.dtype(dtype)] for p in self.kernels[name]]
            self._fns[name, ctype] = fn
        self._lib.emu_stats.restype = None
        self._lib.emu_stats.argtypes = [ctypes.POINTER(ctypes.c_ulonglong)]

    def function(self, name: str, ctype: str | None = None):
        """The ctypes entry point of `name<ctype>` (config pointer first, then the arguments)."""
        try:
            return self._fns[name, ctype]
        except KeyError:
            known = ", ".join(n if t is None else f"{n}<{t}>" for n, t in self._fns)
            raise ArgumentError(f"no kernel {name}<{ctype}> in {self.source.name}; it has: {known}") from None

    def convert(self, name: str, ctype: str | None, args: Mapping) -> list:
        """`args` (parameter name -> value) as the entry point of `name<ctype>` takes them,
        checked against the kernel's table (cuda.kernel_arguments): addresses and C scalars."""
        self.function(name, ctype)
        checked = kernel_arguments(name, TEMPLATE_DTYPES.get(ctype), args, self.kernels[name])
        return [a.ctypes.data if p.is_array else a.item() for p, a in zip(self.kernels[name], checked)]

    def launch(self, name: str, ctype: str | None, grid, block, args: Mapping, *, shared_bytes: int = 0,
               cooperative: bool = False, order: str | None = None, seed: int = 0) -> None:
        """Run one launch to completion (a rule broken inside aborts the process; see
        cuda_fibers.h)."""
        fn = self.function(name, ctype)
        config = launch_config(grid, block, shared_bytes, cooperative, order, seed)
        fn(ctypes.byref(config), *self.convert(name, ctype, args))

    def stats(self) -> dict:
        """The runtime's counters since this library was loaded."""
        out = (ctypes.c_ulonglong * 6)()
        self._lib.emu_stats(out)
        return dict(zip(("launches", "fibers", "switches", "block_barriers", "warp_ops", "grid_syncs"), out))
