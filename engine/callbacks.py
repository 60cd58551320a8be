"""Callbacks for the trainer: a progress bar, a metrics log, checkpoints and early stopping."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .checkpoint import Checkpoint, atomic_write, save_checkpoint
from .errors import ArgumentError
from .trainer import Callback


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr; tqdm turns itself off when stderr is not a terminal."""

    def __init__(self, disable: bool | None = None):
        self.disable = disable
        self.bar = None

    def on_epoch_begin(self, trainer, num_batches):
        from tqdm.auto import tqdm
        st = trainer.state
        self.bar = tqdm(total=num_batches, initial=st.batch, desc=f"epoch {st.epoch + 1}/{trainer.settings.epochs}",
                        unit="batch", file=sys.stderr, disable=self.disable, leave=False, dynamic_ncols=True)

    def on_batch_end(self, trainer, loss, lr):
        if self.bar is not None:
            self.bar.update(1)
            if trainer.state.batch % 10 == 0:
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)

    def on_epoch_end(self, trainer, record):
        self._close()
        if self.disable is not True:
            parts = [f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float)]
            print(f"epoch {record['epoch']}: " + " ".join(parts), file=sys.stderr)

    def on_stop(self, trainer):
        self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog(Callback):
    """One JSON line per epoch (train loss, validation metrics, lr, step) in ``path``.

    At the start of training the file is rewritten from the trainer's history (atomically),
    so that after a crash and ``--resume`` it holds exactly the epochs of the checkpoint the
    run continues from: no epoch twice, no half-written line."""

    def __init__(self, path):
        self.path = Path(path)

    def on_train_begin(self, trainer):
        history = trainer.state.history
        if history or self.path.exists():
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in history).encode("utf-8"))

    def on_epoch_end(self, trainer, record):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class EarlyStopping(Callback):
    """Stop when the monitored validation metric has not improved for ``patience`` epochs."""

    def __init__(self, patience: int):
        if patience < 1:
            raise ArgumentError(f"patience must be >= 1, got {patience!r}")
        self.patience = patience

    def on_epoch_end(self, trainer, record):
        if trainer.state.bad_epochs >= self.patience:
            trainer.request_stop("early_stopping")


def snapshot(trainer, task: dict, run: dict) -> Checkpoint:
    """Everything needed to predict with the model or to resume its training."""
    model, opt = trainer.model, trainer.optimizer
    to_np = model.backend.to_numpy
    train = {
        "state": asdict(trainer.state),
        "config": asdict(trainer.settings),
        "optimizer": {"name": opt.name, "steps": opt.steps, **opt.hyperparameters()},
        "rng": model.rng.bit_generator.state,
        "run": run,
    }
    slots = {slot: {k: np.array(to_np(v)) for k, v in table.items()} for slot, table in opt.state.items()}
    return Checkpoint(model.state_dict(), model.config, task, train, slots)


class Checkpointer(Callback):
    """Writes ``last.safetensors`` after every epoch and on a stop (Ctrl-C, early stopping),
    and ``best.safetensors`` whenever the monitored validation metric improves. A run that
    diverges raises before any of these, so the files on disk stay the last good ones."""

    def __init__(self, folder, task: dict, run: dict):
        self.folder = Path(folder)
        self.task, self.run = task, run

    @property
    def last(self) -> Path:
        return self.folder / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.folder / "best.safetensors"

    def on_epoch_end(self, trainer, record):
        ckpt = snapshot(trainer, self.task, self.run)
        save_checkpoint(self.last, ckpt)
        if record.get("best", "val_loss" not in record and "val_accuracy" not in record):
            save_checkpoint(self.best, ckpt)

    def on_stop(self, trainer):
        save_checkpoint(self.last, snapshot(trainer, self.task, self.run))
