"""Concurrent callers of the cpu backend: K Python threads running inference on one model at
once against the same calls made one after another.

    python benchmarks/threads.py                 # -> results/threads.json
    python benchmarks/threads.py --repeat 1 --calls 4 --out /tmp/t.json     # a smoke test

Cases: the latency shape (B=1 T=150 I=256 H=256, the hidden units split across threads with a
barrier per step) and a batch (B=32 T=100 I=40 H=128, the batch split). For K = 1 (sequential),
2, 4 and 8 threads, each run makes the same number of calls in all; per K the median of
`--repeat` runs of ms per call, and the smallest and largest. A ratio near 1 means the
threads share the cores without loss: Numba's compiled loops hold the GIL, so the kernels of
concurrent callers run one at a time, each on all of the backend's threads.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from lstm_engine import LSTM
from lstm_engine.bench import machine_facts, write_results

RESULTS = Path(__file__).parent / "results"
CASES = {"latency": (1, 150, 256, 256), "batch": (32, 100, 40, 128)}


def run(model, x, k: int, calls: int) -> float:
    """Seconds for `calls` inference calls made by k threads (calls // k each)."""
    def work(n):
        for _ in range(n):
            model.forward(x, training=False)
    threads = [threading.Thread(target=work, args=(calls // k,)) for _ in range(k)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=64, help="calls per run (a multiple of 8)")
    parser.add_argument("--out", type=Path, default=RESULTS / "threads.json")
    args = parser.parse_args(argv)
    result = {"machine": machine_facts(), "calls_per_run": args.calls, "cases": {}}
    for name, (B, T, I, H) in CASES.items():
        model = LSTM(I, H, backend="cpu", seed=0)
        x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
        model.forward(x, training=False)                     # compile / load the kernels
        rows = {}
        for _ in range(args.repeat):                         # interleaved, so drifts hit all K
            for k in (1, 2, 4, 8):
                rows.setdefault(k, []).append(run(model, x, k, args.calls) * 1e3 / args.calls)
        seq = statistics.median(rows[1])
        result["cases"][name] = {
            "shape": {"B": B, "T": T, "I": I, "H": H},
            **{f"threads_{k}": {"ms_per_call": statistics.median(v), "min": min(v), "max": max(v),
                                "vs_sequential": statistics.median(v) / seq} for k, v in rows.items()}}
        print(name, {k: round(statistics.median(v), 2) for k, v in rows.items()})
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
