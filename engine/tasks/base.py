"""What every task knows: its data, how inputs become sequences, its model and defaults, and
its objective (how outputs are trained, scored and read).

A task turns ``Examples`` (text or feature frames, string labels) into ``Encoded`` sequences
for the model. Its encoder (a character vocabulary, a feature width; for speech recognition
also the transcripts' vocabulary and the decoder) is fitted on the training split and
stored, as JSON, in every checkpoint with the names of the model's classes (``labels``), so
a checkpoint predicts by itself. The base class is a classification task: one label per
example, the classes the training split's labels, softmax cross-entropy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np

from .. import settings
from ..batching import Encoded
from ..data import Examples, Splits, TaskData
from ..errors import ArgumentError


class Task:
    name = "?"
    kind = "?"                         # "text" or "features"
    description = ""
    #: The task's own settings (engine/settings.py): a TaskSettings subclass whose fields in
    #: group "data" change what load_data returns and those in group "input" how inputs are
    #: encoded.
    Settings: type = settings.TaskSettings
    #: The task's defaults for common settings (epochs, hidden_size...), over the schema's.
    DEFAULTS: dict[str, Any] = {}

    def defaults(self) -> dict:
        return settings.defaults(self)

    def data_options(self, config: dict) -> dict:
        """The settings that decide what load_data returns (stored with a checkpoint, so that
        `evaluate` rebuilds the same data)."""
        return settings.values_in(config, self, "data")

    def load_data(self, options: dict) -> Splits:
        raise NotImplementedError

    def load(self, options: dict) -> TaskData:
        """The data of a run: ``load_data``'s splits, plus (for a task that has them) held-out
        evaluation sets and a manifest of how the data was built."""
        return TaskData(self.load_data(options))

    def data_changes(self, stored: dict, rebuilt: dict) -> list[str]:
        """How rebuilt data differs from the data a model was trained on, from their
        manifests (``TaskData.manifest``); empty: the same."""
        return []

    def fit_encoder(self, train: Examples, config: dict) -> dict:
        raise NotImplementedError

    def encode_inputs(self, inputs: list, encoder: dict) -> list[np.ndarray]:
        raise NotImplementedError

    def window(self, encoder: dict) -> dict | None:
        """How the model also reads long inputs in windows (``batching.Encoded``), or None."""
        return None

    def check_encoder(self, encoder, model_config: dict) -> None:
        """Raise ArgumentError unless ``encoder`` (as read from a checkpoint) is one this task
        makes and fits ``model_config`` (the model's input width)."""
        if not isinstance(encoder, dict):
            raise ArgumentError(f"the encoder must be a dict, got {type(encoder).__name__}")

    def model_config(self, config: dict, encoder: dict, num_classes: int) -> dict:
        raise NotImplementedError

    def labels(self, train: Examples, encoder: dict) -> list[str]:
        """The names of the model's classes (column k of its output is ``labels[k]``): the
        distinct labels of the training split, sorted."""
        return sorted(set(train.labels))

    def objective(self, encoder: dict):
        """How the model's outputs are trained, validated, tested and read
        (engine/objectives.py): classification."""
        from ..objectives import CLASSIFICATION
        return CLASSIFICATION

    def describe(self, splits: Splits) -> dict:
        """Statistics of the data for `lstm-engine data`: the examples of each label, per split."""
        return {"labels": {name: dict(sorted(Counter(ex.labels).items())) for name, ex in splits.items()}}

    def read_inputs(self, sources: list[str], encoder: dict) -> tuple[list, list[str]]:
        """Inputs for ``predict`` from command-line arguments; returns (inputs, names)."""
        raise NotImplementedError

    def export(self, splits: Splits, path) -> None:
        """Write the data in the format ``--data`` reads back (``lstm-engine data --export``)."""
        raise NotImplementedError

    def encoder_for(self, split: str, encoder: dict, config: dict) -> dict:
        """The encoder of ``split``: ``encoder``, unless the task trains on shorter inputs than
        it classifies (language-id's ``train_length``)."""
        return encoder

    def epoch_sampler(self, config: dict, encoder: dict):
        """How each epoch's training examples are drawn (engine/sampling.py), or None for the
        split as it is; the base draws classes by ``balance_temperature``."""
        from ..sampling import BalancedSampler
        if config["balance_temperature"] == 1.0:
            return None
        return BalancedSampler(config["balance_temperature"], config["seed"])

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
        return Encoded(items, targets, self.window(encoder)), len(examples) - len(keep)


def model_config_from(config: dict, num_classes: int, **source) -> dict:
    """The SequenceClassifier config from a run config's model settings; ``source`` is
    ``vocab_size`` (token input, with the ``embedding_dim`` setting) or ``input_size``."""
    model = asdict(settings.group_values(config, settings.ModelSettings))
    if "vocab_size" not in source:
        del model["embedding_dim"], model["ngram_buckets"], model["ngram_order"]   # token input only
    return dict(num_classes=num_classes, **model, **source)
