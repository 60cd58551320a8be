"""The one GPU check: the first command of a session that is lent an NVIDIA GPU (an H100 or
H200). In under 8 minutes it turns "emulated" into "measured" for the cuda backend and records
everything in one JSON.

    python benchmarks/gpu_check.py                 # on the GPU machine: every step (about 5 minutes)
    python benchmarks/gpu_check.py --dry-run       # anywhere: the machine's facts and the plan, nothing run
    python benchmarks/gpu_check.py --only pytest-cuda,compare --budget 300

Steps, in this order, each a subprocess with its own timeout within a total deadline (--budget
seconds, default 450): a step that fails, crashes or times out (its whole process group is
killed) is recorded with the tail of its output, and the next step runs, since a lease is 15
minutes and cannot be repeated at will.
    install            this checkout into the Python that runs this script, without dependencies and
                       without a network (the GPU image has CuPy, PyTorch, onnxruntime, mpi4py,
                       hypothesis): pip install --no-deps --no-build-isolation --no-index -e . ;
                       where that cannot build (a setuptools older than the pyproject needs), a folder
                       of links laid out as the installed package is put on PYTHONPATH instead
    backend            the installed cuda backend's facts and its persistent plans on this GPU
    pytest-cuda        python -m pytest -m cuda: tests/test_cuda_gpu.py, the kernels launch by launch
                       and whole layers against the reference on both paths, the persistent plans
                       against benchmarks/results/cuda_kernels.json
    parity-graph       tests/test_backend_parity.py on the cuda backend, LSTM_ENGINE_CUDA_RECURRENCE=graph
    parity-persistent  the same with =persistent
    memcheck, racecheck, synccheck
                       compute-sanitizer on a tiny bidirectional, ragged forward+backward, both paths
    compare            benchmarks/compare_cuda.py: the graph and the persistent path against
                       torch.nn.LSTM on cuDNN, standard, DeepBench and small-batch shapes, float32
    run                lstm-engine run --backend cuda: language-id on a small generated TSV
    nccl               tests/test_distributed.py -m cuda -k gpus: NCCL collectives and 2 ranks training
                       as one process through NCCL (through MPI on a 1-GPU machine), under mpiexec
It writes benchmarks/results/gpu_check.json (--out): the GPU, driver, CUDA runtime and library
versions, each step's command, status, seconds, test counts and output tail, compare_cuda's
table, and prints a summary. Where there is no GPU it says so and runs nothing.

This script imports nothing of lstm_engine (it is what installs it) and only the standard
library; the machine's facts come from a subprocess, so that a broken CuPy cannot stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: Seconds for the whole check: the issue's 8 minutes, less a margin for the machine's start.
BUDGET = 450
#: How much of a step's output the JSON keeps.
TAIL = 6000

#: The check's own forward+backward for the sanitizers: both paths, bidirectional, ragged,
#: float32, small enough for racecheck. argv[1] names the backend (cuda on the GPU machine).
TINY_CASE = textwrap.dedent("""
    import sys
    import numpy as np
    from lstm_engine import LSTM, get_backend
    be = get_backend(sys.argv[1] if len(sys.argv) > 1 else "cuda")
    for recurrence in ("graph", "persistent"):
        be.recurrence = recurrence
        model = LSTM(5, 12, bidirectional=True, backend=be, seed=0, dtype=np.float32)
        x = be.asarray(np.random.default_rng(0).standard_normal((4, 3, 5)), dtype=np.float32)
        out, _ = model.forward(x, lengths=np.array([4, 2, 3]))
        model.backward(be.xp.ones_like(out))
        print(recurrence, "ran:", be.recurrence_for(3, 12, np.float32, True)[0])
    sync = getattr(getattr(be.xp, "cuda", None), "runtime", None)
    if sync is not None:
        sync.deviceSynchronize()
    print("tiny case ok")
