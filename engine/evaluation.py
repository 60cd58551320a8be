"""Evaluation: a model's probabilities over a whole split, and its scores on labelled data.

One home for what training (validation after each epoch), a run (the test split), the
``evaluate`` command and a Predictor all compute, so the numbers they report are the same
numbers.

With a communicator of several ranks (engine/distributed.py) the work is sharded: the batches
(sorted by length) are dealt round-robin to the ranks, so each gets a like share of long and
short ones, and the probabilities are gathered in the data's order on every rank (validation
needs them on every rank: they decide the best epoch and early stopping). Each batch is the
one a single process would run, so the results are those of a single process, bit for bit.
"""

from __future__ import annotations

import numpy as np

from .batching import Encoded, bucket_batches, collate
from .metrics import scores


def predict_proba(model, data: Encoded, batch_size: int = 256, prepared=None, comm=None) -> np.ndarray:
    """(N, C) class probabilities for every sequence, in the data's order; ``prepared``:
    ``model.lstm.prepare()``'s weights, for a caller that predicts again and again; ``comm``:
    shard the batches across its ranks, every rank gets the whole result."""
    batches = bucket_batches(data.lengths, batch_size, None)
    sharded = comm is not None and comm.size > 1
    parts = []
    for idx in (batches[comm.rank::comm.size] if sharded else batches):
        inputs, lengths, _ = collate(data, idx, model.dtype)
        with model.backend.session():
            parts.append((idx, model.predict_proba(inputs, lengths, prepared=prepared)))
    if sharded:
        parts = [part for rank_parts in comm.allgather_object(parts) for part in rank_parts]
    out = None
    for idx, probs in parts:
        if out is None:
            out = np.empty((len(data), probs.shape[-1]), dtype=np.float64)
        out[idx] = probs
    return out


def evaluate(model, data: Encoded, batch_size: int = 256, comm=None) -> dict:
    """Loss, accuracy, macro-F1, per-class F1 and the confusion matrix on a labelled set."""
    probs = predict_proba(model, data, batch_size, comm=comm)
    targets = np.asarray(data.targets, dtype=np.int64)
    picked = probs[np.arange(len(targets)), targets]
    result = scores(targets, probs.argmax(axis=1), probs.shape[1])
    result["loss"] = float(-np.log(np.maximum(picked, 1e-12)).mean())
    return result


def test_metrics(task, model, examples, encoded: Encoded, labels: list[str],
                 batch_size: int = 256, comm=None) -> dict:
    """Accuracy, macro-F1, per-class F1 and confusion matrix by label name, plus the task's own
    breakdowns (``task.extra_metrics``, e.g. accuracy by text length). ``examples`` are the
    split's raw examples, ``encoded`` the ones whose label the model knows, in the same order."""
    if len(encoded) == 0:
        return {"n": 0}
    probs = predict_proba(model, encoded, batch_size, comm=comm)
    targets = np.asarray(encoded.targets)
    predicted = probs.argmax(axis=1)
    result = scores(targets, predicted, len(labels))
    result["f1_per_class"] = dict(zip(labels, result["f1_per_class"]))
    result["labels"] = labels
    known = set(labels)
    kept_examples = examples.subset([i for i, lab in enumerate(examples.labels) if lab in known])
    result.update(task.extra_metrics(kept_examples, predicted == targets))
    return result


test_metrics.__test__ = False          # a function pytest should not collect by its name
