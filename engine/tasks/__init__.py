"""The task registry: each task knows its data, features, model head, defaults and objective
(its loss and metrics)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Task
from .language_id import LanguageId
from .speech_digits import SpeechDigits
from .speech_recognition import SpeechRecognition

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (LanguageId, SpeechDigits, SpeechRecognition)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]()


__all__ = ["TASKS", "Task", "get_task"]
