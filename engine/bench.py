"""The CPU speed suite: LSTM workloads, timing, peak memory of a training step, machine facts.

`lstm-engine bench`, benchmarks/compare_backends.py, benchmarks/sweeps.py and
benchmarks/compare_cuda.py share what is here, so it lives in the installed package.

Importing this module is cheap: NumPy only. Numba (through the cpu backend) and torch are
imported inside the functions that time them.

A shape is (B, T, I, H, layers, bidirectional[, forward_only]): batch, steps, inputs, hidden
units; float32, time-major. Timed calls: "fwd" is an inference forward, "fwd_bwd" a training
forward plus the backward of out.sum() (ours: backward of ones, the same gradient).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from .backends.host import cpu_model, usable_cores

#: name: (B, T, I, H, layers, bidirectional, forward_only)
STANDARD_SHAPES = {
    "latency": (1, 150, 256, 256, 1, False, True),
    "speech": (32, 200, 40, 256, 1, False, False),
    "speech-2L-bi": (32, 200, 40, 256, 2, True, False),
    "char": (64, 150, 64, 256, 2, False, False),
    "deepbench": (64, 25, 512, 512, 1, False, False),
}
#: DeepBench's LSTM training shapes: H 512/1024 x B 16/64 at T 25 (I = H), H 256 at T 150.
DEEPBENCH_TRAINING = {
    **{f"db-H{H}-B{B}-T25": (B, 25, H, H, 1, False, False) for H in (512, 1024) for B in (16, 64)},
    **{f"db-H256-B{B}-T150": (B, 150, 256, 256, 1, False, False) for B in (16, 64)},
}
#: Small batches, where a persistent kernel should beat a GEMM per step most (Diamos et al.:
#: ~15x at B = 4): B 1/2/4/8 at H 256/512/1024, T 100, I = H, training.
SMALL_BATCH = {f"small-H{H}-B{B}": (B, 100, H, H, 1, False, False) for H in (256, 512, 1024) for B in (1, 2, 4, 8)}
NAMED_SHAPES = {**STANDARD_SHAPES, **DEEPBENCH_TRAINING, **SMALL_BATCH}

#: The environment variables that change which BLAS / OpenMP / Numba code runs.
ENV_PREFIXES = ("OPENBLAS_", "OMP_", "NUMBA_", "MKL_")
TORCH = "torch"
MODES = ("fwd", "fwd_bwd")


class ShapeError(argparse.ArgumentTypeError, ValueError):
    """A bad --shape. An ArgumentTypeError so argparse prints the message as it is; a
    ValueError for everyone else."""


# -- workloads --------------------------------------------------------------------------------
def parse_shape(text: str):
    """B,T,I,H[,layers[,bi]] -> (B, T, I, H, layers, bidirectional, forward_only=False)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not 4 <= len(parts) <= 6:
        raise ShapeError(f"--shape is B,T,I,H[,layers[,bi]], got {text!r}")
    try:
        B, T, I, H = (int(p) for p in parts[:4])
        layers = int(parts[4]) if len(parts) > 4 else 1
    except ValueError:
        raise ShapeError(f"--shape needs integers B,T,I,H[,layers], got {text!r}") from None
    if min(B, T, I, H, layers) < 1:
        raise ShapeError(f"--shape sizes must be >= 1, got {text!r}")
    flag = parts[5].lower() if len(parts) > 5 else ""
    if flag not in ("", "bi", "1", "true", "yes", "uni", "0", "false", "no"):
        raise ShapeError(f"--shape's 6th field is bi or uni, got {parts[5]!r} in {text!r}")
    return (B, T, I, H, layers, flag in ("bi", "1", "true", "yes"), False)


def shape_name(shape) -> str:
    """The --shape text of a shape: "32,200,40,256,2,bi"."""
    B, T, I, H, layers, bi = shape[:6]
    return f"{B},{T},{I},{H},{layers}" + (",bi" if bi else "")


def full_shape(shape) -> tuple:
    """A 6- or 7-tuple as the 7-tuple (forward_only defaults to False)."""
    if len(shape) not in (6, 7):
        raise ValueError(f"shape is (B, T, I, H, layers, bidirectional[, forward_only]), got {shape!r}")
    return tuple(shape) + (False,) * (7 - len(shape))


