"""The fiber emulator (backends/cuda_fibers.h, cuda_compat.h, cuda_host.py) against CUDA's
documented semantics: shared memory and barriers, warp shuffles and votes, atomics, a
cooperative grid.sync(), schedules that expose a missing barrier, the rules it enforces (each
broken in a subprocess, which must abort with the rule named), what does not build, and its
own counters. The kernels are tests/cuda/*.cu, which test_cuda_compile.py also compiles with
NVRTC."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lstm_engine.backends import cuda_host
from lstm_engine.backends.cuda import KernelParam, kernel_signatures

import cuda_kernel_tables as tables
from helpers import load_benchmark

pytestmark = pytest.mark.skipif(bool(cuda_host.unavailable_reason()), reason=cuda_host.unavailable_reason() or "")

ORDERS = ["forward", "reverse", "random"]
CTYPES = {np.float32: "float", np.float64: "double"}
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(scope="module")
def kernels():
    return cuda_host.HostKernels(tables.EMULATOR_KERNELS, tables.KERNELS, tables.TYPES)


# -- shared memory, barriers, shuffles, grid.sync ---------------------------------------------------
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,block", [(1000, 256), (64, 64), (3000, 1024), (5, 32)])
def test_block_reduce(kernels, order, dtype, n, block):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    grid = -(-n // block)
    sums = np.full(grid, np.nan, dtype)
    kernels.launch("block_reduce", CTYPES[dtype], grid, block, dict(x=x, block_sums=sums, n=n), order=order, seed=7)
    padded = np.zeros(grid * block, dtype)
    padded[:n] = x
    np.testing.assert_allclose(sums, padded.reshape(grid, block).sum(axis=1), **TOL[dtype])


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_phase_grid_sync(kernels, order, dtype):
    """Every block must see every other block's phase-1 sum after grid.sync()."""
    n, block, grid = 700, 128, 6
    x = np.random.default_rng(1).uniform(0.5, 1.5, n).astype(dtype)
    block_sums, y = np.zeros(grid, dtype), np.full(n, np.nan, dtype)
    kernels.launch("normalise_two_phase", CTYPES[dtype], grid, block, dict(x=x, block_sums=block_sums, y=y, n=n),
                   shared_bytes=32 * x.itemsize, cooperative=True, order=order, seed=3)
    np.testing.assert_allclose(y, x / x.sum(dtype=np.float64), **TOL[dtype])


def test_blocks_of_a_cooperative_launch_are_resident_together(kernels):
    """Block 0 spins until block 1 sets a flag: only finishes if both run at once."""
    code = f"""
        import numpy as np
        from lstm_engine.backends.cuda_host import HostKernels
        import cuda_kernel_tables as t
        k = HostKernels(t.EMULATOR_KERNELS, t.KERNELS, t.TYPES, path={str(kernels.path)!r})
        flag, out = np.zeros(1, np.int32), np.zeros(1, np.int32)
        k.launch("spin_handshake", None, 2, 32, dict(flag=flag, out=out), cooperative=True, order="forward")
        assert out[0] == 1 and flag[0] == 1
    """
    run_python(code, timeout=60, check=True)


NEIGHBOUR_VALUES = np.random.default_rng(2)


def neighbour_sum(kernels, with_barrier, order, seed=0):
    """Whether the launch summed right. Every launch gets new values: static __shared__ keeps
    what the last block on its OS thread left (as on a GPU), so a launch on an earlier launch's
    values would find its neighbour's value already there, barrier or not, depending on which
    OS thread took which block."""
    x = NEIGHBOUR_VALUES.standard_normal(256)
    y = np.full_like(x, np.nan)
    kernels.launch("neighbour_sum", "double", 2, 128, dict(x=x, y=y, with_barrier=with_barrier), order=order, seed=seed)
    tiles = x.reshape(2, 128)
    want = tiles + np.concatenate([tiles[:, 1:], tiles[:, -1:]], axis=1)
    return np.allclose(y, want.ravel())


def test_missing_barrier_shows_under_one_order_and_not_another(kernels):
    """The measured point of running under several schedules: without the barrier, threads
    resumed in reverse order find their neighbour's value already written, in forward order
    (and in random order) they read a stale one."""
    for order in ORDERS:
        assert neighbour_sum(kernels, 1, order), order      # with the barrier: right everywhere
    assert neighbour_sum(kernels, 0, "reverse")
    assert not neighbour_sum(kernels, 0, "forward")
    assert not any(neighbour_sum(kernels, 0, "random", seed) for seed in range(3))


