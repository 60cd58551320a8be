"""PNG plots for a run folder: learning curves (the loss and the objective's validation
metrics) and the test confusion matrix of a classifier (matplotlib, the ``plots`` extra;
imported only when a run asks for plots)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")                  # files only; never needs a display
import matplotlib.pyplot as plt        # noqa: E402
import numpy as np                     # noqa: E402


def learning_curves(history: list[dict], path: Path) -> Path:
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, values, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training objective (cross-entropy, CTC)", title="loss")
    ax_loss.legend()
    # the objective's validation metrics (accuracy, macro_f1; label_error_rate, sequence_accuracy)
    keys = list(dict.fromkeys(k for r in history for k in r if k.startswith("val_") and k != "val_loss"))
    for key in keys:
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, values, marker="o", label=key[4:])
    ax_acc.set(xlabel="epoch", title="validation")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion(cm, labels: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: true label)."""
    cm = np.asarray(cm, dtype=np.float64)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.18 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7 if len(labels) > 30 else 9)
    ax.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) > 30 else 9)
    ax.set(xlabel="predicted", ylabel="true", title="test confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_run_plots(out: Path, history: list[dict], test: dict, labels: list[str]) -> list[Path]:
    paths = []
    if history:
        paths.append(learning_curves(history, Path(out) / "learning_curves.png"))
    if test.get("confusion"):
        paths.append(confusion(test["confusion"], labels, Path(out) / "confusion.png"))
    return paths