def select_shapes(only: str | list | None = None, shapes=()) -> dict:
    """--only's named shapes (comma-separated, or a list) plus --shape's, by name; the five
    standard shapes when both are empty."""
    if isinstance(only, str):
        only = [n.strip() for n in only.split(",")]
    wanted = [n for n in (only or []) if n]
    unknown = [n for n in wanted if n not in NAMED_SHAPES]
    if unknown:
        raise ValueError(f"--only: unknown shape(s) {', '.join(unknown)}; "
                         f"expected some of: {', '.join(NAMED_SHAPES)}")
    selected = {n: NAMED_SHAPES[n] for n in wanted}
    selected.update({shape_name(s): full_shape(s) for s in shapes})
    return selected or dict(STANDARD_SHAPES)


def gemm_flops(B, T, I, H, layers, bi, backward: bool) -> float:
    """The LSTM's GEMM work: 2*B*T*4H*(in+H) per layer-direction forward; backward twice that."""
    D = 2 if bi else 1
    total = 0.0
    for layer in range(layers):
        in_size = I if layer == 0 else D * H
        total += D * 2.0 * B * T * 4 * H * (in_size + H)
    return total * (3 if backward else 1)


def torch_calls(torch, model, x):
    """(inference forward, training forward + backward of out.sum()) of a torch.nn.LSTM."""
    def fwd():
        with torch.no_grad():
            model(x)

    def fwd_bwd():
        out, _ = model(x)
        out.sum().backward()
    return fwd, fwd_bwd


def _our_calls(model):
    """(inference forward, training forward + backward) of our LSTM."""
    xp = model.backend.xp

    def fwd(x):
        model.forward(x, training=False)

    def fwd_bwd(x):
        out, _ = model.forward(x)
        model.backward(xp.ones_like(out))
    return fwd, fwd_bwd


# -- timing -----------------------------------------------------------------------------------
def machine_gemm_rate(size: int = 2048, repeat: int = 5) -> float:
    """float32 GFLOP/s of numpy's matmul on size^3, best of `repeat` after one warm-up: the
    machine's GEMM rate as NumPy's BLAS (the one the cpu backend calls) reaches it."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / min(times) / 1e9


def time_call(fn, warmup: int, repeat: int, sync=None) -> dict:
    """First call's ms, then the median (and min) ms of `repeat` calls after `warmup` more.
    With `sync` (a GPU), each timed call is followed by sync() inside the timing, since
    launches return before the work ends."""
    if warmup < 0 or repeat < 1:
        raise ValueError(f"warmup must be >= 0 and repeat >= 1, got {warmup} and {repeat}")
    sync = sync or (lambda: None)
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return {"first_ms": first * 1e3, "median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3}


def cpu_threads() -> int:
    """The cpu backend's thread count (what torch is given too, for a fair race); the core
    count where the cpu backend does not run."""
    from lstm_engine import backends
    try:
        backends.get_backend("cpu")
    except backends.BackendError:
        return os.cpu_count() or 1
    import numba
    return numba.get_num_threads()


def torch_or_reason(no_torch: bool = False):
    """(the torch module, "") or (None, why it is not compared)."""
    if no_torch:
        return None, "--no-torch"
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    return torch, ""


def _no_sync() -> None:
    pass


def _build(engine: str, shape, threads: int | None):
    """(fwd(), fwd_bwd(), sync(), session) of `engine` on `shape`, seeded; sync() waits for a
    GPU's work (a no-op elsewhere) and session() makes a fresh context to run the calls in."""
    B, T, I, H, layers, bi = shape[:6]
    x_host = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    if engine == TORCH:
        import torch
        torch.set_num_threads(threads or cpu_threads())
        torch.manual_seed(0)
        model = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bi)
        x = torch.from_numpy(x_host)
        fwd, fwd_bwd = torch_calls(torch, model, x)
        return fwd, fwd_bwd, _no_sync, contextlib.nullcontext
    from lstm_engine import LSTM, backends
    backend = backends.get_backend(engine)
    model = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=backend, seed=0, dtype=np.float32)
    x = backend.asarray(x_host, dtype=np.float32)
    fwd, fwd_bwd = _our_calls(model)
    xp = backend.xp
    # A GPU backend's calls return before the work ends: time them up to a synchronisation.
    sync = xp.cuda.get_current_stream().synchronize if hasattr(xp, "cuda") else _no_sync
    # The session is what training runs in (the cpu backend keeps BLAS single-threaded and
    # reuses a step's arrays there); entered once around the whole measurement, as the
    # Trainer does around a run.
    return (lambda: fwd(x), lambda: fwd_bwd(x), sync, backend.session)


