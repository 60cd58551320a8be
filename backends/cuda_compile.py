"""The cuda backend's kernels through NVIDIA's real compiler, without a GPU: NVRTC from the
`nvidia-cuda-nvrtc-cu12` wheel (ctypes, no CuPy), for the GPUs the backend targets, with the
ptxas resource report of every kernel checked against what its launch assumes.

What is compiled: every kernel instantiation of every .cu file of the backend (`modules()`),
with the code, options and name expressions `cuda.nvrtc_program()` gives `_CupyDevice`'s
cupy.RawModule, plus what CuPy 14 adds to them on the way to NVRTC (-ftz=true, -arch,
--device-as-default-execution-space; cupy/cuda/compiler.py), plus -Xptxas=-v for the report and
the wheels' include folders (CuPy adds its CUDA's). Targets: sm_80 (A100) and sm_90 (H100/H200)
cubins, and PTX for compute_120 (what a newer GPU would JIT from).

What fails (`check`): a compile error; any warning in the log (NVRTC does not fail on them);
a spill store or load, or local memory (a stack frame); and resources beyond the kernel's
`Budget`: threads per block over 1024, static shared memory over 48 KiB, static + dynamic over
the GPU's opt-in maximum, or fewer resident blocks per SM than the launch design needs.
Resident blocks come from NVIDIA's own occupancy calculator (cuda_occupancy.h from the
`nvidia-cuda-runtime-cu12` wheel, built with the host compiler) with the ptxas figures: registers
(allocated per warp in units of 256, per SM sub-partition), shared memory (plus the 1 KiB the
driver reserves per block), barriers and warps. A cooperative kernel's grid can then be sized
from blocks per SM times SMs, so it can never exceed the device.

`report()` gives the figures per kernel and target, and where the persistent kernels run on
each GPU (`persistent_ranges`: the largest hidden size with a plan, training and inference, and
the plans of the standard sizes, from the backend's planner and these figures); `python -m
lstm_engine.backends.cuda_compile
--write benchmarks/results/cuda_kernels.json` writes them (tests/test_cuda_compile.py checks that
the committed file is current). Figures depend on the NVRTC version: the `cuda-compile` extra
pins it.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import BackendError, MissingDependencyError
from . import cuda, cuda_persistent

INSTALL_HINT = 'pip install "lstm-engine[cuda-compile]"'
#: Cubins for the GPUs the backend targets, PTX for a newer one.
TARGETS = ("sm_80", "sm_90", "compute_120")
#: What CuPy 14's RawModule adds to the options it is given, around the architecture flag
#: (compiler._compile_with_cache_cuda and _compile_using_nvrtc_no_warning).
CUPY_ADDS_BEFORE_ARCH = ("-ftz=true",)
CUPY_ADDS_AFTER_ARCH = ("--device-as-default-execution-space",)
#: ptxas prints registers, barriers, shared memory, stack frame and spills per kernel.
REPORT_OPTIONS = ("-Xptxas=-v",)


@dataclass(frozen=True)
class Gpu:
    """The figures of one GPU that occupancy depends on (CUDA's device properties)."""

    name: str
    major: int
    minor: int
    sms: int
    shared_per_sm: int              # sharedMemPerMultiprocessor
    shared_per_block_optin: int     # sharedMemPerBlockOptin (dynamic shared memory above 48 KiB)
    shared_per_block: int = 48 * 1024
    reserved_shared_per_block: int = 1024
    registers_per_sm: int = 65536
    registers_per_block: int = 65536
    threads_per_sm: int = 2048
    threads_per_block: int = 1024


#: The GPU each cubin target is checked for: the smallest of its generation the backend expects.
GPUS = {
    "sm_80": Gpu("A100", 8, 0, sms=108, shared_per_sm=167936, shared_per_block_optin=166912),
    "sm_90": Gpu("H100/H200 SXM", 9, 0, sms=132, shared_per_sm=233472, shared_per_block_optin=232448),
}


@dataclass(frozen=True)
class Budget:
    """What a kernel's launch assumes: threads per block, the resident blocks per SM the design
    needs, the dynamic shared memory it passes (None: as much as the GPU lets a block opt in
    to, less the kernel's static shared memory; a launch sized to the device), local memory it
    may use."""

    threads_per_block: int
    min_blocks_per_sm: int
    dynamic_shared: int | None = 0
    stack_frame: int = 0
    why: str = ""


_POINTWISE = Budget(
    cuda.BLOCK, 4, why="streaming pointwise kernel: at least half an SM's 2048 threads resident to hide "
                       "memory latency (4 blocks of BLOCK=256 threads: at most 64 registers per thread)")
_PERSISTENT = Budget(
    cuda_persistent.THREADS, 1, dynamic_shared=None,
    why="persistent kernel: one block of LSTM_PERSISTENT_THREADS threads per SM with as much shared memory as "
        "the GPU gives a block (its plans size the launch to the device; grid.sync() needs every block resident)")
#: The budget of each kernel of the backend, by kernel name (all its instantiations).
BUDGETS = {
    "lstm_forward_step": _POINTWISE,
    "lstm_backward_step": _POINTWISE,
    "lstm_backward_finish": _POINTWISE,
    "lstm_persistent_forward": _PERSISTENT,
    "lstm_persistent_backward": _PERSISTENT,
}


@dataclass(frozen=True)
class Module:
    """One .cu file: its kernels (name -> cuda.KernelParam tuple), C types, budgets by kernel name."""

    source: Path
    kernels: dict
    types: object
    budgets: dict


def modules() -> list[Module]:
    """Every .cu file of the backend with its kernel table (tests/test_cuda_compile.py checks
    that none is missing)."""
    return [Module(f.source, dict(f.kernels), tuple(cuda.DTYPES.values()), BUDGETS) for f in cuda.KERNEL_FILES]


# -- the wheels -------------------------------------------------------------------------------------
def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def nvrtc_library() -> Path | None:
    """libnvrtc.so from the nvidia-cuda-nvrtc-cu12 wheel, or None."""
    root = _package_dir("nvidia.cuda_nvrtc")
    if root is None:
        return None
    found = sorted(p for p in (root / "lib").glob("libnvrtc.so*") if ".alt." not in p.name)
    return found[0] if found else None


def include_dirs() -> list[Path]:
    """The CUDA headers of the runtime and CCCL wheels (cooperative_groups.h, cuda_occupancy.h)."""
    dirs = []
    for name in ("nvidia.cuda_runtime", "nvidia.cuda_cccl"):
        root = _package_dir(name)
        if root is not None and (root / "include").is_dir():
            dirs.append(root / "include")
    return dirs


def unavailable_reason() -> str:
    """Why the compile check cannot run here ('' when it can)."""
    if nvrtc_library() is None:
        return f"NVRTC is not installed (the nvidia-cuda-nvrtc-cu12 wheel; install with: {INSTALL_HINT})"
    if len(include_dirs()) < 2:
        return f"the CUDA runtime and CCCL headers are not installed (install with: {INSTALL_HINT})"
    return ""


# -- NVRTC through ctypes ------------------------------------------------------------------------------
@dataclass
class Compiled:
    """One NVRTC compilation: its log, and each name expression's mangled name."""

    log: str
    lowered: dict
    image_bytes: int


class Nvrtc:
    """The few NVRTC calls a compile needs (nvrtc.h), on the wheel's library."""

    def __init__(self, path: Path | None = None):
        path = path or nvrtc_library()
        if path is None:
            raise MissingDependencyError(unavailable_reason())
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self._lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise BackendError(f"NVRTC {what} failed: {self._lib.nvrtcGetErrorString(status).decode()}")

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return f"{major.value}.{minor.value}"

    def compile(self, code: str, filename: str, options, name_expressions) -> Compiled:
        """Compiles; raises BackendError with NVRTC's log when it fails."""
        lib, prog = self._lib, ctypes.c_void_p()
        self._check(lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), filename.encode(), 0, None, None),
                    "nvrtcCreateProgram")
        try:
            for name in name_expressions:
                self._check(lib.nvrtcAddNameExpression(prog, name.encode()), f"adding {name}")
            opts = [o.encode() for o in options]
            status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
            size = ctypes.c_size_t()
            self._check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
            buf = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
            log = buf.value.decode(errors="replace")
            if status != 0:
                raise BackendError(f"NVRTC could not compile {filename} ({' '.join(options)}):\n{log}")
            lowered = {}
            for name in name_expressions:
                out = ctypes.c_char_p()
                self._check(lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)), f"lowering {name}")
                lowered[name] = out.value.decode()
            cubin = any(o.startswith("-arch=sm_") for o in options)
            get_size = lib.nvrtcGetCUBINSize if cubin else lib.nvrtcGetPTXSize
            self._check(get_size(prog, ctypes.byref(size)), "getting the image size")
            return Compiled(log, lowered, size.value)
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_options(target: str, base_options) -> list[str]:
    """The NVRTC options of one target, in the order CuPy passes them, plus the report flag and
    the headers' folders."""
    return [*base_options, *CUPY_ADDS_BEFORE_ARCH, f"-arch={target}", *CUPY_ADDS_AFTER_ARCH,
            *REPORT_OPTIONS, *(f"-I{d}" for d in include_dirs())]


