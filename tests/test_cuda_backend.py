"""The `cuda` backend without a GPU: its .cu kernels compiled by g++ against NumPy, its graph
and workspace bookkeeping, and what the registry says where CuPy or a GPU is missing.
(The full parity suite runs the emulated backend too, through conftest.FAST_BACKENDS.)"""

import gc
import subprocess
import sys
import types

import numpy as np
import pytest

from lstm_engine import BackendError, LSTM, backends, get_backend
from lstm_engine.backends import cuda, cuda_host
from lstm_engine.backends.reference import NumpyBackend

from conftest import assert_results_close, make_case, run_case

emulation = pytest.importorskip("lstm_engine.backends.cuda_emulation")
pytestmark = pytest.mark.skipif(bool(emulation.unavailable_reason()), reason=emulation.unavailable_reason() or "")

DTYPES = [pytest.param(np.float64, id="float64"), pytest.param(np.float32, id="float32")]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-6, atol=2e-6)}


@pytest.fixture(scope="module")
def kernels():
    return emulation.EmulatedKernels()


def sigmoid(z):
    return 0.5 * np.tanh(0.5 * z) + 0.5


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# -- the kernels, one launch at a time -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H", [(1, 1), (3, 5), (2, 200)], ids=["B1-H1", "B3-H5", "B2-H200-two-blocks"])
def test_forward_step_kernel(kernels, dtype, B, H):
    rng = np.random.default_rng(B * H)
    G = 4 * H
    x_proj, rec, bias = random(rng, (B, G), dtype), random(rng, (B, G), dtype), random(rng, (G,), dtype)
    h_in, c_in = random(rng, (B, H), dtype), random(rng, (B, H), dtype)
    t = 2
    lengths = np.array([5, 2, 3][:B], np.int64)          # row 1 (when present) is inactive at t=2
    h_out, c_out, y, gates = (np.full(s, np.nan, dtype) for s in [(B, H), (B, H), (B, H), (B, G)])
    kernels("lstm_forward_step", dtype, B * H,
            (x_proj, rec, bias, h_in, c_in, h_out, c_out, y, gates, lengths, t, B, H, 1))
    z = x_proj + rec + bias
    i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c = f * c_in + i * g
    h = o * np.tanh(c)
    active = (t < lengths)[:, None]
    np.testing.assert_allclose(h_out, np.where(active, h, h_in), **TOL[dtype])
    np.testing.assert_allclose(c_out, np.where(active, c, c_in), **TOL[dtype])
    np.testing.assert_allclose(y, np.where(active, h, 0), **TOL[dtype])
    want_gates = np.where(np.repeat(active, G, axis=1), np.concatenate([i, f, g, o], axis=1), 0)
    np.testing.assert_allclose(gates, want_gates, **TOL[dtype])


