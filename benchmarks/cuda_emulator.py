"""The CUDA fiber emulator's speed: context switches per second, with its own x86-64 switch
and with ucontext (swapcontext, a signal-mask system call per switch), on kernels bound by
block barriers and by warp shuffles; and the emulated cuda backend's forward+backward, graph
path (cuda-emulated) and persistent path (cuda-emulated-persistent: cooperative launches with
grid.sync), against the reference on a small shape (what CI pays for running the backend's
kernels emulated).

    python benchmarks/cuda_emulator.py                  # writes results/cuda_emulator.json
    python benchmarks/cuda_emulator.py --quick --out /tmp/e.json

Switches are the runtime's own count (two per resume of a fiber: in and back out); rates are
the best of `repeat` launches. Timings on a shared machine vary: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from lstm_engine.bench import machine_facts, time_call, write_results
from lstm_engine.backends import cuda_host
from lstm_engine.backends.cuda import kernel_signatures

RESULTS = Path(__file__).parent / "results"

KERNELS = r"""
// Two barriers per round: every thread parks twice per round.
__global__ void barrier_rounds(float* x, int rounds) {
    __shared__ float tile[1024];
    const unsigned t = threadIdx.x;
    float v = x[blockIdx.x * blockDim.x + t];
    for (int r = 0; r < rounds; ++r) {
        tile[t] = v;
        __syncthreads();
        v += 0.5f * tile[(t + 1) % blockDim.x];
        __syncthreads();
    }
    x[blockIdx.x * blockDim.x + t] = v;
}

// A warp sum by __shfl_xor_sync, `rounds` times: five shuffles per round.
__global__ void shuffle_rounds(float* x, int rounds) {
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int r = 0; r < rounds; ++r)
        for (int m = 16; m > 0; m /= 2) v += 1e-3f * __shfl_xor_sync(0xFFFFFFFFu, v, m);
    x[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
"""
def switch_rates(source: Path, defines, grid: int, block: int, rounds: int, repeat: int) -> list[dict]:
    table = kernel_signatures(source)
    lib = cuda_host.HostKernels(source, table, defines=defines)
    rows = []
    for kernel in table:
        x = np.ones(grid * block, np.float32)
        best = None
        for _ in range(repeat):
            before = lib.stats()
            t = time.perf_counter()
            lib.launch(kernel, None, grid, block, dict(x=x, rounds=rounds), order="forward")
            seconds = time.perf_counter() - t
            switches = lib.stats()["switches"] - before["switches"]
            if best is None or seconds < best[0]:
                best = (seconds, switches)
        seconds, switches = best
        own = not defines and platform.machine() == "x86_64"     # elsewhere the runtime uses ucontext anyway
        rows.append({"kernel": kernel, "switch": "x86-64 asm" if own else "ucontext", "grid": grid,
                     "block": block, "rounds": rounds, "switches": switches, "seconds": round(seconds, 4),
                     "switches_per_s": round(switches / seconds)})
    return rows


def backend_step(shape, repeat: int) -> list[dict]:
    from lstm_engine import LSTM
    B, T, I, H = shape
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    rows = []
    for name, backend in (("numpy", "numpy"), ("cuda-emulated", "cuda-emulated"),
                          ("cuda-emulated-persistent", "cuda-emulated-persistent")):
        model = LSTM(I, H, backend=backend, seed=0)

        def step():
            out, _ = model.forward(x)
            model.backward(np.ones_like(out))

        stats = time_call(step, warmup=1, repeat=repeat)
        rows.append({"backend": name, "B": B, "T": T, "I": I, "H": H, "f+b ms": round(stats["median_ms"], 2)})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "cuda_emulator.json")
    parser.add_argument("--quick", action="store_true", help="small launches, one repeat")
    args = parser.parse_args(argv)
    source = cuda_host.cache_dir() / "bench" / "emulator_bench.cu"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(KERNELS)
    grid, block, rounds, repeat = (2, 128, 20, 1) if args.quick else (8, 256, 200, 3)
    rows = []
    for defines in ((), ("EMU_FIBERS_UCONTEXT",)):
        rows += switch_rates(source, defines, grid, block, rounds if not defines else max(1, rounds // 4), repeat)
    for row in rows:
        print(f"{row['kernel']:>15} {row['switch']:>10}: {row['switches_per_s'] / 1e6:6.2f} M switches/s "
              f"({row['switches']} in {row['seconds']} s)")
    backend = backend_step((8, 50, 32, 64) if not args.quick else (2, 5, 4, 8), 3 if not args.quick else 1)
    for row in backend:
        print(f"{row['backend']:>15}: forward+backward {row['f+b ms']} ms (B{row['B']} T{row['T']} I{row['I']} H{row['H']})")
    threads = os.environ.get("LSTM_ENGINE_EMU_THREADS") or f"max(2, cores) = {max(2, os.cpu_count() or 1)}"
    result = {"machine": machine_facts(), "emulator_os_threads": threads, "switch_rates": rows,
              "backend_step": backend}
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
