"""The `cuda` backend, graph path and persistent path, against torch.nn.LSTM on cuDNN, side by
side in one run, as JSON.

    python benchmarks/compare_cuda.py                          # every standard, DeepBench and small-batch shape
    python benchmarks/compare_cuda.py --only speech,char --repeat 21
    python benchmarks/compare_cuda.py --shape 32,200,40,256,2,bi --paths persistent

Per shape and engine (float32, time-major): median milliseconds of an inference forward and,
unless the shape is forward-only, of a training forward+backward (loss = sum of outputs), after
warm-up, each timed call ended by a device synchronisation; the first call's time separately
(for the graph path it includes capturing the shape's CUDA graphs; the NVRTC compile of the
kernels is timed once on its own as compile_ms); GEMM TFLOP/s; and each cuda path's time over
torch's (< 1: faster). The engines: `graph` and `persistent` (CudaBackend.recurrence forced to
each; a shape with no persistent plan on this GPU records why), `torch` (cuDNN). The default
shapes are the standard ones, DeepBench's training shapes and B = 1, 2, 4, 8 at H = 256, 512,
1024 (lstm_engine.bench.SMALL_BATCH). Writes benchmarks/results/compare_cuda.json with the
GPU's name, memory, SMs, compute capability and driver. Needs a CUDA GPU with CuPy
(lstm-engine[cuda12] or [cuda13]); PyTorch with CUDA for the comparison column.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from lstm_engine.bench import (
    NAMED_SHAPES,
    format_cell,
    gemm_flops,
    parse_shape,
    select_shapes,
    time_call,  # noqa: F401  (part of this script's tested surface)
    time_modes,
    torch_calls,
    write_results,
)
from lstm_engine.errors import one_line

RESULTS = Path(__file__).parent / "results"
#: The cuda backend's time loops (CudaBackend.recurrence), each timed as its own engine.
PATHS = ("graph", "persistent")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=parse_shape, action="append",
                        help="B,T,I,H[,layers[,bi]]; repeatable (default: the built-in shapes)")
    parser.add_argument("--only", default="", help=f"comma-separated names among: {', '.join(NAMED_SHAPES)}")
    parser.add_argument("--no-torch", action="store_true", help="time the cuda backend alone")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help=f"the cuda backend's time loops to time, comma-separated among: {', '.join(PATHS)}")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--device-id", type=int, default=None,
                        help="GPU ordinal (sets LSTM_ENGINE_CUDA_DEVICE; default 0)")
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_cuda.json")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        parser.error(f"--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}")
    try:
        args.shapes = (select_shapes(None, args.shape) if args.shape
                       else select_shapes(args.only or list(NAMED_SHAPES)))
    except ValueError as exc:
        parser.error(str(exc))
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f"--paths takes some of {', '.join(PATHS)}, got {', '.join(unknown) or 'none'}")
    return args


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs: below 1 means the cuda backend is faster."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def render_table(result: dict) -> str:
    """Markdown: one row per shape, both cuda paths and torch side by side; `best` is the
    faster cuda path's time over torch's."""
    lines = ["| case | B | T | I | H | layers | graph fwd ms | persistent fwd ms | torch fwd ms | best fwd ratio "
             "| graph f+b ms | persistent f+b ms | torch f+b ms | best f+b ratio | best f+b TFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["shapes"]:
        eng = row["engines"]
        graph, pers, torch = (eng.get(k, {}) for k in ("graph", "persistent", "torch"))
        layers = f"{row['layers']}{' bi' if row['bidirectional'] else ''}"
        best_rate = max((eng[k].get("fwd_bwd_tflops") or 0 for k in PATHS if k in eng), default=0) or None
        lines.append(
            f"| {row['case']} | {row['B']} | {row['T']} | {row['I']} | {row['H']} | {layers} "
            f"| {format_cell(graph.get('fwd_ms'))} | {format_cell(pers.get('fwd_ms'))} | {format_cell(torch.get('fwd_ms'))} "
            f"| {format_cell(row.get('best_fwd_ratio'), suffix='x')} "
            f"| {format_cell(graph.get('fwd_bwd_ms'))} | {format_cell(pers.get('fwd_bwd_ms'))} "
            f"| {format_cell(torch.get('fwd_bwd_ms'))} | {format_cell(row.get('best_fwd_bwd_ratio'), suffix='x')} "
            f"| {format_cell(best_rate, '.1f')} |")
    return "\n".join(lines)


def add_rates(row: dict) -> dict:
    """TFLOP/s per engine, each cuda path's time over torch's (`ratios`), and the best path's
    (`best_{mode}_ratio`), from the timings in `row`."""
    shape = (row["B"], row["T"], row["I"], row["H"], row["layers"], row["bidirectional"])
    for r in row["engines"].values():
        for mode, backward in (("fwd", False), ("fwd_bwd", True)):
            ms = r.get(f"{mode}_ms")
            r[f"{mode}_tflops"] = None if ms is None else gemm_flops(*shape, backward=backward) / (ms / 1e3) / 1e12
    theirs = row["engines"].get("torch", {})
    row["ratios"] = {path: {mode: ratio(row["engines"][path].get(f"{mode}_ms"), theirs.get(f"{mode}_ms"))
                            for mode in ("fwd", "fwd_bwd")}
                     for path in PATHS if path in row["engines"]}
    for mode in ("fwd", "fwd_bwd"):
        found = [r[mode] for r in row["ratios"].values() if r[mode] is not None]
        row[f"best_{mode}_ratio"] = min(found) if found else None
    return row


# -- the GPU parts ---------------------------------------------------------------------------
def gpu_facts(cupy, device_id: int) -> dict:
    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props["name"]
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "device_id": device_id,
        "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
        "multiprocessors": props.get("multiProcessorCount"),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "driver_version": cupy.cuda.runtime.driverGetVersion(),
        "runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
        "cupy": cupy.__version__,
    }


def bench_cuda(backend, shape, warmup, repeat, path: str) -> dict:
    """One cuda path's timings for `shape`; {"skipped": why} where the persistent path has no
    plan on this GPU, {"error": ...} where a call failed (the run goes on with the next)."""
    from lstm_engine import BackendError
    before, backend.recurrence = backend.recurrence, path
    try:
        return _bench_path(backend, backend.xp, shape, warmup, repeat)
    except BackendError as exc:
        return {"skipped": str(exc)}
    except Exception as exc:               # a failing launch must not end a lease's only run
        return {"error": one_line(exc)}
    finally:
        backend.recurrence = before


def _bench_path(backend, cupy, shape, warmup, repeat) -> dict:
    from lstm_engine import LSTM
    B, T, I, H, layers, bi, fwd_only = shape
    chosen, _ = backend.recurrence_for(B, H, np.float32, keep=not fwd_only)
    model = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=backend, seed=0, dtype=np.float32)
    x = backend.asarray(np.random.default_rng(1).standard_normal((T, B, I)), dtype=np.float32)
    sync = cupy.cuda.get_current_stream().synchronize

    def fwd():
        model.forward(x, training=False)

    def fwd_bwd():
        out, _ = model.forward(x)
        model.backward(cupy.ones_like(out))

    captures = backend.graphs.captures
    r = time_modes(fwd, fwd_bwd, fwd_only, warmup, repeat, sync)
    r["graphs_captured"] = backend.graphs.captures - captures
    if chosen == "persistent":
        fwd_plan, bwd_plan, _ = backend.persistent_plans(H, np.float32, not fwd_only)
        r["plans"] = {p.kernel: {"units": p.units, "blocks": p.blocks, "threads": p.threads,
                                 "shared_bytes": p.shared_bytes} for p in (fwd_plan, bwd_plan) if p is not None}
    return r


def bench_torch(torch, shape, warmup, repeat, device_id) -> dict:
    B, T, I, H, layers, bi, fwd_only = shape
    dev = torch.device("cuda", device_id)
    model = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bi).to(dev)
    x = torch.randn(T, B, I, device=dev)
    sync = torch.cuda.synchronize
    fwd, fwd_bwd = torch_calls(torch, model, x)

    return time_modes(fwd, fwd_bwd, fwd_only, warmup, repeat, sync)


def _torch_or_reason(no_torch: bool):
    if no_torch:
        return None, "--no-torch"
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA here"
    return torch, ""


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.device_id is not None:
        os.environ["LSTM_ENGINE_CUDA_DEVICE"] = str(args.device_id)
    from lstm_engine import backends
    info = backends.probe("cuda")
    if not info.available:
        raise SystemExit(f"compare_cuda.py needs a CUDA GPU and the cuda backend: {info.reason}")
    backend = backends.get_backend("cuda")
    cupy = backend.xp
    device_id = backend.device.device_id
    t0 = time.perf_counter()
    backend.device.prepare()                        # NVRTC: both dtypes, every kernel
    compile_ms = (time.perf_counter() - t0) * 1e3
    torch, torch_reason = _torch_or_reason(args.no_torch)
    if torch is not None:
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = False

    result = {
        "machine": {**gpu_facts(cupy, device_id), "python": platform.python_version(),
                    "numpy": np.__version__,
                    "torch": None if torch is None else torch.__version__,
                    "cudnn": None if torch is None else torch.backends.cudnn.version()},
        "torch_skipped": torch_reason or None,
        "compile_ms": compile_ms, "warmup": args.warmup, "repeat": args.repeat, "paths": args.paths,
        "persistent_max_batch": backend.persistent_max_batch,
        "dtype": "float32", "layout": "time-major",
    }
    rows = []
    for case, shape in args.shapes.items():
        B, T, I, H, layers, bi, fwd_only = shape
        engines = {path: bench_cuda(backend, shape, args.warmup, args.repeat, path) for path in args.paths}
        if torch is not None:
            try:
                engines["torch"] = bench_torch(torch, shape, args.warmup, args.repeat, device_id)
            except Exception as exc:
                engines["torch"] = {"error": one_line(exc)}
        row = add_rates({"case": case, "B": B, "T": T, "I": I, "H": H, "layers": layers,
                         "bidirectional": bi, "forward_only": fwd_only, "engines": engines})
        rows.append(row)
        write_results(dict(result, shapes=rows), args.out)     # after each shape: a killed run keeps its rows
        print(f"{case:>18}: " + "  ".join(
            f"{name} fwd {r['fwd_ms']:8.3f} ms" if "fwd_ms" in r else f"{name}: {r.get('skipped') or r.get('error')}"
            for name, r in engines.items()), file=sys.stderr)

    result["shapes"] = rows
    write_results(result, args.out)
    print(render_table(result))
    return result


if __name__ == "__main__":
    main()