def test_order_comes_from_the_environment(kernels, monkeypatch):
    monkeypatch.setenv("LSTM_ENGINE_EMU_ORDER", "reverse")
    assert neighbour_sum(kernels, 0, None)
    monkeypatch.setenv("LSTM_ENGINE_EMU_ORDER", "forward")
    assert not neighbour_sum(kernels, 0, None)
    monkeypatch.setenv("LSTM_ENGINE_EMU_ORDER", "random:5")
    assert not neighbour_sum(kernels, 0, None)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("active", [70, 1, 96])
def test_barrier_votes_and_returned_threads(kernels, order, active):
    """__syncthreads_count/_and/_or over the threads still running; returned ones count as
    arrived (the barrier opens without them)."""
    block = 96
    out = np.full((block, 3), -7, np.int32)
    kernels.launch("barrier_votes", None, 1, block, dict(out=out, active=active), order=order, seed=11)
    live = np.arange(active)
    votes = live % 3 == 0
    want = [votes.sum(), int(votes.all()), int(votes.any())]
    np.testing.assert_array_equal(out[:active], np.tile(want, (active, 1)))
    assert (out[active:] == -7).all()


# -- warp operations against CUDA's documentation ---------------------------------------------------
def documented(op, lane, operand, width):
    """The lane a shuffle reads, as the CUDA C++ Programming Guide describes each intrinsic."""
    start = lane // width * width
    if op == 0:                                # "srcLane modulo width", within the lane's segment
        return start + operand % width
    if op == 1:                                # lane - delta; the lower delta lanes keep their own
        return lane - operand if lane - operand >= start else lane
    if op == 2:                                # lane + delta; the upper delta lanes keep their own
        return lane + operand if lane + operand < start + width else lane
    src = lane ^ operand                       # earlier segments readable, later ones: own value
    return src if src < start + width else lane


WARP_CASES = [  # op, operand, width, mask, block
    (0, 5, 32, 0xFFFFFFFF, (64,)), (0, 35, 32, 0xFFFFFFFF, (64,)), (0, 3, 8, 0xFFFFFFFF, (64,)),
    (0, 0, 1, 0xFFFFFFFF, (32,)), (0, 9, 16, 0x0000FFFF, (48,)),
    (1, 1, 32, 0xFFFFFFFF, (64,)), (1, 5, 16, 0xFFFFFFFF, (64,)), (1, 0, 32, 0xFFFFFFFF, (32,)),
    (1, 3, 4, 0xFFFFFFFF, (16, 4)),
    (2, 1, 32, 0xFFFFFFFF, (64,)), (2, 7, 8, 0xFFFFFFFF, (64,)), (2, 31, 32, 0xFFFFFFFF, (32,)),
    (2, 2, 16, 0x0000FFFF, (48,)),
    (3, 1, 32, 0xFFFFFFFF, (64,)), (3, 16, 32, 0xFFFFFFFF, (64,)), (3, 31, 32, 0xFFFFFFFF, (32,)),
    (3, 12, 8, 0xFFFFFFFF, (8, 8)), (3, 3, 4, 0xFFFFFFFF, (64,)),
]


@pytest.mark.parametrize("order", ["forward", "random"])
@pytest.mark.parametrize("op,operand,width,mask,block", WARP_CASES,
                         ids=[f"{['idx', 'up', 'down', 'xor'][c[0]]}-{c[1]}-w{c[2]}-{c[3]:x}-{'x'.join(map(str, c[4]))}"
                              for c in WARP_CASES])
def test_shuffles_follow_the_documented_semantics(kernels, order, op, operand, width, mask, block):
    threads = int(np.prod(block))
    out = np.full(threads, -9, np.int32)
    kernels.launch("warp_probe", None, 1, block, dict(out=out, op=op, operand=operand, width=width, mask=mask),
                   order=order, seed=op)
    for t in range(threads):
        warp, lane = divmod(t, 32)
        if not mask >> lane & 1:
            assert out[t] == -1
            continue
        assert out[t] == 100 + warp * 32 + documented(op, lane, operand, width), (t, out[t])


@pytest.mark.parametrize("op,operand,mask", [(4, 3, 0xFFFFFFFF), (4, 2, 0x00FF00FF), (5, 33, 0xFFFFFFFF),
                                             (5, 33, 0xFFFFFFFE), (6, 1, 0xFFFFFFFF), (6, 2, 0xFFFFFFFF)])
