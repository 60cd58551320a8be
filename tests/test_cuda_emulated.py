"""The `cuda` backend without a GPU: its .cu kernels compiled by g++ and checked one launch at
a time against the reference's step functions, the kernel table against the .cu source, and
its graph and buffer bookkeeping; the persistent path's plans, its recurrence switch and
fallback, its kernels against the reference under every fiber schedule, one launch per
layer-direction, and the exact shared memory they use. The parity suite
(tests/test_backend_parity.py) runs the whole backend too, as the hidden registry entries
`cuda-emulated` and `cuda-emulated-persistent`; tests/test_cuda_gpu.py runs the same kernel
checks on a real GPU."""

import gc
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cuda_checks import (  # noqa: F401  (collected here, with this module's `device`)
    test_backward_finish_kernel,
    test_backward_step_kernel,
    test_forward_step_kernel,
    test_forward_step_without_save_leaves_gates_alone,
)
from helpers import (
    DTYPES,
    assert_close,
    assert_results_close,
    layer_inputs,
    make_case,
    run_case,
    upstream,
)

from lstm_engine import LSTM, BackendError, backends, get_backend
from lstm_engine.backends import cuda, cuda_host
from lstm_engine.backends import cuda_persistent as persistent
from lstm_engine.backends.reference import NumpyBackend

emulation = pytest.importorskip("lstm_engine.backends.cuda_emulation")
pytestmark = pytest.mark.skipif(bool(emulation.unavailable_reason()), reason=emulation.unavailable_reason() or "")

@pytest.fixture(scope="module")
def device():
    return emulation.EmulatedDevice()


# -- the kernels, one launch at a time -------------------------------------------------------
def _forward_args(B=2, H=2):
    return dict(x_proj_t=np.zeros((B, 4 * H)), rec=np.zeros((B, 4 * H)), bias=np.zeros(4 * H),
                h_prev_t=np.zeros((B, H)), c_prev_t=np.zeros((B, H)), h_out=np.zeros((B, H)),
                c_out=np.zeros((B, H)), y_t=np.zeros((B, H)), gates_t=np.zeros((B, 4 * H)),
                lengths=np.ones(B, np.int64), t=0, B=B, H=H, save=1)


def test_launch_refuses_what_the_kernel_would_misread(device):
    good = _forward_args()
    launch = device.kernels
    with pytest.raises(TypeError, match="argument h_prev_t must be a C-contiguous array"):
        launch("lstm_forward_step", np.float64, 4, {**good, "h_prev_t": np.zeros((2, 4))[:, ::2]})
    with pytest.raises(TypeError, match="argument x_proj_t has dtype float32, expected float64"):
        launch("lstm_forward_step", np.float64, 4, {**good, "x_proj_t": good["x_proj_t"].astype(np.float32)})
    with pytest.raises(TypeError, match="argument lengths has dtype float64, expected int64"):
        launch("lstm_forward_step", np.float64, 4, {**good, "lengths": np.ones(2)})
    with pytest.raises(ValueError, match=r"lstm_forward_step takes the arguments x_proj_t, rec, .*"
                                         r"missing \['rec'\], unknown \['recurrent'\]"):
        launch("lstm_forward_step", np.float64, 4,
               {**{k: v for k, v in good.items() if k != "rec"}, "recurrent": good["rec"]})
    with pytest.raises(TypeError, match="float32 and float64, got dtype float16"):
        launch("lstm_forward_step", np.float16, 4, good)


# -- the kernel table and the .cu source --------------------------------------------------------
def test_kernel_table_matches_the_kernel_source():
    """cuda.KERNELS, from which both launchers build their calls, names every parameter of
    every kernel with its type, in order, as lstm_kernels.cu declares it."""
    source = cuda.kernel_signatures(cuda.KERNEL_SOURCE)
    assert source == cuda.KERNELS
    assert source["lstm_forward_step"][:2] == (cuda.KernelParam("x_proj_t", "const T*"),
                                               cuda.KernelParam("rec", "const T*"))


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


def test_every_kernel_instantiation_has_a_typed_host_entry_point():
    src = emulation.wrapper_source()
    for name in cuda.KERNELS:
        for ctype in ("float", "double"):
            assert f"emu_{name}_{ctype}(" in src and f"&{name}<{ctype}>" in src
    assert "const double* x_proj_t" in src and "float* gates_t" in src and "int has_after" in src


