"""benchmarks/gpu_check.py without a GPU: the dry run finds the missing GPU and says so, a real
run here records every step as skipped and exits 1; the step runner records a failure and goes
on, kills a step that overruns (its whole process group) and skips what the budget no longer
covers; pytest's junit counts are read; the offline install falls back to a link tree that
imports this checkout; the sanitizers' tiny case runs (on the emulated backend here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def check():
    return load_benchmark("gpu_check")


def test_the_dry_run_finds_no_gpu_and_says_so(check, tmp_path, capsys):
    out = tmp_path / "g.json"
    assert check.main(["--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("gpu_check: no GPU\nno GPU here: ")
    data = json.loads(out.read_text())
    assert data["dry_run"] is True and data["machine"]["gpu_count"] == 0 and data["no_gpu"]
    names = [s["name"] for s in data["steps"]]
    assert names == ["install", "backend", "pytest-cuda", "parity-graph", "parity-persistent", "memcheck",
                     "racecheck", "synccheck", "compare", "run", "nccl"]
    assert all(s["status"] == "skipped" and s["reason"] == "dry run" and s["command"] for s in data["steps"])
    assert "--no-deps --no-build-isolation --no-index -e" in data["steps"][0]["command"]
    assert data["machine"]["python"] and data["machine"]["numpy"]


def test_without_a_gpu_a_real_run_records_the_plan_and_fails(check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(check, "machine_facts", lambda python: {"gpu_count": 0, "no_gpu_reason": "no driver"})
    out = tmp_path / "g.json"
    assert check.main(["--out", str(out)]) == 1
    assert "no GPU here: no driver" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["no_gpu"] == "no driver" and {s["status"] for s in data["steps"]} == {"skipped"}
    with pytest.raises(SystemExit, match="unknown step"):
        check.main(["--dry-run", "--only", "nope"])


def test_a_failing_step_is_recorded_and_the_next_runs(check):
    deadline = time.monotonic() + 60
    fail = check.run_step(check.Step("fails", [sys.executable, "-c", "print('broken'); raise SystemExit(3)"], 30),
                          deadline)
    ok = check.run_step(check.Step("works", [sys.executable, "-c", "import os; print(os.environ['X'])"], 30,
                                   env={"X": "seen"}, details=lambda r: {"said": r["output_tail"].strip()}), deadline)
    assert (fail["status"], fail["returncode"], fail["output_tail"].strip()) == ("failed", 3, "broken")
    assert ok["status"] == "passed" and ok["details"] == {"said": "seen"}


def test_an_overrunning_step_is_killed_with_what_it_started(check, tmp_path):
    pid_file = tmp_path / "child"
    code = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    started = time.monotonic()
    record = check.run_step(check.Step("hangs", [sys.executable, "-c", code], 3), time.monotonic() + 60)
    assert record["status"] == "timeout" and time.monotonic() - started < 30 and "started" in record["output_tail"]
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not running(child)                   # the grandchild went with its group
    late = check.run_step(check.Step("late", [sys.executable, "-c", "pass"], 30), time.monotonic() + 2)
    assert late["status"] == "skipped" and "out of time" in late["reason"]


def running(pid: int) -> bool:
    """Whether process `pid` still runs (a killed one may linger as a zombie until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_junit_counts(check, tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1">'
                   '<testcase classname="t.m" name="a"/><testcase classname="t.m" name="b"><failure/></testcase>'
                   '<testcase classname="t.m" name="c"><error/></testcase></testsuite></testsuites>')
    assert check.junit_counts(xml) == {"tests": 5, "failures": 1, "errors": 1, "skipped": 1, "passed": 2,
                                       "failed_tests": ["t.m::b", "t.m::c"]}


def test_where_pip_cannot_install_a_link_tree_imports_the_checkout(check, tmp_path):
    record, env = check.install_step(sys.executable, dict(os.environ), tmp_path,
                                     pip=[sys.executable, "-c", "raise SystemExit('no setuptools new enough')"],
                                     check_first=False)
    assert record["status"] == "passed" and "link tree" in record["how"]
    tree = tmp_path / "site"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tree)
    code = ("import lstm_engine, lstm_engine.backends.cuda as c; "
            "print(lstm_engine.__file__); print(c.PERSISTENT_SOURCE.exists() and c.PERSISTENT_SOURCE.resolve())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True).stdout.split()
    assert out[0].startswith(str(tree)) and out[1] == str(check.ROOT / "backends" / "lstm_persistent.cu")
    already, _ = check.install_step(sys.executable, dict(os.environ), tmp_path)
    assert already["how"] == "already installed"


def test_the_backend_step_reports_facts_and_plans(check):
    """Run here, where cuda is unavailable: it says why (on the GPU it lists the plans)."""
    out = subprocess.run([sys.executable, "-c", check.BACKEND], capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["available"] is False and "cupy" in data["reason"] and "plans" not in data


def test_the_sanitizers_tiny_case_runs_both_paths(check):
    proc = subprocess.run([sys.executable, "-c", check.TINY_CASE, "cuda-emulated"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["graph ran: graph", "persistent ran: persistent", "tiny case ok"]


def test_the_plan_times_fit_the_lease(check, tmp_path):
    """Every step's own timeout and the total budget: the check ends within 8 minutes."""
    steps = check.plan(sys.executable, tmp_path, tmp_path / "g.json")
    assert check.BUDGET + 30 <= 8 * 60
    assert all(0 < s.timeout <= check.BUDGET for s in steps)
    parity = [s for s in steps if s.name.startswith("parity-")]
    assert [s.env["LSTM_ENGINE_CUDA_RECURRENCE"] for s in parity] == ["graph", "persistent"]
    assert Path(check.ROOT / "tests" / "test_backend_parity.py").exists()
