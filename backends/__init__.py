"""Backend registry: names to lazily imported backend classes, with availability probes.

Nothing heavy is imported here: a backend's module is imported when that backend is asked
for or probed, and it imports Numba or CuPy only when an instance is made (see base.py).
Whether a backend can run here is its class's business (`Backend.unavailable_reason()`);
the registry only knows where each class lives and whether the name is public.

A *hidden* entry (`cuda-emulated` and `cuda-emulated-persistent`: the cuda backend's
orchestration and .cu kernels on the host, for CI, with the graph and the persistent time loop)
can be asked for by name but is never listed by `names()` or `available()`
unless asked, and `auto` never picks it.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field

from ..errors import ArgumentError, ArgumentTypeError, BackendError, one_line
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
    module: str                 # module holding the backend class (relative to this package)
    cls: str
    hidden: bool = False        # for tests and tools: not listed, never chosen by `auto`


_REGISTRY: dict[str, _Entry] = {
    "numpy": _Entry(".reference", "NumpyBackend"),
    "cpu": _Entry(".cpu", "CpuBackend"),
    "cuda": _Entry(".cuda", "CudaBackend"),
    "cuda-emulated": _Entry(".cuda_emulation", "EmulatedCudaBackend", hidden=True),
    "cuda-emulated-persistent": _Entry(".cuda_emulation", "EmulatedPersistentBackend", hidden=True),
}
_INSTANCES: dict[str, Backend] = {}


def names(include_hidden: bool = False) -> list[str]:
    """Registered backend names, `auto` excluded; hidden ones only when asked."""
    return [n for n, e in _REGISTRY.items() if include_hidden or not e.hidden]


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name`; imports its module (which is light, see base.py)."""
    entry = _REGISTRY[name]
    return getattr(importlib.import_module(entry.module, __name__), entry.cls)


def _load(name: str) -> Backend:
    if name not in _INSTANCES:
        backend_cls = backend_class(name)
        reason = backend_cls.unavailable_reason()
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


def available(include_hidden: bool = False) -> list[str]:
    """The backends that can run here, in registry order; hidden ones only when asked."""
    return [n for n in names(include_hidden) if probe(n).available]


def _describe_all() -> str:
    lines = []
    for n in names():
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
        raise ArgumentTypeError(f"backend must be a name (str) or a Backend, got {type(name).__name__}")
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
                failed.append(f"backend {candidate!r} failed to start ({one_line(exc)})")
                continue
            for failure in failed:
                warnings.warn(f"{failure}; using {candidate!r}", RuntimeWarning, stacklevel=2)
            return backend
        raise BackendError("no backend is available:\n" + "\n".join(failed + [_describe_all()]))
    if key not in _REGISTRY:
        raise BackendError(
            f"unknown backend {name!r}; expected one of: auto, {', '.join(names())}\n" + _describe_all())
    try:
        backend = _load(key)
    except BackendError as exc:
        raise BackendError(f"{exc}\nbackends on this machine:\n{_describe_all()}") from None
    return _ready(backend)        # asked for by name: a failure here is raised as it is


def _ready(backend: Backend) -> Backend:
    """`backend` after its own start-up check (Backend.check_ready: the cuda backend compiles
    and loads its kernels), so that a failure shows when it is chosen, not at its first forward."""
    backend.check_ready()
    return backend


#: What set_num_threads asked for (None: Numba's default, every core).
_THREADS: int | None = None


def requested_threads() -> int | None:
    """The thread count set_num_threads last set, for every thread that calls a kernel
    (Numba's own setting is per calling thread)."""
    return _THREADS


def set_num_threads(n: int) -> None:
    """Threads for the `cpu` backend (Numba's pool; BLAS is kept from oversubscribing it), in
    this and every other thread that calls it."""
    global _THREADS
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(f"threads must be a positive integer, got {n!r}")
    import numba
    if n > numba.config.NUMBA_NUM_THREADS:
        raise ArgumentError(
            f"threads={n} is more than Numba's pool of {numba.config.NUMBA_NUM_THREADS} "
            "(set NUMBA_NUM_THREADS before start-up to raise it)")
    numba.set_num_threads(n)
    _THREADS = n
