"""The training loop: batches, loss, backpropagation, clipping, the optimizer and schedule,
evaluation, and callbacks that watch it (progress, logs, checkpoints, early stopping).

Reproducibility: epoch e shuffles with ``default_rng([seed, e])`` and dropout draws from the
model's generator, whose state is checkpointed, so a run resumed from any checkpoint (also
one saved mid-epoch) continues exactly as the uninterrupted run would on the same backend.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass, field

import numpy as np

from .batching import Encoded, bucket_batches, collate
from .errors import DataError, TrainingDiverged
from .evaluation import evaluate
from .optim import Optimizer, clip_grad_norm, lr_multiplier
from .settings import TrainerSettings


@dataclass
class TrainState:
    epoch: int = 0                    # epochs completed
    batch: int = 0                    # batches completed in the current epoch
    step: int = 0                     # optimizer steps in all
    best: float | None = None         # best monitored validation metric
    best_epoch: int | None = None
    bad_epochs: int = 0               # epochs since the best (early stopping)
    history: list = field(default_factory=list)
    stopped: str | None = None        # why training ended early: "interrupted", "early_stopping"


class Callback:
    """Hooks the trainer calls; override what you need. ``trainer.state`` is the TrainState."""

    def on_train_begin(self, trainer): ...
    def on_epoch_begin(self, trainer, num_batches: int): ...
    def on_batch_end(self, trainer, loss: float, lr: float): ...
    def on_epoch_end(self, trainer, record: dict): ...
    def on_stop(self, trainer): ...
    def on_train_end(self, trainer): ...


class Trainer:
    def __init__(self, model, optimizer: Optimizer, settings: TrainerSettings | None = None,
                 callbacks=(), state: TrainState | None = None, sampler=None):
        """``sampler(train, epoch) -> Encoded`` re-draws the training split for each epoch
        (engine/sampling.py: class balance, random crops); None trains on it as it is."""
        self.model = model
        self.optimizer = optimizer
        self.settings = settings or TrainerSettings()
        self.sampler = sampler
        self.callbacks = list(callbacks)
        self.state = state or TrainState()
        self._stop_reason: str | None = None

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop after the current batch (safe point: parameters and state agree)."""
        self._stop_reason = reason

    def _emit(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def total_steps(self, n_train: int) -> int:
        return self.settings.epochs * math.ceil(n_train / self.settings.batch_size)

    def fit(self, train: Encoded, validation: Encoded | None = None) -> TrainState:
        """Train until ``settings.epochs`` epochs are done (counting those already in
        ``state``), early stopping, or Ctrl-C (which stops after the current batch)."""
        if len(train) == 0:
            raise DataError("the training set is empty")
        cfg, st = self.settings, self.state
        st.stopped = None
        total = self.total_steps(len(train))
        previous = _install_sigint(self)
        try:
            # one backend session for the whole run: the cpu backend reuses a step's
            # arrays for the next step there
            with self.model.backend.session():
                self._emit("on_train_begin")
                while st.epoch < cfg.epochs and self._stop_reason is None:
                    epoch_train = train if self.sampler is None else self.sampler(train, st.epoch)
                    batches = bucket_batches(epoch_train.lengths, cfg.batch_size,
                                             np.random.default_rng([cfg.seed, st.epoch]))
                    self._emit("on_epoch_begin", len(batches))
                    losses = []
                    for idx in batches[st.batch:]:
                        loss, lr = self._train_step(epoch_train, idx, total)
                        losses.append(loss)
                        st.batch += 1
                        st.step += 1
                        self._emit("on_batch_end", loss, lr)
                        if self._stop_reason is not None:
                            break
                    if self._stop_reason is not None:
                        break
                    record = {"epoch": st.epoch + 1, "step": st.step,
                              "train_loss": float(np.mean(losses)) if losses else None}
                    if validation is not None and len(validation):
                        record.update({f"val_{k}": v for k, v in self.evaluate(validation).items()
                                       if k in ("loss", "accuracy", "macro_f1")})
                    st.epoch += 1
                    st.batch = 0
                    self._update_best(record)
                    st.history.append(record)
                    self._emit("on_epoch_end", record)
                if self._stop_reason is not None:
                    st.stopped = self._stop_reason
                    self._emit("on_stop")
        finally:
            self._stop_reason = None
            _restore_sigint(previous)
        self._emit("on_train_end")
        return st

    def _train_step(self, train: Encoded, idx, total_steps: int) -> tuple[float, float]:
        cfg, model = self.settings, self.model
        inputs, lengths, targets = collate(train, idx, model.dtype)
        logits = model.forward(inputs, lengths, training=True)
        loss, d_logits = model.loss(logits, targets, lengths)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss} at step {self.state.step + 1} (epoch "
                f"{self.state.epoch + 1}); training stopped and the last good checkpoint was kept. "
                f"Try a lower --lr or a tighter clip_norm.")
        grads = model.backward(d_logits)
        if cfg.clip_norm is not None:
            clip_grad_norm(grads, cfg.clip_norm, model.backend.xp)
        lr = self.optimizer.lr * lr_multiplier(self.state.step, total_steps, cfg.schedule, cfg.warmup_steps,
                                               cfg.step_size, cfg.gamma)
        self.optimizer.step(model.parameters(), grads, lr)
        return loss, lr

    def _update_best(self, record: dict) -> None:
        st, key = self.state, f"val_{self.settings.monitor}"
        value = record.get(key)
        if value is None:
            return
        better = st.best is None or (value < st.best if self.settings.monitor == "loss" else value > st.best)
        record["best"] = bool(better)
        if better:
            st.best, st.best_epoch, st.bad_epochs = value, record["epoch"], 0
        else:
            st.bad_epochs += 1

    def evaluate(self, data: Encoded) -> dict:
        return evaluate(self.model, data, self.settings.eval_batch_size)


def _install_sigint(trainer: Trainer):
    """Ctrl-C asks the trainer to stop at the next safe point; a second Ctrl-C interrupts."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if trainer._stop_reason is not None:
            raise KeyboardInterrupt
        trainer.request_stop("interrupted")
    signal.signal(signal.SIGINT, handler)
    return previous


def _restore_sigint(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
