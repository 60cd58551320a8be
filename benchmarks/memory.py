"""Resident memory over whole default runs, next to what the model needs.

    python benchmarks/memory.py                      # both default runs -> results/memory.json
    python benchmarks/memory.py --task language-id   # one task (the other's entry is kept)
    python benchmarks/memory.py --task speech-digits --set epochs=2 --out /tmp/m.json   # smoke test

Each task runs its CURRENT default settings (`lstm-engine run TASK`, the settings it ran with
are recorded) in a fresh interpreter, so one run's allocations never hide another's. In that
child a sampling thread reads VmRSS from /proc/self/status every ``--interval`` seconds and
watches the run folder's metrics.jsonl, which gains a line at the end of every epoch; so each
epoch gets its peak and its resident size at the end, and the run its peak (VmHWM, which the
kernel keeps exactly, between samples too). Growth per epoch is the change of the epoch's peak
from the previous epoch's: a bounded run shows about zero after its first epoch.

Next to it, what the model needs, counted from the arrays themselves (not from RSS): the
parameters and the optimizer's state (from the run's last checkpoint), the saved activations of
the largest training batch (every array the forward keeps for backward on that backend, after
one training forward on a batch of the longest sequences), and the corpus in memory (the
texts or feature arrays of every split as loaded, and their encoded copies). The rest of the
peak is the interpreter, NumPy/Numba and their compiled code (``baseline_mib``: RSS in the
child before the run starts, after the imports and the backend are loaded), the allocator's
free memory and, before the workspace was bounded, the cpu backend's unbounded per-shape
free list (issue 11).

Memory figures do not depend on how busy the CPU is: this may run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lstm_engine.bench import _status_kib

RESULTS = Path(__file__).parent / "results"
TASKS = ("language-id", "speech-digits")
MIB = 2 ** 20


class RssSampler(threading.Thread):
    """Samples VmRSS every ``interval`` s; an epoch ends when ``metrics`` gains a line."""

    def __init__(self, metrics: Path, interval: float):
        super().__init__(daemon=True)
        self.metrics, self.interval = metrics, interval
        self.samples: list[tuple[float, float]] = []       # (seconds since start, MiB)
        self.epochs: list[dict] = []
        self._done = threading.Event()
        self._start_time = time.perf_counter()

    def _lines(self) -> int:
        try:
            with open(self.metrics, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def run(self) -> None:
        peak, seen = 0.0, 0
        while not self._done.is_set():
            rss = _status_kib("VmRSS") / 1024
            self.samples.append((time.perf_counter() - self._start_time, rss))
            peak = max(peak, rss)
            lines = self._lines()
            while seen < lines:                 # an epoch ended since the last sample
                seen += 1
                self.epochs.append({"epoch": seen, "peak_rss_mib": round(peak, 1),
                                    "rss_at_end_mib": round(rss, 1),
                                    "seconds": round(self.samples[-1][0], 1)})
                peak = rss
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _nbytes_of(objects, exclude=()) -> int:
    """Bytes of the distinct NumPy buffers reachable from ``objects`` (dicts, lists, tuples,
    arrays; a view counts its base once), leaving out the arrays in ``exclude``."""
    import numpy as np
    seen, total, stack = {id(a) for a in exclude}, 0, [objects]
    while stack:
        obj = stack.pop()
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in seen:
                seen.add(id(base))
                total += base.nbytes
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return total


def _saved_activations(task, config: dict, model, encoded) -> dict:
    """Bytes a training forward keeps for backward on the largest batch (the longest
    sequences, batch_size of them), model and backend as in the run."""
    import numpy as np
    from lstm_engine.batching import collate
    train = encoded["train"]
    order = np.argsort(train.lengths, kind="stable")[::-1][:config["batch_size"]]
    inputs, lengths, _ = collate(train, order, model.dtype)
    with model.backend.session():
        model.forward(inputs, lengths, training=True)
        # the parameters a backward reads are not activations
        total = _nbytes_of([model._saved, model.lstm._tape], exclude=model.parameters().values())
        model._saved = model.lstm._tape = None
    return {"batch": [int(lengths.max()), len(order)], "mib": round(total / MIB, 2)}



def _corpus_bytes(splits, encoded) -> dict:
    import sys as _sys
    raw = 0
    for examples in splits.values():
        raw += sum(_sys.getsizeof(x) for x in examples.inputs)
        raw += _sys.getsizeof(examples.inputs) + _sys.getsizeof(examples.labels)
    loaded = {id(x) for examples in splits.values() for x in examples.inputs}
    # an encoding that keeps an input as it is (speech: float32 frames) adds nothing
    enc = sum(sum(_sys.getsizeof(x) for x in e.items if id(x) not in loaded)
              + _sys.getsizeof(e.items) + _sys.getsizeof(e.targets) for e in encoded.values())
    return {"loaded_mib": round(raw / MIB, 2), "encoded_mib": round(enc / MIB, 2),
            "examples": {k: len(v) for k, v in splits.items()}}


def child(task_name: str, overrides: dict, backend: str, interval: float, keep: Path | None = None) -> dict:
    """One run in this (fresh) process; returns its memory record. ``keep``: a folder to leave
    the run in (another benchmark can score it: lid_baselines.py --default-run)."""
    from lstm_engine import runs
    from lstm_engine.backends import get_backend
    from lstm_engine.checkpoint import load_checkpoint
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.tasks import get_task

    be = get_backend(backend)
    baseline = _status_kib("VmRSS") / 1024
    with tempfile.TemporaryDirectory() as tmp:
        out = keep / task_name if keep is not None else Path(tmp) / "run"
        if keep is not None and out.exists():
            raise SystemExit(f"--keep: {out} exists; a whole run needs a fresh folder")
        sampler = RssSampler(out / "metrics.jsonl", interval)
        sampler.start()
        started = time.perf_counter()
        summary = runs.run(task_name, overrides, out, backend=be, progress=False)
        seconds = time.perf_counter() - started
        sampler.stop()
        hwm = _status_kib("VmHWM") / 1024
        config = json.loads((out / "config.json").read_text())
        ckpt = load_checkpoint(out / "last.safetensors")

    # what the model needs, counted from its arrays
    task = get_task(task_name)
    config = {k: v for k, v in config.items() if k not in ("task", "backend")}
    splits = task.load_data(task.data_options(config))
    encoder, labels = ckpt.task["encoder"], ckpt.task["labels"]
    encoded = {name: task.encode(examples, task.encoder_for(name, encoder, config), labels)[0]   # as the run does
               for name, examples in splits.items()}
    model = SequenceClassifier.from_config(ckpt.model, backend=be)
    model.load_state_dict(ckpt.tensors)
    epochs = sampler.epochs
    for prev, cur in zip(epochs, epochs[1:]):
        cur["growth_mib"] = round(cur["peak_rss_mib"] - prev["peak_rss_mib"], 1)
    after_first = [e["growth_mib"] for e in epochs[1:]]
    step = max(1, len(sampler.samples) // 300)
    return {
        "settings": config,
        "backend": be.name,
        "status": summary["status"],
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(hwm, 1),
        "peak_rss_sampled_mib": round(max(m for _, m in sampler.samples), 1),
        "baseline_mib": round(baseline, 1),
        "epochs": epochs,
        "growth_after_first_epoch_mib": {"max": max(after_first, default=None),
                                         "total": round(sum(after_first), 1) if after_first else None},
        "model_needs": {
            "parameters_mib": round(sum(v.nbytes for v in ckpt.tensors.values()) / MIB, 3),
            "optimizer_state_mib": round(sum(v.nbytes for t in ckpt.optimizer.values() for v in t.values()) / MIB, 3),
            "largest_batch_saved_activations": _saved_activations(task, config, model, encoded),
            "corpus": _corpus_bytes(splits, encoded),
        },
        "rss_series_mib": [[round(t, 1), round(m, 1)] for t, m in sampler.samples[::step]],
    }


def _parse_set(pairs) -> dict:
    import tomllib
    out = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=TASKS + ("all",), default="all")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting over the task's defaults (smoke tests); the default run has none")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--keep", type=Path, help="leave each run's folder in KEEP/<task> (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    overrides = _parse_set(args.set_pairs)
    if args.child:
        print(json.dumps(child(args.child, overrides, args.backend, args.interval, args.keep)))
        return {}

    from lstm_engine.bench import machine_facts, write_results
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["machine"] = machine_facts()
    result["machine"]["memory_total_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    result["method"] = ("a fresh interpreter per run; VmRSS sampled every "
                        f"{args.interval} s, VmHWM at the end; epochs delimited by metrics.jsonl lines")
    runs_out = result.setdefault("runs", {})
    for task in TASKS if args.task == "all" else (args.task,):
        cmd = [sys.executable, __file__, "--child", task, "--backend", args.backend,
               "--interval", str(args.interval)] + [f"--set={p}" for p in args.set_pairs]
        if args.keep is not None:
            cmd += ["--keep", str(args.keep.resolve())]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"the {task} run failed (exit status {done.returncode})")
        record = json.loads(done.stdout.strip().splitlines()[-1])
        record["overrides"] = overrides
        runs_out[task] = record
        print(f"{task}: peak {record['peak_rss_mib']:.0f} MiB (baseline {record['baseline_mib']:.0f}), "
              f"growth after epoch 1: {record['growth_after_first_epoch_mib']}", file=sys.stderr)
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
