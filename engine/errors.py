"""The project's errors: one family, so that a caller (and the command line) can tell a
problem with what it was given from a bug.

Every error the project raises on purpose derives from ``LstmEngineError``. Each also
derives from the built-in exception a Python user would expect for that kind of problem
(``ValueError`` for a bad value, ``TypeError`` for a wrong type, ``FileNotFoundError`` for a
missing file, ``ImportError`` for a missing optional package, ``RuntimeError`` for a wrong
order of calls), so ``except ValueError`` keeps working. The CLI prints an ``LstmEngineError``
as one line and lets anything else show its traceback: an unexpected exception is a bug.

    LstmEngineError
    ├── ConfigError            a setting: unknown name, wrong type, out of range (ValueError)
    ├── ArgumentError          an argument of the library API: shape, range (ValueError)
    ├── ArgumentTypeError      an argument of the library API: type or dtype (TypeError)
    ├── DataError              data that cannot be used: malformed, empty, wrong encoding (ValueError)
    │   └── DataNotFoundError  a data file or folder that does not exist (also FileNotFoundError)
    ├── MissingDependencyError an optional package is not installed; names the extra (ImportError)
    ├── BackendError           an unknown or unavailable backend (RuntimeError)
    ├── CheckpointError        a checkpoint that cannot be used (ValueError)
    ├── WriteError             a file that could not be written: disk full, no permission (OSError)
    ├── CallOrderError         e.g. backward() without a training forward() (RuntimeError)
    ├── TrainingDiverged       the loss became NaN or infinite (RuntimeError)
    └── DistributedError       ranks that cannot work together: a launcher and an MPI that do
        │                      not match, NCCL without a GPU, ranks that read different data
        └── ReplicasOutOfSync  the model replicas of data-parallel ranks differ (RuntimeError)
"""

from __future__ import annotations


class LstmEngineError(Exception):
    """Base of every error lstm-engine raises on purpose."""


class ConfigError(LstmEngineError, ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it."""


class ArgumentError(LstmEngineError, ValueError):
    """A library call got an argument of the wrong shape or value; the message names it."""


class ArgumentTypeError(LstmEngineError, TypeError):
    """A library call got an argument of the wrong type or dtype; the message names it."""


class DataError(LstmEngineError, ValueError):
    """Data that cannot be used: malformed, empty, undecodable, inconsistent."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder that does not exist."""


class MissingDependencyError(LstmEngineError, ImportError):
    """An optional package is missing; the message says which extra installs it."""


class BackendError(LstmEngineError, RuntimeError):
    """An unknown or unavailable backend was asked for."""


class CheckpointError(LstmEngineError, ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, corrupted or mismatched."""


class WriteError(LstmEngineError, OSError):
    """A file (checkpoint, cache, results) could not be written: disk full, a size limit, no
    permission. Writes are atomic, so the previous file at that path is left as it was and
    no partial file is left behind."""


class CallOrderError(LstmEngineError, RuntimeError):
    """A method was called out of order (backward before a training forward, twice...)."""


class TrainingDiverged(LstmEngineError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


class DistributedError(LstmEngineError, RuntimeError):
    """Ranks of a data-parallel run that cannot work together (engine/distributed.py)."""


class ReplicasOutOfSync(DistributedError):
    """The ranks' model replicas (parameters, optimizer state, dropout generator) differ,
    where every rank must hold the same; found by the periodic checksum comparison."""


def one_line(exc: BaseException) -> str:
    """`exc` as "Type: first line of its message", for warnings and records that name an
    error without its traceback (a CUDA error's message can run to many lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def require(module: str, extra: str, purpose: str):
    """Import an optional module, or raise MissingDependencyError naming the extra."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package {module!r}, which is not installed "
            f"(install it with: pip install \"lstm-engine[{extra}]\"; {exc})") from exc


__all__ = ["LstmEngineError", "ConfigError", "ArgumentError", "ArgumentTypeError", "DataError",
           "DataNotFoundError", "MissingDependencyError", "BackendError", "CheckpointError",
           "WriteError", "CallOrderError", "TrainingDiverged", "DistributedError", "ReplicasOutOfSync",
           "one_line", "require"]