def time_modes(fwd, fwd_bwd, forward_only: bool, warmup: int, repeat: int, sync=None,
               modes=MODES) -> dict:
    """{mode}_ms (median), {mode}_min_ms and first_{mode}_ms of the calls for each mode in
    `modes`, fwd_bwd skipped when `forward_only`."""
    calls = {"fwd": fwd, "fwd_bwd": fwd_bwd}
    out = {}
    for mode in modes:
        if mode == "fwd_bwd" and forward_only:
            continue
        t = time_call(calls[mode], warmup, repeat, sync)
        out.update({f"{mode}_ms": t["median_ms"], f"{mode}_min_ms": t["min_ms"],
                    f"first_{mode}_ms": t["first_ms"]})
    return out


def bench_engine(engine: str, shape, warmup: int, repeat: int, threads: int | None = None,
                 modes=MODES) -> dict:
    """Timings of `engine` (a backend name, or "torch" for torch.nn.LSTM on the CPU) on
    `shape`: {mode}_ms (median), {mode}_min_ms, first_{mode}_ms for mode in `modes` (fwd_bwd
    skipped for a forward-only shape)."""
    shape = full_shape(shape)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"modes must be among {MODES}, got {unknown}")
    fwd, fwd_bwd, sync, session = _build(engine, shape, threads)
    with session():
        out = time_modes(fwd, fwd_bwd, shape[6], warmup, repeat, sync, modes)
    if engine == TORCH:
        import torch
        out.update(version=torch.__version__, threads=torch.get_num_threads())
    return out


def first_call_ms(engine: str, threads: int | None = None) -> float:
    """The engine's first forward+backward in this process, on a tiny shape: for cpu,
    Numba's compile (or load from its cache) of the kernels; for torch, its lazy start-up."""
    _, fwd_bwd, sync, session = _build(engine, (2, 3, 4, 5, 1, False), threads)
    with session():
        return time_call(fwd_bwd, 0, 1, sync)["first_ms"]


# -- peak memory of a training step -----------------------------------------------------------
#: Runs in a fresh interpreter, so engines and shapes do not see each other's allocations.
_PROBE = "import sys; from lstm_engine.bench import _probe_child; _probe_child(sys.argv[1])"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _probe_child(arg: str) -> None:
    """The child's side of peak_step_memory: prints {"peak_step_mib": ...} or {"reason": ...}."""
    req = json.loads(arg)
    if req["threads"] and req["engine"] != TORCH:
        from lstm_engine.backends import set_num_threads
        set_num_threads(req["threads"])
    _, fwd_bwd, sync, session = _build(req["engine"], tuple(req["shape"]), req["threads"])
    with session():
        fwd_bwd()                           # warm-up: kernels, allocator pools, torch's .grad
        sync()
    # the measured step runs in a session of its own: the cpu backend reuses a step's arrays
    # within a session, and arrays kept from the warm-up would hide the step's own
    with session():
        before = _status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                # resets VmHWM to the current RSS
        except OSError as exc:
            print(json.dumps({"reason": f"cannot reset the RSS high-water mark "
                                        f"(/proc/self/clear_refs: {exc.strerror or exc})"}))
            return
        fwd_bwd()
        sync()
        peak = _status_kib("VmHWM")
    print(json.dumps({"peak_step_mib": (peak - before) / 1024}))


