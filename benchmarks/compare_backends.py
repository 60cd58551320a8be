"""Time every available backend (and torch.nn.LSTM when importable) on the same LSTM shapes,
in one run, and write the figures as JSON; the README's table is printed from them.

    python benchmarks/compare_backends.py                      # the five standard shapes
    python benchmarks/compare_backends.py --only speech,char --no-memory
    python benchmarks/compare_backends.py --shape 32,200,40,256,2,bi --repeat 9

A thin script over lstm_engine.bench.run_suite (the same suite as `lstm-engine bench`). Per
shape and engine: median milliseconds of an inference forward and of a training
forward+backward (loss = sum of outputs) after warm-up; the first call's time separately (and
each engine's first call in the process, which for `cpu` includes loading or compiling the
Numba kernels); GFLOP/s of the LSTM's GEMM work; that rate as a fraction of this machine's
float32 GEMM rate, measured in the same run (numpy matmul, 2048^3); ratios against the NumPy
reference and against PyTorch; and the peak memory of a training step, each in a fresh
subprocess (--no-memory skips it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstm_engine import backends
from lstm_engine.bench import NAMED_SHAPES, markdown_table, parse_shape, run_suite, select_shapes, torch_or_reason, write_results

RESULTS = Path(__file__).parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=parse_shape, action="append", default=[],
                        help="B,T,I,H[,layers[,bi]]; repeatable (default: the five standard shapes)")
    parser.add_argument("--only", default="", help=f"comma-separated names among: {', '.join(NAMED_SHAPES)}")
    parser.add_argument("--backends", default=None, help="comma-separated (default: every available one)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the training step's peak memory")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_backends.json")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        parser.error(f"--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}")
    try:
        args.shapes = select_shapes(args.only, args.shape)
    except ValueError as exc:
        parser.error(str(exc))
    args.names = ([n.strip() for n in args.backends.split(",") if n.strip()] if args.backends
                  else backends.available())
    unknown = [n for n in args.names if n not in backends.names()]
    if unknown:
        parser.error(f"--backends: unknown {', '.join(unknown)}; expected some of: {', '.join(backends.names())}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch, torch_reason = torch_or_reason(args.no_torch)
    engines = args.names + (["torch"] if torch is not None else [])
    result = run_suite(engines, args.shapes, args.warmup, args.repeat, memory=not args.no_memory,
                       log=lambda msg: print(msg, file=sys.stderr))
    result["torch_skipped"] = torch_reason or None
    write_results(result, args.out)
    print(markdown_table(result))
    return result


if __name__ == "__main__":
    main()
