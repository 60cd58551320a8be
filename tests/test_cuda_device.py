"""The CuPy device of the `cuda` backend (cuda._CupyDevice) against a stand-in for CuPy
(helpers.fake_cupy: NumPy arrays, kernels that record their launches): what it asks CuPy
for, with no GPU. The persistent path's modules are cooperative, its launches carry the plan's
grid, block and dynamic shared memory (opted in above 48 KiB), and its plans come from the
device's SMs, shared memory and CuPy's occupancy calculator. What the kernels compute is
tested in the emulator (test_cuda_emulated.py) and on a GPU (test_cuda_gpu.py)."""

import sys

import numpy as np
import pytest
from helpers import fake_cupy, layer_inputs

from lstm_engine.backends import cuda
from lstm_engine.backends import cuda_persistent as persistent


@pytest.fixture
def cupy(monkeypatch):
    fake = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


def test_each_file_is_one_module_and_only_the_persistent_one_is_cooperative(cupy):
    cuda._CupyDevice(0).prepare()
    assert [m["cooperative"] for m in cupy.modules] == [f.cooperative for f in cuda.KERNEL_FILES] == [False, True]
    assert cupy.modules[1]["names"] == [f"{k}<{t}>" for k in cuda.PERSISTENT_KERNELS for t in ("float", "double")]


def test_the_plan_comes_from_the_devices_figures(cupy):
    """An H100 (132 SMs, 227 KiB a block, one block of a persistent kernel per SM): H=1024 in
    float32 gets 128 blocks of 8 units, both directions; float64 does not fit."""
    be = cuda.CudaBackend(cuda._CupyDevice(0), recurrence="auto")
    fwd, bwd, why = be.persistent_plans(1024, np.float32, True)
    assert why == "" and (fwd.blocks, fwd.units, fwd.threads, bwd.blocks) == (128, 8, persistent.THREADS, 128)
    assert be.recurrence_for(8, 1024, np.float32, True)[0] == "persistent"
    assert be.recurrence_for(be.persistent_max_batch + 1, 1024, np.float32, True)[0] == "graph"
    path, why = be.recurrence_for(8, 1024, np.float64, True)
    assert path == "graph" and "no persistent plan for lstm_persistent_forward at H=1024 (8-byte values)" in why


@pytest.mark.parametrize("keep", [False, True], ids=["inference", "training"])
def test_a_persistent_forward_is_one_cooperative_launch_of_the_plan(cupy, keep):
    be = cuda.CudaBackend(cuda._CupyDevice(0), recurrence="persistent")
    inputs = layer_inputs(T=5, B=3, I=4, H=520, dtype=np.float32)
    be.layer_forward(**inputs, lengths=np.array([5, 2, 4]), reverse=True, keep=keep)
    plan = be.persistent_plans(520, np.float32, keep)[0]
    (launch,) = cupy.launches
    assert launch["name"] == "lstm_persistent_forward<float>" and launch["cooperative"]
    assert launch["grid"] == (plan.blocks,) and launch["block"] == (plan.threads,)
    assert launch["shared_mem"] == plan.shared_bytes > 48 * 1024
    args = dict(zip([p.name for p in cuda.PERSISTENT_KERNELS["lstm_persistent_forward"]], launch["args"]))
    assert args["h_state"].shape == ((5 if keep else 2), 3, 520) and args["x_proj"].shape == (15, 2080)
    assert {k: args[k] for k in ("n_steps", "B", "H", "units", "chunk_cols", "reverse", "save")} == dict(
        n_steps=5, B=3, H=520, units=plan.units, chunk_cols=plan.chunk_cols, reverse=1, save=int(keep))
    assert all(type(args[k]) is np.int32 for k in ("n_steps", "units", "save"))


def test_a_persistent_backward_launches_its_plan_then_the_gemms(cupy):
    be = cuda.CudaBackend(cuda._CupyDevice(0), recurrence="persistent")
    inputs = layer_inputs(T=4, B=2, I=3, H=64, dtype=np.float64)
    cache = be.layer_forward(**inputs, lengths=np.array([4, 3]), reverse=False, keep=True)[3]
    dx, dw_ih, dw_hh, dbias, dh0, dc0 = be.layer_backward(cache, np.ones((4, 2, 64)), np.ones((2, 64)),
                                                          np.ones((2, 64)))
    assert [launch["name"] for launch in cupy.launches] == ["lstm_persistent_forward<double>",
                                                             "lstm_persistent_backward<double>"]
    plan = be.persistent_plans(64, np.float64, True)[1]
    assert cupy.launches[1]["grid"] == (plan.blocks,) and cupy.launches[1]["shared_mem"] == plan.shared_bytes
    assert dx.shape == (4, 2, 3) and dw_ih.shape == (256, 3) and dw_hh.shape == (256, 64) and dbias.shape == (256,)


def test_no_plan_where_the_occupancy_calculator_finds_no_room(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(blocks_per_sm=0))
    be = cuda.CudaBackend(cuda._CupyDevice(0))
    path, why = be.recurrence_for(1, 256, np.float32, False)
    assert path == "graph" and "U=4: 64 blocks, 0 fit on the device at once" in why