def test_votes(kernels, op, operand, mask):
    out = np.full(64, -9, np.int32)
    kernels.launch("warp_probe", None, 1, 64, dict(out=out, op=op, operand=operand, width=32, mask=mask),
                   order="reverse")
    lanes = np.array([l for l in range(32) if mask >> l & 1])
    votes = sum(1 << int(l) for l in lanes if l % operand == 0)
    want = {4: votes, 5: int(votes != 0), 6: int(votes == mask)}[op]
    for t in range(64):
        assert out[t] == (want if mask >> (t % 32) & 1 else -1), (t, out[t])


# -- atomics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS)
def test_integer_atomics_from_many_blocks(kernels, order):
    """300 threads in 10 blocks on several OS threads: no update lost, every old value seen once."""
    n, limit = 300, 7
    counters = np.array([0, -1, 1 << 30, 0, 0, 0, 0, 0], np.int32)
    wraps, seen = np.zeros(1, np.uint32), np.full(n, -1, np.int32)
    kernels.launch("integer_atomics", None, 10, 32, dict(counters=counters, wraps=wraps, order=seen, n=n, limit=limit),
                   order=order, seed=5)
    bits = 0
    for i in range(n):
        bits |= 1 << (i % 31)
    np.testing.assert_array_equal(counters[:6], [n, n - 1, 0, n, bits, -n])
    assert wraps[0] == n % (limit + 1)
    np.testing.assert_array_equal(np.sort(seen), np.arange(n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floating_point_atomic_add(kernels, dtype):
    n = 5000
    x = np.random.default_rng(4).uniform(0, 1, n).astype(dtype)
    total = np.zeros(1, dtype)
    kernels.launch("atomic_sum", CTYPES[dtype], 20, 256, dict(x=x, total=total, n=n), order="random", seed=1)
    np.testing.assert_allclose(total[0], x.sum(dtype=np.float64), rtol=1e-4 if dtype == np.float32 else 1e-12)


# -- the counters and the context switch ---------------------------------------------------------------
def test_counters_count_every_switch(kernels):
    """One block of 64 threads, 10 rounds of 2 barriers: each thread is resumed once at the start
    and once after each barrier, and each resume is two switches (in and out)."""
    x = np.zeros(64, np.float32)
    before = kernels.stats()
    kernels.launch("barrier_loop", None, 1, 64, dict(x=x, rounds=10), order="forward")
    after = kernels.stats()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {"launches": 1, "fibers": 64, "switches": 2 * 64 * (1 + 2 * 10), "block_barriers": 20,
                     "warp_ops": 0, "grid_syncs": 0}


def test_ucontext_fallback_runs_the_same_kernels():
    """Other architectures switch fibers with ucontext: the same results from that build."""
    k = cuda_host.HostKernels(tables.EMULATOR_KERNELS, tables.KERNELS, tables.TYPES, defines=["EMU_FIBERS_UCONTEXT"])
    x = np.random.default_rng(5).standard_normal(512)
    sums = np.zeros(2)
    k.launch("block_reduce", "double", 2, 256, dict(x=x, block_sums=sums, n=512), order="random", seed=2)
    np.testing.assert_allclose(sums, x.reshape(2, 256).sum(axis=1), rtol=1e-12)
    y, block_sums = np.zeros(512), np.zeros(4)
    k.launch("normalise_two_phase", "double", 4, 128, dict(x=x, block_sums=block_sums, y=y, n=512), shared_bytes=256,
             cooperative=True)
    np.testing.assert_allclose(y, x / x.sum(), rtol=1e-10)
    assert neighbour_sum(k, 1, "forward") and not neighbour_sum(k, 0, "forward")


def test_emulator_benchmark_smoke(tmp_path):
    out = tmp_path / "e.json"
    result = load_benchmark("cuda_emulator").main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert [r["kernel"] for r in data["switch_rates"]] == ["barrier_rounds", "shuffle_rounds"] * 2
    assert all(r["switches"] > 0 and r["switches_per_s"] > 0 for r in data["switch_rates"])
    assert [r["backend"] for r in data["backend_step"]] == ["numpy", "cuda-emulated", "cuda-emulated-persistent"]


# -- the rules: each broken kernel must abort with the rule named ------------------------------------
def run_python(code: str, timeout: float = 120, check: bool = False, env: dict | None = None):
    tests_dir = os.path.dirname(__file__)
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
                    **(env or {}))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def faults():
    return cuda_host.HostKernels(tables.FAULT_KERNELS, tables.FAULTS)


def launch_fault(faults, name, grid=1, block=64, cooperative=False, env=None):
    code = f"""
        import numpy as np
        from lstm_engine.backends.cuda_host import HostKernels
        import cuda_kernel_tables as t
        k = HostKernels(t.FAULT_KERNELS, t.FAULTS, path={str(faults.path)!r})
        out = np.zeros({grid} * {block}, np.float32)
        k.launch({name!r}, None, {grid}, {block}, dict(out=out), cooperative={cooperative})
        print("finished")
    """
    return run_python(code, env=env)


@pytest.mark.parametrize("name,kw,message", [
    ("divergent_barrier", {}, r"__syncthreads in divergent code: thread \(0,0,0\) of block \(0,0,0\) waits at "
                              r".*emulator_faults.cu:\d+, thread \(32,0,0\) of block \(0,0,0\) at .*emulator_faults.cu:\d+"),
    ("shuffle_names_returned_lanes", {}, r"__shfl_down_sync with mask 0xffffffff in warp 0 of block \(0,0,0\) "
                                         r"names lane 16, which has returned"),
    ("warp_and_block_deadlock", {}, r"deadlock in block \(0,0,0\): 63 thread\(s\) wait at __syncthreads, 0 at "
                                    r"grid.sync\(\), 1 in warp operations"),
    ("grid_sync_needs_cooperative_launch", {}, r"grid.sync\(\) at .* in a launch that is not cooperative"),
    ("block_leaves_grid_sync", dict(grid=2, cooperative=True), r"block \([01],0,0\) (finished while another block "
                                                                r"waits in grid.sync|waits in grid.sync\(\), but 1 block)"),
    ("shuffle_mask_without_caller", {}, r"__shfl_sync with mask 0x00000003 called by thread \(2,0,0\)"),
])
def test_broken_rules_abort_with_a_message(faults, name, kw, message):
    proc = launch_fault(faults, name, **kw)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout, proc.stderr)
    assert "finished" not in proc.stdout
    assert re.search(rf"cuda emulator: {name}: {message}", proc.stderr), proc.stderr