# -- the ptxas report ----------------------------------------------------------------------------------
_ENTRY = re.compile(r"Compiling entry function '(\S+)' for '(\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas(log: str) -> dict:
    """{mangled kernel name: {registers, barriers, shared, stack_frame, spill_stores,
    spill_loads}} from a `-Xptxas=-v` log."""
    kernels, current = {}, None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            current = kernels.setdefault(m.group(1), {})
        elif current is not None and (m := _FRAME.search(line)):
            current.update(stack_frame=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        elif current is not None and (m := _USED.search(line)):
            current.update(registers=int(m.group(1)), barriers=int(m.group(2) or 0), shared=int(m.group(3) or 0))
    return kernels


# -- occupancy, by NVIDIA's calculator -----------------------------------------------------------------
_OCCUPANCY_SHIM = r"""
#include <cuda_occupancy.h>
extern "C" int lstm_engine_blocks_per_sm(int major, int minor, int sms, int threads_per_sm,
        int threads_per_block_max, int regs_per_sm, int regs_per_block, unsigned long long shared_per_block,
        unsigned long long shared_per_sm, unsigned long long shared_optin, unsigned long long shared_reserved,
        int registers, unsigned long long static_shared, int barriers, int block, unsigned long long dynamic_shared,
        int* limiting_factors) {
    cudaOccDeviceProp p;
    p.computeMajor = major; p.computeMinor = minor; p.numSms = sms; p.warpSize = 32;
    p.maxThreadsPerMultiprocessor = threads_per_sm; p.maxThreadsPerBlock = threads_per_block_max;
    p.regsPerMultiprocessor = regs_per_sm; p.regsPerBlock = regs_per_block;
    p.sharedMemPerBlock = shared_per_block; p.sharedMemPerMultiprocessor = shared_per_sm;
    p.sharedMemPerBlockOptin = shared_optin; p.reservedSharedMemPerBlock = shared_reserved;
    cudaOccFuncAttributes a;
    a.maxThreadsPerBlock = threads_per_block_max; a.numRegs = registers; a.sharedSizeBytes = static_shared;
    a.numBlockBarriers = barriers; a.maxDynamicSharedSizeBytes = dynamic_shared;
    a.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;   // what cudaFuncSetAttribute(MaxDynamicSharedMemorySize) gives
    cudaOccDeviceState s;
    cudaOccResult r;
    cudaOccError status = cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &s, block, dynamic_shared);
    *limiting_factors = (int)r.limitingFactors;
    return status == CUDA_OCC_SUCCESS ? r.activeBlocksPerMultiprocessor : -1;
}
"""
#: cudaOccLimitingFactor bits, for saying why occupancy is low.
LIMITING_FACTORS = {1: "warps", 2: "registers", 4: "shared memory", 8: "blocks", 16: "barriers"}
_occupancy_fn = None


def _occupancy_function():
    global _occupancy_fn
    if _occupancy_fn is None:
        from .cuda_host import cache_dir, compiler, unavailable_reason as no_compiler
        cxx = compiler()
        if cxx is None:
            raise BackendError(no_compiler())
        includes = [f"-I{d}" for d in include_dirs()]
        digest = hashlib.sha256((_OCCUPANCY_SHIM + cxx + " ".join(includes)).encode()).hexdigest()[:16]
        target = cache_dir() / f"occupancy-{digest}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
                src = Path(tmp) / "occupancy.cpp"
                src.write_text(_OCCUPANCY_SHIM)
                built = Path(tmp) / target.name
                cmd = [cxx, "-O1", "-std=c++17", "-shared", "-fPIC", *includes, str(src), "-o", str(built)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BackendError(f"building the occupancy calculator failed ({' '.join(cmd)}):\n{proc.stderr}")
                os.replace(built, target)
        fn = ctypes.CDLL(str(target)).lstm_engine_blocks_per_sm
        fn.restype = ctypes.c_int
        fn.argtypes = ([ctypes.c_int] * 7 + [ctypes.c_ulonglong] * 4 + [ctypes.c_int, ctypes.c_ulonglong,
                       ctypes.c_int, ctypes.c_int, ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_int)])
        _occupancy_fn = fn
    return _occupancy_fn


def dynamic_shared(gpu: Gpu, figures: dict, budget: Budget) -> int:
    """The dynamic shared memory of the budget's launch on `gpu` (see Budget.dynamic_shared)."""
    if budget.dynamic_shared is None:
        return gpu.shared_per_block_optin - figures["shared"]
    return budget.dynamic_shared


def blocks_per_sm(gpu: Gpu, figures: dict, budget: Budget) -> tuple[int, list[str]]:
    """Resident blocks per SM of a kernel with these ptxas figures launched as `budget` says,
    and what limits them."""
    limiting = ctypes.c_int()
    n = _occupancy_function()(gpu.major, gpu.minor, gpu.sms, gpu.threads_per_sm, gpu.threads_per_block,
                              gpu.registers_per_sm, gpu.registers_per_block, gpu.shared_per_block,
                              gpu.shared_per_sm, gpu.shared_per_block_optin, gpu.reserved_shared_per_block,
                              figures["registers"], figures["shared"], figures["barriers"],
                              budget.threads_per_block, dynamic_shared(gpu, figures, budget), ctypes.byref(limiting))
    return max(n, 0), [what for bit, what in LIMITING_FACTORS.items() if limiting.value & bit]


# -- compiling and checking ------------------------------------------------------------------------------
def kernels_in_source(source: Path) -> list[str]:
    """The names of the __global__ functions defined in a .cu file."""
    return list(cuda.kernel_signatures(source))


def compile_module(module: Module, nvrtc: Nvrtc | None = None, targets=TARGETS) -> dict:
    """{name expression: {target: ptxas figures (cubins) or {"ptx": True}}} for one .cu file.
    Raises BackendError on a compile error or a warning."""
    nvrtc = nvrtc or Nvrtc()
    code, options, names = cuda.nvrtc_program(module.source, module.kernels, module.types)
    out = {name: {} for name in names}
    for target in targets:
        opts = compile_options(target, options)
        result = nvrtc.compile(code, module.source.name, opts, names)
        warnings = [line for line in result.log.splitlines() if "warning" in line.lower()]
        if warnings:
            raise BackendError(f"NVRTC warned compiling {module.source.name} for {target} "
                               f"({' '.join(opts)}):\n" + "\n".join(warnings))
        figures = parse_ptxas(result.log)
        for name in names:
            if target.startswith("sm_"):
                mangled = result.lowered[name]
                if mangled not in figures:
                    raise BackendError(f"no ptxas report for {name} ({mangled}) in the {target} log:\n{result.log}")
                out[name][target] = figures[mangled]
            else:
                out[name][target] = {"ptx": True}
    return out


def check(module: Module, compiled: dict) -> list[str]:
    """Every way the compiled kernels of `module` break their budgets (empty when none)."""
    problems = []
    kernel_names = set(module.kernels)
    missing = [k for k in kernels_in_source(module.source) if k not in kernel_names]
    if missing:
        problems.append(f"{module.source.name}: kernels {missing} are not in its kernel table, so nothing compiles "
                        "or checks them")
    for name, by_target in compiled.items():
        kernel = name.split("<", 1)[0]
        budget = module.budgets.get(kernel)
        if budget is None:
            problems.append(f"{name}: no budget (threads per block, resident blocks per SM) for it")
            continue
        for target, fig in by_target.items():
            gpu = GPUS.get(target)
            if gpu is None:
                continue
            where = f"{name} on {target} ({gpu.name})"
            if fig["spill_stores"] or fig["spill_loads"]:
                problems.append(f"{where}: spills registers ({fig['spill_stores']} bytes stored, "
                                f"{fig['spill_loads']} bytes loaded)")
            if fig["stack_frame"] > budget.stack_frame:
                problems.append(f"{where}: {fig['stack_frame']} bytes of local memory (stack frame), budget "
                                f"{budget.stack_frame}")
            if budget.threads_per_block > gpu.threads_per_block:
                problems.append(f"{where}: {budget.threads_per_block} threads per block, the GPU allows "
                                f"{gpu.threads_per_block}")
            if fig["shared"] > gpu.shared_per_block:
                problems.append(f"{where}: {fig['shared']} bytes of static shared memory, over {gpu.shared_per_block}")
            dynamic = dynamic_shared(gpu, fig, budget)
            if fig["shared"] + dynamic > gpu.shared_per_block_optin:
                problems.append(f"{where}: {fig['shared']} + {dynamic} bytes of shared memory, over "
                                f"the {gpu.shared_per_block_optin} a block may have")
            blocks, limits = blocks_per_sm(gpu, fig, budget)
            if blocks < budget.min_blocks_per_sm:
                problems.append(f"{where}: {blocks} resident blocks of {budget.threads_per_block} threads per SM "
                                f"(limited by {', '.join(limits) or 'nothing'}; {fig['registers']} registers, "
                                f"{fig['shared']} + {dynamic} bytes shared), the launch needs "
                                f"{budget.min_blocks_per_sm}: {budget.why}")
    return problems


#: Hidden sizes whose persistent plans the report lists (speech/char 256, DeepBench 512, 1024).
PLAN_SIZES = (256, 512, 768, 1024)


def persistent_ranges(compiled: dict) -> dict:
    """Where the persistent path runs on each GPU of GPUS, from the persistent kernels' ptxas
    figures (`compiled`: name expression -> target -> figures) and the backend's own planner
    (cuda_persistent.plan) with NVIDIA's occupancy calculator standing in for the device:
    {target: {C type: {"max_hidden": {"inference": H, "training": H}, "plans": {H: ...}}}}.
    Every H up to max_hidden has a plan (for a fixed U a plan only gets harder as H grows), and
    none above it; training needs the backward kernel's plan too."""
    cp = cuda_persistent
    out = {}
    for target, gpu in GPUS.items():
        out[target] = {}
        for ctype, itemsize in (("float", 4), ("double", 8)):
            def plan(kernel, hidden, ctype=ctype, itemsize=itemsize):
                fig = compiled[f"{kernel}<{ctype}>"][target]
                def capacity(shared):
                    return blocks_per_sm(gpu, fig, Budget(cp.THREADS, 1, dynamic_shared=shared))[0] * gpu.sms
                return cp.plan(kernel, hidden, itemsize, cp.THREADS, gpu.shared_per_block_optin - fig["shared"],
                               gpu.sms, capacity)[0]

            def largest(kernel):
                lo, hi = 0, 1
                while plan(kernel, hi) is not None:
                    lo, hi = hi, hi * 2
                while hi - lo > 1:             # plan(lo) exists, plan(hi) does not
                    mid = (lo + hi) // 2
                    lo, hi = (mid, hi) if plan(kernel, mid) is not None else (lo, mid)
                return lo

            forward, backward = largest(cp.FORWARD), largest(cp.BACKWARD)
            plans = {}
            for hidden in PLAN_SIZES:
                plans[str(hidden)] = {
                    kernel: (None if p is None else {"units": p.units, "blocks": p.blocks, "chunk_cols": p.chunk_cols,
                                                     "shared_bytes": p.shared_bytes})
                    for kernel in (cp.FORWARD, cp.BACKWARD) for p in [plan(kernel, hidden)]}
            out[target][ctype] = {"max_hidden": {"inference": forward, "training": min(forward, backward)},
                                  "plans": plans}
    return out


def report(mods: list[Module] | None = None, nvrtc: Nvrtc | None = None) -> dict:
    """The figures of every kernel and target, with the compiler, the options and the budgets
    (what benchmarks/results/cuda_kernels.json holds). Raises BackendError when a kernel does
    not compile cleanly or breaks its budget."""
    nvrtc = nvrtc or Nvrtc()
    mods = modules() if mods is None else mods
    kernels, problems, everything = [], [], {}
    for module in mods:
        compiled = compile_module(module, nvrtc)
        everything.update(compiled)
        problems += check(module, compiled)
        for name, by_target in compiled.items():
            budget = module.budgets.get(name.split("<", 1)[0])
            row = {"file": module.source.name, "kernel": name,
                   "budget": None if budget is None else asdict(budget)}
            for target, fig in by_target.items():
                if target in GPUS and budget is not None:
                    fig = dict(fig, blocks_per_sm=blocks_per_sm(GPUS[target], fig, budget)[0])
                row[target] = fig
            kernels.append(row)
    if problems:
        raise BackendError("the CUDA kernels break their budgets:\n  " + "\n  ".join(problems))
    base = cuda.nvrtc_program()[1]
    return {
        "compiler": {"nvrtc": nvrtc.version(), "targets": list(TARGETS),
                     "options": [o for o in compile_options("<target>", base) if not o.startswith("-I")]},
        "gpus": {t: asdict(g) for t, g in GPUS.items()},
        "kernels": kernels,
        "persistent": persistent_ranges(everything) if all(
            f"{k}<float>" in everything for k in cuda.PERSISTENT_KERNELS) else None,
    }


def markdown(result: dict) -> str:
    """A table of the report: one row per kernel instantiation and GPU target."""
    lines = ["| kernel | target | registers | spill bytes | stack | barriers | static smem | blocks/SM (needed) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["kernels"]:
        for target in GPUS:
            fig = row.get(target)
            if fig is None:
                continue
            needed = row["budget"]["min_blocks_per_sm"] if row["budget"] else "?"
            lines.append(f"| {row['kernel']} | {target} | {fig['registers']} | {fig['spill_stores'] + fig['spill_loads']} "
                         f"| {fig['stack_frame']} | {fig['barriers']} | {fig['shared']} | {fig.get('blocks_per_sm')} ({needed}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="write the report JSON here (e.g. benchmarks/results/cuda_kernels.json)")
    args = parser.parse_args(argv)
    result = report()
    print(markdown(result))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
