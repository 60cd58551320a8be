"""How the language-id ``window`` setting was chosen: held-out runs of ``lid_tuning.py`` (their
folders kept with ``--keep-runs``) read again with other windows. The window is applied at
prediction time only (``evaluation.predict_proba``), so one trained model is scored with each.

    python benchmarks/lid_windows.py --runs RUN [RUN ...] --windows 0 32 24 16 12

Each model is scored by text length (``lid_baselines.score``) on
- its in-domain validation split,
- every held-out string (``held_out``: the held-out sources, domains it never trained on), by
  source,
- the held-out strings that ``lid_baselines.py --limit 10000`` does not compare on
  (``outside_comparison``), so that a window chosen there is not chosen on the comparison's
  strings (scored from the held-out strings' predictions, so it has no time of its own).
Results: ``benchmarks/results/lid_windows.json``, by run, then window (0: the whole text only).

Both held-out sets are still the comparison's two domains. A third domain keeps the choice
apart from them altogether: ``lid_tuning.py``'s ``...-dev-wesnoth`` runs train on every
default source but Wesnoth's dialogue, so their held-out strings are Wesnoth's, a domain that
neither they nor the comparison's runs are scored on elsewhere:

    python benchmarks/lid_windows.py --runs RUN-dev-wesnoth ... --out benchmarks/results/lid_windows_dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lid_baselines

OUT = Path(__file__).parent / "results" / "lid_windows.json"
#: The comparison's sample (lid_baselines.py --limit 10000, --seed 0).
COMPARISON_LIMIT, COMPARISON_SEED = 10000, 0


def score_windows(run: Path, windows: list[int], backend: str) -> dict:
    predictor = lid_baselines.load_lstm(str(run), backend)
    trained = predictor.encoder.get("window")
    if trained is None:
        raise SystemExit(f"{run}: its encoder reads no windows, so the length above which they apply "
                         "is not stored; use a run trained with window > 0")
    data = predictor.task.load(predictor.data_options)           # the corpus, built once
    views, changes = lid_baselines.checkpoint_views(predictor, data)
    if changes:
        raise SystemExit(f"{run}: the corpus rebuilt here differs from the one it trained on: {changes}")
    held = next(v for v in views if v.name == "held_out")
    compared = set(lid_baselines.stratified_sample(held.gold, COMPARISON_LIMIT, seed=COMPARISON_SEED))
    outside_rows = [i for i in range(len(held.gold)) if i not in compared]
    outside = held.subset(outside_rows)
    validation = data.splits["validation"]
    sets = {"validation": lid_baselines.View("validation", list(validation.inputs), list(validation.labels)),
            "held_out": held}
    out = {"trained_window": trained, "by_window": {}}
    for size in windows:
        row = {"window": lid_baselines.read_with_window(predictor, size, trained)}
        for name, view in sets.items():
            start = time.perf_counter()
            predicted = predictor.predict(view.texts)
            row[name] = {**lid_baselines.score(view.texts, view.gold, {"lstm": predicted}, view.groups),
                         "seconds": round(time.perf_counter() - start, 1)}
            if name == "held_out":              # the outside strings are a part of them: not read again
                row["outside_comparison"] = lid_baselines.score(
                    outside.texts, outside.gold, {"lstm": [predicted[i] for i in outside_rows]}, outside.groups)
        out["by_window"][str(size)] = row
        print(f"{run.name} window {size}: " + ", ".join(
            f"{name} {lid_baselines._percent(row[name]['lstm'], 2)} "
            f"(>50 {lid_baselines._percent(row[name]['by_length']['>50']['lstm'], 2)})"
            for name in (*sets, "outside_comparison")), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="held-out run folders")
    parser.add_argument("--windows", nargs="+", type=int, default=[0, 32, 24, 16, 12])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if any(size < 0 for size in args.windows):
        parser.error(f"--windows: sizes are 0 (no windows) or more, got {args.windows}")
    results = {"machine": lid_baselines.machine_facts(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "comparison_sample": {"limit": COMPARISON_LIMIT, "seed": COMPARISON_SEED},
               "runs": {run.name: score_windows(run, args.windows, args.backend) for run in args.runs}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
