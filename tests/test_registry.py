"""The backend registry and the contract a backend class keeps with it (needs, extra,
unavailable_reason, hidden entries), what it says where CuPy or a GPU is missing, the
`lstm-engine backends` command and the cost of importing the package."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import fake_cupy

from lstm_engine import BackendError, backends, get_backend
from lstm_engine.backends import cuda
from lstm_engine.backends.base import Backend
from lstm_engine.backends.reference import NumpyBackend
from lstm_engine.cli.main import main


class MissingModuleBackend(NumpyBackend):
    """A backend whose needed module is not installed."""
    name = "fake"
    needs = ("surely_not_installed_mod",)
    extra = "fake"


class HiddenBackend(NumpyBackend):
    """A backend that runs anywhere, registered as hidden by a test."""
    name = "hidden-fake"


def test_auto_prefers_the_fastest_available():
    avail = backends.available()
    expected = next(n for n in backends.AUTO_ORDER if n in avail)
    assert get_backend("auto").name == expected
    assert get_backend("AUTO").name == expected


def test_env_var_chooses_the_default(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "numpy")
    assert get_backend(None).name == "numpy"
    monkeypatch.setenv(backends.ENV_VAR, "nonsense")
    with pytest.raises(BackendError, match="unknown backend 'nonsense'"):
        get_backend(None)


def test_unavailable_backend_says_why_and_what_to_install(monkeypatch):
    monkeypatch.setitem(backends._REGISTRY, "fake", backends._Entry(__name__, "MissingModuleBackend"))
    assert MissingModuleBackend.unavailable_reason() == (
        "missing surely_not_installed_mod (install with: pip install 'lstm-engine[fake]')")
    info = backends.probe("fake")
    assert not info.available
    assert "surely_not_installed_mod" in info.reason and "pip install 'lstm-engine[fake]'" in info.reason
    with pytest.raises(BackendError, match=r"backend 'fake' is not available: missing surely_not_installed_mod(?s:.*)numpy: available"):
        get_backend("fake")
    assert "fake" not in backends.available()


def test_cli_backends_json():
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {b["name"]: b for b in data["backends"]}
    assert by_name["numpy"]["available"] is True
    assert data["default"] in by_name
    if "cpu" in backends.available():
        assert by_name["cpu"]["facts"]["threads"] >= 1


def test_cli_backends_text_and_bad_threads():
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0 and "numpy" in result.output
    result = CliRunner().invoke(main, ["backends", "--threads", "0"])
    assert result.exit_code != 0 and "threads must be a positive integer" in result.output


def test_import_is_light():
    code = "import sys, lstm_engine; print(sorted(m for m in ('numba', 'cupy', 'scipy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, backends.ENV_VAR: ""})
    assert out.stdout.strip() == "[]"


def test_cli_backend_check():
    ok = CliRunner().invoke(main, ["backends", "--backend", "numpy"])
    assert ok.exit_code == 0 and "resolves to here: numpy" in ok.output
    bad = CliRunner().invoke(main, ["backends", "--backend", "tpu"])
    assert bad.exit_code == 1 and "unknown backend 'tpu'" in bad.output


def test_every_backend_class_carries_its_contract():
    """needs, extra and unavailable_reason() are the class's (Backend's, not found by
    hasattr), and the registry's verdict is the class's own."""
    expected = {"numpy": ((), ""), "cpu": (("numba", "threadpoolctl"), ""), "cuda": (("cupy",), "cuda12"),
                "cuda-emulated": ((), ""), "cuda-emulated-persistent": ((), "")}
    for name in backends.names(include_hidden=True):
        cls = backends.backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name
        assert (cls.needs, cls.extra) == expected[name], name
        assert backends.probe(name).reason == cls.unavailable_reason(), name
    assert Backend.unavailable_reason() == ""


def test_asking_a_backend_class_why_imports_nothing_heavy():
    """The backend modules import without Numba or CuPy, so the registry can ask any class
    whether it runs (and a missing package is reported, not an ImportError)."""
    code = ("import sys; from lstm_engine.backends import backend_class; "
            "[backend_class(n).unavailable_reason() for n in ('numpy', 'cpu', 'cuda-emulated')]; "
            "print(sorted(m for m in ('numba', 'cupy', 'threadpoolctl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hidden_entries_are_asked_for_by_name_only(monkeypatch):
    monkeypatch.setitem(backends._REGISTRY, "hidden-fake", backends._Entry(__name__, "HiddenBackend", hidden=True))
    assert "hidden-fake" not in backends.names() and "hidden-fake" not in backends.available()
    assert "hidden-fake" in backends.names(include_hidden=True)
    assert "hidden-fake" in backends.available(include_hidden=True)
    assert get_backend("hidden-fake").name == "hidden-fake"
    assert get_backend("auto").name != "hidden-fake"
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert "hidden-fake" not in {b["name"] for b in json.loads(result.output)["backends"]}


def test_backends_import_nothing_from_the_benchmark_suite():
    for path in Path(backends.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+(\.\.bench|lstm_engine\.bench)\b", path.read_text(), re.M), path.name


# -- cuda: what the registry says where CuPy or a GPU is missing (no GPU, no g++ needed) -------
@pytest.fixture
def no_cuda_instance(monkeypatch):
    monkeypatch.delitem(backends._INSTANCES, "cuda", raising=False)
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)


def test_without_cupy_the_registry_names_both_extras(monkeypatch, no_cuda_instance):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "cupy" else real(n, *a))
    info = backends.probe("cuda")
    assert not info.available
    assert info.reason.startswith("missing cupy (install with: ")
    assert "pip install 'lstm-engine[cuda12]'" in info.reason and "pip install 'lstm-engine[cuda13]'" in info.reason
    with pytest.raises(BackendError, match=r"backend 'cuda' is not available: missing cupy"):
        get_backend("cuda")


@pytest.mark.parametrize("cupy,env,match", [
    (dict(error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")), "",
     r"no CUDA device found \(RuntimeError: cudaErrorNoDevice"),
    (dict(count=0), "", r"^no CUDA device found$"),
    (dict(count=2), "2", r"LSTM_ENGINE_CUDA_DEVICE=2, but this machine has 2 CUDA device\(s\) \(0..1\)"),
    (dict(count=2), "gpu1", r"LSTM_ENGINE_CUDA_DEVICE must be a device number such as 0 or 1, got 'gpu1'"),
    (dict(count=2), "-1", r"LSTM_ENGINE_CUDA_DEVICE must be >= 0, got -1"),
], ids=["driver-error", "no-device", "device-id-too-high", "device-id-not-a-number", "device-id-negative"])
def test_with_cupy_but_no_usable_device(monkeypatch, no_cuda_instance, cupy, env, match):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: types.SimpleNamespace(name="cupy") if n == "cupy" else real(n, *a))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(**cupy))
    monkeypatch.setenv(cuda.DEVICE_ENV, env)
    info = backends.probe("cuda")
    assert not info.available
    assert re.search(match, info.reason), info.reason


@pytest.fixture
def gpu_cupy(monkeypatch):
    """A fake CuPy that finds one GPU; the cuda backend it makes is dropped afterwards."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: types.SimpleNamespace(name="cupy") if n == "cupy" else real(n, *a))
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)
    backends._INSTANCES.pop("cuda", None)
    fake = fake_cupy(count=1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    yield fake
    backends._INSTANCES.pop("cuda", None)


class CompileException(Exception):
    """Stands in for cupy.cuda.compiler.CompileException."""


def test_auto_takes_cuda_when_it_starts(gpu_cupy, recwarn):
    assert get_backend("auto").name == "cuda"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_compile_failure_makes_auto_fall_back_and_an_explicit_cuda_fail(gpu_cupy):
    def broken(code, options, name_expressions, enable_cooperative_groups):
        raise CompileException("nvrtc: error: invalid value for --gpu-architecture (-arch)\n\n(the log)")

    gpu_cupy.RawModule = broken
    with pytest.warns(RuntimeWarning, match=r"^backend 'cuda' failed to start \(CompileException: nvrtc: error: "
                                            r"invalid value for --gpu-architecture \(-arch\)\); using 'cpu'$"):
        assert get_backend("auto").name == "cpu"
    with pytest.raises(CompileException, match="invalid value for --gpu-architecture"):
        get_backend("cuda")


def test_an_initialisation_failure_makes_auto_fall_back_and_an_explicit_cuda_fail(gpu_cupy):
    def busy(non_blocking=False):
        raise RuntimeError("cudaErrorDevicesUnavailable: CUDA-capable device(s) is/are busy or unavailable")

    gpu_cupy.cuda.Stream = busy
    with pytest.warns(RuntimeWarning, match=r"backend 'cuda' failed to start \(RuntimeError: "
                                            r"cudaErrorDevicesUnavailable.*\); using 'cpu'"):
        assert get_backend("auto").name == "cpu"
    with pytest.raises(RuntimeError, match="cudaErrorDevicesUnavailable"):
        get_backend("cuda")


def test_cupy_without_a_gpu_makes_auto_pick_cpu_quietly(gpu_cupy, recwarn):
    """CuPy imports without a GPU (measured with cupy-cuda12x 14.2 here: getDeviceCount raises
    cudaErrorInsufficientDriver): `auto` takes cpu without a warning; it is not a failure."""
    sys.modules["cupy"] = fake_cupy(error=RuntimeError(
        "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"))
    assert get_backend("auto").name == "cpu"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_gpu_facts_show_name_memory_and_compute_capability(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    facts = cuda._CupyDevice(0).facts()
    assert facts["gpu"] == "NVIDIA H100 80GB HBM3" and facts["compute_capability"] == "9.0"
    assert facts["memory_gib"] == 80.0 and facts["device_id"] == 0 and facts["cuda_driver"] == 12080


def test_device_id_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(cuda.DEVICE_ENV, raising=False)
    assert cuda.device_id_from_env() == 0
    monkeypatch.setenv(cuda.DEVICE_ENV, " 3 ")
    assert cuda.device_id_from_env() == 3


def test_kernel_sources_ship_with_the_package():
    """Every .cu file of the backend, the headers it includes and the emulator's headers are
    package data; the pointwise kernels never wait for each other (no barrier, no shared
    memory), the persistent ones are the only cooperative file."""
    import tomllib
    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["lstm_engine.backends"]
    folder = cuda.KERNEL_SOURCE.parent
    shipped = {p.name for pattern in patterns for p in folder.glob(pattern)}
    for f in cuda.KERNEL_FILES:
        includes = re.findall(r'^#include "([^"]+)"', f.source.read_text(), re.M)
        assert {f.source.name, *includes} <= shipped, f.source.name
    assert {"cuda_compat.h", "cuda_fibers.h", "cuda_cooperative_groups.h", "lstm_cell.cuh"} <= shipped
    text = cuda.KERNEL_SOURCE.read_text()
    assert "__syncthreads" not in text.replace("No shared memory and no __syncthreads", "")
    assert "__shared__" not in text
    assert [f.source.name for f in cuda.KERNEL_FILES if f.cooperative] == ["lstm_persistent.cu"]