def test_forward_step_without_save_leaves_gates_alone(kernels):
    B, H = 2, 3
    args = [np.ones((B, 4 * H)), np.zeros((B, 4 * H)), np.zeros(4 * H), np.zeros((B, H)), np.zeros((B, H)),
            np.empty((B, H)), np.empty((B, H)), np.empty((B, H)), np.full((B, 4 * H), 7.0)]
    kernels("lstm_forward_step", np.float64, B * H, (*args, np.array([1, 1], np.int64), 0, B, H, 0))
    assert (args[8] == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_after", [0, 1], ids=["last-step", "inner-step"])
def test_backward_step_kernel(kernels, dtype, has_after):
    rng = np.random.default_rng(7 + has_after)
    B, H = 4, 3
    G = 4 * H
    gates = sigmoid(random(rng, (B, G), dtype)).astype(dtype)
    gates[:, 2 * H:3 * H] = np.tanh(random(rng, (B, H), dtype))
    c_prev, dy, rec = random(rng, (B, H), dtype), random(rng, (B, H), dtype), random(rng, (B, H), dtype)
    dh_buf, dc_buf = random(rng, (B, H), dtype), random(rng, (B, H), dtype)
    dh_before, dc_before = dh_buf.copy(), dc_buf.copy()
    d_pre = np.full((B, G), np.nan, dtype)
    t, t_after = 3, 4
    lengths = np.array([5, 4, 3, 1], np.int64)   # rows: active at t and t_after / at t only / neither / neither
    kernels("lstm_backward_step", dtype, B * H,
            (gates, c_prev, dy, rec, dh_buf, dc_buf, d_pre, lengths, t, t_after, has_after, B, H))
    after_active = (has_after and True) & (t_after < lengths)[:, None]
    dh_carried = np.where(after_active, rec, dh_before)
    active = (t < lengths)[:, None]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    tanh_c = np.tanh(f * c_prev + i * g)
    dh = dh_carried + dy
    dc = dc_before + dh * o * (1 - tanh_c ** 2)
    want = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g ** 2),
                           dh * tanh_c * o * (1 - o)], axis=1)
    np.testing.assert_allclose(d_pre, np.where(np.repeat(active, G, axis=1), want, 0), **TOL[dtype])
    np.testing.assert_allclose(dh_buf, dh_carried, **TOL[dtype])
    np.testing.assert_allclose(dc_buf, np.where(active, dc * f, dc_before), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_finish_kernel(kernels, dtype):
    rng = np.random.default_rng(3)
    B, H = 3, 2
    rec, dh_buf = random(rng, (B, H), dtype), random(rng, (B, H), dtype)
    dh0 = np.empty((B, H), dtype)
    lengths = np.array([2, 1, 3], np.int64)
    kernels("lstm_backward_finish", dtype, B * H, (rec, dh_buf, dh0, lengths, 1, B, H))
    np.testing.assert_array_equal(dh0, np.where((1 < lengths)[:, None], rec, dh_buf))


def test_launch_refuses_what_the_kernel_would_misread(kernels):
    B, H = 2, 2
    good = [np.zeros((B, 4 * H)), np.zeros((B, 4 * H)), np.zeros(4 * H)] + [np.zeros((B, H))] * 5 + \
        [np.zeros((B, 4 * H)), np.ones(B, np.int64), 0, B, H, 1]
    strided = list(good)
    strided[3] = np.zeros((B, 2 * H))[:, ::2]
    with pytest.raises(TypeError, match="argument 3 must be a C-contiguous ndarray"):
        kernels("lstm_forward_step", np.float64, B * H, strided)
    wrong = list(good)
    wrong[0] = wrong[0].astype(np.float32)
    with pytest.raises(TypeError, match="argument 0 has dtype float32"):
        kernels("lstm_forward_step", np.float64, B * H, wrong)
    with pytest.raises(TypeError, match="takes 14 arguments, got 3"):
        kernels("lstm_forward_step", np.float64, B * H, good[:3])
    with pytest.raises(TypeError, match="float32 and float64, got dtype float16"):
        kernels("lstm_forward_step", np.float16, B * H, good)


# -- the host build ---------------------------------------------------------------------------
def test_library_is_built_once_into_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(emulation.CACHE_ENV, str(tmp_path))
    path = emulation.build_library()
    assert path.parent == tmp_path / "cuda-emulation" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]      # no build leftovers
    real_run = subprocess.run

    def no_rebuild(cmd, *a, **kw):
        assert "-shared" not in cmd, "the cached library was rebuilt"
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(cuda_host.subprocess, "run", no_rebuild)
    assert emulation.build_library() == path


def test_every_kernel_instantiation_has_a_host_entry_point():
    src = emulation.wrapper_source()
    for name in cuda.KERNELS:
        for ctype in ("float", "double"):
            assert f"emu_{name}_{ctype}(" in src and f"&{name}<{ctype}>" in src


def test_missing_compiler_is_explained(monkeypatch):
    monkeypatch.setenv("CXX", "/no/such/g++")
    assert "g++" in emulation.unavailable_reason()
    with pytest.raises(RuntimeError, match="no host C\\+\\+ compiler"):
        emulation.build_library()


