"""A trained model ready to use: the classifier with its task, encoder and labels, loaded
from a checkpoint file or a run folder.

``load_predictor(path)`` is what `lstm-engine predict` and `evaluate` use, and what a
program that embeds a trained model calls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import distributed
from .batching import Encoded
from .checkpoint import load_checkpoint
from .classifier import SequenceClassifier
from .errors import ArgumentError, CheckpointError
from .evaluation import predict_proba, test_metrics
from .tasks import get_task


def checkpoint_in(path) -> Path:
    """The checkpoint a path names: the file itself, or a run folder's best.safetensors (else
    its last.safetensors)."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = [p for p in (path / "best.safetensors", path / "last.safetensors") if p.exists()]
    if not found:
        raise CheckpointError(f"no checkpoint in {path} (looked for best.safetensors and last.safetensors)")
    return found[0]


class Predictor:
    """A trained model with its task, encoder and labels. ``comm`` (engine/distributed.py)
    shards its predictions and evaluations across ranks; every rank gets the whole result."""

    def __init__(self, task, model: SequenceClassifier, encoder: dict, labels: list[str], data_options: dict,
                 comm=None, manifest: dict | None = None):
        self.task, self.model, self.encoder = task, model, encoder
        self.labels, self.data_options = labels, data_options
        #: How the training data was built (TaskData.manifest), when the task keeps one.
        self.manifest = manifest
        self.comm = comm
        self._prepared = None

    def prepared(self):
        """The model's LSTM weights prepared for inference (LSTM.prepare), made once and again
        only when the parameters are replaced: a predictor predicts again and again with the
        same weights, and a single short text costs about as much to pack as to run."""
        if self._prepared is None or not self._prepared.matches(self.model.lstm):
            self._prepared = self.model.lstm.prepare()
        return self._prepared

    @classmethod
    def load(cls, path, backend="auto", comm=None) -> "Predictor":
        path = checkpoint_in(path)
        ckpt = load_checkpoint(path)
        task = get_task(ckpt.task["name"])
        model = SequenceClassifier.from_config(ckpt.model, backend=backend)
        try:
            model.load_state_dict(ckpt.tensors)
        except (ArgumentError, KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: tensors do not match the stored model config: {e}") from e
        if comm is not None:
            comm = distributed.for_backend(comm, model.backend)      # NCCL for a cuda model
        return cls(task, model, ckpt.task["encoder"], ckpt.task["labels"], ckpt.task["data"], comm,
                   manifest=ckpt.task.get("corpus"))

    def predict_proba(self, inputs: list) -> np.ndarray:
        """(N, C) probabilities, columns in ``labels`` order."""
        items = self.task.encode_inputs(list(inputs), self.encoder)
        return predict_proba(self.model, Encoded(items, [0] * len(items)), prepared=self.prepared(),
                             comm=self.comm)

    def predict(self, inputs: list) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(inputs).argmax(axis=1)]

    def to_onnx(self, path) -> Path:
        """The model, its labels and its input encoder as one ONNX file (engine/onnx_export.py;
        needs lstm-engine[onnx])."""
        from .onnx_export import export_predictor
        return export_predictor(self, path)

    def stream(self, batch_size: int = 1):
        """A stream that takes raw inputs (text or feature frames) chunk by chunk and gives
        running predictions (engine/streaming.py; unidirectional models only)."""
        from .streaming import predictor_stream
        return predictor_stream(self, batch_size)

    def evaluate(self, splits_or_examples, split: str = "test") -> dict:
        """Scores on labelled examples (or one split of a Splits dict); examples whose label
        the model does not know are left out and counted."""
        examples = splits_or_examples[split] if isinstance(splits_or_examples, dict) else splits_or_examples
        encoded, dropped = self.task.encode(examples, self.encoder, self.labels)
        result = test_metrics(self.task, self.model, examples, encoded, self.labels, comm=self.comm)
        result["dropped_unknown_label"] = dropped
        return result


def load_predictor(path, backend="auto", comm=None) -> Predictor:
    """A trained model from a checkpoint file or run folder, ready to predict."""
    return Predictor.load(path, backend, comm)


__all__ = ["Predictor", "load_predictor", "checkpoint_in"]