def test_missing_compiler_is_explained(monkeypatch):
    monkeypatch.setenv("CXX", "/no/such/g++")
    assert "g++" in emulation.unavailable_reason()
    assert "g++" in emulation.EmulatedCudaBackend.unavailable_reason()
    with pytest.raises(RuntimeError, match="no host C\\+\\+ compiler"):
        emulation.build_library()


# -- orchestration: graphs, captured buffers, streams -------------------------------------
def test_graphs_are_captured_once_per_shape_and_replayed():
    be = emulation.EmulatedCudaBackend()
    lengths = np.array([6, 2, 4])
    for seed in range(3):
        be.layer_forward(**layer_inputs(seed=seed), lengths=lengths, reverse=False, keep=False)
    assert be.graphs.captures == 1 and be.graphs.replays == 3
    (bufs,) = be.graphs.buffers()
    assert len(bufs.forward_graph) == 2 * 6 and bufs.forward_graph.replays == 3     # GEMM + kernel per step
    be.layer_forward(**layer_inputs(T=7), lengths=np.full(3, 7), reverse=False, keep=False)
    be.layer_forward(**layer_inputs(seed=9), lengths=lengths, reverse=True, keep=False)
    assert be.graphs.captures == 3 and len(be.graphs.buffers()) == 3


def test_replayed_graph_reads_fresh_inputs():
    """A replay must see this call's weights, lengths and state, not the capturing call's."""
    be, ref = emulation.EmulatedCudaBackend(), NumpyBackend()
    for seed, lengths in [(0, [6, 2, 4]), (1, [1, 6, 3]), (2, [6, 6, 6])]:
        inputs = layer_inputs(seed=seed)
        got = be.layer_forward(**inputs, lengths=np.array(lengths), reverse=True, keep=False)
        want = ref.layer_forward(**inputs, lengths=np.array(lengths), reverse=True, keep=False)
        for g, w in zip(got[:3], want[:3]):
            assert_close(g, w, np.float64)
    assert be.graphs.captures == 1


def test_live_caches_get_their_own_buffers_and_release_them():
    """Two kept forwards of one shape (two layers of equal size) must not share saved
    activations; buffers are reused once their cache is backpropagated or dropped."""
    be, ref = emulation.EmulatedCudaBackend(), NumpyBackend()
    lengths = np.array([6, 3, 5])
    ins = [layer_inputs(seed=s) for s in (1, 2)]
    got = [be.layer_forward(**i, lengths=lengths, reverse=False, keep=True) for i in ins]
    want = [ref.layer_forward(**i, lengths=lengths, reverse=False, keep=True) for i in ins]
    assert len(be.graphs.buffers()) == 2 and be.graphs.captures == 2
    for k in (1, 0):                                  # backward in the engine's order: last first
        up = upstream(6, 3, 5, np.float64, seed=k)
        g = be.layer_backward(got[k][3], *up)
        w = ref.layer_backward(want[k][3], *up)
        for a, b in zip(g, w):
            assert_close(a, b, np.float64)
    assert all(bufs.free for bufs in be.graphs.buffers())
    be.layer_forward(**ins[0], lengths=lengths, reverse=False, keep=True)
    assert len(be.graphs.buffers()) == 2 and be.graphs.captures == 4   # 2 fwd + 2 bwd, none new
    kept = be.layer_forward(**ins[1], lengths=lengths, reverse=False, keep=True)
    assert kept[3].bufs.holder() is kept[3]
    del kept
    gc.collect()
    be.layer_forward(**ins[1], lengths=lengths, reverse=False, keep=True)
    assert len(be.graphs.buffers()) == 2


def test_backward_graph_shape_and_single_use():
    be = emulation.EmulatedCudaBackend()
    T, B, H = 5, 2, 3
    out = be.layer_forward(**layer_inputs(T=T, B=B, H=H), lengths=np.array([5, 2]), reverse=False, keep=True)
    be.layer_backward(out[3], *upstream(T, B, H, np.float64, 0))
    (bufs,) = be.graphs.buffers()
    assert len(bufs.backward_graph) == 2 * T + 1                         # kernel + GEMM per step, finish
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
    assert {g.stream for b in be.graphs.buffers() for g in (b.forward_graph, b.backward_graph)} == {0, 1}


