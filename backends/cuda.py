"""The `cuda` backend: cuBLAS GEMMs and fused CUDA C kernels, the time loop replayed as CUDA graphs.

Shapes: T steps, B batch, I inputs, H hidden, G = 4H gates (i, f, g, o); time-major.
Per layer-direction:
    forward   x_proj = x (T*B, I) @ w_ih.T                one GEMM over all steps (outside the graph)
              per step: rec = h (B, H) @ w_hh.T (B, G)   one fused 4H-wide recurrent GEMM
                        lstm_forward_step                 bias, gates, cell, output, masking, saves
    backward  per step: lstm_backward_step                gate gradients d_pre[t], masking
                        rec = d_pre[t] @ w_hh (B, H)      the dh recurrence GEMM
              lstm_backward_finish                        dh0
              dx = d_pre @ w_ih, dW_ih = d_pre.T @ x, dW_hh = d_pre.T @ h_prev, dbias = sum
              as GEMMs and one reduction over all T*B rows after the loop
The kernels are lstm_kernels.cu (see its glossary; the names are base.py's), their gate math
in lstm_cell.cuh. Their parameters are listed once, in KERNELS (name and C type of each): the
CuPy launcher, the g++ emulation's typed entry points and its ctypes calls are all built from
that table, launches take their arguments by name, and a test parses the .cu source to check
that the table matches the kernels' signatures.

The persistent path (lstm_persistent.cu, PERSISTENT_KERNELS; planned in cuda_persistent.py):
one cooperative launch runs a layer-direction's whole time loop, each block keeping its slice
of w_hh in shared memory for all T steps and a grid barrier between steps; the input
projection before it and the weight-gradient GEMMs after it are the same cuBLAS calls as the
graph path's. `CudaBackend.recurrence` chooses between the two ("auto": persistent where a plan
fits the device and B <= persistent_max_batch; $LSTM_ENGINE_CUDA_RECURRENCE for the registry's
instance).

Why graphs: a step is two launches of microseconds each; driving T of them from Python costs
more than the GPU work at small B. Each step loop is captured once per shape into a CUDA graph
over *static* buffers (a `_GraphBuffers`) and replayed: inputs are copied in, outputs copied
out. Buffers whose saved activations a forward cache still needs are not reused; another set
is made for the same shape (a 3-layer stack with equal layer sizes holds three).

Why two streams: the engine calls layer_forward once per direction; each direction runs on its
own stream (fenced by events against the caller's stream), so the reverse direction's graph is
enqueued while the forward one still runs and the two overlap without any engine change.

The class is written against a small `device` object (array module, GEMM, kernel launcher,
graph capture, streams, and for the persistent plans: threads per block, SMs, shared memory
per block, co-resident blocks). `_CupyDevice` is the real one. `cuda_emulation.EmulatedDevice` runs
the same orchestration in CI on NumPy with the same .cu kernels compiled by g++.

NOT YET RUN ON A GPU: the `_CupyDevice` path (NVRTC build, launches, cooperative launches,
occupancy, capture, cuBLAS under capture, streams) was written without access to one; CI
compiles every kernel with NVRTC (cuda_compile.py) and runs both paths in the fiber emulator.
benchmarks/gpu_check.py is the first thing to run where a GPU is lent.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, ArgumentTypeError, BackendError, CallOrderError, one_line
from .base import Backend, check_layer_inputs, check_upstream
from .reference import step_order

DEVICE_ENV = "LSTM_ENGINE_CUDA_DEVICE"
KERNEL_SOURCE = Path(__file__).with_name("lstm_kernels.cu")
#: Threads per block of the pointwise kernels (one thread per (b, j)).
BLOCK = 256
DTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
#: NVRTC options of every build of the backend's kernels (CuPy adds -arch, -ftz=true,
#: --device-as-default-execution-space and its include paths; cuda_compile.py, which compiles
#: them in CI, adds the same). DYNAMIC_SHARED(T, name) declares the launch's dynamic shared
#: memory as a T array: the fiber emulator (cuda_compat.h) cannot read `extern __shared__`, so
#: kernels use this spelling, which both compilers understand. One raw array, cast: a template
#: instantiated for float and double cannot declare `extern __shared__ T name[]` twice.
NVRTC_OPTIONS = (
    "--std=c++17",
    "-DDYNAMIC_SHARED(T,name)=extern __shared__ __align__(16) unsigned char lstm_engine_dynamic_shared[]; "
    "T* const name = reinterpret_cast<T*>(lstm_engine_dynamic_shared)",
)
#: The NumPy dtype of each C type a kernel parameter may have (T: the kernel's template type).
C_TYPES = {"int": np.dtype(np.int32), "unsigned": np.dtype(np.uint32), "unsigned int": np.dtype(np.uint32),
           "long long": np.dtype(np.int64), "unsigned long long": np.dtype(np.uint64),
           "float": np.dtype(np.float32), "double": np.dtype(np.float64)}


@dataclass(frozen=True)
class KernelParam:
    """One parameter of a kernel: its name and its C type as written in the .cu file, with T
    the kernel's template type (float or double): "const T*", "T*", "const long long*",
    "int", "T", "unsigned"... (a key of C_TYPES or T, optionally const, optionally a pointer)."""
    name: str
    ctype: str

    @property
    def is_array(self) -> bool:
        return self.ctype.endswith("*")

    @property
    def base_type(self) -> str:
        """The C type of the values, without const and *: "T", "long long", "int"."""
        return " ".join(w for w in self.ctype.rstrip("*").split() if w != "const")

    def dtype(self, dtype=None) -> np.dtype:
        """The NumPy dtype of the parameter's values (an array's elements, or the scalar)
        when T is `dtype` (None for a kernel that is not a template)."""
        if self.base_type == "T":
            if dtype is None:
                raise ArgumentTypeError(f"parameter {self.name} has the template type T, but no dtype was given")
            return np.dtype(dtype)
        try:
            return C_TYPES[self.base_type]
        except KeyError:
            raise ArgumentTypeError(f"parameter {self.name}: C type {self.ctype!r} is not one of "
                                    f"T, {', '.join(C_TYPES)} (or a pointer to one)") from None

    def c_declaration(self, ctype: str | None) -> str:
        """The parameter as C, with T spelled `ctype` ("const float* x_proj_t")."""
        words = self.ctype.replace("*", " * ").split()
        if ctype is not None:
            words = [ctype if w == "T" else w for w in words]
        return " ".join(words).replace(" *", "*") + " " + self.name


def _reads(*names):
    return tuple(KernelParam(n, "const T*") for n in names)


def _writes(*names):
    return tuple(KernelParam(n, "T*") for n in names)


def _ints(*names):
    return tuple(KernelParam(n, "int") for n in names)


_LENGTHS = (KernelParam("lengths", "const long long*"),)

#: Every kernel's parameters in order, as in lstm_kernels.cu (roles documented there). The
#: CuPy launcher and the host emulation take arguments by these names and build their calls
#: from this table; tests/test_cuda_emulated.py checks it against the .cu source.
KERNELS: dict[str, tuple[KernelParam, ...]] = {
    "lstm_forward_step": (
        _reads("x_proj_t", "rec", "bias", "h_prev_t", "c_prev_t")
        + _writes("h_out", "c_out", "y_t", "gates_t") + _LENGTHS + _ints("t", "B", "H", "save")),
    "lstm_backward_step": (
        _reads("gates_t", "c_prev_t", "dy_t", "rec") + _writes("dh_buf", "dc_buf", "d_pre_t")
        + _LENGTHS + _ints("t", "t_after", "has_after", "B", "H")),
    "lstm_backward_finish": (
        _reads("rec", "dh_buf") + _writes("dh0") + _LENGTHS + _ints("t_first", "B", "H")),
}
PERSISTENT_SOURCE = Path(__file__).with_name("lstm_persistent.cu")
#: The persistent kernels' parameters (lstm_persistent.cu; cuda_persistent.py plans their
#: launches). The state other blocks write during the launch (h_state, d_pre) is `T*` without
#: `const __restrict__`, which would let the compiler read it through the non-coherent path.
PERSISTENT_KERNELS: dict[str, tuple[KernelParam, ...]] = {
    "lstm_persistent_forward": (
        _reads("x_proj", "w_hh", "bias", "h0", "c0") + _writes("h_state", "c_n", "c_prev", "gates", "y", "h_n")
        + _LENGTHS + _ints("n_steps", "B", "H", "units", "chunk_cols", "reverse", "save")),
    "lstm_persistent_backward": (
        _reads("w_hh", "gates", "c_prev", "dy", "dh_n", "dc_n") + _writes("d_pre", "dh0", "dc0")
        + _LENGTHS + _ints("n_steps", "B", "H", "units", "chunk_cols", "reverse")),
}


@dataclass(frozen=True)
class KernelFile:
    """One .cu file of the backend and its kernels' table. `cooperative`: its kernels use
    grid.sync() and are launched cooperatively (every block resident at once)."""
    source: Path
    kernels: dict[str, tuple[KernelParam, ...]]
    cooperative: bool = False


#: Every .cu file of the backend (tests/test_cuda_compile.py checks none is missing).
KERNEL_FILES = (KernelFile(KERNEL_SOURCE, KERNELS), KernelFile(PERSISTENT_SOURCE, PERSISTENT_KERNELS, cooperative=True))
_FILE_OF = {name: f for f in KERNEL_FILES for name in f.kernels}


def kernel_file(name: str) -> KernelFile:
    """The KernelFile that defines kernel `name`."""
    try:
        return _FILE_OF[name]
    except KeyError:
        raise ArgumentError(f"no kernel {name!r} in the cuda backend; it has: {', '.join(_FILE_OF)}") from None


def kernel_type(dtype) -> str:
    """The C type a kernel is instantiated for; float32 and float64 only."""
    try:
        return DTYPES[np.dtype(dtype)]
    except KeyError:
        raise ArgumentTypeError(
            f"the cuda backend runs float32 and float64, got dtype {np.dtype(dtype)}") from None


def kernel_arguments(name: str, dtype, args: dict, params=None) -> list:
    """`args` (parameter name -> value) of one launch of kernel `name` as the ordered
    argument list both launchers pass on: arrays as they are, scalars as NumPy scalars of the
    parameter's C type (np.int32 for int, the dtype for T). Each array is checked to be
    C-contiguous with the parameter's dtype, since a kernel indexes raw memory and would
    misread anything else rather than fail. `params` defaults to the backend's table of the
    kernel (KERNELS, PERSISTENT_KERNELS); `dtype` is None for a kernel that is not a template."""
    params = kernel_file(name).kernels[name] if params is None else params
    wanted = [p.name for p in params]
    if set(args) != set(wanted):
        missing = [n for n in wanted if n not in args]
        unknown = [n for n in args if n not in wanted]
        raise ArgumentError(f"{name} takes the arguments {', '.join(wanted)}; "
                            f"missing {missing or 'none'}, unknown {unknown or 'none'}")
    if dtype is not None:
        kernel_type(dtype)
    out = []
    for p in params:
        a, want = args[p.name], p.dtype(dtype)
        if p.is_array:
            if not hasattr(a, "flags") or not a.flags.c_contiguous:
                raise ArgumentTypeError(f"{name} argument {p.name} must be a C-contiguous array")
            if a.dtype != want:
                raise ArgumentTypeError(f"{name} argument {p.name} has dtype {a.dtype}, expected {want}")
            out.append(a)
        elif want.kind in "iu":
            try:
                out.append(want.type(operator.index(a)))
            except TypeError:
                raise ArgumentTypeError(f"{name} argument {p.name} must be an integer ({p.ctype}), "
                                        f"got {type(a).__name__}") from None
        else:
            out.append(want.type(a))
    return out


_SIGNATURE = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)")


def kernel_signatures(source: Path) -> dict[str, tuple[KernelParam, ...]]:
    """{kernel: its parameters} parsed from the __global__ functions of a .cu file (types as
    written, `__restrict__` dropped): the test kernels' tables, and the check that KERNELS
    matches lstm_kernels.cu."""
    text = re.sub(r"//[^\n]*", "", Path(source).read_text())
    found = {}
    for name, params in _SIGNATURE.findall(text):
        found[name] = tuple(
            KernelParam(words[-1], " ".join(words[:-1]).replace(" *", "*"))
            for words in (p.replace("__restrict__", "").replace("*", " * ").split() for p in params.split(","))
            if words)
    return found


def device_id_from_env() -> int:
    """$LSTM_ENGINE_CUDA_DEVICE as a device ordinal (0 when unset)."""
    raw = os.environ.get(DEVICE_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ArgumentError(f"{DEVICE_ENV} must be a device number such as 0 or 1, got {raw!r}") from None
    if value < 0:
        raise ArgumentError(f"{DEVICE_ENV} must be >= 0, got {value}")
    return value


RECURRENCE_ENV = "LSTM_ENGINE_CUDA_RECURRENCE"
RECURRENCES = ("auto", "graph", "persistent")


def recurrence_setting(value: str | None = None) -> str:
    """`value`, else $LSTM_ENGINE_CUDA_RECURRENCE, else the default "auto"; checked against
    RECURRENCES (see CudaBackend.recurrence)."""
    where = "recurrence"
    if value is None:
        value, where = os.environ.get(RECURRENCE_ENV, "").strip() or "auto", RECURRENCE_ENV
    if value not in RECURRENCES:
        raise ArgumentError(f"{where} must be one of {', '.join(RECURRENCES)}, got {value!r}")
    return value


def grid_for(n_threads: int, block: int = BLOCK) -> int:
    """Blocks of `block` threads for at least n_threads threads."""
    return max(1, -(-n_threads // block))


_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*\n?", re.M)


def kernel_source_text(source: Path) -> str:
    """The text of a .cu file with each `#include "name"` of a file in its own folder replaced
    by that file's text (once; headers use #pragma once), so that NVRTC gets one
    self-contained program with no include path that depends on where the package lies, and
    the emulator's build cache key covers the headers too (g++ reads them through -I, the
    same files). Other includes are left as they are."""
    source = Path(source)
    seen: set[Path] = set()

    def expand(path: Path) -> str:
        def replace(m):
            header = path.parent / m.group(1)
            if not header.is_file():
                return m.group(0)
            if header in seen:
                return ""
            seen.add(header)
            # inlined once, so its include guard goes (NVRTC warns of one in the main file)
            return _PRAGMA_ONCE.sub("", expand(header))
        return _LOCAL_INCLUDE.sub(replace, path.read_text())

    return expand(source)


def nvrtc_program(source: Path = KERNEL_SOURCE, kernels=None, types=None) -> tuple[str, tuple[str, ...], list[str]]:
    """What cupy.RawModule gets for one .cu file: its code, the NVRTC options and the name
    expressions of every kernel instantiation (`name<type>`). `kernels` (name -> its
    KernelParams) and `types` (C types, for all kernels or per name) default to this backend's
    KERNELS and DTYPES; the CI compile check (cuda_compile.py) takes the same triple."""
    from .cuda_host import instantiations
    kernels = KERNELS if kernels is None else kernels
    types = tuple(DTYPES.values()) if types is None else types
    names = [k if t is None else f"{k}<{t}>" for k, t in instantiations(kernels, types)]
    return kernel_source_text(source), NVRTC_OPTIONS, names


# -- the real device ------------------------------------------------------------------------
class _CupyDevice:
    """CuPy arrays on one GPU, cuBLAS through cupy.matmul, kernels from NVRTC. Not run yet."""

    def __init__(self, device_id: int):
        import cupy
        self.cupy = cupy
        self.xp = cupy
        self.device_id = device_id
        self._device = cupy.cuda.Device(device_id)
        with self._device:
            self._streams = (cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True))
        self._modules = None
        self._functions = {}
        self._props = None

    def activate(self):
        return self._device

    def _load(self):
        if self._modules is None:
            modules, functions = [], {}
            for f in KERNEL_FILES:
                code, options, names = nvrtc_program(f.source, f.kernels)
                # enable_cooperative_groups: every launch of the module's kernels is cooperative
                # (cuLaunchCooperativeKernel), which grid.sync() needs.
                module = self.cupy.RawModule(code=code, options=options, name_expressions=names,
                                             enable_cooperative_groups=f.cooperative)
                # Every function is fetched (and so compiled and loaded) before any capture
                # starts: loading a module inside a stream capture is not allowed on older drivers.
                functions.update({n: module.get_function(n) for n in names})
                modules.append(module)
            self._modules, self._functions = modules, functions
        return self._functions

    def prepare(self):
        self._load()

    def _function(self, name, dtype):
        return self._load()[f"{name}<{kernel_type(dtype)}>"]

    def _properties(self) -> dict:
        if self._props is None:
            self._props = self.cupy.cuda.runtime.getDeviceProperties(self.device_id)
        return self._props

    @property
    def persistent_threads(self) -> int:
        from .cuda_persistent import THREADS
        return THREADS

    @property
    def multiprocessors(self) -> int:
        return int(self._properties()["multiProcessorCount"])

    @property
    def max_shared_per_block(self) -> int:
        """The dynamic shared memory one block may opt in to (sharedMemPerBlockOptin)."""
        return int(self._properties()["sharedMemPerBlockOptin"])

    @staticmethod
    def _allow_shared(fn, shared_bytes: int) -> None:
        # Above 48 KiB a kernel must opt in to its dynamic shared memory before launching.
        if shared_bytes > 48 * 1024 and fn.max_dynamic_shared_size_bytes < shared_bytes:
            fn.max_dynamic_shared_size_bytes = shared_bytes

    def co_resident_blocks(self, name, dtype, threads: int, shared_bytes: int) -> int:
        """How many blocks of kernel `name` (threads, dynamic shared memory) the GPU holds at
        once: CUDA's occupancy calculator for this compiled kernel, times the SMs."""
        fn = self._function(name, dtype)
        self._allow_shared(fn, shared_bytes)
        per_sm = self.cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.kernel.ptr, threads, shared_bytes)
        return int(per_sm) * self.multiprocessors

    def gemm(self, a, b, out=None):
        # cupy.matmul on 2-D operands is one cuBLAS gemm; `out` keeps it allocation-free,
        # which stream capture needs (the captured operands are all C-contiguous).
        return self.cupy.matmul(a, b, out=out)

    def launch(self, name, dtype, n_threads, args: dict, *, block: int = BLOCK, shared_bytes: int = 0):
        """Kernel `name` instantiated for `dtype` on ceil(n_threads / block) blocks of `block`
        threads with `shared_bytes` of dynamic shared memory, `args` by parameter name
        (KERNELS, PERSISTENT_KERNELS). A cooperative file's kernels launch cooperatively."""
        conv = tuple(kernel_arguments(name, dtype, args))
        fn = self._function(name, dtype)
        self._allow_shared(fn, shared_bytes)
        fn((grid_for(n_threads, block),), (block,), conv, shared_mem=shared_bytes)

    @contextlib.contextmanager
    def on_stream(self, index: int):
        side = self._streams[index]
        caller = self.cupy.cuda.get_current_stream()
        side.wait_event(caller.record())          # inputs made on the caller's stream
        with self._device, side:                   # workspaces live on the chosen GPU
            yield
        caller.wait_event(side.record())          # outputs used on the caller's stream

    def capture(self, index: int, body):
        stream = self._streams[index]
        with stream:
            stream.begin_capture()
            try:
                body()
            finally:
                graph = stream.end_capture()
        return graph                              # graph.launch() runs on the current stream

    def replay(self, graph):
        graph.launch()

    def facts(self) -> dict:
        cupy = self.cupy
        props = self._properties()
        free, total = self._device.mem_info
        name = props["name"]
        return {
            "device_id": self.device_id,
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "memory_gib": round(total / 2 ** 30, 1),
            "memory_free_gib": round(free / 2 ** 30, 1),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "multiprocessors": props.get("multiProcessorCount"),
            "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        }


# -- captured buffers and their graphs -----------------------------------------------------
class _GraphBuffers:
    """The static buffers of one captured step loop, and its graphs (forward now, backward
    when first needed). Graph launches bake these buffers' addresses in."""

    def __init__(self, key):
        self.key = key
        self.holder = None            # weakref to the forward cache that still needs the buffers
        self.forward_graph = None
        self.backward_graph = None

    @property
    def free(self) -> bool:
        return self.holder is None or self.holder() is None

    @property
    def nbytes(self) -> int:
        """Device bytes of the buffers (views such as h_start counted once, in their base);
        grows when the backward graph is first captured."""
        arrays = {id(v): v for v in vars(self).values() if hasattr(v, "nbytes") and hasattr(v, "base")}
        return sum(v.nbytes for v in arrays.values() if v.base is None or id(v.base) not in arrays)


class GraphCache:
    """_GraphBuffers by shape key, least recently used first; free ones are reused.

    Bounded twice: at most `max_keys` shape keys, and at most `max_bytes` of buffers. Each
    distinct (T, B) of length-bucketed batches is a key, and one key's buffers hold several
    (T, B, 4H) arrays (64 MiB per direction at the default language-id run's largest batch),
    so a count alone lets them reach gigabytes. Beyond either bound the least recently used
    free buffers are dropped (and their graphs with them); buffers a forward cache still
    holds stay until its backward, so the bound can be exceeded by those alone."""

    #: 1 GiB: 16 of the default language-id run's largest buffer sets; a device with less to
    #: spare can lower it (each shape beyond it costs a new graph capture, not a failure).
    max_bytes = 2 ** 30

    def __init__(self, max_keys: int = 32, max_bytes: int | None = None):
        self.max_keys = max_keys
        if max_bytes is not None:
            self.max_bytes = max_bytes
        self._by_key: OrderedDict = OrderedDict()
        self.captures = 0             # graphs captured (forward and backward)
        self.replays = 0

    def acquire(self, key, make):
        pool = self._by_key.setdefault(key, [])
        self._by_key.move_to_end(key)
        bufs = next((b for b in pool if b.free), None)
        if bufs is None:
            bufs = make()
            pool.append(bufs)
            self.evict()
        return bufs

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers())

    def evict(self) -> None:
        """Drop the least recently used free buffers while there are more than max_keys keys
        or more than max_bytes bytes (also called when a backward capture grows a set); the
        most recent key's are kept, as the call that acquired them is using them."""
        total = self.nbytes
        for key in list(self._by_key)[:-1]:
            if len(self._by_key) <= self.max_keys and total <= self.max_bytes:
                break
            pool = self._by_key[key]
            total -= sum(b.nbytes for b in pool if b.free)
            kept = [b for b in pool if not b.free]
            if kept:
                self._by_key[key] = kept
            else:
                del self._by_key[key]

    def buffers(self, key=None) -> list:
        """Every _GraphBuffers held (of one shape key, when given)."""
        if key is not None:
            return list(self._by_key.get(key, []))
        return [b for pool in self._by_key.values() for b in pool]


