"""Classification metrics from integer labels: accuracy, macro-F1, the confusion matrix."""

from __future__ import annotations

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
