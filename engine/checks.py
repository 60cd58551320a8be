"""Argument checks shared by the public API (the LSTM, the classifier, the tasks): anything
array-like as an array without a copy where possible, real-number dtypes, positive integers,
finite numbers, seeds. Each failure is an ArgumentError or ArgumentTypeError that names the
argument, so bad input never ends deep inside NumPy."""

from __future__ import annotations

import math

import numpy as np

from .errors import ArgumentError, ArgumentTypeError


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def finite_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def seed_value(value):
    if value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
        return value
    raise ArgumentError(f"seed must be None or a non-negative integer, got {value!r}")


def host_array(name: str, a, xp=np):
    """``a`` as an array of ``xp`` (NumPy, or the backend's CuPy) without copying one that
    already is; anything else (lists, torch CPU tensors) through NumPy's array protocol. What
    NumPy cannot turn into one array of numbers (ragged lists, GPU arrays for a host backend)
    is an ArgumentTypeError naming ``name``."""
    if isinstance(a, (np.ndarray, xp.ndarray)):
        return a
    try:
        a = np.asarray(a)
    except (TypeError, ValueError, RuntimeError) as e:
        # RuntimeError: e.g. a torch tensor that requires grad or lives on a GPU
        raise ArgumentTypeError(f"{name} must be an array of numbers on the host or on this "
                                f"model's device, got {type(a).__module__}.{type(a).__name__} "
                                f"({e})") from None
    return a


def check_real(name: str, a) -> None:
    """Refuse arrays that are not of real numbers (complex, bool, str, object), which a
    cast to float would silently change or fail on deep inside NumPy."""
    kind = np.dtype(a.dtype).kind
    if kind not in "fiu":
        raise ArgumentTypeError(f"{name} must hold real numbers, got dtype {np.dtype(a.dtype)}")
