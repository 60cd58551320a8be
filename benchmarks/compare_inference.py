"""Inference side by side, in one run: the `cpu` backend, onnxruntime running the exported model
(its CPU LSTM kernel, weights prepacked with MLAS) and torch.nn.LSTM, with the same weights.

    python benchmarks/compare_inference.py                       # standard shapes, streaming 1/10/100
    python benchmarks/compare_inference.py --only speech --stream-only latency --chunks 1,10
    python benchmarks/compare_inference.py --shape 2,3,4,5 --stream-shape 1,7,4,5 --chunks 1,3

Two parts, float32, time-major:
- forward: an inference forward over whole sequences on each shape (lstm_engine.bench's standard
  shapes by default), the cpu backend with its weights prepared once (LSTM.prepare()); median
  ms of `--repeat` calls after `--warmup`, the first call, GFLOP/s of the LSTM's GEMM work, and
  ratios (their ms / ours: above 1, `cpu` is faster).
- streaming: one sequence (B=1) of the shape's T steps pushed in chunks of `--chunks` steps, the
  state carried between chunks (LSTM.stream().push; onnxruntime's session.run with h0/c0 fed
  back; torch's model(chunk, (h, c))); median ms of the whole sequence, per chunk and per step.
  Default shapes: speech and latency, at B=1.
onnxruntime and torch get the cpu backend's thread count (intra-op threads; torch.set_num_threads).
Each cell also records the largest difference of its outputs from the cpu backend's, a check
that the three compute the same thing. Writes results/compare_inference.json (`--out`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from lstm_engine import backends
from lstm_engine.bench import (NAMED_SHAPES, cpu_threads, format_cell, full_shape,
                               gemm_flops, machine_facts, parse_shape, select_shapes, time_call,
                               torch_or_reason, write_results)

RESULTS = Path(__file__).parent / "results"
STREAM_SHAPES = ("speech", "latency")
CHUNKS = (1, 10, 100)
ORT = "onnxruntime"
TORCH = "torch"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=parse_shape, action="append", default=[],
                        help="forward: B,T,I,H[,layers[,bi]]; repeatable (default: the standard shapes)")
    parser.add_argument("--only", default="", help=f"forward: names among {', '.join(NAMED_SHAPES)}")
    parser.add_argument("--stream-shape", type=parse_shape, action="append", default=[],
                        help="streaming: B,T,I,H[,layers] (B is taken as 1; unidirectional); repeatable")
    parser.add_argument("--stream-only", default="",
                        help=f"streaming: names among {', '.join(NAMED_SHAPES)} (default: {', '.join(STREAM_SHAPES)})")
    parser.add_argument("--chunks", default=",".join(map(str, CHUNKS)), help="streaming chunk sizes (steps)")
    parser.add_argument("--backend", default="cpu", help="the engine's backend (default cpu)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "compare_inference.json")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        parser.error(f"--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}")
    try:
        args.shapes = select_shapes(args.only, args.shape)
        stream_only = args.stream_only or ("" if args.stream_shape else ",".join(STREAM_SHAPES))
        args.stream_shapes = select_shapes(stream_only, args.stream_shape)
        args.chunk_sizes = [int(c) for c in args.chunks.split(",") if c.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not args.chunk_sizes or min(args.chunk_sizes) < 1:
        parser.error(f"--chunks must be positive integers, got {args.chunks!r}")
    bidirectional = [name for name, s in args.stream_shapes.items() if s[5]]
    if bidirectional:
        parser.error(f"streaming needs unidirectional shapes; {', '.join(bidirectional)} is bidirectional")
    try:
        backends.get_backend(args.backend)
    except backends.BackendError as exc:
        parser.error(str(exc))
    return args


class Engines:
    """One LSTM's weights in the three engines: ours on `backend`, the exported ONNX file in an
    onnxruntime session, and torch.nn.LSTM with the weights loaded."""

    def __init__(self, shape, backend: str, threads: int, torch, folder: Path):
        from lstm_engine import LSTM
        from lstm_engine.onnx_export import onnx_session
        B, T, I, H, layers, bi = shape[:6]
        self.lstm = LSTM(I, H, num_layers=layers, bidirectional=bi, backend=backend, seed=0, dtype=np.float32)
        path = self.lstm.to_onnx(folder / f"lstm-{I}-{H}-{layers}-{int(bi)}.onnx")
        self.ort = onnx_session(path, threads)
        self.torch = None
        if torch is not None:
            torch.set_num_threads(threads)
            self.torch = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bi)
            self.torch.load_state_dict({k: torch.from_numpy(v) for k, v in self.lstm.state_dict().items()})
            self.torch.eval()
        self.module = torch
        self.state_shape = (layers * (2 if bi else 1), B, H)

    def names(self, backend: str) -> list[str]:
        return [backend, ORT] + ([TORCH] if self.torch is not None else [])

    def forward_calls(self, x: np.ndarray) -> dict:
        """name -> a call running an inference forward over x (T, B, I); each returns outputs."""
        zeros = np.zeros(self.state_shape, np.float32)
        feeds = {"input": x, "lengths": np.full(x.shape[1], x.shape[0], np.int64), "h0": zeros, "c0": zeros}
        xb = self.lstm.backend.asarray(x)
        # weights prepared once, as onnxruntime prepacks them once per session (and as the
        # predictor and the streams do): a repeated inference call should not repack them
        prepared = self.lstm.prepare()
        calls = {self.lstm.backend.name: lambda: self.lstm.forward(xb, training=False, prepared=prepared)[0],
                 ORT: lambda: self.ort.run(["output"], feeds)[0]}
        if self.torch is not None:
            torch, model, xt = self.module, self.torch, self.module.from_numpy(x)

            def torch_forward():
                with torch.no_grad():
                    return model(xt)[0]
            calls[TORCH] = torch_forward
        return calls

    def stream_calls(self, x: np.ndarray, chunk: int) -> tuple[dict, int]:
        """(name -> a call pushing x (T, 1, I) through in chunks, the state carried, returning
        the chunks' outputs; the number of chunks)."""
        bounds = [(a, min(a + chunk, len(x))) for a in range(0, len(x), chunk)]
        pieces = [np.ascontiguousarray(x[a:b]) for a, b in bounds]
        lengths = [np.array([b - a], np.int64) for a, b in bounds]
        stream = self.lstm.stream(batch_size=1)
        ours = [self.lstm.backend.asarray(p) for p in pieces]

        def engine():
            stream.reset()
            return [stream.push(p) for p in ours]

        def onnxruntime():
            h = c = np.zeros(self.state_shape, np.float32)
            outs = []
            for p, n in zip(pieces, lengths):
                y, h, c = self.ort.run(None, {"input": p, "lengths": n, "h0": h, "c0": c})
                outs.append(y)
            return outs
        calls = {self.lstm.backend.name: engine, ORT: onnxruntime}
        if self.torch is not None:
            torch, model = self.module, self.torch
            tpieces = [torch.from_numpy(p) for p in pieces]

            def torch_stream():
                state, outs = None, []
                with torch.no_grad():
                    for p in tpieces:
                        y, state = model(p, state)
                        outs.append(y)
                return outs
            calls[TORCH] = torch_stream
        return calls, len(bounds)


def _host(a) -> np.ndarray:
    if isinstance(a, list):
        return np.concatenate([_host(p) for p in a])
    if hasattr(a, "detach"):
        return a.detach().numpy()
    return np.asarray(a)


def _time_all(calls: dict, reference: str, warmup: int, repeat: int) -> dict:
    """Each call timed (time_call), with the largest difference of its outputs from those of
    ``reference`` (our backend, timed inside its session as lstm_engine.bench does)."""
    session = backends.get_backend(reference).session
    with session():
        want = _host(calls[reference]())
    cells = {}
    for name, call in calls.items():
        with session() if name == reference else contextlib.nullcontext():
            t = time_call(call, warmup, repeat)
        cells[name] = {"ms": t["median_ms"], "min_ms": t["min_ms"], "first_ms": t["first_ms"],
                       "max_abs_diff_vs_engine": float(np.abs(_host(call()) - want).max())}
    for name, cell in cells.items():
        for other in (ORT, TORCH):
            if other in cells and other != name:
                cell[f"speedup_vs_{other}"] = cells[other]["ms"] / cell["ms"]
    return cells


def run(args, torch, log) -> dict:
    threads = cpu_threads()
    backend = backends.get_backend(args.backend).name
    forward, streaming = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for case, shape in args.shapes.items():
            B, T, I, H, layers, bi, _ = full_shape(shape)
            engines = Engines(shape, backend, threads, torch, Path(tmp))
            x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
            cells = _time_all(engines.forward_calls(x), backend, args.warmup, args.repeat)
            flops = gemm_flops(B, T, I, H, layers, bi, backward=False)
            for cell in cells.values():
                cell["gflops"] = flops / (cell["ms"] / 1e3) / 1e9
            forward.append({"case": case, "B": B, "T": T, "I": I, "H": H, "layers": layers,
                            "bidirectional": bi, "engines": cells})
            log(f"forward {case:>14}: " + "  ".join(f"{n} {c['ms']:8.2f} ms" for n, c in cells.items()))
        for case, shape in args.stream_shapes.items():
            _, T, I, H, layers, _, _ = full_shape(shape)
            engines = Engines((1, T, I, H, layers, False), backend, threads, torch, Path(tmp))
            x = np.random.default_rng(2).standard_normal((T, 1, I)).astype(np.float32)
            for chunk in args.chunk_sizes:
                calls, n_chunks = engines.stream_calls(x, chunk)
                cells = _time_all(calls, backend, args.warmup, args.repeat)
                for cell in cells.values():
                    cell["per_chunk_ms"] = cell["ms"] / n_chunks
                    cell["per_step_us"] = cell["ms"] * 1e3 / T
                streaming.append({"case": case, "B": 1, "T": T, "I": I, "H": H, "layers": layers,
                                  "chunk": chunk, "chunks": n_chunks, "engines": cells})
                log(f"stream  {case:>8} chunk {chunk:>3}: " + "  ".join(
                    f"{n} {c['per_chunk_ms']:7.3f} ms/chunk" for n, c in cells.items()))
    import onnxruntime
    return {"machine": {**machine_facts(), "onnxruntime": onnxruntime.__version__}, "threads": threads,
            "backend": backend, "warmup": args.warmup, "repeat": args.repeat, "dtype": "float32",
            "layout": "time-major", "forward": forward, "streaming": streaming}


def _ratios(cell: dict, ours: bool) -> str:
    """Our cell's ratios to onnxruntime and torch as two table cells (empty for theirs)."""
    return " | ".join(format_cell(cell.get(f"speedup_vs_{other}") if ours else None, suffix="x")
                      for other in (ORT, TORCH))


def markdown_tables(result: dict) -> str:
    backend = result["backend"]
    lines = ["| case | B | T | I | H | layers | engine | fwd ms | GFLOP/s | ours vs onnxruntime | ours vs torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["forward"]:
        layers = f"{row['layers']}{' bi' if row['bidirectional'] else ''}"
        for name, c in row["engines"].items():
            lines.append(f"| {row['case']} | {row['B']} | {row['T']} | {row['I']} | {row['H']} | {layers} | {name} "
                         f"| {format_cell(c['ms'])} | {format_cell(c['gflops'], '.0f')} | {_ratios(c, name == backend)} |")
    lines += ["", "| case | T | I | H | chunk | engine | ms per chunk | us per step | ours vs onnxruntime | ours vs torch |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["streaming"]:
        for name, c in row["engines"].items():
            lines.append(f"| {row['case']} | {row['T']} | {row['I']} | {row['H']} | {row['chunk']} | {name} "
                         f"| {format_cell(c['per_chunk_ms'], '.3f')} | {format_cell(c['per_step_us'], '.1f')} "
                         f"| {_ratios(c, name == backend)} |")
    m = result["machine"]
    lines += ["", f"{m.get('cpu', '?')}, {result['threads']} threads; onnxruntime {m.get('onnxruntime')}, "
              f"torch {m.get('torch')}; median of {result['repeat']} after {result['warmup']} warm-up; "
              f"ratios are their ms / ours (above 1x: {backend} is faster)."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from lstm_engine.errors import require
    require("onnxruntime", "onnx", "benchmarks/compare_inference.py")
    torch, torch_reason = torch_or_reason(args.no_torch)
    result = run(args, torch, log=lambda msg: print(msg, file=sys.stderr))
    result["torch_skipped"] = torch_reason or None
    write_results(result, args.out)
    print(markdown_tables(result))
    return result


if __name__ == "__main__":
    main()
