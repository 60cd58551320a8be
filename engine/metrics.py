"""Metrics. Classification from integer labels: accuracy, macro-F1, the confusion matrix.
Label sequences (speech recognition): edit distance, label error rate, sequence accuracy, and
both broken down by reference length.

A label sequence is any sequence of hashable tokens: a tuple of class ids, a string (its
characters), a list of words. Edit distances come from rapidfuzz's Levenshtein (C++, any
hashable tokens), imported when first used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ArgumentError


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class (as scikit-learn)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ArgumentError(f"y_true and y_pred differ in shape: {y_true.shape} != {y_pred.shape}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes) \
        .reshape(num_classes, num_classes)


def scores(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy, macro-F1 (over classes present in y_true or y_pred, as scikit-learn's
    ``f1_score(average='macro')`` with zero_division=0) and per-class F1."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    total = cm.sum()
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    denom = predicted + actual
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = denom > 0
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "f1_per_class": f1.tolist(),
        "confusion": cm.tolist(),
    }


# --------------------------------------------------------------------------- label sequences


def _tokens(sequence) -> Sequence:
    return sequence if isinstance(sequence, (str, tuple, list)) else tuple(np.asarray(sequence).tolist())


def edit_distance(reference, hypothesis) -> int:
    """Levenshtein distance: the fewest substitutions, deletions and insertions that turn
    ``reference`` into ``hypothesis`` (each costs 1)."""
    from rapidfuzz.distance import Levenshtein
    return int(Levenshtein.distance(_tokens(reference), _tokens(hypothesis)))


def edit_operations(reference, hypothesis) -> dict:
    """One minimal alignment's counts: ``substitutions``, ``deletions`` (reference labels the
    hypothesis lacks), ``insertions`` (hypothesis labels the reference lacks); they add up
    to the edit distance."""
    from rapidfuzz.distance import Levenshtein
    tags = [op.tag for op in Levenshtein.editops(_tokens(reference), _tokens(hypothesis))]
    return {"substitutions": tags.count("replace"), "deletions": tags.count("delete"),
            "insertions": tags.count("insert")}


def _pairs(references, hypotheses) -> tuple[list, list]:
    references, hypotheses = [_tokens(r) for r in references], [_tokens(h) for h in hypotheses]
    if len(references) != len(hypotheses):
        raise ArgumentError(f"references and hypotheses differ in number: {len(references)} != {len(hypotheses)}")
    return references, hypotheses


def label_error_rate(references, hypotheses) -> float:
    """Total edit distance over the total reference length (the WER when tokens are words,
    the CER when they are characters); it can exceed 1 (insertions)."""
    references, hypotheses = _pairs(references, hypotheses)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ArgumentError("label_error_rate needs references with at least one label in all")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses)) / total


def sequence_accuracy(references, hypotheses) -> float:
    """Share of hypotheses equal to their reference, label for label."""
    references, hypotheses = _pairs(references, hypotheses)
    if not references:
        raise ArgumentError("sequence_accuracy needs at least one pair")
    return sum(tuple(r) == tuple(h) for r, h in zip(references, hypotheses)) / len(references)


def _length_bucket(length: int, bounds: Sequence[int] | None) -> str:
    if bounds is None:
        return str(length)
    lower = 0
    for upper in bounds:
        if length <= upper:
            return f"{lower}-{upper}" if lower < upper else str(upper)
        lower = upper + 1
    return f">{bounds[-1]}"


def sequence_scores(references, hypotheses, length_bounds: Sequence[int] | None = None) -> dict:
    """Every label-sequence metric of a test set in one dict (JSON-ready).

    ``n``, ``reference_labels``, ``edits``, ``substitutions``, ``deletions``, ``insertions``,
    ``label_error_rate`` (None when there is no reference label), ``sequence_accuracy``, and
    ``by_reference_length``: the same figures (n, reference_labels, edits, label_error_rate,
    sequence_accuracy) for each reference length, or with ``length_bounds`` (increasing upper
    bounds, e.g. (10, 50)) for the buckets 0-10, 11-50, >50."""
    references, hypotheses = _pairs(references, hypotheses)
    if length_bounds is not None:
        length_bounds = [int(b) for b in length_bounds]
        if not length_bounds or any(b >= c for b, c in zip(length_bounds, length_bounds[1:])) or length_bounds[0] < 0:
            raise ArgumentError(f"length_bounds must be increasing non-negative integers, got {length_bounds!r}")
    totals = {"n": 0, "reference_labels": 0, "edits": 0, "correct": 0,
              "substitutions": 0, "deletions": 0, "insertions": 0}
    buckets: dict[str, dict] = {}
    for reference, hypothesis in zip(references, hypotheses):
        ops = edit_operations(reference, hypothesis)
        edits = sum(ops.values())
        row = {"n": 1, "reference_labels": len(reference), "edits": edits, "correct": int(edits == 0)}
        bucket = buckets.setdefault(_length_bucket(len(reference), length_bounds),
                                    {"n": 0, "reference_labels": 0, "edits": 0, "correct": 0, "_order": len(reference)})
        for key, value in row.items():
            bucket[key] += value
            totals[key] += value
        for key, value in ops.items():
            totals[key] += value

    def rates(counts: dict) -> dict:
        labels, n = counts["reference_labels"], counts["n"]
        return {"label_error_rate": counts["edits"] / labels if labels else None,
                "sequence_accuracy": counts["correct"] / n if n else None}

    by_length = {name: {"n": b["n"], "reference_labels": b["reference_labels"], "edits": b["edits"], **rates(b)}
                 for name, b in sorted(buckets.items(), key=lambda item: item[1]["_order"])}
    correct = totals.pop("correct")
    return {**totals, **rates({**totals, "correct": correct}), "by_reference_length": by_length}
