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
The kernels are lstm_kernels.cu (see its glossary).

Why graphs: a step is two launches of microseconds each; driving T of them from Python costs
more than the GPU work at small B. Each step loop is captured once per shape into a CUDA graph
over *static* buffers (a `_Workspace`) and replayed: inputs are copied in, outputs copied out.
A workspace whose saved activations a forward cache still needs is not reused; another one is
made for the same shape (a 3-layer stack with equal layer sizes holds three).

Why two streams: the engine calls layer_forward once per direction; each direction runs on its
own stream (fenced by events against the caller's stream), so the reverse direction's graph is
enqueued while the forward one still runs and the two overlap without any engine change.

The class is written against a small `device` object (array module, GEMM, kernel launcher,
graph capture, streams). `_CupyDevice` is the real one. `cuda_emulation.EmulatedDevice` runs
the same orchestration in CI on NumPy with the same .cu kernels compiled by g++.

NOT YET RUN ON A GPU: the `_CupyDevice` path (NVRTC build, launches, capture, cuBLAS under
capture, streams) was written without access to one; only the emulated path is tested.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .base import Backend

DEVICE_ENV = "LSTM_ENGINE_CUDA_DEVICE"
KERNEL_SOURCE = Path(__file__).with_name("lstm_kernels.cu")
#: Threads per block of the pointwise kernels (one thread per (b, j)).
BLOCK = 256
#: Argument kinds of each kernel, in order: "p" a device array, "i" a C int. Both the NVRTC
#: launcher and the host emulation build their calls from this table.
KERNELS = {
    "lstm_forward_step": "pppppppppp" + "iiii",
    "lstm_backward_step": "pppppppp" + "iiiii",
    "lstm_backward_finish": "pppp" + "iii",
}
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
INSTALL_HINT = ("pip install 'lstm-engine[cuda12]' (CUDA 12 driver) or "
                "pip install 'lstm-engine[cuda13]' (CUDA 13 driver)")


def kernel_type(dtype) -> str:
    """The C type a kernel is instantiated for; float32 and float64 only."""
    try:
        return DTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"the cuda backend runs float32 and float64, got dtype {np.dtype(dtype)}") from None