class _Cache:
    """What layer_backward needs from a forward; holds its buffers until used up."""

    def __init__(self, bufs, x, w_ih):
        self.bufs, self.x, self.w_ih = bufs, x, w_ih
        self.spent = False


class CudaBackend(Backend):
    name = "cuda"
    needs = ("cupy",)
    extra = "cuda12"
    #: How the time loop runs (RECURRENCES): "graph", a GEMM and a pointwise kernel per step
    #: replayed as a CUDA graph, for any size; "persistent", lstm_persistent.cu, one cooperative
    #: launch per layer-direction that keeps w_hh on chip for all steps, where a plan fits the
    #: device (an error where none does); "auto", persistent where it fits and the batch is at
    #: most `persistent_max_batch`, else graph (and graph for good, with a warning, once a
    #: persistent forward has failed). The registry's instance takes
    #: $LSTM_ENGINE_CUDA_RECURRENCE; any instance can be set directly.
    recurrence = "auto"
    #: The largest batch `auto` runs persistently. A persistent block multiplies CHUNK rows at
    #: a time by its slice of w_hh, so its step time grows with ceil(B / CHUNK) on a fixed set of
    #: blocks, while the graph path's per-step GEMM spreads a large batch over every SM; cuDNN
    #: likewise keeps its persistent algorithm to B <= 128. Provisional until
    #: benchmarks/compare_cuda.py has timed both paths on a GPU (it reports each at B = 1 .. 64).
    persistent_max_batch = 64

    def __init__(self, device=None, recurrence: str | None = None):
        if device is None:
            device = _CupyDevice(device_id_from_env())
        self.device = device
        self.xp = device.xp
        self.graphs = GraphCache()
        self.recurrence = recurrence_setting(recurrence)
        self._plans: dict = {}
        #: Why a persistent forward failed under `auto` (then the graph path runs from there
        #: on), or "".
        self.persistent_failure = ""
        # One layer call at a time: a shape's graph buffers are static (the graph has their
        # addresses baked in), so two threads running the same shape at once would write
        # each other's inputs and read each other's outputs (seen in the emulation). On a GPU
        # the calls are serialised on the streams anyway; the lock also guards GraphCache.
        self._lock = threading.RLock()

    @classmethod
    def install_hint(cls) -> str:
        return ("pip install 'lstm-engine[cuda12]' (CUDA 12 driver) or "
                "pip install 'lstm-engine[cuda13]' (CUDA 13 driver)")

    @classmethod
    def unavailable_reason(cls) -> str:
        return super().unavailable_reason() or cls._device_reason()

    @classmethod
    def _device_reason(cls) -> str:
        """Why the device cannot be used ("" when it can): no driver, no GPU, a bad id."""
        try:
            device_id = device_id_from_env()
        except ArgumentError as exc:
            return str(exc)
        try:
            import cupy
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:                  # no driver, or a driver too old for CuPy
            return f"no CUDA device found ({type(exc).__name__}: {exc})"
        if count == 0:
            return "no CUDA device found"
        if device_id >= count:
            return f"{DEVICE_ENV}={device_id}, but this machine has {count} CUDA device(s) (0..{count - 1})"
        return ""

    def facts(self) -> dict:
        return {**self.device.facts(), "recurrence": self.recurrence,
                "persistent_max_batch": self.persistent_max_batch}

    def check_ready(self) -> None:
        """Compile and load every kernel now (NVRTC on a GPU), so that a broken driver, runtime
        or compiler shows when the backend is chosen (`auto` then falls back) rather than at
        the first forward."""
        self.device.prepare()

    def asarray(self, a, dtype=None):
        if hasattr(self.device, "activate"):
            with self.device.activate():
                return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_numpy(self, a) -> np.ndarray:
        return a.get() if hasattr(a, "get") else np.asarray(a)

    def _new_forward(self, key):
        T, B, H, dtype, reverse, keep = key
        xp, dev = self.xp, self.device
        G = 4 * H
        bufs = _GraphBuffers(key)
        bufs.x_proj = xp.zeros((T, B, G), dtype)
        bufs.rec = xp.zeros((B, G), dtype)
        bufs.bias = xp.zeros((G,), dtype)
        bufs.w_hh_t = xp.zeros((H, G), dtype)
        bufs.w_hh = xp.zeros((G, H), dtype)
        bufs.lengths = xp.zeros((B,), np.int64)
        bufs.y = xp.zeros((T, B, H), dtype)
        bufs.h_n = xp.zeros((B, H), dtype)
        bufs.c_n = xp.zeros((B, H), dtype)
        order = list(step_order(T, reverse))
        if keep:
            # h_prev/c_prev[t] hold the state entering step t: step t writes the next step's slot.
            bufs.h_prev = xp.zeros((T, B, H), dtype)
            bufs.c_prev = xp.zeros((T, B, H), dtype)
            bufs.gates = xp.zeros((T, B, G), dtype)
            h_slots = [bufs.h_prev[t] for t in order] + [bufs.h_n]
            c_slots = [bufs.c_prev[t] for t in order] + [bufs.c_n]
            gate_slots = [bufs.gates[t] for t in order]
        else:
            ping_h, ping_c = xp.zeros((2, B, H), dtype), xp.zeros((2, B, H), dtype)
            h_slots = [ping_h[k % 2] for k in range(T)] + [bufs.h_n]
            c_slots = [ping_c[k % 2] for k in range(T)] + [bufs.c_n]
            scratch = xp.zeros((B, G), dtype)
            gate_slots = [scratch] * T
        bufs.h_start, bufs.c_start = h_slots[0], c_slots[0]

        def body():
            for k, t in enumerate(order):
                dev.gemm(h_slots[k], bufs.w_hh_t, out=bufs.rec)
                dev.launch("lstm_forward_step", dtype, B * H, dict(
                    x_proj_t=bufs.x_proj[t], rec=bufs.rec, bias=bufs.bias,
                    h_prev_t=h_slots[k], c_prev_t=c_slots[k],
                    h_out=h_slots[k + 1], c_out=c_slots[k + 1], y_t=bufs.y[t],
                    gates_t=gate_slots[k], lengths=bufs.lengths, t=t, B=B, H=H, save=int(keep)))

        dev.prepare()
        # One eager GEMM first: cuBLAS sets itself up (handle, workspace) outside the capture.
        dev.gemm(bufs.h_start, bufs.w_hh_t, out=bufs.rec)
        bufs.forward_graph = dev.capture(int(reverse), body)
        self.graphs.captures += 1
        return bufs

    # -- which loop -----------------------------------------------------------------------
    def persistent_plans(self, H: int, dtype, keep: bool):
        """(forward Plan, backward Plan or None, "") of the persistent kernels for hidden size
        H on this device, or (None, None, why not): the backward plan is needed only when a
        training forward (keep) commits to the path. Cached per (H, dtype, keep)."""
        key = (int(H), np.dtype(dtype), bool(keep))
        if key not in self._plans:
            from . import cuda_persistent as cp
            dev, itemsize = self.device, np.dtype(dtype).itemsize
            found, reasons = [], []
            for kernel in (cp.FORWARD, cp.BACKWARD) if keep else (cp.FORWARD,):
                found_plan, why = cp.plan(kernel, H, itemsize, dev.persistent_threads, dev.max_shared_per_block,
                                          dev.multiprocessors,
                                          lambda shared, k=kernel: dev.co_resident_blocks(k, dtype, dev.persistent_threads, shared))
                found.append(found_plan)
                reasons.append(why)
            fwd, bwd = found[0], (found[1] if keep else None)
            ok = fwd is not None and (bwd is not None or not keep)
            self._plans[key] = (fwd, bwd, "") if ok else (None, None, "; ".join(r for r in reasons if r))
        return self._plans[key]

    def recurrence_for(self, B: int, H: int, dtype, keep: bool) -> tuple[str, str]:
        """("graph" or "persistent", why) for a layer-direction of batch B and hidden size H
        under `self.recurrence`; forced "persistent" where no plan fits raises BackendError."""
        if self.recurrence == "graph":
            return "graph", "recurrence='graph'"
        if self.recurrence == "auto" and self.persistent_failure:
            return "graph", f"the persistent path failed before ({self.persistent_failure})"
        fwd, _, why = self.persistent_plans(H, dtype, keep)
        if fwd is None:
            if self.recurrence == "persistent":
                raise BackendError(f"recurrence='persistent', but {why}")
            return "graph", why
        if self.recurrence == "auto" and B > self.persistent_max_batch:
            return "graph", f"B={B} is above persistent_max_batch={self.persistent_max_batch}"
        return "persistent", f"recurrence={self.recurrence!r}, a plan of {fwd.blocks} blocks of {fwd.units} units fits"

    # -- forward ---------------------------------------------------------------------------
    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep, prepared=None):
        with self._lock:
            return self._layer_forward(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep)

    def _layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep):
        xp, dev = self.xp, self.device
        check_layer_inputs(x, w_ih, w_hh, bias, h0, c0, lengths)
        x = xp.ascontiguousarray(x)
        T, B, I = x.shape
        H = w_hh.shape[1]
        dtype = np.dtype(x.dtype)
        kernel_type(dtype)
        reverse, keep = bool(reverse), bool(keep)
        if self.recurrence_for(B, H, dtype, keep)[0] == "persistent":
            try:
                return self._persistent_forward(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep)
            except Exception as exc:
                # Chosen by `auto`, not asked for: a launch the device refuses (a cooperative
                # grid or shared memory it will not give) falls back to the graph path, once
                # and with a warning, as `auto` falls back from cuda to cpu.
                if self.recurrence != "auto":
                    raise
                self.persistent_failure = one_line(exc)
                warnings.warn(f"the cuda backend's persistent path failed ({self.persistent_failure}); "
                              "using the graph path from now on", RuntimeWarning, stacklevel=2)
        key = (T, B, H, dtype, reverse, keep)
        with dev.on_stream(int(reverse)):
            bufs = self.graphs.acquire(key, lambda: self._new_forward(key))
            dev.gemm(x.reshape(T * B, I), w_ih.T, out=bufs.x_proj.reshape(T * B, 4 * H))
            bufs.bias[...] = bias
            bufs.w_hh_t[...] = w_hh.T
            bufs.lengths[...] = xp.asarray(np.ascontiguousarray(lengths, dtype=np.int64))
            bufs.h_start[...] = h0
            bufs.c_start[...] = c0
            dev.replay(bufs.forward_graph)
            self.graphs.replays += 1
            # Copies: the buffers are replayed again by the next call of this shape.
            y, h_n, c_n = bufs.y.copy(), bufs.h_n.copy(), bufs.c_n.copy()
            cache = None
            if keep:
                bufs.w_hh[...] = w_hh
                cache = _Cache(bufs, x, xp.ascontiguousarray(w_ih))
                bufs.holder = weakref.ref(cache)
        return y, h_n, c_n, cache

    # -- backward --------------------------------------------------------------------------
    def _capture_backward(self, bufs):
        T, B, H, dtype, reverse, _ = bufs.key
        xp, dev = self.xp, self.device
        G = 4 * H
        bufs.dy = xp.zeros((T, B, H), dtype)
        bufs.dh_buf = xp.zeros((B, H), dtype)
        bufs.dc_buf = xp.zeros((B, H), dtype)
        bufs.d_pre = xp.zeros((T, B, G), dtype)
        bufs.rec_b = xp.zeros((B, H), dtype)
        bufs.dh0 = xp.zeros((B, H), dtype)
        order = list(step_order(T, reverse))[::-1]

        def body():
            t_after = -1
            for t in order:
                dev.launch("lstm_backward_step", dtype, B * H, dict(
                    gates_t=bufs.gates[t], c_prev_t=bufs.c_prev[t], dy_t=bufs.dy[t],
                    rec=bufs.rec_b, dh_buf=bufs.dh_buf, dc_buf=bufs.dc_buf,
                    d_pre_t=bufs.d_pre[t], lengths=bufs.lengths, t=t, t_after=max(t_after, 0),
                    has_after=int(t_after >= 0), B=B, H=H))
                dev.gemm(bufs.d_pre[t], bufs.w_hh, out=bufs.rec_b)
                t_after = t
            dev.launch("lstm_backward_finish", dtype, B * H, dict(
                rec=bufs.rec_b, dh_buf=bufs.dh_buf, dh0=bufs.dh0, lengths=bufs.lengths,
                t_first=order[-1], B=B, H=H))

        dev.gemm(bufs.d_pre[0], bufs.w_hh, out=bufs.rec_b)
        bufs.backward_graph = dev.capture(int(reverse), body)
        self.graphs.captures += 1

    def layer_backward(self, cache, dy, dh_n, dc_n):
        with self._lock:
            return self._layer_backward(cache, dy, dh_n, dc_n)

    def _layer_backward(self, cache, dy, dh_n, dc_n):
        if not isinstance(cache, _Cache):
            raise ArgumentTypeError("cache must be what this backend's layer_forward(keep=True) returned")
        if cache.spent:
            raise CallOrderError("this forward cache was already backpropagated (each forward can be "
                                 "backpropagated once)")
        T, B, H = cache.bufs.key[:3]
        check_upstream(T, B, H, dy, dh_n, dc_n)
        if not isinstance(cache.bufs, _GraphBuffers):
            return self._persistent_backward(cache, dy, dh_n, dc_n)
        bufs, dev = cache.bufs, self.device
        reverse = bufs.key[4]
        with dev.on_stream(int(reverse)):
            if bufs.backward_graph is None:
                self._capture_backward(bufs)
                self.graphs.evict()              # the set grew by the backward's buffers
            bufs.dy[...] = dy
            bufs.dh_buf[...] = dh_n
            bufs.dc_buf[...] = dc_n
            dev.replay(bufs.backward_graph)
            self.graphs.replays += 1
            dx, dw_ih, dw_hh, dbias = self._after_the_loop(bufs.d_pre, cache.x, cache.w_ih, bufs.h_prev)
            dh0, dc0 = bufs.dh0.copy(), bufs.dc_buf.copy()
        cache.spent = True
        bufs.holder = None            # the buffers may be replayed again from here on
        return dx, dw_ih, dw_hh, dbias, dh0, dc0

    def _after_the_loop(self, d_pre, x, w_ih, h_prev):
        """dx, dW_ih, dW_hh and dbias from d_pre (T, B, G): three GEMMs and one reduction over
        all T*B rows, whichever loop made d_pre."""
        dev = self.device
        T, B, G = d_pre.shape
        I, H = x.shape[2], h_prev.shape[2]
        flat = d_pre.reshape(T * B, G)
        dx = dev.gemm(flat, w_ih).reshape(T, B, I)
        dw_ih = dev.gemm(flat.T, x.reshape(T * B, I))
        dw_hh = dev.gemm(flat.T, h_prev.reshape(T * B, H))
        return dx, dw_ih, dw_hh, flat.sum(axis=0)

    # -- the persistent path (cuda_persistent.py plans it, lstm_persistent.cu runs it) ------
    def _persistent_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep):
        from .cuda_persistent import Saved
        xp, dev = self.xp, self.device
        T, B, I = x.shape
        H = w_hh.shape[1]
        G, dtype = 4 * H, np.dtype(x.dtype)
        plan = self.persistent_plans(H, dtype, keep)[0]
        dense = xp.ascontiguousarray
        with dev.on_stream(int(reverse)):
            x_proj = dev.gemm(x.reshape(T * B, I), w_ih.T)
            w_hh = dense(w_hh)
            lengths_dev = xp.asarray(np.ascontiguousarray(lengths, dtype=np.int64))
            y, h_n, c_n = xp.empty((T, B, H), dtype), xp.empty((B, H), dtype), xp.empty((B, H), dtype)
            h_state = xp.empty((T if keep else 2, B, H), dtype)
            # Inference writes no c_prev or gates: any array of the dtype stands in for them.
            c_prev = xp.empty((T, B, H), dtype) if keep else c_n
            gates = xp.empty((T, B, G), dtype) if keep else c_n
            dev.launch(plan.kernel, dtype, plan.blocks * plan.threads, dict(
                x_proj=x_proj, w_hh=w_hh, bias=dense(bias), h0=dense(h0), c0=dense(c0), h_state=h_state,
                c_n=c_n, c_prev=c_prev, gates=gates, y=y, h_n=h_n, lengths=lengths_dev, n_steps=T, B=B, H=H,
                units=plan.units, chunk_cols=plan.chunk_cols, reverse=int(reverse), save=int(keep)),
                block=plan.threads, shared_bytes=plan.shared_bytes)
        cache = None
        if keep:
            cache = _Cache(Saved((T, B, H, dtype, reverse), gates, c_prev, h_state, lengths_dev, w_hh),
                           x, dense(w_ih))
        return y, h_n, c_n, cache

    def _persistent_backward(self, cache, dy, dh_n, dc_n):
        saved, xp, dev = cache.bufs, self.xp, self.device
        T, B, H, dtype, reverse = saved.key
        plan = self.persistent_plans(H, dtype, True)[1]
        dense = xp.ascontiguousarray
        with dev.on_stream(int(reverse)):
            d_pre = xp.empty((T, B, 4 * H), dtype)
            dh0, dc0 = xp.empty((B, H), dtype), xp.empty((B, H), dtype)
            dev.launch(plan.kernel, dtype, plan.blocks * plan.threads, dict(
                w_hh=saved.w_hh, gates=saved.gates, c_prev=saved.c_prev, dy=dense(dy), dh_n=dense(dh_n),
                dc_n=dense(dc_n), d_pre=d_pre, dh0=dh0, dc0=dc0, lengths=saved.lengths, n_steps=T, B=B, H=H,
                units=plan.units, chunk_cols=plan.chunk_cols, reverse=int(reverse)),
                block=plan.threads, shared_bytes=plan.shared_bytes)
            dx, dw_ih, dw_hh, dbias = self._after_the_loop(d_pre, cache.x, cache.w_ih, saved.h_prev)
        cache.spent = True
        return dx, dw_ih, dw_hh, dbias, dh0, dc0
