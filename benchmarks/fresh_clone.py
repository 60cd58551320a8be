"""The README's first command as a new user runs it: a fresh clone of this repository, a new
virtual environment, an empty corpus cache (every package downloaded), then ``lstm-engine run``;
the time of each phase, the run's peak resident size and its test accuracy, as JSON.

    python benchmarks/fresh_clone.py                     # clones this checkout's HEAD
    python benchmarks/fresh_clone.py --keep /tmp/fresh   # and leaves the clone there

The command is the README's own (its first ```bash block's first line), run by ``bash -c`` in
the clone with ``LSTM_ENGINE_CACHE`` pointing at an empty folder; its installation and its run
are timed apart by running the two halves of that line (before and after the last ``&&``) one
after the other. The peak resident size is the largest of the child processes (``getrusage``:
installation and run alike; the training process is the largest).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "fresh_clone.json"


def readme_command(readme: Path) -> str:
    """The first line of the README's first ```bash block: the main job's set-up command."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = lines.index("```bash")
    return lines[start + 1].strip()


def timed(command: str, cwd: Path, env: dict, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="clone into this folder and leave it")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lstm-engine-fresh-") as scratch:
        clone = args.keep or Path(scratch) / "clone"
        cache = Path(scratch) / "cache"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True,
                                check=True).stdout.strip()
        command = readme_command(clone / "README.md")
        install, _, run = command.rpartition("&&")
        env = {**os.environ, "LSTM_ENGINE_CACHE": str(cache)}
        env.pop("VIRTUAL_ENV", None)
        install_s = timed(install.strip(), clone, env, Path(scratch) / "install.log")
        run_s = timed(run.strip(), clone, env, Path(scratch) / "run.log")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        [folder] = sorted((clone / "runs").iterdir())
        summary = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        debs = cache / "debs"
        downloaded = sum(p.stat().st_size for p in debs.rglob("*.deb")) if debs.exists() else 0
    results = {
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average": list(os.getloadavg())},
        "commit": commit, "command": command,
        "install_seconds": round(install_s, 1), "run_seconds": round(run_s, 1),
        "total_seconds": round(install_s + run_s, 1),
        "corpus_seconds": summary.get("data_seconds"), "train_seconds": summary.get("train_seconds"),
        "downloaded_bytes": downloaded, "peak_rss_mib": round(peak_mib, 1),
        "test_accuracy": summary["test"]["accuracy"], "test_by_length": summary["test"].get("accuracy_by_length"),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "test_by_length"}, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