def test_a_bad_schedule_name_is_refused(faults):
    proc = launch_fault(faults, "divergent_barrier", env={"LSTM_ENGINE_EMU_ORDER": "backwards"})
    assert proc.returncode == -signal.SIGABRT
    assert "LSTM_ENGINE_EMU_ORDER=backwards: expected forward, reverse, random or random:<seed>" in proc.stderr


GUARDED = """
__device__ int deep(int n) {
    volatile int pad[256];
    pad[0] = n;
    return n ? deep(n - 1) + pad[0] : 0;
}
__global__ void recurse(int* out, int n) { out[threadIdx.x] = deep(n); }
// Reads `offset` floats further than it wrote; dynamic shared memory of 64 floats.
__global__ void read_shared(float* out, int offset) {
    DYNAMIC_SHARED(float, s);
    if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x + offset];
}
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    src = tmp_path_factory.mktemp("guarded") / "guarded.cu"
    src.write_text(GUARDED)
    return cuda_host.HostKernels(src, kernel_signatures(src))


def guarded_run(guarded, launches, env=None):
    code = f"""
        import numpy as np
        from lstm_engine.backends.cuda import kernel_signatures
        from lstm_engine.backends.cuda_host import HostKernels
        k = HostKernels({str(guarded.source)!r}, kernel_signatures({str(guarded.source)!r}), path={str(guarded.path)!r})
        ints, floats = np.zeros(32, np.int32), np.zeros(32, np.float32)
    """
    return run_python(textwrap.dedent(code) + "\n".join(launches), env=env)


def test_stack_overflow_hits_the_guard_page(guarded):
    proc = guarded_run(guarded, [
        'k.launch("recurse", None, 1, 2, dict(out=ints, n=10), order="forward")',
        'assert ints[:2].tolist() == [55, 55], ints',
        'print("shallow ok", flush=True)',
        'k.launch("recurse", None, 1, 2, dict(out=ints, n=100000), order="forward")'], env={"LSTM_ENGINE_EMU_STACK_KB": "64"})
    assert "shallow ok" in proc.stdout, proc.stderr
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "overflowed its fiber stack (guard page hit)" in proc.stderr


def test_dynamic_shared_memory_is_poisoned_and_ends_at_a_guard_page(guarded):
    """Unwritten dynamic shared memory reads as NaN (a GPU does not clear it); one float past
    its end faults."""
    out = np.zeros(32, np.float32)
    guarded.launch("read_shared", None, 1, 32, dict(out=out, offset=0), shared_bytes=64 * 4)
    assert (out == 1).all()
    guarded.launch("read_shared", None, 1, 32, dict(out=out, offset=32), shared_bytes=64 * 4)
    assert np.isnan(out).all()
    proc = guarded_run(guarded, [                 # a larger launch first: the smaller one still ends at the guard
        'k.launch("read_shared", None, 1, 32, dict(out=floats, offset=0), shared_bytes=4096 * 4)',
        'k.launch("read_shared", None, 1, 32, dict(out=floats, offset=33), shared_bytes=64 * 4)'])
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    assert "accessed past the end of the launch's dynamic shared memory (guard page hit)" in proc.stderr


# -- what the emulator does not run does not build -------------------------------------------------------
KERNEL = "#include <cooperative_groups.h>\n__global__ void k(float* out) {{ {} }}\n"
KERNEL_TABLE = {"k": (KernelParam("out", "float*"),)}
UNSUPPORTED = {
    "extern __shared__": KERNEL.format("extern __shared__ float dynamic[]; out[0] = dynamic[0];"),
    "__constant__": "__constant__ float table[4];\n" + KERNEL.format("out[0] = table[0];"),
    "__activemask": KERNEL.format("out[0] = (float)__activemask();"),
    "a 2-byte shuffle": KERNEL.format("out[0] = __shfl_sync(0xFFFFFFFFu, (short)1, 0);"),
    "atomicMin on float": KERNEL.format("atomicMin(out, 1.0f);"),
    "atomicAdd on short": KERNEL.format("short s = 0; atomicAdd(&s, (short)1);"),
    "tiled_partition": KERNEL.format(
        "cooperative_groups::tiled_partition<32>(cooperative_groups::this_thread_block()).sync();"),
    "__nanosleep": KERNEL.format("__nanosleep(100);"),
}


def test_unsupported_device_code_does_not_build(tmp_path):
    """Each construct the emulator does not run must stop the host build (syntax checks, run
    side by side: each parses the emulator's headers)."""
    procs = {}
    for n, (what, source) in enumerate(UNSUPPORTED.items()):
        work = tmp_path / str(n)
        work.mkdir()
        (work / "k.cu").write_text(source)
        cmd = cuda_host.compile_command(work / "k.cu", cuda_host.wrapper_source(work / "k.cu", KERNEL_TABLE, ()),
                                        work, None)
        procs[what] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    built = [what for what, proc in procs.items() if proc.wait() == 0]
    assert not built, f"these built for the emulator: {built}"
    good = tmp_path / "good"
    good.mkdir()
    (good / "k.cu").write_text(KERNEL.format("out[0] = 1.0f;"))
    cmd = cuda_host.compile_command(good / "k.cu", cuda_host.wrapper_source(good / "k.cu", KERNEL_TABLE, ()), good, None)
    assert subprocess.run(cmd, capture_output=True).returncode == 0     # the harness itself builds


def test_launch_arguments_are_checked(kernels):
    x = np.zeros(64)
    with pytest.raises(ValueError, match=r"block_reduce takes the arguments x, block_sums, n; missing \['n'\], unknown none"):
        kernels.launch("block_reduce", "double", 1, 64, dict(x=x, block_sums=x))
    with pytest.raises(TypeError, match="block_reduce argument x must be a C-contiguous array"):
        kernels.launch("block_reduce", "double", 1, 64, dict(x=np.zeros(128)[::2], block_sums=x, n=64))
    with pytest.raises(TypeError, match="block_reduce argument block_sums has dtype float32, expected float64"):
        kernels.launch("block_reduce", "double", 1, 64, dict(x=x, block_sums=x.astype(np.float32), n=64))
    with pytest.raises(TypeError, match=r"block_reduce argument n must be an integer \(int\), got float"):
        kernels.launch("block_reduce", "double", 1, 64, dict(x=x, block_sums=x, n=64.0))
    with pytest.raises(ValueError, match="no kernel block_reduce<int>"):
        kernels.launch("block_reduce", "int", 1, 64, dict(x=x, block_sums=x, n=64))
    with pytest.raises(ValueError, match="order must be one of"):
        kernels.launch("block_reduce", "double", 1, 64, dict(x=x, block_sums=x, n=64), order="sideways")
    with pytest.raises(ValueError, match="block must be a positive int"):
        kernels.launch("block_reduce", "double", 1, (0, 1), dict(x=x, block_sums=x, n=64))