def test_graph_cache_evicts_the_oldest_free_shapes():
    be = emulation.EmulatedCudaBackend()
    be.graphs.max_keys = 2
    held = be.layer_forward(**layer_inputs(T=3), lengths=np.full(3, 3), reverse=False, keep=True)
    for T in (4, 5, 6):
        be.layer_forward(**layer_inputs(T=T), lengths=np.full(3, T), reverse=False, keep=False)
    keys = [b.key[0] for b in be.graphs.buffers()]
    assert 3 in keys and 4 not in keys and 6 in keys                  # the held one is kept
    assert held[3].bufs in be.graphs.buffers()


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


def test_emulated_backend_is_a_hidden_entry_that_auto_never_picks(monkeypatch):
    assert "cuda-emulated" not in backends.names() and "cuda-emulated" not in backends.available()
    assert "cuda-emulated" in backends.names(include_hidden=True)
    assert "cuda-emulated" in backends.available(include_hidden=True)
    be = get_backend("cuda-emulated")
    assert isinstance(be, emulation.EmulatedCudaBackend) and be is get_backend("cuda-emulated")
    assert be.name == "cuda-emulated" and be.xp is np and get_backend(be) is be
    facts = be.facts()
    assert facts["emulated"] is True and all(p.endswith(".so") for p in facts["kernels"])
    persistent = get_backend("cuda-emulated-persistent")
    assert isinstance(persistent, emulation.EmulatedPersistentBackend) and persistent.recurrence == "persistent"
    assert "cuda-emulated-persistent" not in backends.names() and be.recurrence == "graph"
    # even where neither cuda nor cpu runs, auto falls back to numpy, not to the emulation
    real_probe = backends.probe
    monkeypatch.setattr(backends, "probe", lambda n: (
        backends.BackendInfo(n, False, "off") if n in ("cuda", "cpu") else real_probe(n)))
    assert get_backend("auto").name == "numpy"


def test_float16_is_refused_with_the_dtype_named():
    be = emulation.EmulatedCudaBackend()
    with pytest.raises(TypeError, match="float32 and float64, got dtype float16"):
        be.layer_forward(**layer_inputs(dtype=np.float16), lengths=np.full(3, 6), reverse=False, keep=False)


# -- the persistent path: its plans, its switch, its kernels under several schedules --------------
def test_plans_take_the_least_work_per_sm_then_the_fewest_blocks():
    """An H100-like device: 132 SMs, 227 KiB of shared memory a block, and room for two blocks
    per SM while each needs at most half of it."""
    def capacity(shared):
        return 132 * (2 if shared <= 113 * 1024 else 1)

    fwd, bwd = persistent.FORWARD, persistent.BACKWARD
    p1024, why = persistent.plan(fwd, 1024, 4, 256, 232448, 132, capacity)
    assert why == "" and (p1024.units, p1024.blocks, p1024.threads) == (8, 128, 256)
    assert p1024.shared_bytes == 4 * persistent.shared_elements(fwd, 1024, 8, 256)[1] == 164992
    assert (p1024.chunk_cols, persistent.plan(bwd, 1024, 4, 256, 232448, 132, capacity)[0].chunk_cols) == (1024, 1024)
    p256 = persistent.plan(fwd, 256, 4, 256, 232448, 132, capacity)[0]
    assert (p256.units, p256.blocks) == (4, 64)                 # every block on its own SM
    none, why = persistent.plan(fwd, 2048, 4, 256, 232448, 132, capacity)
    assert none is None and why.startswith("no persistent plan for lstm_persistent_forward at H=2048 (4-byte values): "
                                           "U=4: 512 blocks, 132 fit on the device at once; "
                                           "U=8: 296064 bytes of shared memory per block, the device allows 232448")
    with pytest.raises(ValueError, match="threads must be a power of two from 32 to 256, got 96"):
        persistent.plan(fwd, 64, 4, 96, 232448, 132, capacity)