def peak_step_memory(engine: str, shape, threads: int | None = None, timeout: float = 300) -> dict:
    """Peak resident memory a training step (forward + backward) adds, in MiB, measured in a
    fresh subprocess: {"peak_step_mib": float} or {"peak_step_mib": None, "memory_skipped": why}.

    The child builds the model, runs one warm-up step, reads VmRSS, resets the high-water mark
    (writing 5 to /proc/self/clear_refs), runs one step and reads VmHWM: peak = VmHWM - VmRSS.
    It sees host memory only, so GPU backends are skipped."""
    shape = full_shape(shape)
    if shape[6]:
        return {"peak_step_mib": None, "memory_skipped": "forward-only shape"}
    if engine == "cuda":
        return {"peak_step_mib": None, "memory_skipped": "host RSS does not see GPU memory"}
    if not os.path.exists("/proc/self/status"):
        return {"peak_step_mib": None, "memory_skipped": "no /proc/self/status on this system"}
    env = dict(os.environ)
    # glibc raises its mmap threshold after large frees, so the warm-up step's arrays would stay
    # in the heap and the measured step would reuse them, hiding its peak. A fixed threshold
    # keeps large arrays mmapped: freed back to the OS, and counted again when the step allocates.
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(128 * 1024))
    req = json.dumps({"engine": engine, "shape": list(shape), "threads": threads})
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, req], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"peak_step_mib": None, "memory_skipped": f"memory probe took over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"peak_step_mib": None, "memory_skipped": f"memory probe failed: {last}"}
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if "reason" in answer:
        return {"peak_step_mib": None, "memory_skipped": answer["reason"]}
    return {"peak_step_mib": answer["peak_step_mib"]}


# -- machine facts ----------------------------------------------------------------------------
def _version(package: str) -> str | None:
    # From the installed metadata: no import of numba or torch just to name their versions.
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict:
    """Platform, CPU model, cores, library versions, the cpu backend's facts, BLAS/OpenMP/Numba env."""
    from lstm_engine import __version__, backends
    cpu = backends.probe("cpu")
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "lstm_engine": __version__,
        **{name: _version(name) for name in ("numpy", "numba", "llvmlite", "torch")},
        "cpu_backend": cpu.facts if cpu.available else {"unavailable": cpu.reason},
        # OpenBLAS reads these when it loads; they change which kernels (AVX2, AVX-512) run
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
    }


# -- the suite --------------------------------------------------------------------------------
def _ratio(num, den):
    return None if num is None or den is None or den <= 0 else num / den


def add_rates(row: dict, gemm_gflops: float) -> dict:
    """GFLOP/s, fraction of the GEMM rate, speed-ups over numpy and torch (their ms / ours: > 1
    is faster) and peak memory over torch's (ours / theirs: < 1 is less), per engine."""
    shape = (row["B"], row["T"], row["I"], row["H"], row["layers"], row["bidirectional"])
    engines = row["engines"]
    for engine, r in engines.items():
        for mode in MODES:
            ms = r.get(f"{mode}_ms")
            if ms is None:
                continue
            gflops = gemm_flops(*shape, backward=mode == "fwd_bwd") / (ms / 1e3) / 1e9
            r[f"{mode}_gflops"] = gflops
            r[f"{mode}_fraction_of_gemm_rate"] = gflops / gemm_gflops
            for ref in ("numpy", TORCH):
                if ref in engines and ref != engine:
                    r[f"{mode}_speedup_vs_{ref}"] = _ratio(engines[ref].get(f"{mode}_ms"), ms)
        if TORCH in engines and engine != TORCH and "peak_step_mib" in r:
            r["peak_step_mib_vs_torch"] = _ratio(r["peak_step_mib"], engines[TORCH].get("peak_step_mib"))
    return row


def _wants_memory(memory, engine: str) -> bool:
    return memory is True or (not isinstance(memory, bool) and engine in memory)


