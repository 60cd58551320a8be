"""A trained model ready to use: the classifier with its task, encoder and labels, loaded
from a checkpoint file or a run folder.

``load_predictor(path)`` is what `lstm-engine predict` and `evaluate` use, and what a
program that embeds a trained model calls. What ``predict`` returns is the task's objective's
(engine/objectives.py): a label per input for classification, a transcript for speech
recognition (CTC); ``predict_proba`` is always the model's probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import distributed
from .batching import Encoded
from .checkpoint import load_checkpoint
from .classifier import SequenceClassifier
from .errors import ArgumentError, ArgumentTypeError, CheckpointError, LstmEngineError
from .evaluation import among_labels, predict_proba
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
        self.objective = task.objective(encoder)
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
        task, encoder, labels, data = check_task_meta(ckpt, path)
        try:
            model = SequenceClassifier.from_config(ckpt.model, backend=backend)
            model.load_state_dict(ckpt.tensors)
        except (ArgumentError, ArgumentTypeError) as e:
            raise CheckpointError(f"{path}: its model config or tensors are not usable: {e}") from e
        if comm is not None:
            comm = distributed.for_backend(comm, model.backend)      # NCCL for a cuda model
        return cls(task, model, encoder, labels, data, comm, manifest=ckpt.task.get("corpus"))

    def _encoded(self, inputs: list) -> Encoded:
        if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
            raise ArgumentTypeError(f"inputs must be a list of inputs (texts or feature arrays), "
                                    f"got {type(inputs).__name__}")
        items = self.task.encode_inputs(list(inputs), self.encoder)
        return Encoded(items, [0] * len(items), self.task.window(self.encoder))

    def predict_proba(self, inputs: list, among=None):
        """(N, C) probabilities, columns in ``labels`` order; for a per-step head (speech
        recognition) a list of N arrays (T_i, C), the probabilities at each of input i's
        frames (column 0: the CTC blank). ``among``: a classifier choosing only among these
        labels (``evaluation.among_labels``: theirs renormalised, the others 0)."""
        self._check_among(among)
        data = self._encoded(inputs)
        if not len(data) and not self.model.config["per_step"]:
            probs = np.zeros((0, len(self.labels)))
        else:
            probs = predict_proba(self.model, data, prepared=self.prepared(), comm=self.comm)
        return probs if among is None else among_labels(probs, self.labels, among)

    def predict(self, inputs: list, among=None) -> list[str]:
        """A label per input (the most probable of ``among``, when given); for speech
        recognition its transcript."""
        if among is not None:
            return [top[0][0] for top in self.predict_top(inputs, 1, among)]
        return self.objective.predict(self.model, self._encoded(inputs), self.labels, prepared=self.prepared(),
                                      comm=self.comm)

    def predict_top(self, inputs: list, k: int = 1, among=None) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable labels (transcripts, for speech recognition) of each input,
        best first, with their probabilities; with ``among``, of those labels only (at most
        as many as they are), with their renormalised probabilities."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ArgumentError(f"k must be a positive integer, got {k!r}")
        if among is None:
            return self.objective.predict_top(self.model, self._encoded(inputs), self.labels, k,
                                              prepared=self.prepared(), comm=self.comm)
        probs = self.predict_proba(inputs, among)
        columns = np.array([self.labels.index(label) for label in dict.fromkeys(among)])
        best = columns[np.argsort(-probs[:, columns], axis=1, kind="stable")[:, :k]]
        return [[(self.labels[i], float(row[i])) for i in picks] for row, picks in zip(probs, best)]

    def _check_among(self, among) -> None:
        if among is not None and (self.objective.name != "classification" or self.model.config["per_step"]):
            raise ArgumentError(f"among (a choice among some labels) needs a classifier of whole sequences; "
                                f"this model's objective is {self.objective.name}"
                                f"{' per step' if self.model.config['per_step'] else ''}")

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
        result = self.objective.test_metrics(self.task, self.model, examples, encoded, self.labels,
                                             comm=self.comm)
        result["dropped_unknown_label"] = dropped
        return result


def check_task_meta(ckpt, path) -> tuple:
    """(task, encoder, labels, data options) of a checkpoint, after checking that they and the
    model config agree with each other and with the tensors' shapes. Runs before the model is
    built, so that a config declaring absurd sizes allocates nothing; any disagreement is a
    CheckpointError naming the file."""
    try:
        expected = SequenceClassifier.parameter_shapes_of(ckpt.model)
    except (ArgumentError, ArgumentTypeError) as e:
        raise CheckpointError(f"{path}: its model config is not usable: {e}") from e
    got = {name: tuple(v.shape) for name, v in ckpt.tensors.items()}
    if got != expected:
        diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise CheckpointError(f"{path}: tensors do not match the stored model config: "
                              + ", ".join(f"{k} is {got.get(k)}, the config makes {expected.get(k)}"
                                          for k in diff[:5]))
    meta = ckpt.task
    try:
        task = get_task(meta["name"])
        encoder, labels, data = meta["encoder"], meta["labels"], meta["data"]
        if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)
                and len(labels) == ckpt.model["num_classes"] and isinstance(data, dict)):
            raise ArgumentError(f"labels must be {ckpt.model['num_classes']} strings and data a dict")
        task.check_encoder(encoder, ckpt.model)
    except (KeyError, LstmEngineError) as e:
        raise CheckpointError(f"{path}: its task metadata is not usable: {e}") from e
    return task, encoder, labels, data


def load_predictor(path, backend="auto", comm=None) -> Predictor:
    """A trained model from a checkpoint file or run folder, ready to predict."""
    return Predictor.load(path, backend, comm)


__all__ = ["Predictor", "load_predictor", "checkpoint_in"]