def test_the_kernels_sizes_have_one_home():
    """cuda_persistent reads CHUNK and THREADS from the .cu file's #defines."""
    text = cuda.PERSISTENT_SOURCE.read_text()
    assert f"#define LSTM_PERSISTENT_CHUNK {persistent.CHUNK}\n" in text
    assert f"#define LSTM_PERSISTENT_THREADS {persistent.THREADS}\n" in text
    assert cuda.kernel_signatures(cuda.PERSISTENT_SOURCE) == cuda.PERSISTENT_KERNELS


def test_recurrence_comes_from_the_setting_or_the_environment(monkeypatch):
    monkeypatch.delenv(cuda.RECURRENCE_ENV, raising=False)
    assert cuda.recurrence_setting() == "auto" and cuda.recurrence_setting("graph") == "graph"
    monkeypatch.setenv(cuda.RECURRENCE_ENV, "persistent")
    assert cuda.recurrence_setting() == "persistent"
    monkeypatch.setenv(cuda.RECURRENCE_ENV, "fused")
    with pytest.raises(ValueError, match="LSTM_ENGINE_CUDA_RECURRENCE must be one of auto, graph, persistent, "
                                         "got 'fused'"):
        cuda.recurrence_setting()
    with pytest.raises(ValueError, match="recurrence must be one of"):
        cuda.CudaBackend(emulation.EmulatedDevice(), recurrence="loop")
    # the hidden entries keep their own path whatever the environment says
    assert emulation.EmulatedCudaBackend().recurrence == "graph"
    assert emulation.EmulatedPersistentBackend().recurrence == "persistent"


def _persistent_launches(backend) -> int:
    hosts = backend.device.kernels._hosts
    return hosts[cuda.PERSISTENT_SOURCE].stats()["launches"]


def test_auto_runs_persistently_where_a_plan_fits_and_the_batch_is_small():
    be = emulation.EmulatedCudaBackend()
    be.recurrence, be.persistent_max_batch = "auto", 4
    assert be.recurrence_for(4, 13, np.float64, True)[0] == "persistent"
    assert be.recurrence_for(5, 13, np.float64, True) == ("graph", "B=5 is above persistent_max_batch=4")
    path, why = be.recurrence_for(2, 200, np.float64, True)          # 4 emulated SMs hold 128 units at most
    assert path == "graph" and "U=32: 7 blocks, 4 fit on the device at once" in why
    before = _persistent_launches(be)
    be.layer_forward(**layer_inputs(B=3, H=13), lengths=np.array([6, 2, 4]), reverse=False, keep=False)
    assert _persistent_launches(be) == before + 1 and be.graphs.captures == 0
    be.layer_forward(**layer_inputs(B=5, H=13), lengths=np.full(5, 6), reverse=False, keep=False)
    assert _persistent_launches(be) == before + 1 and be.graphs.captures == 1
    be.recurrence = "persistent"
    with pytest.raises(BackendError, match=r"recurrence='persistent', but no persistent plan for "
                                           r"lstm_persistent_forward at H=200 \(8-byte values\)"):
        be.layer_forward(**layer_inputs(B=2, H=200), lengths=np.full(2, 6), reverse=False, keep=False)


def test_auto_falls_back_to_the_graph_path_when_a_persistent_launch_fails(monkeypatch):
    """A device that refuses the cooperative launch: `auto` warns once, answers with the graph
    path (the reference's result) and stays there; forced `persistent` raises the error."""
    be = emulation.EmulatedCudaBackend()
    be.recurrence = "auto"
    real_launch = be.device.launch

    def refusing(name, *args, **kw):
        if name.startswith("lstm_persistent"):
            raise RuntimeError("cudaErrorCooperativeLaunchTooLarge: too many blocks in cooperative launch\n(details)")
        return real_launch(name, *args, **kw)

    monkeypatch.setattr(be.device, "launch", refusing)
    inputs, lengths = layer_inputs(), np.array([6, 2, 4])
    want = NumpyBackend().layer_forward(**inputs, lengths=lengths, reverse=False, keep=False)
    with pytest.warns(RuntimeWarning, match=r"persistent path failed \(RuntimeError: cudaErrorCooperativeLaunchTooLarge: "
                                            r"too many blocks in cooperative launch\); using the graph path from now on"):
        got = be.layer_forward(**inputs, lengths=lengths, reverse=False, keep=False)
    for g, w in zip(got[:3], want[:3]):
        assert_close(g, w, np.float64)
    assert be.recurrence_for(3, 5, np.float64, False)[0] == "graph" and be.graphs.captures == 1
    be.recurrence = "persistent"
    with pytest.raises(RuntimeError, match="cudaErrorCooperativeLaunchTooLarge"):
        be.layer_forward(**inputs, lengths=lengths, reverse=False, keep=False)


