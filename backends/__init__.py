"""Backend registry: names to lazily imported backend classes, with availability probes.

Nothing heavy is imported here: a backend's module (and Numba or CuPy with it) is imported
only when that backend is asked for or probed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from dataclasses import dataclass, field

from ..errors import BackendError
from .base import Backend

#: What `auto` tries, best first.
AUTO_ORDER = ("cuda", "cpu", "numpy")
ENV_VAR = "LSTM_ENGINE_BACKEND"


@dataclass
class BackendInfo:
    name: str
    available: bool
    reason: str = ""            # why not, when not available
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    module: str                 # module holding the backend class, relative to this package
    cls: str
    needs: tuple = ()           # importable modules it needs
    extra: str = ""             # the pip extra that brings them


_REGISTRY: dict[str, _Entry] = {
    "numpy": _Entry(".reference", "NumpyBackend"),
    "cpu": _Entry(".cpu", "CpuBackend", needs=("numba", "threadpoolctl"), extra="lstm-engine"),
    # No `needs`: CudaBackend.unavailable_reason() names the extra to install (cuda12 or
    # cuda13, by driver) and tells a missing CuPy from a missing GPU.
    "cuda": _Entry(".cuda", "CudaBackend", extra="lstm-engine[cuda12]"),
}
_INSTANCES: dict[str, Backend] = {}


def names() -> list[str]:
    """Registered backend names, `auto` excluded."""
    return list(_REGISTRY)


def _missing_reason(entry: _Entry) -> str:
    missing = [m for m in entry.needs if importlib.util.find_spec(m) is None]
    if not missing:
        return ""
    return f"missing {', '.join(missing)} (install with: pip install '{entry.extra}')"


def _load(name: str) -> Backend:
    if name not in _INSTANCES:
        entry = _REGISTRY[name]
        reason = _missing_reason(entry)
        if reason:
            raise BackendError(f"backend {name!r} is not available: {reason}")
        module = importlib.import_module(entry.module, __name__)
        backend_cls = getattr(module, entry.cls)
        reason = backend_cls.unavailable_reason() if hasattr(backend_cls, "unavailable_reason") else ""
        if reason:
            raise BackendError(f"backend {name!r} is not available: {reason}")
        _INSTANCES[name] = backend_cls()
    return _INSTANCES[name]


def probe(name: str) -> BackendInfo:
    """Whether `name` can run here, why not, and its device facts."""
    try:
        backend = _load(name)
    except BackendError as exc:
        return BackendInfo(name, False, str(exc).split(": ", 1)[-1])
    return BackendInfo(name, True, facts=backend.facts())


def available() -> list[str]:
    return [n for n in _REGISTRY if probe(n).available]


def _describe_all() -> str:
    lines = []
    for n in _REGISTRY:
        info = probe(n)
        lines.append(f"  {n}: " + ("available" if info.available else f"unavailable ({info.reason})"))
    return "\n".join(lines)


def get_backend(name: str | Backend | None = None) -> Backend:
    """The backend called `name`; None means $LSTM_ENGINE_BACKEND, else `auto`.

    `auto` is the best available in the order cuda > cpu > numpy; one that is available but
    fails to start (a CUDA driver, runtime or compile error) is skipped with a one-line
    RuntimeWarning naming the error. A backend asked for by name raises instead.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or "auto"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name (str) or a Backend, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        failed = []
        for candidate in AUTO_ORDER:
            if candidate not in _REGISTRY:
                continue
            try:
                if not probe(candidate).available:
                    continue
                backend = _ready(_load(candidate))
            except Exception as exc:      # e.g. a GPU whose driver, runtime or NVRTC fails
                _INSTANCES.pop(candidate, None)
                failed.append(f"backend {candidate!r} failed to start ({_one_line(exc)})")
                continue
            for failure in failed:
                warnings.warn(f"{failure}; using {candidate!r}", RuntimeWarning, stacklevel=2)
            return backend
        raise BackendError("no backend is available:\n" + "\n".join(failed + [_describe_all()]))
    if key not in _REGISTRY:
        raise BackendError(
            f"unknown backend {name!r}; expected one of: auto, {', '.join(_REGISTRY)}\n" + _describe_all())
    try:
        backend = _load(key)
    except BackendError as exc:
        raise BackendError(f"{exc}\nbackends on this machine:\n{_describe_all()}") from None
    return _ready(backend)        # asked for by name: a failure here is raised as it is


def _ready(backend: Backend) -> Backend:
    """`backend` after its own start-up check (the cuda backend compiles and loads its
    kernels), so that a failure shows when it is chosen, not at its first forward."""
    check = getattr(backend, "check_ready", None)
    if check is not None:
        check()
    return backend


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def set_num_threads(n: int) -> None:
    """Threads for the `cpu` backend (Numba's pool; BLAS is kept from oversubscribing it)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    import numba
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"threads={n} is more than Numba's pool of {numba.config.NUMBA_NUM_THREADS} "
            "(set NUMBA_NUM_THREADS before start-up to raise it)")
    numba.set_num_threads(n)
