"""How the cost of a training step grows with T, B and H: the cpu backend and torch.nn.LSTM
(when importable), around the speech shape (B32 T200 I40 H256, one layer).

    python benchmarks/sweeps.py                   # writes results/sweeps.json and sweeps.png
    python benchmarks/sweeps.py --quick --out-dir /tmp/s      # tiny values: a smoke test

Each point: median ms of a training forward+backward (float32, time-major) after warm-up, and
its GEMM GFLOP/s. One parameter varies per sweep, the others stay at the base shape's. The PNG
has three panels (ms against T, B, H, log-log; a line per engine) over a row of GFLOP/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lstm_engine.bench import (
    bench_engine,
    cpu_threads,
    gemm_flops,
    machine_facts,
    machine_gemm_rate,
    torch_or_reason,
    write_results,
)

RESULTS = Path(__file__).parent / "results"

#: (B, T, I, H): the speech shape.
BASE = {"B": 32, "T": 200, "I": 40, "H": 256}
SWEEPS = {"T": (25, 50, 100, 200, 400), "B": (1, 4, 16, 64, 128), "H": (64, 128, 256, 512)}
QUICK_BASE = {"B": 2, "T": 4, "I": 3, "H": 8}
QUICK_SWEEPS = {"T": (2, 4), "B": (1, 2), "H": (4, 8)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="cpu,torch", help="comma-separated backends and/or torch")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one timed call: a smoke test")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        parser.error(f"--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}")
    if args.quick:
        args.warmup, args.repeat = 0, 1
    return args


def resolve_engines(text: str, no_torch: bool) -> tuple[list[str], dict]:
    """The engines that run here, and {engine: why not} for those left out."""
    from lstm_engine import backends
    engines, skipped = [], {}
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name == "torch":
            torch, reason = torch_or_reason(no_torch)
            if torch is None:
                skipped[name] = reason
                continue
        elif name not in backends.names():
            raise SystemExit(f"--engines: unknown {name!r}; expected torch or some of: {', '.join(backends.names())}")
        elif not (info := backends.probe(name)).available:
            skipped[name] = info.reason
            continue
        engines.append(name)
    if not engines:
        raise SystemExit(f"--engines: none of {text!r} runs here: {skipped}")
    return engines, skipped


def run_sweeps(engines, base: dict, sweeps: dict, warmup: int, repeat: int, threads: int) -> dict:
    """{param: [{"value", "shape", "engines": {engine: {fwd_bwd_ms, fwd_bwd_gflops}}}]}."""
    out = {}
    for param, values in sweeps.items():
        points = []
        for value in values:
            dims = {**base, param: value}
            shape = (dims["B"], dims["T"], dims["I"], dims["H"], 1, False)
            flops = gemm_flops(*shape, backward=True)
            cells = {}
            for engine in engines:
                ms = bench_engine(engine, shape, warmup, repeat, threads, modes=("fwd_bwd",))["fwd_bwd_ms"]
                cells[engine] = {"fwd_bwd_ms": ms, "fwd_bwd_gflops": flops / (ms / 1e3) / 1e9}
            points.append({"value": value, "shape": list(shape), "engines": cells})
            print(f"{param}={value:<4} " + "  ".join(f"{e} {c['fwd_bwd_ms']:9.2f} ms" for e, c in cells.items()),
                  file=sys.stderr)
        out[param] = points
    return out


def plot(result: dict, path: Path) -> None:
    """Three panels (T, B, H): ms log-log on top, GFLOP/s below; a line per engine."""
    import matplotlib
    matplotlib.use("Agg")                        # no display needed
    import matplotlib.pyplot as plt
    sweeps = result["sweeps"]
    fig, axes = plt.subplots(2, len(sweeps), figsize=(4.2 * len(sweeps), 6.5), sharex="col", squeeze=False)
    for col, (param, points) in enumerate(sweeps.items()):
        xs = [p["value"] for p in points]
        for engine in result["engines"]:
            axes[0][col].plot(xs, [p["engines"][engine]["fwd_bwd_ms"] for p in points], "o-", label=engine)
            axes[1][col].plot(xs, [p["engines"][engine]["fwd_bwd_gflops"] for p in points], "o-", label=engine)
        axes[0][col].set_xscale("log")
        axes[0][col].set_yscale("log")
        others = ", ".join(f"{k}{v}" for k, v in result["base"].items() if k != param)
        axes[0][col].set_title(f"f+b vs {param} ({others})", fontsize=9)
        axes[1][col].set_xlabel(param)
        axes[1][col].set_xticks(xs, [str(x) for x in xs])
        axes[1][col].minorticks_off()
    axes[0][0].set_ylabel("ms (median)")
    axes[1][0].set_ylabel("GEMM GFLOP/s")
    axes[0][0].legend()
    fig.suptitle(f"{result['machine']['cpu']}, {result['threads']} threads, float32 "
                 f"(numpy GEMM {result['gemm_gflops']:.0f} GFLOP/s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    engines, skipped = resolve_engines(args.engines, args.no_torch)
    base, sweeps = (QUICK_BASE, QUICK_SWEEPS) if args.quick else (BASE, SWEEPS)
    threads = cpu_threads()
    # a small matmul in quick mode: the smoke test should not spend a second on it
    gemm = machine_gemm_rate(256 if args.quick else 2048)
    result = {"machine": machine_facts(), "gemm_gflops": gemm, "threads": threads, "engines": engines,
              "skipped": skipped, "warmup": args.warmup, "repeat": args.repeat, "dtype": "float32",
              "layout": "time-major", "layers": 1, "base": base,
              "sweeps": run_sweeps(engines, base, sweeps, args.warmup, args.repeat, threads)}
    write_results(result, args.out_dir / "sweeps.json")
    try:
        plot(result, args.out_dir / "sweeps.png")
        print(f"wrote {args.out_dir / 'sweeps.png'}", file=sys.stderr)
    except ImportError:
        print("matplotlib is not installed (pip install 'lstm-engine[plots]'): no sweeps.png", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