@pytest.mark.parametrize("order", ["forward", "reverse", "random:3"])
def test_persistent_kernels_match_the_reference_under_every_schedule(order, monkeypatch):
    """Several batch chunks (B = 11 > CHUNK), the backward's reduction over G = 320 staged in
    two chunks, three blocks with padding units, ragged, both directions, an initial state, in
    each fiber schedule: a missing barrier reads a stale stage or partial tile under some."""
    monkeypatch.setenv("LSTM_ENGINE_EMU_ORDER", order)
    be = emulation.EmulatedPersistentBackend()
    H = 80
    fwd, bwd, _ = be.persistent_plans(H, np.float64, True)
    assert (fwd.blocks, fwd.units, bwd.blocks) == (3, 32, 3) and bwd.chunk_cols < 4 * H
    case = make_case(T=5, B=11, I=3, H=H, bidirectional=True, lengths=[5, 1, 3, 5, 2, 4, 5, 1, 5, 3, 2],
                     initial_state=True, dtype=np.float64, seed=8)
    ref_model, want = run_case(case, "numpy", seed=2)
    _, got = run_case(case, be, seed=2, state=ref_model.state_dict())
    assert_results_close(got, want, np.float64)


def test_persistent_launches_one_kernel_per_layer_direction_on_its_stream():
    be = emulation.EmulatedPersistentBackend()
    case = make_case(T=4, B=2, I=3, H=6, num_layers=2, bidirectional=True)
    model = LSTM(**case["config"], backend=be, seed=0)
    before = be.device.kernels._hosts[cuda.PERSISTENT_SOURCE].stats()
    model.forward(case["x"])
    grads = model.backward(case["d_outputs"])
    after = be.device.kernels._hosts[cuda.PERSISTENT_SOURCE].stats()
    assert after["launches"] - before["launches"] == 8             # 4 forward + 4 backward
    assert after["grid_syncs"] - before["grid_syncs"] == 4 * 3 + 4 * 4     # T - 1 forward, T backward
    assert be.device.stream_log == [0, 1, 0, 1, 0, 1, 0, 1] and be.graphs.captures == 0
    assert grads.params["weight_hh_l1_reverse"].shape == (24, 6)
    out = be.layer_forward(**layer_inputs(), lengths=np.full(3, 6), reverse=False, keep=True)
    be.layer_backward(out[3], *upstream(6, 3, 5, np.float64, 0))
    with pytest.raises(RuntimeError, match="already backpropagated"):
        be.layer_backward(out[3], *upstream(6, 3, 5, np.float64, 0))


def test_the_plan_allocates_exactly_the_shared_memory_the_kernel_uses():
    """Dynamic shared memory ends at a guard page in the emulator: the plan's size runs, 16
    bytes less faults (the kernel's last product lands in the last bytes of the layout)."""
    code = textwrap.dedent("""
        import dataclasses, sys
        import numpy as np
        sys.path.insert(0, {tests!r})
        from helpers import layer_inputs
        from lstm_engine.backends.cuda_emulation import EmulatedPersistentBackend
        be = EmulatedPersistentBackend()
        inputs = layer_inputs(B=3, H=13, dtype=np.float32)
        be.layer_forward(**inputs, lengths=np.full(3, 6), reverse=False, keep=False)
        print("exact size ran", flush=True)
        fwd, bwd, why = be.persistent_plans(13, np.float32, False)
        be._plans[(13, np.dtype(np.float32), False)] = (dataclasses.replace(fwd, shared_bytes=fwd.shared_bytes - 16), bwd, why)
        be.layer_forward(**inputs, lengths=np.full(3, 6), reverse=False, keep=False)
        print("smaller ran")
    """).format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "exact size ran" in proc.stdout, proc.stderr
    assert proc.returncode == -signal.SIGABRT and "smaller ran" not in proc.stdout, (proc.returncode, proc.stderr)
    assert "accessed past the end of the launch's dynamic shared memory (guard page hit)" in proc.stderr