def run_suite(engines, shapes: dict, warmup: int = 2, repeat: int = 7, *, memory=True,
              threads: int | None = None, gemm_gflops: float | None = None, log=None) -> dict:
    """Every engine on every shape, side by side, as a JSON-ready dict with machine facts.

    engines: backend names, and "torch" for torch.nn.LSTM. shapes: name -> shape.
    memory: True (every cell), False, or the engine names whose training-step peak memory is
    probed (a subprocess per cell). threads: torch's threads (default: the cpu backend's).
    log: a print-like callable for progress."""
    engines = list(engines)
    if not engines:
        raise ValueError("engines is empty: name at least one backend (or torch)")
    if not shapes:
        raise ValueError("shapes is empty: give at least one shape")
    log = log or (lambda *a, **k: None)
    threads = threads or cpu_threads()
    measured = gemm_gflops is None
    if measured:
        gemm_gflops = machine_gemm_rate()
    log(f"machine float32 GEMM rate: {gemm_gflops:.0f} GFLOP/s")
    first = {e: first_call_ms(e, threads) for e in engines}
    rows = []
    for case, shape in shapes.items():
        B, T, I, H, layers, bi, fwd_only = full_shape(shape)
        cells = {}
        for engine in engines:
            r = bench_engine(engine, shape, warmup, repeat, threads)
            if _wants_memory(memory, engine):
                r.update(peak_step_memory(engine, shape, threads))
            cells[engine] = r
            log(f"{case:>14} {engine:>6}: fwd {r['fwd_ms']:9.2f} ms"
                + (f"  f+b {r['fwd_bwd_ms']:9.2f} ms" if "fwd_bwd_ms" in r else "")
                + (f"  peak {r['peak_step_mib']:7.1f} MiB" if r.get("peak_step_mib") is not None else ""))
        rows.append({"case": case, "B": B, "T": T, "I": I, "H": H, "layers": layers,
                     "bidirectional": bi, "forward_only": fwd_only, "engines": cells})
    gemm_runs = [gemm_gflops]
    if measured:
        # a shared 2-core VM can lose half its speed for seconds: measured again at the end,
        # the better of the two is the machine's rate
        gemm_runs.append(machine_gemm_rate())
        gemm_gflops = max(gemm_runs)
        log(f"machine float32 GEMM rate at the end: {gemm_runs[-1]:.0f} GFLOP/s")
    rows = [add_rates(row, gemm_gflops) for row in rows]
    return {"machine": machine_facts(), "gemm_gflops": gemm_gflops,
            "gemm_gflops_runs": gemm_runs, "threads": threads,
            "warmup": warmup, "repeat": repeat, "dtype": "float32", "layout": "time-major",
            "first_call_ms": first, "memory": memory if isinstance(memory, bool) else sorted(memory),
            "shapes": rows}


def format_cell(v, spec=".2f", suffix=""):
    """A table cell: empty for a missing value."""
    return "" if v is None else f"{v:{spec}}{suffix}"


def write_results(result: dict, out) -> None:
    """The results JSON at ``out`` (folders made as needed); says where on stderr."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def markdown_table(result: dict) -> str:
    """The README's table, made from a results dict (run_suite's), and a line of notes."""
    lines = ["| case | B | T | I | H | layers | engine | fwd ms | fwd vs torch | f+b ms | f+b GFLOP/s "
             "| f+b % of GEMM | f+b vs torch | first call ms | step peak MiB | MiB vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["shapes"]:
        layers = f"{row['layers']}{' bi' if row['bidirectional'] else ''}"
        for engine, r in row["engines"].items():
            frac = r.get("fwd_bwd_fraction_of_gemm_rate")
            lines.append(
                f"| {row['case']} | {row['B']} | {row['T']} | {row['I']} | {row['H']} | {layers} | {engine} "
                f"| {format_cell(r.get('fwd_ms'))} | {format_cell(r.get('fwd_speedup_vs_torch'), suffix='x')} "
                f"| {format_cell(r.get('fwd_bwd_ms'))} | {format_cell(r.get('fwd_bwd_gflops'), '.0f')} "
                f"| {format_cell(None if frac is None else 100 * frac, '.0f', '%')} "
                f"| {format_cell(r.get('fwd_bwd_speedup_vs_torch'), suffix='x')} "
                f"| {format_cell(r.get('first_fwd_bwd_ms', r.get('first_fwd_ms')), '.1f')} "
                f"| {format_cell(r.get('peak_step_mib'), '.1f')} | {format_cell(r.get('peak_step_mib_vs_torch'), suffix='x')} |")
    machine = result.get("machine", {})
    first = ", ".join(f"{e} {ms:.0f} ms" for e, ms in result.get("first_call_ms", {}).items())
    notes = (f"{machine.get('cpu', '?')}, {result.get('threads', '?')} threads; float32 GEMM (numpy, 2048^3) "
             f"{result.get('gemm_gflops', 0):.0f} GFLOP/s; median of {result.get('repeat', '?')} after "
             f"{result.get('warmup', '?')} warm-up; first call in the process (JIT/start-up): {first or 'n/a'}.")
    return "\n".join(lines) + "\n\n" + notes
