"""What every task knows: its data, how inputs become sequences, its model and defaults.

A task turns ``Examples`` (text or feature frames, string labels) into ``Encoded`` sequences
for the model. Its encoder (a character vocabulary, a feature width) is fitted on the
training split and stored, as JSON, in every checkpoint, so a checkpoint predicts by itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batching import Encoded
from ..data import Examples, Splits

# Settings every task shares; a task's DEFAULTS override these. Model, optimizer and
# trainer settings are all in one flat namespace, as on the command line.
COMMON_DEFAULTS: dict[str, Any] = {
    "epochs": 10, "batch_size": 64, "hidden_size": 128, "num_layers": 1, "bidirectional": False,
    "dropout": 0.0, "pooling": "last", "forget_bias": 1.0, "optimizer": "adam", "lr": 2e-3,
    "weight_decay": 0.0, "clip_norm": 1.0, "schedule": "constant", "warmup_steps": 0,
    "step_size": 1000, "gamma": 0.5, "patience": 0, "seed": 0, "data": None,
}


class Task:
    name = "?"
    kind = "?"                         # "text" or "features"
    description = ""
    DEFAULTS: dict[str, Any] = {}
    DATA_OPTIONS: tuple[str, ...] = ()  # config keys that change what load_data returns

    def defaults(self) -> dict:
        return {**COMMON_DEFAULTS, **self.DEFAULTS}

    def data_options(self, config: dict) -> dict:
        return {"data": config.get("data"), **{k: config[k] for k in self.DATA_OPTIONS if k in config}}

    def load_data(self, options: dict) -> Splits:
        raise NotImplementedError

    def fit_encoder(self, train: Examples, config: dict) -> dict:
        raise NotImplementedError

    def encode_inputs(self, inputs: list, encoder: dict) -> list[np.ndarray]:
        raise NotImplementedError

    def model_config(self, config: dict, encoder: dict, num_classes: int) -> dict:
        raise NotImplementedError

    def read_inputs(self, sources: list[str], encoder: dict) -> tuple[list, list[str]]:
        """Inputs for ``predict`` from command-line arguments; returns (inputs, names)."""
        raise NotImplementedError

    def export(self, splits: Splits, path) -> None:
        """Write the data in the format ``--data`` reads back (``lstm-engine data --export``)."""
        raise NotImplementedError

    def extra_metrics(self, examples: Examples, correct: np.ndarray) -> dict:
        """Task-specific breakdowns of the test results (e.g. accuracy by text length)."""
        return {}

    def encode(self, examples: Examples, encoder: dict, labels: list[str]) -> tuple[Encoded, int]:
        """Encode a split; examples whose label is not among ``labels`` (absent from the
        training split) are left out, and their number is returned."""
        index = {name: i for i, name in enumerate(labels)}
        keep = [i for i, lab in enumerate(examples.labels) if lab in index]
        items = self.encode_inputs([examples.inputs[i] for i in keep], encoder)
        targets = [index[examples.labels[i]] for i in keep]
        return Encoded(items, targets), len(examples) - len(keep)


def model_config_from(config: dict, num_classes: int, **source) -> dict:
    """The SequenceClassifier settings from a run config; ``source`` is vocab_size and
    embedding_dim, or input_size."""
    return dict(num_classes=num_classes, hidden_size=int(config["hidden_size"]),
                num_layers=int(config["num_layers"]), bidirectional=bool(config["bidirectional"]),
                dropout=float(config["dropout"]), pooling=config["pooling"],
                forget_bias=float(config["forget_bias"]), **source)
