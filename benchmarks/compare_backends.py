"""Time every available backend (and torch.nn.LSTM when importable) on the same LSTM shapes,
in one run, and write the figures as JSON.

    python benchmarks/compare_backends.py                      # the default shapes below
    python benchmarks/compare_backends.py --shape 32,200,40,256,2,bi --repeat 9

Per shape and engine: median milliseconds of an inference forward and of a training
forward+backward (loss = sum of outputs) after warm-up; the first call's time separately (for
`cpu` it includes loading or compiling the Numba kernels); GFLOP/s of the LSTM's GEMM work; that
rate as a fraction of this machine's float32 GEMM rate, measured in the same run (numpy matmul,
2048^3); and ratios against the NumPy reference and against PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import lstm_engine
from lstm_engine import LSTM, backends

# benchmarks/ is not a package: make the sibling module importable however this file is loaded.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from lstm_workloads import gemm_flops, parse_shape, torch_calls  # noqa: E402

RESULTS = Path(__file__).parent / "results"

#: name: (B, T, I, H, layers, bidirectional)
SHAPES = {
    "latency": (1, 150, 256, 256, 1, False),
    "speech": (32, 200, 40, 256, 1, False),
    "char": (64, 150, 64, 256, 2, False),
}


def machine_gemm_rate(repeat: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * 2048 ** 3 / min(times) / 1e9


def _time(fn, warmup: int, repeat: int):
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first * 1e3, statistics.median(times) * 1e3


def bench_ours(backend: str, shape, warmup: int, repeat: int) -> dict:
    B, T, I, H, layers, bi = shape
    model = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=backend, seed=0)
    x = model.backend.asarray(np.random.default_rng(1).standard_normal((T, B, I)), dtype=np.float32)

    def fwd():
        model.forward(x, training=False)

    def fwd_bwd():
        out, _ = model.forward(x)
        model.backward(model.backend.xp.ones_like(out))

    first_f, fwd_ms = _time(fwd, warmup, repeat)
    first_fb, fb_ms = _time(fwd_bwd, warmup, repeat)
    return {"fwd_ms": fwd_ms, "fwd_bwd_ms": fb_ms, "first_fwd_ms": first_f, "first_fwd_bwd_ms": first_fb}


def bench_torch(shape, warmup: int, repeat: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    B, T, I, H, layers, bi = shape
    model = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bi)
    x = torch.randn(T, B, I)
    fwd, fwd_bwd = torch_calls(torch, model, x)

    first_f, fwd_ms = _time(fwd, warmup, repeat)
    first_fb, fb_ms = _time(fwd_bwd, warmup, repeat)
    return {"fwd_ms": fwd_ms, "fwd_bwd_ms": fb_ms, "first_fwd_ms": first_f, "first_fwd_bwd_ms": first_fb,
            "version": torch.__version__}


def machine_facts() -> dict:
    return {
        "cpu": platform.processor(),       # replaced by the cpu backend's facts where it runs
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "lstm_engine": lstm_engine.__version__,
        **backends.probe("cpu").facts,
        # OpenBLAS reads these when it loads; they change which kernels (AVX2, AVX-512) run
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "NUMBA_"))},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=lambda text: parse_shape(text)[:6], action="append",
                        help="B,T,I,H[,layers[,bi]]; repeatable (default: the built-in shapes)")
    parser.add_argument("--backends", default=",".join(backends.available()))
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_backends.json")
    args = parser.parse_args(argv)

    shapes = {",".join(map(str, s)): s for s in args.shape} if args.shape else SHAPES
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    try:
        import torch  # noqa: F401
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False
    threads = os.cpu_count() or 1

    gemm = machine_gemm_rate()
    print(f"machine float32 GEMM rate: {gemm:.0f} GFLOP/s", file=sys.stderr)
    rows = []
    for case, shape in shapes.items():
        engines = {n: bench_ours(n, shape, args.warmup, args.repeat) for n in names}
        if have_torch:
            engines["torch"] = bench_torch(shape, args.warmup, args.repeat, threads)
        for engine, r in engines.items():
            for mode, key, backward in (("fwd", "fwd_ms", False), ("fwd_bwd", "fwd_bwd_ms", True)):
                gflops = gemm_flops(*shape, backward=backward) / (r[key] / 1e3) / 1e9
                r[f"{mode}_gflops"] = gflops
                r[f"{mode}_fraction_of_gemm_rate"] = gflops / gemm
                for ref in ("numpy", "torch"):
                    if ref in engines and ref != engine:
                        r[f"{mode}_speedup_vs_{ref}"] = engines[ref][key] / r[key]
        B, T, I, H, layers, bi = shape
        rows.append({"case": case, "B": B, "T": T, "I": I, "H": H, "layers": layers,
                     "bidirectional": bi, "engines": engines})
        for engine, r in engines.items():
            print(f"{case:>10} {engine:>6}: fwd {r['fwd_ms']:8.2f} ms  f+b {r['fwd_bwd_ms']:8.2f} ms  "
                  f"first call {r['first_fwd_ms']:8.1f} ms", file=sys.stderr)

    result = {"machine": machine_facts(), "gemm_gflops": gemm, "warmup": args.warmup,
              "repeat": args.repeat, "dtype": "float32", "layout": "time-major", "shapes": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    print(markdown_table(result))
    return result


def markdown_table(result: dict) -> str:
    """The README's table, made from a results file."""
    lines = ["| case | B | T | I | H | layers | engine | fwd ms | f+b ms | f+b GFLOP/s | f+b vs numpy | f+b vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["shapes"]:
        layers = f"{row['layers']}{' bi' if row['bidirectional'] else ''}"
        for engine, r in row["engines"].items():
            vs_np = r.get("fwd_bwd_speedup_vs_numpy")
            vs_t = r.get("fwd_bwd_speedup_vs_torch")
            lines.append(
                f"| {row['case']} | {row['B']} | {row['T']} | {row['I']} | {row['H']} | {layers} | {engine} "
                f"| {r['fwd_ms']:.2f} | {r['fwd_bwd_ms']:.2f} | {r['fwd_bwd_gflops']:.0f} "
                f"| {'' if vs_np is None else f'{vs_np:.2f}x'} | {'' if vs_t is None else f'{vs_t:.2f}x'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
