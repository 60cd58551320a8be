"""The task registry: each task knows its data, features, model head, defaults and metrics."""

from __future__ import annotations

from .base import Task
from .language_id import LanguageId
from .speech_digits import SpeechDigits

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (LanguageId, SpeechDigits)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]()


def load_predictor(path, backend="auto"):
    """A trained model from a checkpoint file or run folder, ready to predict."""
    from ..runs import Predictor
    return Predictor.load(path, backend)


__all__ = ["TASKS", "Task", "get_task", "load_predictor"]