# -- orchestration: graphs, workspaces, streams -------------------------------------------
def layer_inputs(T=6, B=3, I=4, H=5, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return dict(x=random(rng, (T, B, I), dtype), w_ih=random(rng, (4 * H, I), dtype) * 0.4,
                w_hh=random(rng, (4 * H, H), dtype) * 0.4, bias=random(rng, (4 * H,), dtype),
                h0=random(rng, (B, H), dtype), c0=random(rng, (B, H), dtype))


def upstream(T, B, H, dtype, seed):
    rng = np.random.default_rng(seed)
    return random(rng, (T, B, H), dtype), random(rng, (B, H), dtype), random(rng, (B, H), dtype)


def test_graphs_are_captured_once_per_shape_and_replayed():
    be = emulation.EmulatedCudaBackend()
    lengths = np.array([6, 2, 4])
    for seed in range(3):
        be.layer_forward(**layer_inputs(seed=seed), lengths=lengths, reverse=False, keep=False)
    assert be.graphs.captures == 1 and be.graphs.replays == 3
    (ws,) = be.graphs.workspaces()
    assert len(ws.forward_graph) == 2 * 6 and ws.forward_graph.replays == 3     # GEMM + kernel per step
    be.layer_forward(**layer_inputs(T=7), lengths=np.full(3, 7), reverse=False, keep=False)
    be.layer_forward(**layer_inputs(seed=9), lengths=lengths, reverse=True, keep=False)
    assert be.graphs.captures == 3 and len(be.graphs.workspaces()) == 3


def test_replayed_graph_reads_fresh_inputs():
    """A replay must see this call's weights, lengths and state, not the capturing call's."""
    be, ref = emulation.EmulatedCudaBackend(), NumpyBackend()
    for seed, lengths in [(0, [6, 2, 4]), (1, [1, 6, 3]), (2, [6, 6, 6])]:
        inputs = layer_inputs(seed=seed)
        got = be.layer_forward(**inputs, lengths=np.array(lengths), reverse=True, keep=False)
        want = ref.layer_forward(**inputs, lengths=np.array(lengths), reverse=True, keep=False)
        for g, w in zip(got[:3], want[:3]):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    assert be.graphs.captures == 1


def test_live_caches_get_their_own_workspaces_and_release_them():
    """Two kept forwards of one shape (two layers of equal size) must not share saved
    activations; a workspace is reused once its cache is backpropagated or dropped."""
    be, ref = emulation.EmulatedCudaBackend(), NumpyBackend()
    lengths = np.array([6, 3, 5])
    ins = [layer_inputs(seed=s) for s in (1, 2)]
    got = [be.layer_forward(**i, lengths=lengths, reverse=False, keep=True) for i in ins]
    want = [ref.layer_forward(**i, lengths=lengths, reverse=False, keep=True) for i in ins]
    assert len(be.graphs.workspaces()) == 2 and be.graphs.captures == 2
    for k in (1, 0):                                  # backward in the engine's order: last first
        up = upstream(6, 3, 5, np.float64, seed=k)
        g = be.layer_backward(got[k][3], *up)
        w = ref.layer_backward(want[k][3], *up)
        for a, b in zip(g, w):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert all(ws.free for ws in be.graphs.workspaces())
    be.layer_forward(**ins[0], lengths=lengths, reverse=False, keep=True)
    assert len(be.graphs.workspaces()) == 2 and be.graphs.captures == 4   # 2 fwd + 2 bwd, none new
    kept = be.layer_forward(**ins[1], lengths=lengths, reverse=False, keep=True)
    assert kept[3].ws.holder() is kept[3]
    del kept
    gc.collect()
    be.layer_forward(**ins[1], lengths=lengths, reverse=False, keep=True)
    assert len(be.graphs.workspaces()) == 2


def test_backward_graph_shape_and_single_use():
    be = emulation.EmulatedCudaBackend()
    T, B, H = 5, 2, 3
    out = be.layer_forward(**layer_inputs(T=T, B=B, H=H), lengths=np.array([5, 2]), reverse=False, keep=True)
    be.layer_backward(out[3], *upstream(T, B, H, np.float64, 0))
    (ws,) = be.graphs.workspaces()
    assert len(ws.backward_graph) == 2 * T + 1                         # kernel + GEMM per step, finish
    with pytest.raises(RuntimeError, match="already backpropagated"):
        be.layer_backward(out[3], *upstream(T, B, H, np.float64, 0))
    with pytest.raises(TypeError, match="cache must be"):
        be.layer_backward({"x": 1}, *upstream(T, B, H, np.float64, 0))


def test_outputs_survive_the_next_replay():
    be = emulation.EmulatedCudaBackend()
    first = be.layer_forward(**layer_inputs(seed=0), lengths=np.full(3, 6), reverse=False, keep=False)
    kept = [a.copy() for a in first[:3]]
    be.layer_forward(**layer_inputs(seed=1), lengths=np.full(3, 6), reverse=False, keep=False)
    for a, b in zip(first[:3], kept):
        np.testing.assert_array_equal(a, b)


def test_directions_run_on_their_own_streams():
    be = emulation.EmulatedCudaBackend()
    case = make_case(T=4, B=2, I=3, H=4, num_layers=2, bidirectional=True)
    model = LSTM(**case["config"], backend=be, seed=0)
    model.forward(case["x"])
    model.backward(case["d_outputs"])
    assert be.device.stream_log == [0, 1, 0, 1, 0, 1, 0, 1]
    assert {g.stream for ws in be.graphs.workspaces() for g in (ws.forward_graph, ws.backward_graph)} == {0, 1}


def test_graph_cache_evicts_the_oldest_free_shapes():
    be = emulation.EmulatedCudaBackend()
    be.graphs.max_keys = 2
    held = be.layer_forward(**layer_inputs(T=3), lengths=np.full(3, 3), reverse=False, keep=True)
    for T in (4, 5, 6):
        be.layer_forward(**layer_inputs(T=T), lengths=np.full(3, T), reverse=False, keep=False)
    keys = [ws.key[0] for ws in be.graphs.workspaces()]
    assert 3 in keys and 4 not in keys and 6 in keys                  # the held one is kept
    assert held[3].ws in be.graphs.workspaces()


def test_capture_refuses_allocating_gemms_and_nesting():
    dev = emulation.EmulatedDevice()
    a = np.ones((2, 2))

    def allocating():
        dev.gemm(a, a)

    with pytest.raises(RuntimeError, match="preallocated `out`"):
        dev.capture(0, allocating)
    with pytest.raises(RuntimeError, match="already in progress"):
        dev.capture(0, lambda: dev.capture(1, lambda: None))


@pytest.mark.parametrize("dtype", DTYPES)
def test_emulated_backend_matches_reference_on_a_long_ragged_batch(dtype):
    """More than one block of threads per step (B*H > 256) and long ragged spans."""
    case = make_case(T=30, B=9, I=6, H=40, bidirectional=True, lengths=[30, 1, 17, 29, 2, 30, 8, 15, 23],
                     initial_state=True, dtype=dtype, seed=4)
    ref_model, want = run_case(case, "numpy", seed=1)
    _, got = run_case(case, emulation.EmulatedCudaBackend(), seed=1, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)


def test_emulated_backend_is_not_registered_and_auto_never_picks_it():
    assert "cuda-emulated" not in backends.names()
    assert get_backend("auto").name != "cuda-emulated"
    be = cuda.CudaBackend.emulated()
    assert be.name == "cuda-emulated" and be.xp is np and get_backend(be) is be
    facts = be.facts()
    assert facts["emulated"] is True and facts["kernels"].endswith(".so")


def test_float16_is_refused_with_the_dtype_named():
    be = emulation.EmulatedCudaBackend()
    with pytest.raises(TypeError, match="float32 and float64, got dtype float16"):
        be.layer_forward(**layer_inputs(dtype=np.float16), lengths=np.full(3, 6), reverse=False, keep=False)


# -- detection ----------------------------------------------------------------------------
def fake_cupy(count=1, error=None, name=b"NVIDIA H100 80GB HBM3"):
    def get_count():
        if error is not None:
            raise error
        return count

    runtime = types.SimpleNamespace(
        getDeviceCount=get_count, runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 12080,
        getDeviceProperties=lambda i: {"name": name, "major": 9, "minor": 0, "totalGlobalMem": 80 * 2 ** 30})

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

    cuda_ns = types.SimpleNamespace(runtime=runtime, Device=Device, Stream=Stream)
    return types.SimpleNamespace(__version__="13.6.0", cuda=cuda_ns)


@pytest.fixture
def no_cuda_instance(monkeypatch):
    monkeypatch.delitem(backends._INSTANCES, "cuda", raising=False)
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)


