"""The backend registry, the `lstm-engine backends` command and the cost of importing the package."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lstm_engine import BackendError, backends, get_backend
from lstm_engine.cli.main import main


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
    fake = backends._Entry(".reference", "NumpyBackend", needs=("surely_not_installed_mod",), extra="lstm-engine[fake]")
    monkeypatch.setitem(backends._REGISTRY, "fake", fake)
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