""")

#: What the installed backend reports: its facts, and the persistent plans this GPU's occupancy
#: calculator gives (to hold against benchmarks/results/cuda_kernels.json).
BACKEND = textwrap.dedent("""
    import dataclasses, json
    import numpy as np
    from lstm_engine import backends
    info = backends.probe("cuda")
    out = {"available": info.available, "reason": info.reason, "facts": info.facts}
    if info.available:
        be = backends.get_backend("cuda")
        out["plans"] = {f"{np.dtype(dtype).name}-H{H}": [None if p is None else dataclasses.asdict(p)
                                                        for p in be.persistent_plans(H, dtype, True)[:2]]
                        for dtype in (np.float32, np.float64) for H in (256, 512, 768, 1024, 1056, 1088)}
    print(json.dumps(out, default=str))
""")

#: The facts of the machine, gathered in a subprocess: GPU, driver, CUDA, libraries.
FACTS = textwrap.dedent("""
    import importlib, json, platform, shutil, subprocess, sys
    out = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform()}
    def version(name):
        try:
            return getattr(importlib.import_module(name), "__version__", "installed")
        except Exception as exc:
            return None
    for name in ("numpy", "numba", "cupy", "torch", "onnxruntime", "mpi4py", "hypothesis", "setuptools", "pytest",
                 "click", "safetensors", "tqdm", "threadpoolctl"):
        out[name] = version(name)
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        out["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    try:
        import cupy
        rt = cupy.cuda.runtime
        count = rt.getDeviceCount()
        out["gpu_count"] = count
        if count:
            p = rt.getDeviceProperties(0)
            name = p["name"]
            out["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
            out["compute_capability"] = f"{p['major']}.{p['minor']}"
            out["multiprocessors"] = p.get("multiProcessorCount")
            out["memory_gib"] = round(p["totalGlobalMem"] / 2 ** 30, 1)
            out["shared_per_block_optin"] = p.get("sharedMemPerBlockOptin")
        out["cuda_driver"] = rt.driverGetVersion()
        out["cuda_runtime"] = rt.runtimeGetVersion()
        try:
            from cupy.cuda import nccl
            out["nccl"] = nccl.get_version()
        except Exception as exc:
            out["nccl"] = None
    except Exception as exc:
        out["gpu_count"] = 0
        out["no_gpu_reason"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    try:
        import torch
        out["torch_cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except Exception:
        pass
    print(json.dumps(out))
""")


# -- running steps ------------------------------------------------------------------------------
@dataclass
class Step:
    """One step: a command (run from the checkout) with its timeout in seconds; `env` is
    added to the environment; `details(step_result)` extracts counts or results afterwards."""

    name: str
    command: list
    timeout: float
    env: dict = field(default_factory=dict)
    details: object = None
    needs_gpu: bool = True


def run_step(step: Step, deadline: float, env: dict | None = None) -> dict:
    """Runs `step` with min(its timeout, the time left before `deadline`) and returns its
    record: status passed / failed / timeout / skipped, return code, seconds, output tail."""
    record = {"name": step.name, "command": " ".join(map(str, step.command)), "status": None,
              "returncode": None, "seconds": 0.0, "output_tail": ""}
    left = deadline - time.monotonic()
    if left < 5:
        record["status"] = "skipped"
        record["reason"] = "out of time (the check's total budget is spent)"
        return record
    timeout = min(step.timeout, left)
    record["timeout_s"] = round(timeout, 1)
    full_env = dict(os.environ if env is None else env, **step.env)
    started = time.monotonic()
    proc = subprocess.Popen([str(c) for c in step.command], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        record["status"] = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)          # the step and whatever it started
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:            # a process of another session holds the pipe
            proc.stdout.close()
            proc.wait()
            partial = exc.output or ""
            output = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        record["status"] = "timeout"
    record["returncode"] = proc.returncode
    record["seconds"] = round(time.monotonic() - started, 1)
    record["output_tail"] = (output or "")[-TAIL:]
    if step.details is not None:
        try:
            record["details"] = step.details(record)
        except Exception as exc:                      # a parse failure must not lose the record
            record["details"] = {"error": f"{type(exc).__name__}: {exc}"}
    return record


def junit_counts(path: Path) -> dict:
    """Tests, failures, errors and skips of a pytest --junitxml file, and the failed tests' ids."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in root.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_tests"] = failed[:30]
    return counts


# -- installing without a network -----------------------------------------------------------------
def package_layout() -> dict:
    """{import path: folder in the checkout} of pyproject.toml's packages (tool.setuptools)."""
    import tomllib
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = tool.get("package-dir", {})
    layout = {}
    for package in tool["packages"]:
        if package in dirs:
            layout[package] = ROOT / dirs[package]
        else:                                         # under its parent's folder
            parent, _, leaf = package.rpartition(".")
            layout[package] = layout[parent] / leaf
    return layout


def link_tree(target: Path) -> Path:
    """A folder that, on PYTHONPATH, imports the checkout as the installed package would: each
    package a directory of links to its modules and data files (setuptools' package-dir maps
    lstm_engine.backends to backends/, which a plain path entry cannot)."""
    if target.exists():
        shutil.rmtree(target)
    for package, source in package_layout().items():
        folder = target.joinpath(*package.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.is_file() and not item.name.endswith(".pyc"):
                (folder / item.name).symlink_to(item)
    return target


def pip_install(python: str) -> list:
    """The offline install: no dependencies (the image has them), no build isolation (it would
    download setuptools), no index."""
    return [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(ROOT)]


def install_step(python: str, env: dict, tmp: Path, pip: list | None = None,
                 check_first: bool = True) -> tuple[dict, dict]:
    """Makes `import lstm_engine` find this checkout in `python`: already so (unless not
    `check_first`), `pip` (default pip_install), else the link tree. Returns (record, the
    environment later steps need)."""
    probe = [python, "-c", "import lstm_engine, sys; sys.stdout.write(lstm_engine.__file__)"]
    started = time.monotonic()

    def imports_here(environment) -> bool:
        r = subprocess.run(probe, capture_output=True, text=True, env=environment, cwd=tmp, timeout=120)
        return r.returncode == 0 and Path(r.stdout.strip()).resolve().is_relative_to(ROOT)

    record = {"name": "install", "status": "passed", "returncode": 0}
    if check_first and imports_here(env):
        record.update(command="(nothing: lstm_engine already imports from this checkout)", how="already installed")
    else:
        pip = pip or pip_install(python)
        r = subprocess.run(pip, capture_output=True, text=True, env=env, timeout=300)
        record.update(command=" ".join(pip), returncode=r.returncode, output_tail=(r.stdout + r.stderr)[-TAIL:])
        if r.returncode == 0 and imports_here(env):
            record["how"] = "pip install -e (no dependencies, no index)"
        else:
            tree = link_tree(tmp / "site")
            env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")])))
            if imports_here(env):
                record["how"] = f"pip could not build it here; PYTHONPATH={tree} (a link tree of the checkout)"
            else:
                record.update(status="failed", how="neither pip nor the link tree made lstm_engine importable")
    record["seconds"] = round(time.monotonic() - started, 1)
    return record, env


# -- the plan ---------------------------------------------------------------------------------------
def sanitizer() -> str | None:
    """compute-sanitizer: on PATH, else under the usual CUDA folders."""
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for pattern in ("/usr/local/cuda*/bin/compute-sanitizer", "/usr/local/cuda*/compute-sanitizer/compute-sanitizer",
                    "/opt/nvidia/*/compute-sanitizer"):
        hits = sorted(Path("/").glob(pattern.lstrip("/")))
        if hits:
            return str(hits[-1])
    return None


def write_tsv(path: Path) -> Path:
    """A label<TAB>text file of four made-up languages, each with its own letters: what the
    short training run reads (the GPU image need not have gettext catalogs)."""
    import random
    rng = random.Random(0)
    alphabets = {"aa": "abcde ", "xx": "vwxyz ", "mm": "klmno ", "qq": "pqrst "}
    lines = []
    for label, letters in alphabets.items():
        for _ in range(300):
            text = "".join(rng.choice(letters) for _ in range(rng.randint(8, 90))).strip() or letters[0]
            lines.append(f"{label}\t{text}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plan(python: str, tmp: Path, out: Path) -> list[Step]:
    """The steps after `install`, in order."""
    def junit(name):
        return tmp / f"{name}.xml"

    def counts(name):
        return lambda record: junit_counts(junit(name))

    pytest = [python, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    steps = [Step("backend", [python, "-c", BACKEND], 90,
                  details=lambda record: json.loads(record["output_tail"].strip().splitlines()[-1])),
             # the file that holds the `cuda` marker: collecting the whole suite would stop at a test
             # module whose optional library the GPU image lacks
             Step("pytest-cuda", pytest + ["-m", "cuda", "tests/test_cuda_gpu.py", f"--junitxml={junit('pytest-cuda')}"],
                  200, details=counts("pytest-cuda"))]
    for recurrence in ("graph", "persistent"):
        name = f"parity-{recurrence}"
        steps.append(Step(name, pytest + ["tests/test_backend_parity.py", "-k", "cuda and not emulated",
                                          f"--junitxml={junit(name)}"], 150,
                          env={"LSTM_ENGINE_CUDA_RECURRENCE": recurrence}, details=counts(name)))
    tool = sanitizer()
    for check in ("memcheck", "racecheck", "synccheck"):
        command = ([tool, "--tool", check, "--error-exitcode", "86", "--print-limit", "20", python, "-c", TINY_CASE]
                   if tool else [python, "-c", "raise SystemExit('compute-sanitizer not found on PATH or under "
                                               "/usr/local/cuda*')"])
        steps.append(Step(check, command, 150))
    compare_out = out.with_name("compare_cuda.json")
    steps.append(Step("compare", [python, "benchmarks/compare_cuda.py", "--warmup", "2", "--repeat", "5",
                                  "--out", compare_out], 240, details=lambda record: compare_summary(compare_out)))
    tsv = tmp / "lid.tsv"
    steps.append(Step("run", [python, "-m", "lstm_engine.cli.main", "run", "--backend", "cuda", "--data", tsv,
                              "--epochs", "2", "--hidden-size", "64", "--batch-size", "32", "--out", tmp / "run",
                              "--json"], 150, details=lambda record: run_summary(tmp / "run")))
    steps.append(Step("nccl", pytest + ["-m", "cuda", "-k", "gpus", "tests/test_distributed.py",
                                        f"--junitxml={junit('nccl')}"], 150, details=counts("nccl")))
    return steps


def compare_summary(path: Path) -> dict:
    """compare_cuda's results, and how each path fares against cuDNN on training steps:
    the median ratio over all shapes and over those with B <= 4 (below 1: faster)."""
    data = json.loads(path.read_text())
    summary = {"results": data}
    for path_name in ("graph", "persistent"):
        for label, keep in (("all", lambda row: True), ("B<=4", lambda row: row["B"] <= 4)):
            ratios = sorted(r for row in data.get("shapes", []) if keep(row)
                            for r in [row.get("ratios", {}).get(path_name, {}).get("fwd_bwd")] if r is not None)
            summary[f"{path_name}_fwd_bwd_ratio_median_{label}"] = ratios[len(ratios) // 2] if ratios else None
    return summary


def run_summary(run_dir: Path) -> dict:
    """What the run folder's results.json says: status, epochs, times, the test accuracy."""
    data = json.loads((run_dir / "results.json").read_text())
    keep = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    keep["test_accuracy"] = data.get("test", {}).get("accuracy")
    return keep


# -- the check --------------------------------------------------------------------------------------
def machine_facts(python: str) -> dict:
    try:
        r = subprocess.run([python, "-c", FACTS], capture_output=True, text=True, timeout=120)
        facts = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {
            "error": (r.stdout + r.stderr)[-TAIL:], "gpu_count": 0, "no_gpu_reason": "the facts script failed"}
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
        facts = {"gpu_count": 0, "no_gpu_reason": f"the facts script failed ({type(exc).__name__})"}
    tool = sanitizer()
    facts["compute_sanitizer"] = tool
    if tool:
        v = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
        facts["compute_sanitizer_version"] = (v.stdout.strip().splitlines() or [""])[-1]
    return facts


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="the facts and the plan only (written only with --out)")
    parser.add_argument("--only", default="", help="comma-separated step names (install always runs)")
    parser.add_argument("--budget", type=float, default=BUDGET, help=f"seconds for all steps (default {BUDGET})")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/gpu_check.json; none for --dry-run)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0, got {args.budget}")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    return args


def summarise(result: dict) -> str:
    facts = result["machine"]
    lines = [f"gpu_check: {facts.get('gpu') or 'no GPU'}"
             + (f" ({facts.get('multiprocessors')} SMs, CC {facts.get('compute_capability')}, driver "
                f"{facts.get('cuda_driver')}, runtime {facts.get('cuda_runtime')}, CuPy {facts.get('cupy')}, "
                f"torch {facts.get('torch')}, cuDNN {facts.get('cudnn')})" if facts.get("gpu") else "")]
    if result.get("no_gpu"):
        lines.append(f"no GPU here: {result['no_gpu']}")
    for step in result["steps"]:
        detail = step.get("details") or {}
        extra = ""
        if "tests" in detail:
            extra = f"{detail['passed']} passed, {detail['failures'] + detail['errors']} failed, {detail['skipped']} skipped"
        elif "graph_fwd_bwd_ratio_median_all" in detail:
            extra = ", ".join(f"{k.replace('_fwd_bwd_ratio_median_', ' f+b/cuDNN median ')}: "
                              f"{v:.2f}x" for k, v in detail.items() if k.endswith(("all", "B<=4")) and v is not None)
        elif step.get("reason"):
            extra = step["reason"]
        lines.append(f"  {step['name']:<18} {step['status']:<8} {step.get('seconds', 0):>6.1f} s  {extra}")
    lines.append(f"total {result['seconds']:.0f} s; results: {result.get('out') or '(not written)'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    python = sys.executable
    started, clock = time.time(), time.monotonic()
    deadline = clock + args.budget
    out = args.out or (None if args.dry_run else RESULTS / "gpu_check.json")
    facts = machine_facts(python)
    result = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "dry_run": args.dry_run,
              "budget_s": args.budget, "machine": facts, "host": platform.node(), "steps": []}
    gpu = facts.get("gpu_count", 0) > 0
    if not gpu:
        result["no_gpu"] = facts.get("no_gpu_reason") or "CuPy finds no CUDA device"
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp_name:
        tmp = Path(tmp_name)
        steps = plan(python, tmp, out or RESULTS / "gpu_check.json")
        unknown = [n for n in args.only if n not in {"install", *(s.name for s in steps)}]
        if unknown:
            raise SystemExit(f"--only: unknown step(s) {', '.join(unknown)}; the steps are: install, "
                             + ", ".join(s.name for s in steps))
        if args.dry_run or not gpu:
            why = "dry run" if args.dry_run else "no GPU"
            result["steps"] = [{"name": "install", "status": "skipped", "reason": why,
                                "command": " ".join(pip_install(python))}]
            result["steps"] += [{"name": s.name, "status": "skipped", "reason": why,
                                 "command": " ".join(map(str, s.command)), "timeout_s": s.timeout} for s in steps]
        else:
            write_tsv(tmp / "lid.tsv")
            record, env = install_step(python, dict(os.environ), tmp)
            result["steps"].append(record)
            for step in steps:
                if args.only and step.name not in args.only:
                    continue
                result["steps"].append(run_step(step, deadline, env))
                print(f"gpu_check: {step.name}: {result['steps'][-1]['status']}", file=sys.stderr, flush=True)
                if out is not None:                      # after each step: a killed check keeps what it has
                    write_json(dict(result, seconds=round(time.monotonic() - clock, 1)), out)
    result["seconds"] = round(time.monotonic() - clock, 1)
    result["out"] = str(out) if out else None
    if out is not None:
        write_json(result, out)
    print(summarise(result))
    if args.dry_run:
        return 0
    if not gpu:
        return 1
    return 0 if all(s["status"] == "passed" for s in result["steps"]) else 1


def write_json(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
