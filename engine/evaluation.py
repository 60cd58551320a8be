"""Evaluation: a model run over a whole split, batch by batch, and its scores on labelled data.

One home for what training (validation after each epoch), a run (the test split), the
``evaluate`` command and a Predictor all compute, so the numbers they report are the same
numbers. ``batch_outputs`` is the one loop over a split's batches; what each batch yields
and how the results are scored is an objective's (engine/objectives.py): a classifier's
probabilities, accuracy and macro-F1 are computed here (``evaluate``, ``test_metrics``), a
CTC head's decoded label sequences and label error rate by ``objectives.CTC`` through the
same loop.

Shapes: N sequences, C classes, T_i the valid steps of sequence i. ``predict_proba`` gives
(N, C) for a pooled head and, for a per-step head (``per_step=True``), a list of N arrays
(T_i, C): the probabilities at each valid step (for a CTC head, class 0 is the blank).
A pooled head reads the sequences longer than ``Encoded.window``'s ``above`` also as windows,
and gives the normalised product of the whole sequence's and its windows' probabilities: a
language-id model that trained on short text reads long text best in pieces as long as what
it trained on (the task's ``window`` setting says what it measured).

With a communicator of several ranks (engine/distributed.py) the work is sharded: the batches
(sorted by length) are dealt round-robin to the ranks, so each gets a like share of long and
short ones, and the results are gathered in the data's order on every rank (validation
needs them on every rank: they decide the best epoch and early stopping). Each batch is the
one a single process would run, so the results are those of a single process, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .batching import Encoded, bucket_batches, collate, window_starts
from .errors import ArgumentError, ArgumentTypeError
from .metrics import scores


def batch_outputs(model, data: Encoded, fn: Callable, batch_size: int = 256, comm=None) -> list[tuple[np.ndarray, Any]]:
    """``fn(inputs, lengths, targets)`` on every batch of ``data`` (sorted by length and
    padded by ``collate``, run inside a backend session); returns ``(indices, result)`` for
    each batch. ``comm``: shard the batches across its ranks; every rank gets every batch's
    result."""
    batches = bucket_batches(data.lengths, batch_size, None)
    sharded = comm is not None and comm.size > 1
    parts = []
    for idx in (batches[comm.rank::comm.size] if sharded else batches):
        inputs, lengths, targets = collate(data, idx, model.dtype)
        with model.backend.session():
            parts.append((idx, fn(inputs, lengths, targets)))
    if sharded:
        parts = [part for rank_parts in comm.allgather_object(parts) for part in rank_parts]
    return parts


def in_order(parts: list[tuple[np.ndarray, Any]], n: int) -> list:
    """The per-sequence rows of ``batch_outputs`` results (each a sequence of one row per
    index of its batch) as one list in the data's order."""
    out: list = [None] * n
    for idx, rows in parts:
        for i, row in zip(idx.tolist(), rows):
            out[i] = row
    return out


def predict_proba(model, data: Encoded, batch_size: int = 256, prepared=None, comm=None):
    """Class probabilities of every sequence, in the data's order: (N, C) float64, or for a
    per-step head a list of N float64 arrays (T_i, C), the valid steps of each. ``prepared``:
    ``model.lstm.prepare()``'s weights, for a caller that predicts again and again; ``comm``:
    shard the batches across its ranks, every rank gets the whole result."""
    if model.config["per_step"]:
        def steps(inputs, lengths, _):
            probs = model.predict_proba(inputs, lengths, prepared=prepared)
            return [probs[:n, b].astype(np.float64) for b, n in enumerate(lengths.tolist())]
        return in_order(batch_outputs(model, data, steps, batch_size, comm), len(data))

    def pooled(inputs, lengths, _):
        return model.predict_proba(inputs, lengths, prepared=prepared)
    owner, windows = [], []                    # the windows of long sequences, and whose they are
    if data.window:
        for i, item in enumerate(data.items):
            for start in window_starts(len(item), data.window):
                owner.append(i)
                windows.append(item[start:start + data.window["size"]])
    if not windows:
        out = None
        for idx, probs in batch_outputs(model, data, pooled, batch_size, comm):
            if out is None:
                out = np.empty((len(data), probs.shape[-1]), dtype=np.float64)
            out[idx] = probs
        return out
    # the windows are more evidence: their log-probabilities add to the whole sequence's,
    # batch by batch (the windows can outnumber the sequences: no array of them all is kept)
    n, owner = len(data), np.asarray(owner)
    tiny = np.finfo(np.float32).tiny           # a float32 softmax can round to 0
    log_p = None
    for idx, probs in batch_outputs(model, Encoded(list(data.items) + windows, [0] * (n + len(windows))),
                                    pooled, batch_size, comm):
        if log_p is None:
            log_p = np.zeros((n, probs.shape[-1]), dtype=np.float64)
        logs = np.log(np.maximum(probs.astype(np.float64), tiny))
        whole = idx < n
        log_p[idx[whole]] += logs[whole]
        np.add.at(log_p, owner[idx[~whole] - n], logs[~whole])
    log_p -= log_p.max(axis=1, keepdims=True)
    probs = np.exp(log_p)
    return probs / probs.sum(axis=1, keepdims=True)


def among_labels(probs: np.ndarray, labels: list[str], among) -> np.ndarray:
    """``probs`` (N, C), columns in ``labels`` order, for a choice among the labels ``among``
    only: their probabilities renormalised, the others 0 (as py3langid's ``set_languages``
    and lingua's ``from_languages`` restrict the answer to languages the user names). For a
    softmax, and for the windows' normalised product, this is exactly the model with the
    other classes removed. A row whose named labels all underflowed to 0 gets them equally."""
    if isinstance(among, str) or not hasattr(among, "__iter__"):
        raise ArgumentTypeError(f"among must be a list of labels, got {type(among).__name__}")
    among = list(dict.fromkeys(among))
    unknown = [label for label in among if label not in labels]
    if not among or unknown:
        shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
        raise ArgumentError(f"among must name labels of the model, got "
                            f"{'none' if not among else ', '.join(map(repr, unknown))}; the model's labels: {shown}")
    allowed = np.isin(np.asarray(labels), among)
    kept = np.where(allowed, probs, 0.0)
    total = kept.sum(axis=1, keepdims=True)
    return np.where(total > 0, kept / np.where(total > 0, total, 1.0), allowed / allowed.sum())


def evaluate(model, data: Encoded, batch_size: int = 256, comm=None) -> dict:
    """Loss, accuracy, macro-F1, per-class F1 and the confusion matrix of a classifier on a
    labelled set (the classification objective's validation)."""
    probs = predict_proba(model, data, batch_size, comm=comm)
    targets = np.asarray(data.targets, dtype=np.int64)
    picked = probs[np.arange(len(targets)), targets]
    result = scores(targets, probs.argmax(axis=1), probs.shape[1])
    result["loss"] = float(-np.log(np.maximum(picked, 1e-12)).mean())
    return result


def test_metrics(task, model, examples, encoded: Encoded, labels: list[str],
                 batch_size: int = 256, comm=None) -> dict:
    """A classifier's accuracy, macro-F1, per-class F1 and confusion matrix by label name,
    plus the task's own breakdowns (``task.extra_metrics``, e.g. accuracy by text length).
    ``examples`` are the split's raw examples, ``encoded`` the ones whose label the model
    knows, in the same order."""
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
