"""The `cpu` backend's design choices, each measured against its alternative in one run.

    python benchmarks/cpu_kernels.py              # writes results/cpu_kernels.json
    python benchmarks/cpu_kernels.py --quick --out /tmp/k.json      # a smoke test (no first_call)

- products: one thread's per-step products, float32, by the SIMD micro-kernel on packed
  weights (cpu_gemm.gemm) and by NumPy's BLAS (np.dot, one thread), in GFLOP/s;
- workspace: training forward+backward with a backward step's arrays reused by the next
  step (the session's pool) and without;
- bucketed: an epoch's worth of training steps whose T varies (the default language-id
  model), with the pool at its cap, without a cap, and without reuse, and the bytes the pool
  holds at the end;
- fused: the input projection folded into the step product against hoisted out of the loop;
- hidden_split: B=1 inference with the hidden units split across threads, and without;
- first_call: a training step and a B=1 inference in a fresh process with an empty Numba
  cache (compiling), then again with the cache filled.
Timings are medians after warm-up (lstm_engine.bench.time_call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lstm_engine.bench import _build, machine_facts, time_call, write_results

RESULTS = Path(__file__).parent / "results"

PRODUCTS = [(16, 256, 1024), (16, 1024, 256), (4, 256, 1024), (1, 256, 1024)]
SPEECH = (32, 200, 40, 256, 1, False)
CHAR = (64, 150, 64, 256, 2, False)
LATENCY = (1, 150, 256, 256, 1, False)
#: The default language-id model (B, -, I, H, layers, bidirectional) and the T of 30 batches
#: of a length-bucketed epoch (lengths up to max_length 128, as its strings are).
LID = (64, 0, 48, 128, 1, True)
LID_LENGTHS = [int(T) for T in np.random.default_rng(0).integers(8, 129, 30)]

_FIRST_CALL = """
import json, time, numpy as np
t0 = time.perf_counter()
from lstm_engine import LSTM
m = LSTM(40, 64, backend="cpu")
x = np.zeros((5, 8, 40), np.float32)
t = time.perf_counter(); out, _ = m.forward(x); m.backward(np.ones_like(out)); t1 = time.perf_counter()
m.forward(x[:, :1], training=False); t2 = time.perf_counter()
print(json.dumps({"train_step_s": t1 - t, "b1_inference_s": t2 - t1}))
"""


def products(shapes, repeat: int) -> list[dict]:
    from threadpoolctl import threadpool_limits

    from lstm_engine.backends import get_backend
    from lstm_engine.backends.cpu_gemm import gemm, pack
    wide = get_backend("cpu").wide
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(1, user_api="blas"):
        for R, K, N in shapes:
            a = rng.standard_normal((R, K)).astype(np.float32)
            w = rng.standard_normal((K, N)).astype(np.float32)
            wp, out = pack(w, wide), np.empty((R, N), np.float32)
            flops = 2 * R * K * N * 100
            ours = time_call(lambda: [gemm(a, wp, out, wide, 0, K, False) for _ in range(100)], 2, repeat)
            blas = time_call(lambda: [np.dot(a, w, out) for _ in range(100)], 2, repeat)
            rows.append({"R": R, "K": K, "N": N,
                         "gemm_gflops": flops / ours["median_ms"] / 1e6,
                         "numpy_blas_gflops": flops / blas["median_ms"] / 1e6})
    return rows


def _ms(shape, repeat: int, mode: str, reuse: bool = True, **cpu_settings) -> float:
    """Median ms of `mode` ("fwd" or "fwd_bwd") on the cpu backend with `cpu_settings` set on
    it for the duration, and with the workspace's reuse switched off when not `reuse`."""
    from lstm_engine.backends import get_backend
    cpu = get_backend("cpu")
    saved = {k: getattr(cpu, k) for k in cpu_settings}
    saved_give = cpu._pool.give
    try:
        for k, v in cpu_settings.items():
            setattr(cpu, k, v)
        if not reuse:
            cpu._pool.give = lambda *arrays: None
        fwd, fwd_bwd, _, session = _build("cpu", shape, None)
        with session():
            return time_call(fwd_bwd if mode == "fwd_bwd" else fwd, 3, repeat)["median_ms"]
    finally:
        for k, v in saved.items():
            setattr(cpu, k, v)
        cpu._pool.give = saved_give


def bucketed(shape, lengths, repeat: int) -> dict:
    """Training steps over batches of varying T (a length-bucketed epoch: one batch per entry
    of `lengths`), in one session, with the pool at its cap, with no cap, and with no reuse:
    median ms of the whole sequence and the bytes the pool holds at its end."""
    from lstm_engine import LSTM
    from lstm_engine.backends import get_backend
    cpu = get_backend("cpu")
    B, _, I, H, layers, bi = shape
    model = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=cpu, seed=0)
    xs = [np.random.default_rng(T).standard_normal((T, B, I)).astype(np.float32) for T in lengths]

    def epoch():
        for x in xs:
            out, _ = model.forward(x)
            model.backward(np.ones_like(out))

    result, saved = {}, (cpu._pool.cap, cpu._pool.give)
    try:
        for name, cap, reuse in (("pool_cap", saved[0], True), ("no_cap", float("inf"), True),
                                 ("no_reuse", saved[0], False)):
            cpu._pool.cap = cap
            if not reuse:
                cpu._pool.give = lambda *arrays: None
            with cpu.session():
                ms = time_call(epoch, 1, repeat)["median_ms"]
                result[name] = {"ms": ms, "held_mib": cpu._pool.held / 2 ** 20}
            cpu._pool.give = saved[1]
    finally:
        cpu._pool.cap, cpu._pool.give = saved
    result["batches"] = len(lengths)
    return result


def first_calls() -> dict:
    """Seconds of the first calls in fresh processes: with an empty Numba cache, then filled."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [json.loads(subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                          capture_output=True, text=True).stdout)
                for _ in range(2)]
    return {"cold_cache": runs[0], "warm_cache": runs[1]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one repeat")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_kernels.json")
    args = parser.parse_args(argv)
    shapes, speech, char, latency = PRODUCTS, SPEECH, CHAR, LATENCY
    lid, lid_lengths = LID, LID_LENGTHS
    if args.quick:
        shapes = [(3, 8, 40)]
        speech, char, latency = (8, 5, 4, 16, 1, False), (8, 5, 4, 16, 2, False), (1, 5, 8, 64, 1, False)
        lid, lid_lengths = (4, 0, 3, 8, 1, True), [3, 5, 4]
        args.repeat = 1
    r = args.repeat
    result = {
        "machine": machine_facts(),
        "products": products(shapes, r),
        "workspace": {name: {"reuse_ms": _ms(s, r, "fwd_bwd"),
                             "no_reuse_ms": _ms(s, r, "fwd_bwd", reuse=False)}
                      for name, s in (("speech", speech), ("char", char))},
        "bucketed": bucketed(lid, lid_lengths, r),
        "fused": {mode: {"fused_ms": _ms(speech, r, mode, fuse_from_rows=1),
                         "hoisted_ms": _ms(speech, r, mode, fuse_from_rows=10**9)}
                  for mode in ("fwd", "fwd_bwd")},
        "hidden_split": {"split_ms": _ms(latency, r, "fwd"),
                         "batch_split_ms": _ms(latency, r, "fwd", split_units_from=10**9)},
    }
    if not args.quick:
        result["first_call"] = first_calls()
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