def test_without_cupy_the_registry_names_both_extras(monkeypatch, no_cuda_instance):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real(n, *a))
    info = backends.probe("cuda")
    assert not info.available
    assert "CuPy is not installed" in info.reason
    assert "pip install 'lstm-engine[cuda12]'" in info.reason and "pip install 'lstm-engine[cuda13]'" in info.reason
    with pytest.raises(BackendError, match=r"backend 'cuda' is not available: CuPy is not installed"):
        get_backend("cuda")


@pytest.mark.parametrize("cupy,env,match", [
    (dict(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")), "",
     r"no CUDA device found \(RuntimeError: cudaErrorNoDevice"),
    (dict(count=0), "", r"^no CUDA device found$"),
    (dict(count=2), "2", r"LSTM_ENGINE_CUDA_DEVICE=2, but this machine has 2 CUDA device\(s\) \(0..1\)"),
    (dict(count=2), "gpu1", r"LSTM_ENGINE_CUDA_DEVICE must be a device number such as 0 or 1, got 'gpu1'"),
    (dict(count=2), "-1", r"LSTM_ENGINE_CUDA_DEVICE must be >= 0, got -1"),
], ids=["driver-error", "no-device", "device-id-too-high", "device-id-not-a-number", "device-id-negative"])
def test_with_cupy_but_no_usable_device(monkeypatch, no_cuda_instance, cupy, env, match):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: types.SimpleNamespace(name="cupy") if n == "cupy" else real(n, *a))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(**cupy))
    monkeypatch.setenv(cuda.DEVICE_ENV, env)
    info = backends.probe("cuda")
    assert not info.available
    assert __import__("re").search(match, info.reason), info.reason


