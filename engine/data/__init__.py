"""Datasets for the tasks: where examples come from and how they are split.

Every loader returns ``Splits``: a dict with the keys ``train``, ``validation`` and ``test``,
each an ``Examples`` (inputs and their string labels, in a fixed order). A task hands a run
``TaskData``: the splits, evaluation sets of domains kept out of training, and the manifest of
how the data was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ArgumentError

SPLITS = ("train", "validation", "test")


@dataclass
class Examples:
    """Inputs with their labels: text strings (language-id) or float32 arrays of shape
    (frames, features) (speech). ``labels`` are names (e.g. ``"de"``, ``"7"``), or for speech
    recognition transcripts (``"4071"``, ``"HELLO WORLD"``; see ``data.transcripts``)."""
    inputs: list[Any] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def __post_init__(self):
        if len(self.inputs) != len(self.labels):
            raise ArgumentError(f"inputs and labels differ in length: {len(self.inputs)} != {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, indices) -> "Examples":
        return Examples([self.inputs[i] for i in indices], [self.labels[i] for i in indices])


Splits = dict[str, Examples]


@dataclass
class TaskData:
    """What a task's data gives a run: the ``splits``; evaluation sets kept out of training
    (``held_out``, by name: text of a domain the model never sees, tested after training); and
    a JSON-able ``manifest`` of how the data was built (the many-source corpus's sources,
    package versions and counts), stored with every checkpoint and in ``results.json``."""
    splits: Splits
    held_out: dict[str, Examples] = field(default_factory=dict)
    manifest: dict | None = None

