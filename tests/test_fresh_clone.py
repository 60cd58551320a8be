"""benchmarks/fresh_clone.py times the README's first command; its results must be of that command."""

import json
from pathlib import Path

from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_the_fresh_clone_times_the_readmes_first_command():
    fresh_clone = load_benchmark("fresh_clone")
    command = fresh_clone.readme_command(ROOT / "README.md")
    install, _, run = command.rpartition("&&")
    assert "pip install" in install and run.strip() == ".venv/bin/lstm-engine run"
    # the committed figures are of the command the README shows now
    assert json.loads((ROOT / "benchmarks" / "results" / "fresh_clone.json").read_text())["command"] == command
