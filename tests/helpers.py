"""Helpers shared by the test files: matched models on several backends, the one tolerance
table, and loading a benchmark script. (Fixtures live in conftest.py; this is a plain module,
imported as `from helpers import ...`.)"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lstm_engine import LSTM
from lstm_engine import backends as registry

#: Every backend that runs here besides the reference, the hidden `cuda-emulated` (the cuda
#: backend's orchestration and .cu kernels on the host, built by g++) included.
FAST_BACKENDS = [name for name in registry.names(include_hidden=True)
                 if name != "numpy" and registry.probe(name).available]

#: The two dtypes every backend runs, as pytest parameters with readable ids.
DTYPES = [pytest.param(np.float64, id="float64"), pytest.param(np.float32, id="float32")]

#: (rtol, atol) by what is compared and its dtype; `assert_close` scales atol by the largest
#: magnitude of the expected values (at least 1).
TOLERANCE = {
    # a fast backend through whole sequences (forward, BPTT, a model) vs the reference
    "backend": {np.float64: (1e-9, 1e-11), np.float32: (2e-4, 2e-5)},
    # one step (a kernel launch, a cell step) vs the reference's step functions
    "step": {np.float64: (1e-12, 1e-13), np.float32: (2e-6, 2e-6)},
    # a matrix product vs NumPy's, per unit of its reduction length K (atol is multiplied by K)
    "gemm": {np.float64: (1e-12, 1e-12), np.float32: (2e-5, 2e-5)},
    # the reference's gradients vs central finite differences (float64, eps 1e-6)
    "finite_difference": {np.float64: (1e-6, 1e-8)},
    # ours vs torch.nn.LSTM with the same weights
    "torch": {np.float64: (0.0, 1e-10), np.float32: (0.0, 1e-6)},
    # a sequence pushed in chunks through a stream vs one forward on the same backend
    "stream": {np.float64: (0.0, 1e-13), np.float32: (0.0, 1e-6)},
    # an exported ONNX model in onnxruntime (float32 only) vs the engine
    "onnx": {np.float32: (0.0, 1e-5)},
}


def tolerance(kind: str, dtype) -> tuple[float, float]:
    """(rtol, atol) of TOLERANCE for `kind` and `dtype`."""
    return TOLERANCE[kind][np.dtype(dtype).type]


def assert_close(got, want, dtype, kind: str = "backend", err_msg: str = "", k: int = 1):
    """np.testing.assert_allclose with TOLERANCE[kind][dtype]; atol is scaled by
    max(1, |want|.max()) and by `k` (a product's reduction length)."""
    rtol, atol = tolerance(kind, dtype)
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol * scale * k,
                               err_msg=err_msg)


def make_case(T, B, I, H, num_layers=1, bidirectional=False, lengths=None, initial_state=False,
              dtype=np.float64, seed=0, batch_first=False, dropout=0.0):
    """Inputs and upstream gradients for one test case, as host arrays."""
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x_shape = (B, T, I) if batch_first else (T, B, I)
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    state_shape = (num_layers * D, B, H)
    case = dict(
        config=dict(input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional,
                    batch_first=batch_first, dropout=dropout, dtype=dtype),
        x=rng.standard_normal(x_shape).astype(dtype),
        lengths=None if lengths is None else np.asarray(lengths),
        initial_state=(rng.standard_normal(state_shape).astype(dtype),
                       rng.standard_normal(state_shape).astype(dtype)) if initial_state else None,
        d_outputs=rng.standard_normal(out_shape).astype(dtype),
        d_h_n=rng.standard_normal(state_shape).astype(dtype),
        d_c_n=rng.standard_normal(state_shape).astype(dtype),
    )
    return case


def run_case(case, backend, seed=0, state=None):
    """forward + backward on `backend`; returns host arrays keyed by what they are."""
    model = LSTM(**case["config"], backend=backend, seed=seed)
    if state is not None:
        model.load_state_dict(state)
    out, (h_n, c_n) = model.forward(case["x"], lengths=case["lengths"], initial_state=case["initial_state"])
    grads = model.backward(case["d_outputs"], case["d_h_n"], case["d_c_n"])
    to_np = model.backend.to_numpy
    result = {"outputs": to_np(out), "h_n": to_np(h_n), "c_n": to_np(c_n),
              "d_input": to_np(grads.input), "d_h_0": to_np(grads.h_0), "d_c_0": to_np(grads.c_0)}
    result.update({f"d_{name}": to_np(g) for name, g in grads.params.items()})
    return model, result


def assert_results_close(got: dict, want: dict, dtype, kind: str = "backend"):
    """Every array of run_case's results within TOLERANCE[kind]."""
    assert got.keys() == want.keys()
    for key in want:
        assert_close(got[key], want[key], dtype, kind, err_msg=key)