@pytest.fixture
def gpu_cupy(monkeypatch):
    """A fake CuPy that finds one GPU; the cuda backend it makes is dropped afterwards."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: types.SimpleNamespace(name="cupy") if n == "cupy" else real(n, *a))
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)
    backends._INSTANCES.pop("cuda", None)
    fake = fake_cupy(count=1)
    fake.RawModule = lambda code, options, name_expressions: types.SimpleNamespace(get_function=lambda n: n)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    yield fake
    backends._INSTANCES.pop("cuda", None)


class CompileException(Exception):
    """Stands in for cupy.cuda.compiler.CompileException."""


def test_auto_takes_cuda_when_it_starts(gpu_cupy, recwarn):
    assert get_backend("auto").name == "cuda"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_compile_failure_makes_auto_fall_back_and_an_explicit_cuda_fail(gpu_cupy):
    def broken(code, options, name_expressions):
        raise CompileException("nvrtc: error: invalid value for --gpu-architecture (-arch)\n\n(the log)")

    gpu_cupy.RawModule = broken
    with pytest.warns(RuntimeWarning, match=r"^backend 'cuda' failed to start \(CompileException: nvrtc: error: "
                                            r"invalid value for --gpu-architecture \(-arch\)\); using 'cpu'$"):
        assert get_backend("auto").name == "cpu"
    with pytest.raises(CompileException, match="invalid value for --gpu-architecture"):
        get_backend("cuda")


def test_an_initialisation_failure_makes_auto_fall_back_and_an_explicit_cuda_fail(gpu_cupy):
    def busy(non_blocking=False):
        raise RuntimeError("cudaErrorDevicesUnavailable: CUDA-capable device(s) is/are busy or unavailable")

    gpu_cupy.cuda.Stream = busy
    with pytest.warns(RuntimeWarning, match=r"backend 'cuda' failed to start \(RuntimeError: "
                                            r"cudaErrorDevicesUnavailable.*\); using 'cpu'"):
        assert get_backend("auto").name == "cpu"
    with pytest.raises(RuntimeError, match="cudaErrorDevicesUnavailable"):
        get_backend("cuda")


def test_cupy_without_a_gpu_makes_auto_pick_cpu_quietly(gpu_cupy, recwarn):
    """CuPy imports without a GPU (measured with cupy-cuda12x 14.2 here: getDeviceCount raises
    cudaErrorInsufficientDriver): `auto` takes cpu without a warning; it is not a failure."""
    sys.modules["cupy"] = fake_cupy(error=RuntimeError(
        "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"))
    assert get_backend("auto").name == "cpu"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_gpu_facts_show_name_memory_and_compute_capability(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    facts = cuda._CupyDevice(0).facts()
    assert facts["gpu"] == "NVIDIA H100 80GB HBM3" and facts["compute_capability"] == "9.0"
    assert facts["memory_gib"] == 80.0 and facts["device_id"] == 0 and facts["cuda_driver"] == 12080


def test_device_id_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)
    assert cuda.device_id_from_env() == 0
    monkeypatch.setenv(cuda.DEVICE_ENV, " 3 ")
    assert cuda.device_id_from_env() == 3


def test_kernel_source_ships_with_the_package():
    assert cuda.KERNEL_SOURCE.exists() and emulation.COMPAT_HEADER.exists()
    text = cuda.KERNEL_SOURCE.read_text()
    assert "__syncthreads" not in text.replace("No shared memory and no __syncthreads", "")
    assert "__shared__" not in text


# -- the real GPU ---------------------------------------------------------------------------
_CUDA = backends.probe("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not _CUDA.available, reason=f"cuda backend unavailable: {_CUDA.reason}")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw", [
    ("bidirectional-ragged", dict(T=7, B=4, I=5, H=6, bidirectional=True, lengths=[3, 7, 1, 6])),
    ("deep-bi-ragged-state", dict(T=6, B=3, I=3, H=5, num_layers=3, bidirectional=True, lengths=[6, 2, 4],
                                  initial_state=True)),
    ("wide", dict(T=40, B=64, I=33, H=128, lengths=list(range(40, 0, -1)) + [40] * 24)),
])
def test_real_cuda_matches_reference(name, kw, dtype):
    case = make_case(**kw, dtype=dtype, seed=len(name))
    ref_model, want = run_case(case, "numpy", seed=5)
    _, got = run_case(case, "cuda", seed=5, state=ref_model.state_dict())
    assert_results_close(got, want, dtype)
    _, again = run_case(case, "cuda", seed=5, state=ref_model.state_dict())     # graph replay
    assert_results_close(again, want, dtype)
