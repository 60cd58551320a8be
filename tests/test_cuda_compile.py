"""The cuda backend's kernels through NVIDIA's real compiler (NVRTC from the PyPI wheel, no GPU):
every kernel instantiation of every .cu file, compiled as the backend compiles it, for sm_80 and
sm_90 and as PTX for compute_120, with no warning, no spill, no local memory and the resources
its launch assumes (backends/cuda_compile.py); the figures in benchmarks/results/cuda_kernels.json
current; the emulator's test kernels (tests/cuda) compiling for the GPU too; and the checker
itself catching warnings, errors, spills and budgets that do not fit.

Skipped only where the `cuda-compile` extra is not installed (CI installs it)."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from lstm_engine import BackendError, MissingDependencyError
from lstm_engine.backends import cuda, cuda_compile
from lstm_engine.backends.cuda_compile import Budget, Module

import cuda_kernel_tables as tables

pytestmark = pytest.mark.skipif(bool(cuda_compile.unavailable_reason()),
                                reason=cuda_compile.unavailable_reason() or "")

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "cuda_kernels.json"
#: Set to 1 to rewrite the committed figures instead of comparing with them.
UPDATE_ENV = "LSTM_ENGINE_WRITE_KERNEL_REPORT"


@pytest.fixture(scope="module")
def nvrtc():
    return cuda_compile.Nvrtc()


# -- the backend's kernels ------------------------------------------------------------------------
def test_every_cu_file_and_kernel_of_the_backend_is_compiled():
    on_disk = sorted(p.name for p in cuda.KERNEL_SOURCE.parent.glob("*.cu"))
    modules = cuda_compile.modules()
    assert sorted(m.source.name for m in modules) == on_disk
    for m in modules:
        assert sorted(cuda_compile.kernels_in_source(m.source)) == sorted(m.kernels)
        assert set(m.kernels) <= set(m.budgets)


@pytest.fixture(scope="module")
def kernel_report(nvrtc):
    return cuda_compile.report(nvrtc=nvrtc)      # raises on a warning, a spill or a budget


def test_backend_kernels_fit_their_budgets_and_the_committed_figures_are_current(kernel_report):
    result = kernel_report
    names = [f"{k}<{t}>" for f in cuda.KERNEL_FILES for k in f.kernels for t in cuda.DTYPES.values()]
    assert [row["kernel"] for row in result["kernels"]] == names
    for row in result["kernels"]:
        for target in ("sm_80", "sm_90"):
            fig = row[target]
            assert fig["registers"] > 0 and fig["spill_stores"] == fig["spill_loads"] == 0
            assert fig["blocks_per_sm"] >= row["budget"]["min_blocks_per_sm"]
        assert row["compute_120"] == {"ptx": True}
    if os.environ.get(UPDATE_ENV) == "1":
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    committed = json.loads(RESULTS.read_text())
    assert committed == result, (
        f"{RESULTS.name} is not what the kernels compile to now (NVRTC {result['compiler']['nvrtc']}): "
        f"rerun with {UPDATE_ENV}=1, or python -m lstm_engine.backends.cuda_compile --write {RESULTS}, "
        "and commit it")


def test_persistent_ranges_come_from_the_planner_and_the_ptxas_figures(kernel_report):
    """The hidden sizes the persistent path covers on each GPU, training and inference, from
    the persistent kernels' own registers through NVIDIA's occupancy calculator and the
    backend's planner: float32 up to 864 on an A100 (108 SMs) and 1056 on an H100/H200 (132
    SMs, eight units per block), so the DeepBench H=1024 shapes run persistently on the GPUs
    part 4 targets; every plan within the device's shared memory and residency."""
    ranges = kernel_report["persistent"]
    assert ranges["sm_80"]["float"]["max_hidden"] == {"inference": 864, "training": 864}
    assert ranges["sm_90"]["float"]["max_hidden"] == {"inference": 1056, "training": 1056}
    assert ranges["sm_90"]["double"]["max_hidden"]["training"] < 1024
    for target, gpu in cuda_compile.GPUS.items():
        for ctype, by_type in ranges[target].items():
            for hidden, plans in by_type["plans"].items():
                fits = int(hidden) <= by_type["max_hidden"]["training"]
                for kernel, plan in plans.items():
                    assert (plan is not None) == fits, (target, ctype, hidden, kernel)
                    if plan:
                        assert plan["blocks"] == -(-int(hidden) // plan["units"])
                        assert plan["shared_bytes"] <= gpu.shared_per_block_optin
    h1024 = ranges["sm_90"]["float"]["plans"]["1024"]["lstm_persistent_forward"]
    assert (h1024["units"], h1024["blocks"]) == (8, 128)          # one block per SM, not two of U=4


def test_the_cupy_device_builds_what_the_check_compiles(monkeypatch):
    """_CupyDevice hands cupy.RawModule exactly cuda.nvrtc_program()."""
    built = {}

    class RawModule:
        def __init__(self, code, options, name_expressions, enable_cooperative_groups):
            built[name_expressions[0].split("<")[0]] = dict(code=code, options=options, names=name_expressions,
                                                            cooperative=enable_cooperative_groups)

        def get_function(self, name):
            return name

    class Device:
        def __init__(self, i):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake = types.SimpleNamespace(RawModule=RawModule, cuda=types.SimpleNamespace(
        Device=Device, Stream=lambda non_blocking=False: object()))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    functions = cuda._CupyDevice(0)._load()
    assert len(built) == len(cuda.KERNEL_FILES)
    for f, module in zip(cuda.KERNEL_FILES, cuda_compile.modules()):
        code, options, names = cuda.nvrtc_program(module.source, module.kernels, module.types)
        assert built[next(iter(f.kernels))] == dict(code=code, options=options, names=names, cooperative=f.cooperative)
        assert set(names) <= set(functions)
        assert list(cuda_compile.compile_options("sm_90", options)[:len(options)]) == list(options)
    assert '#include "lstm_cell.cuh"' not in code and "cell_backward" in code      # one self-contained program
    assert sorted(functions) == sorted(f"{k}<{t}>" for f in cuda.KERNEL_FILES for k in f.kernels
                                       for t in cuda.DTYPES.values())


def test_cupy_passes_nvrtc_the_options_the_check_uses():
    """Where CuPy is installed: its RawModule compile path (arch lookup bypassed, a private
    API) gives NVRTC the check's options, apart from include folders and the ptxas report."""
    cupy = pytest.importorskip("cupy")
    from cupy.cuda import compiler
    from cupy._core import core
    if not all(hasattr(compiler, a) for a in ("_NVRTCProgram", "_get_arch_for_options_for_nvrtc")):
        pytest.skip(f"CuPy {cupy.__version__} compiles differently (private API moved)")
    seen = {}
    real_compile = compiler._NVRTCProgram.compile

    def spy(self, options=(), log_stream=None):
        seen["options"] = options
        return real_compile(self, options, log_stream)

    code, options, names = cuda.nvrtc_program()
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(compiler._NVRTCProgram, "compile", spy)
        mp.setattr(compiler, "_get_arch_for_options_for_nvrtc", lambda arch=None: (f"-arch=sm_{arch}", "cubin"))
        mp.setenv("CUPY_CACHE_IN_MEMORY", "1")
        try:
            core.compile_with_cache(code, options, arch="90", prepend_cupy_headers=False, name_expressions=names)
        except Exception:                    # loading the cubin needs a driver; compiling does not
            if "options" not in seen:
                raise
    finally:
        mp.undo()
    ours = [o for o in cuda_compile.compile_options("sm_90", options)
            if not o.startswith("-I") and o not in cuda_compile.REPORT_OPTIONS]
    assert [o for o in seen["options"] if not o.startswith("-I")] == ours


# -- the emulator's test kernels, same source ---------------------------------------------------------
@pytest.mark.parametrize("module", tables.modules(), ids=lambda m: m.source.name)
def test_emulator_test_kernels_compile_for_the_gpu(nvrtc, module):
    """For sm_90 only: <cooperative_groups.h> makes each compile take seconds."""
    assert sorted(cuda_compile.kernels_in_source(module.source)) == sorted(module.kernels)
    compiled = cuda_compile.compile_module(module, nvrtc, targets=("sm_90",))
    assert cuda_compile.check(module, compiled) == []
    # grid.sync() and shared memory compiled into real barriers
    if module.source == tables.EMULATOR_KERNELS:
        assert compiled["normalise_two_phase<float>"]["sm_90"]["barriers"] >= 1
        assert compiled["neighbour_sum<double>"]["sm_90"]["shared"] == 8 * 1024


def test_every_test_kernel_file_is_in_the_tables():
    assert sorted(p.name for p in tables.HERE.glob("*.cu")) == sorted(m.source.name for m in tables.modules())


# -- the checker catches what it must ----------------------------------------------------------------------
def module_of(tmp_path, text, kernels, types=(), budgets=None):
    """A Module of `text` whose table holds the named `kernels` (their signatures as written)."""
    src = tmp_path / "k.cu"
    src.write_text(text)
    table = {k: cuda.kernel_signatures(src)[k] for k in kernels}
    return Module(src, table, types, budgets if budgets is not None else {k: Budget(256, 1) for k in kernels})


def test_a_warning_fails_the_compile(tmp_path, nvrtc):
    m = module_of(tmp_path, "__global__ void k(float* y) { int unused; y[0] = 1.0f; }\n", ["k"])
    with pytest.raises(BackendError, match=r"NVRTC warned compiling k.cu for sm_80.*\n.*unused"):
        cuda_compile.compile_module(m, nvrtc)


def test_a_compile_error_fails_with_the_log(tmp_path, nvrtc):
    m = module_of(tmp_path, "__global__ void k(float* y) { y[0] = undefined_name; }\n", ["k"])
    with pytest.raises(BackendError, match=r"NVRTC could not compile k.cu .*\n.*undefined_name"):
        cuda_compile.compile_module(m, nvrtc)


SPILLS = """
template <typename T>
__global__ void __launch_bounds__(1024, 2) pressure(const T* __restrict__ x, T* __restrict__ y) {
    T acc[48];
#pragma unroll
    for (int k = 0; k < 48; ++k) acc[k] = x[threadIdx.x * 48 + k];
#pragma unroll
    for (int r = 0; r < 8; ++r)
#pragma unroll
        for (int k = 0; k < 48; ++k) acc[k] = acc[k] * acc[(k + r + 1) % 48] + T(1);
    T s = T(0);
#pragma unroll
    for (int k = 0; k < 48; ++k) s += acc[k];
    y[threadIdx.x] = s;
}
__global__ void local_array(const int* idx, float* y) {
    float a[32];
    for (int k = 0; k < 32; ++k) a[k] = k * 0.5f;
    y[threadIdx.x] = a[idx[threadIdx.x] & 31];
}
__global__ void forgotten(float* y) { y[0] = 0.0f; }
"""


def test_spills_local_memory_and_missing_table_entries_are_problems(tmp_path, nvrtc):
    m = module_of(tmp_path, SPILLS, ["pressure", "local_array"], {"pressure": ("double",)},
                  {"pressure": Budget(1024, 2)})
    compiled = cuda_compile.compile_module(m, nvrtc)
    problems = "\n".join(cuda_compile.check(m, compiled))
    assert "kernels ['forgotten'] are not in its kernel table" in problems
    assert "pressure<double> on sm_90 (H100/H200 SXM): spills registers" in problems
    assert "pressure<double> on sm_80 (A100): spills registers" in problems
    assert "local_array: no budget" in problems
    m = module_of(tmp_path, SPILLS, ["local_array", "forgotten", "pressure"], {"pressure": ("float",)},
                  {"local_array": Budget(256, 1), "forgotten": Budget(32, 1), "pressure": Budget(32, 1, stack_frame=1 << 16)})
    problems = cuda_compile.check(m, cuda_compile.compile_module(m, nvrtc))
    assert any("local_array on sm_90 (H100/H200 SXM): 128 bytes of local memory (stack frame), budget 0" in p
               for p in problems), problems


def test_a_budget_the_registers_do_not_fit_is_a_problem(nvrtc):
    """The backend's own kernels, asked for full occupancy (8 blocks of 256 threads per SM):
    lstm_backward_step<double> on sm_90 uses 38 registers, so only 6 blocks fit."""
    strict = {k: Budget(cuda.BLOCK, 8, why="full occupancy") for k in cuda.KERNELS}
    m = Module(cuda.KERNEL_SOURCE, cuda.KERNELS, tuple(cuda.DTYPES.values()), strict)
    problems = cuda_compile.check(m, cuda_compile.compile_module(m, nvrtc, targets=("sm_90",)))
    assert any(p.startswith("lstm_backward_step<double> on sm_90 (H100/H200 SXM): 6 resident blocks of 256 threads "
                            "per SM (limited by registers; 38 registers") for p in problems), problems


@pytest.mark.parametrize("figures,budget,target,blocks", [
    (dict(registers=32, shared=0, barriers=0), Budget(256, 1), "sm_90", 8),      # 1024 regs/warp: the thread limit
    (dict(registers=64, shared=0, barriers=0), Budget(256, 1), "sm_90", 4),
    (dict(registers=40, shared=0, barriers=0), Budget(256, 1), "sm_90", 6),      # 1280 regs/warp, 12 warps/sub-partition
    (dict(registers=255, shared=0, barriers=0), Budget(1024, 1), "sm_90", 0),    # 65536 registers per block at most
    (dict(registers=16, shared=0, barriers=1), Budget(256, 1, dynamic_shared=100 * 1024), "sm_90", 2),
    (dict(registers=16, shared=0, barriers=1), Budget(256, 1, dynamic_shared=100 * 1024), "sm_80", 1),
    (dict(registers=16, shared=0, barriers=1), Budget(256, 1, dynamic_shared=240 * 1024), "sm_90", 0),
    (dict(registers=16, shared=0, barriers=0), Budget(32, 1), "sm_90", 32),      # the blocks-per-SM limit
], ids=["32reg", "64reg", "40reg", "255reg-1024thr", "100KiB-sm90", "100KiB-sm80", "240KiB", "tiny-blocks"])
def test_occupancy_from_nvidias_calculator(figures, budget, target, blocks):
    assert cuda_compile.blocks_per_sm(cuda_compile.GPUS[target], figures, budget)[0] == blocks


def test_shared_memory_beyond_the_device_is_a_problem(tmp_path, nvrtc):
    m = module_of(tmp_path, "__global__ void k(float* y) { __shared__ float s[256]; s[threadIdx.x] = y[0];"
                            " __syncthreads(); y[threadIdx.x] = s[255 - threadIdx.x]; }\n", ["k"],
                  budgets={"k": Budget(256, 1, dynamic_shared=240 * 1024)})
    problems = "\n".join(cuda_compile.check(m, cuda_compile.compile_module(m, nvrtc)))
    assert "k on sm_90 (H100/H200 SXM): 1024 + 245760 bytes of shared memory, over the 232448 a block may have" in problems
    assert "k on sm_80 (A100): 0 resident blocks" in problems


def test_ptxas_report_parsing():
    log = ("ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90'\n"
           "ptxas info    : Function properties for _Z1kPf\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem, 448 bytes cmem[0]\n"
           "ptxas info    : Compiling entry function '_Z1gv' for 'sm_90'\n"
           "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 2 registers\n")
    assert cuda_compile.parse_ptxas(log) == {
        "_Z1kPf": dict(stack_frame=8, spill_stores=4, spill_loads=12, registers=40, barriers=1, shared=1024),
        "_Z1gv": dict(stack_frame=0, spill_stores=0, spill_loads=0, registers=2, barriers=0, shared=0)}


def test_missing_wheel_is_explained(monkeypatch):
    monkeypatch.setattr(cuda_compile, "nvrtc_library", lambda: None)
    reason = cuda_compile.unavailable_reason()
    assert "NVRTC is not installed" in reason and 'pip install "lstm-engine[cuda-compile]"' in reason
    with pytest.raises(MissingDependencyError, match="nvidia-cuda-nvrtc-cu12"):
        cuda_compile.Nvrtc()
