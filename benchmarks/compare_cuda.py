"""The `cuda` backend against torch.nn.LSTM on cuDNN, side by side in one run, as JSON.

    python benchmarks/compare_cuda.py                          # every standard + DeepBench shape
    python benchmarks/compare_cuda.py --only speech,char --repeat 21
    python benchmarks/compare_cuda.py --shape 32,200,40,256,2,bi

Per shape and engine (float32, time-major): median milliseconds of an inference forward and,
unless the shape is forward-only, of a training forward+backward (loss = sum of outputs), after
warm-up, each timed call ended by a device synchronisation; the first call's time separately
(for `cuda` it includes capturing the shape's CUDA graphs; the NVRTC compile of the kernels is
timed once on its own as compile_ms); GEMM TFLOP/s; and cuda's time over torch's (< 1: faster).
Writes benchmarks/results/compare_cuda.json with the GPU's name, memory, compute capability and
driver. Needs a CUDA GPU with CuPy (lstm-engine[cuda12] or [cuda13]); PyTorch with CUDA for the
comparison column.
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

RESULTS = Path(__file__).parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=parse_shape, action="append",
                        help="B,T,I,H[,layers[,bi]]; repeatable (default: the built-in shapes)")
    parser.add_argument("--only", default="", help=f"comma-separated names among: {', '.join(NAMED_SHAPES)}")
    parser.add_argument("--no-torch", action="store_true", help="time the cuda backend alone")
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
    return args


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs: below 1 means the cuda backend is faster."""
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def render_table(result: dict) -> str:
    """Markdown: one row per shape, cuda and torch side by side."""
    lines = ["| case | B | T | I | H | layers | cuda fwd ms | torch fwd ms | fwd ratio "
             "| cuda f+b ms | torch f+b ms | f+b ratio | cuda f+b TFLOP/s | cuda first call ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["shapes"]:
        ours, theirs = row["engines"].get("cuda", {}), row["engines"].get("torch", {})
        layers = f"{row['layers']}{' bi' if row['bidirectional'] else ''}"
        lines.append(
            f"| {row['case']} | {row['B']} | {row['T']} | {row['I']} | {row['H']} | {layers} "
            f"| {format_cell(ours.get('fwd_ms'))} | {format_cell(theirs.get('fwd_ms'))} | {format_cell(row.get('fwd_ratio'), suffix='x')} "
            f"| {format_cell(ours.get('fwd_bwd_ms'))} | {format_cell(theirs.get('fwd_bwd_ms'))} "
            f"| {format_cell(row.get('fwd_bwd_ratio'), suffix='x')} | {format_cell(ours.get('fwd_bwd_tflops'), '.1f')} "
            f"| {format_cell(ours.get('first_fwd_ms'), '.0f')} |")
    return "\n".join(lines)


def add_rates(row: dict) -> dict:
    """TFLOP/s per engine and the cuda/torch ratios, from the timings in `row`."""
    shape = (row["B"], row["T"], row["I"], row["H"], row["layers"], row["bidirectional"])
    for r in row["engines"].values():
        for mode, backward in (("fwd", False), ("fwd_bwd", True)):
            ms = r.get(f"{mode}_ms")
            r[f"{mode}_tflops"] = None if ms is None else gemm_flops(*shape, backward=backward) / (ms / 1e3) / 1e12
    ours, theirs = row["engines"].get("cuda", {}), row["engines"].get("torch", {})
    for mode in ("fwd", "fwd_bwd"):
        row[f"{mode}_ratio"] = ratio(ours.get(f"{mode}_ms"), theirs.get(f"{mode}_ms"))
    return row


# -- the GPU parts ---------------------------------------------------------------------------
def gpu_facts(cupy, device_id: int) -> dict:
    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props["name"]
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "device_id": device_id,
        "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "driver_version": cupy.cuda.runtime.driverGetVersion(),
        "runtime_version": cupy.cuda.runtime.runtimeGetVersion(),
        "cupy": cupy.__version__,
    }


def bench_cuda(backend, shape, warmup, repeat) -> dict:
    from lstm_engine import LSTM
    cupy = backend.xp
    B, T, I, H, layers, bi, fwd_only = shape
    model = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=backend, seed=0, dtype=np.float32)
    x = backend.asarray(np.random.default_rng(1).standard_normal((T, B, I)), dtype=np.float32)
    sync = cupy.cuda.get_current_stream().synchronize

    def fwd():
        model.forward(x, training=False)

    def fwd_bwd():
        out, _ = model.forward(x)
        model.backward(cupy.ones_like(out))

    r = time_modes(fwd, fwd_bwd, fwd_only, warmup, repeat, sync)
    r["graphs_captured"] = backend.graphs.captures
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

    rows = []
    for case, shape in args.shapes.items():
        B, T, I, H, layers, bi, fwd_only = shape
        engines = {"cuda": bench_cuda(backend, shape, args.warmup, args.repeat)}
        if torch is not None:
            engines["torch"] = bench_torch(torch, shape, args.warmup, args.repeat, device_id)
        row = add_rates({"case": case, "B": B, "T": T, "I": I, "H": H, "layers": layers,
                         "bidirectional": bi, "forward_only": fwd_only, "engines": engines})
        rows.append(row)
        print(f"{case:>18}: cuda fwd {engines['cuda']['fwd_ms']:8.3f} ms"
              + (f"  torch fwd {engines['torch']['fwd_ms']:8.3f} ms" if "torch" in engines else ""),
              file=sys.stderr)

    result = {
        "machine": {**gpu_facts(cupy, device_id), "python": platform.python_version(),
                    "numpy": np.__version__,
                    "torch": None if torch is None else torch.__version__,
                    "cudnn": None if torch is None else torch.backends.cudnn.version()},
        "torch_skipped": torch_reason or None,
        "compile_ms": compile_ms, "warmup": args.warmup, "repeat": args.repeat,
        "dtype": "float32", "layout": "time-major", "shapes": rows,
    }
    write_results(result, args.out)
    print(render_table(result))
    return result


if __name__ == "__main__":
    main()