def device_id_from_env() -> int:
    """$LSTM_ENGINE_CUDA_DEVICE as a device ordinal (0 when unset)."""
    raw = os.environ.get(DEVICE_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{DEVICE_ENV} must be a device number such as 0 or 1, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{DEVICE_ENV} must be >= 0, got {value}")
    return value


def grid_for(n_threads: int) -> int:
    return max(1, -(-n_threads // BLOCK))


def nvrtc_program(source: Path = KERNEL_SOURCE, kernels=None, types=None) -> tuple[str, tuple[str, ...], list[str]]:
    """What cupy.RawModule gets for one .cu file: its code, the NVRTC options and the name
    expressions of every kernel instantiation (`name<type>`). `kernels` (name -> argument
    kinds) and `types` (C types, for all kernels or per name) default to this backend's
    KERNELS and DTYPES; the CI compile check (cuda_compile.py) takes the same triple."""
    from .cuda_host import instantiations
    kernels = KERNELS if kernels is None else kernels
    types = tuple(DTYPES.values()) if types is None else types
    names = [k if t is None else f"{k}<{t}>" for k, t in instantiations(kernels, types)]
    return Path(source).read_text(), NVRTC_OPTIONS, names


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
        self._module = None
        self._functions = {}

    def activate(self):
        return self._device

    def _load(self):
        if self._module is None:
            code, options, names = nvrtc_program()
            self._module = self.cupy.RawModule(code=code, options=options, name_expressions=names)
            # Every function is fetched (and so compiled and loaded) before any capture starts:
            # loading a module inside a stream capture is not allowed on older drivers.
            self._functions = {n: self._module.get_function(n) for n in names}
        return self._functions

    def prepare(self):
        self._load()

    def gemm(self, a, b, out=None):
        # cupy.matmul on 2-D operands is one cuBLAS gemm; `out` keeps it allocation-free,
        # which stream capture needs (the captured operands are all C-contiguous).
        return self.cupy.matmul(a, b, out=out)

    def launch(self, name, dtype, n_threads, args):
        fn = self._load()[f"{name}<{kernel_type(dtype)}>"]
        conv = tuple(np.int32(a) if kind == "i" else a for kind, a in zip(KERNELS[name], args))
        fn((grid_for(n_threads),), (BLOCK,), conv)

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
        props = cupy.cuda.runtime.getDeviceProperties(self.device_id)
        free, total = self._device.mem_info
        name = props["name"]
        return {
            "device_id": self.device_id,
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "memory_gib": round(total / 2 ** 30, 1),
            "memory_free_gib": round(free / 2 ** 30, 1),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "cupy": cupy.__version__,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        }


# -- workspaces and their graphs ------------------------------------------------------------
class _Workspace:
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


class GraphCache:
    """Workspaces by shape key, least recently used first; free ones are reused."""

    def __init__(self, max_keys: int = 32):
        self.max_keys = max_keys
        self._by_key: OrderedDict = OrderedDict()
        self.captures = 0             # graphs captured (forward and backward)
        self.replays = 0

    def acquire(self, key, make):
        pool = self._by_key.setdefault(key, [])
        self._by_key.move_to_end(key)
        ws = next((w for w in pool if w.free), None)
        if ws is None:
            ws = make()
            pool.append(ws)
            self._evict()
        return ws

    def _evict(self):
        # Drop the oldest shapes' free workspaces; ones a cache holds stay until released.
        for key in list(self._by_key):
            if len(self._by_key) <= self.max_keys:
                break
            kept = [w for w in self._by_key[key] if not w.free]
            if kept:
                self._by_key[key] = kept
            else:
                del self._by_key[key]

    def workspaces(self, key=None) -> list:
        if key is not None:
            return list(self._by_key.get(key, []))
        return [w for pool in self._by_key.values() for w in pool]

class _Cache:
    """What layer_backward needs from a forward; holds its workspace until used up."""

    def __init__(self, ws, x, w_ih):
        self.ws, self.x, self.w_ih = ws, x, w_ih
        self.spent = False


def _step_order(T: int, reverse: bool) -> list:
    return list(range(T - 1, -1, -1)) if reverse else list(range(T))


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self, device=None):
        if device is None:
            device = _CupyDevice(device_id_from_env())
        self.device = device
        self.xp = device.xp
        self.graphs = GraphCache()

    @classmethod
    def unavailable_reason(cls) -> str:
        import importlib.util
        if importlib.util.find_spec("cupy") is None:
            return f"CuPy is not installed (install with: {INSTALL_HINT})"
        try:
            device_id = device_id_from_env()
        except ValueError as exc:
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

    @classmethod
    def emulated(cls):
        """The same orchestration on NumPy with the kernels compiled for the host (CI)."""
        from .cuda_emulation import EmulatedCudaBackend
        return EmulatedCudaBackend()

    def facts(self) -> dict:
        return self.device.facts()

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

    # -- forward ---------------------------------------------------------------------------
    def _new_forward(self, key):
        T, B, H, dtype, reverse, keep = key
        xp, dev = self.xp, self.device
        G = 4 * H
        ws = _Workspace(key)
        ws.x_proj = xp.zeros((T, B, G), dtype)
        ws.rec = xp.zeros((B, G), dtype)
        ws.bias = xp.zeros((G,), dtype)
        ws.w_hh_t = xp.zeros((H, G), dtype)
        ws.w_hh = xp.zeros((G, H), dtype)
        ws.lengths = xp.zeros((B,), np.int64)
        ws.y = xp.zeros((T, B, H), dtype)
        ws.h_n = xp.zeros((B, H), dtype)
        ws.c_n = xp.zeros((B, H), dtype)
        order = _step_order(T, reverse)
        if keep:
            # h_prev/c_prev[t] hold the state entering step t: step t writes the next step's slot.
            ws.h_prev = xp.zeros((T, B, H), dtype)
            ws.c_prev = xp.zeros((T, B, H), dtype)
            ws.gates = xp.zeros((T, B, G), dtype)
            h_slots = [ws.h_prev[t] for t in order] + [ws.h_n]
            c_slots = [ws.c_prev[t] for t in order] + [ws.c_n]
            gate_slots = [ws.gates[t] for t in order]
        else:
            ping_h, ping_c = xp.zeros((2, B, H), dtype), xp.zeros((2, B, H), dtype)
            h_slots = [ping_h[k % 2] for k in range(T)] + [ws.h_n]
            c_slots = [ping_c[k % 2] for k in range(T)] + [ws.c_n]
            scratch = xp.zeros((B, G), dtype)
            gate_slots = [scratch] * T
        ws.h_start, ws.c_start = h_slots[0], c_slots[0]

        def body():
            for k, t in enumerate(order):
                dev.gemm(h_slots[k], ws.w_hh_t, out=ws.rec)
                dev.launch("lstm_forward_step", dtype, B * H,
                           (ws.x_proj[t], ws.rec, ws.bias, h_slots[k], c_slots[k],
                            h_slots[k + 1], c_slots[k + 1], ws.y[t], gate_slots[k], ws.lengths,
                            t, B, H, int(keep)))

        dev.prepare()
        # One eager GEMM first: cuBLAS sets itself up (handle, workspace) outside the capture.
        dev.gemm(ws.h_start, ws.w_hh_t, out=ws.rec)
        ws.forward_graph = dev.capture(int(reverse), body)
        self.graphs.captures += 1
        return ws

    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep):
        xp, dev = self.xp, self.device
        x = xp.ascontiguousarray(x)
        T, B, I = x.shape
        H = w_hh.shape[1]
        dtype = np.dtype(x.dtype)
        kernel_type(dtype)
        reverse, keep = bool(reverse), bool(keep)
        key = (T, B, H, dtype, reverse, keep)
        with dev.on_stream(int(reverse)):
            ws = self.graphs.acquire(key, lambda: self._new_forward(key))
            dev.gemm(x.reshape(T * B, I), w_ih.T, out=ws.x_proj.reshape(T * B, 4 * H))
            ws.bias[...] = bias
            ws.w_hh_t[...] = w_hh.T
            ws.lengths[...] = xp.asarray(np.ascontiguousarray(lengths, dtype=np.int64))
            ws.h_start[...] = h0
            ws.c_start[...] = c0
            dev.replay(ws.forward_graph)
            self.graphs.replays += 1
            # Copies: the workspace is replayed again by the next call of this shape.
            y, h_n, c_n = ws.y.copy(), ws.h_n.copy(), ws.c_n.copy()
            cache = None
            if keep:
                ws.w_hh[...] = w_hh
                cache = _Cache(ws, x, xp.ascontiguousarray(w_ih))
                ws.holder = weakref.ref(cache)
        return y, h_n, c_n, cache

    # -- backward --------------------------------------------------------------------------
    def _capture_backward(self, ws):
        T, B, H, dtype, reverse, _ = ws.key
        xp, dev = self.xp, self.device
        G = 4 * H
        ws.dy = xp.zeros((T, B, H), dtype)
        ws.dh_buf = xp.zeros((B, H), dtype)
        ws.dc_buf = xp.zeros((B, H), dtype)
        ws.d_pre = xp.zeros((T, B, G), dtype)
        ws.rec_b = xp.zeros((B, H), dtype)
        ws.dh0 = xp.zeros((B, H), dtype)
        order = _step_order(T, reverse)[::-1]

        def body():
            t_after = -1
            for t in order:
                dev.launch("lstm_backward_step", dtype, B * H,
                           (ws.gates[t], ws.c_prev[t], ws.dy[t], ws.rec_b, ws.dh_buf, ws.dc_buf,
                            ws.d_pre[t], ws.lengths, t, max(t_after, 0), int(t_after >= 0), B, H))
                dev.gemm(ws.d_pre[t], ws.w_hh, out=ws.rec_b)
                t_after = t
            dev.launch("lstm_backward_finish", dtype, B * H,
                       (ws.rec_b, ws.dh_buf, ws.dh0, ws.lengths, order[-1], B, H))

        dev.gemm(ws.d_pre[0], ws.w_hh, out=ws.rec_b)
        ws.backward_graph = dev.capture(int(reverse), body)
        self.graphs.captures += 1

    def layer_backward(self, cache, dy, dh_n, dc_n):
        if not isinstance(cache, _Cache):
            raise TypeError("cache must be what this backend's layer_forward(keep=True) returned")
        if cache.spent:
            raise RuntimeError("this forward cache was already backpropagated (each forward can be "
                               "backpropagated once)")
        ws, dev = cache.ws, self.device
        T, B, H, _, reverse, _ = ws.key
        G = 4 * H
        I = cache.x.shape[2]
        with dev.on_stream(int(reverse)):
            if ws.backward_graph is None:
                self._capture_backward(ws)
            ws.dy[...] = dy
            ws.dh_buf[...] = dh_n
            ws.dc_buf[...] = dc_n
            dev.replay(ws.backward_graph)
            self.graphs.replays += 1
            flat = ws.d_pre.reshape(T * B, G)
            dx = dev.gemm(flat, cache.w_ih).reshape(T, B, I)
            dw_ih = dev.gemm(flat.T, cache.x.reshape(T * B, I))
            dw_hh = dev.gemm(flat.T, ws.h_prev.reshape(T * B, H))
            dbias = flat.sum(axis=0)
            dh0, dc0 = ws.dh0.copy(), ws.dc_buf.copy()
        cache.spent = True
        ws.holder = None            # the workspace may be replayed again from here on
        return dx, dw_ih, dw_hh, dbias, dh0, dc0