def numeric_gradient(f, array, entries=None, eps=1e-6) -> np.ndarray:
    """Central differences of ``f()`` with respect to ``array`` (changed in place and
    restored), at every entry, or only at ``entries`` (a list of index tuples; the result is
    then a 1-D array in their order)."""
    grad = np.zeros_like(array) if entries is None else np.zeros(len(entries))
    for k, idx in enumerate(np.ndindex(array.shape) if entries is None else entries):
        orig = array[idx]
        array[idx] = orig + eps
        up = f()
        array[idx] = orig - eps
        down = f()
        array[idx] = orig
        grad[idx if entries is None else k] = (up - down) / (2 * eps)
    return grad


def layer_inputs(T=6, B=3, I=4, H=5, dtype=np.float64, seed=0):
    """Arguments of Backend.layer_forward (without lengths, reverse, keep), host arrays."""
    rng = np.random.default_rng(seed)
    return dict(x=rng.standard_normal((T, B, I)).astype(dtype),
                w_ih=(rng.standard_normal((4 * H, I)) * 0.4).astype(dtype),
                w_hh=(rng.standard_normal((4 * H, H)) * 0.4).astype(dtype),
                bias=rng.standard_normal(4 * H).astype(dtype),
                h0=rng.standard_normal((B, H)).astype(dtype),
                c0=rng.standard_normal((B, H)).astype(dtype))


def upstream(T, B, H, dtype, seed):
    """(dy, dh_n, dc_n) of Backend.layer_backward, host arrays."""
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(s).astype(dtype) for s in [(T, B, H), (B, H), (B, H)])


def load_benchmark(name: str):
    """A script of benchmarks/ as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module                  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fake_cupy(count=1, error=None, name=b"NVIDIA H100 80GB HBM3", sms=132, shared_optin=232448, blocks_per_sm=1):
    """A stand-in for the `cupy` module where there is no GPU: a device runtime that finds
    `count` GPUs (or raises `error`) with an H100's properties, arrays and matmul from NumPy,
    streams and events that do nothing, and NVRTC modules whose kernels record their launches
    (in `.launches`: name, grid, block, args, shared_mem, cooperative) without running them;
    the occupancy calculator answers `blocks_per_sm`."""
    def get_count():
        if error is not None:
            raise error
        return count

    props = {"name": name, "major": 9, "minor": 0, "totalGlobalMem": 80 * 2 ** 30,
             "multiProcessorCount": sms, "sharedMemPerBlockOptin": shared_optin}
    runtime = types.SimpleNamespace(
        getDeviceCount=get_count, runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 12080,
        getDeviceProperties=lambda i: dict(props))
    launches, modules = [], []

    class Device:
        def __init__(self, i):
            self.id = i
            self.mem_info = (70 * 2 ** 30, 80 * 2 ** 30)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Stream:
        def __init__(self, non_blocking=False):
            self.non_blocking = non_blocking

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def record(self):
            return object()

        def wait_event(self, event):
            pass

    class Kernel:
        def __init__(self, name, cooperative):
            self.name, self.cooperative = name, cooperative
            self.max_dynamic_shared_size_bytes = 0
            self.kernel = types.SimpleNamespace(ptr=id(self))

        def __call__(self, grid, block, args, shared_mem=0):
            if shared_mem > max(48 * 1024, self.max_dynamic_shared_size_bytes):
                raise RuntimeError(f"{self.name}: {shared_mem} bytes of dynamic shared memory without opting in")
            launches.append(dict(name=self.name, grid=grid, block=block, args=args, shared_mem=shared_mem,
                                 cooperative=self.cooperative))

    class RawModule:
        def __init__(self, code, options, name_expressions, enable_cooperative_groups=False):
            modules.append(dict(names=name_expressions, options=options, cooperative=enable_cooperative_groups))
            self.cooperative = enable_cooperative_groups

        def get_function(self, name):
            return Kernel(name, self.cooperative)

    driver = types.SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=lambda ptr, threads, shared: blocks_per_sm)
    cuda_ns = types.SimpleNamespace(runtime=runtime, driver=driver, Device=Device, Stream=Stream,
                                    get_current_stream=lambda: Stream())
    return types.SimpleNamespace(__version__="13.6.0", cuda=cuda_ns, RawModule=RawModule, launches=launches,
                                 # empty gives zeros: the recorded kernels write nothing
                                 modules=modules, matmul=np.matmul, empty=np.zeros, zeros=np.zeros,
                                 asarray=np.asarray, ascontiguousarray=np.ascontiguousarray)
