"""The training loop: batches, loss, backpropagation, clipping, the optimizer and schedule,
evaluation, and callbacks that watch it (progress, logs, checkpoints, early stopping).

Reproducibility: epoch e shuffles with ``default_rng([seed, e])`` and dropout draws from the
model's generator, whose state is checkpointed, so a run resumed from any checkpoint (also
one saved mid-epoch) continues exactly as the uninterrupted run would on the same backend.

Several ranks (``comm`` of more than one rank, engine/distributed.py): each takes its share
of every global batch and a ``DataParallel`` combines the gradients into the global batch's
mean, so the batches, the schedule and ``TrainState`` (whose ``batch`` counts global
batches) mean what they mean in one process, and a run resumes at any world size. A stop
(Ctrl-C, a callback) is voted on with a step's gradients or at an epoch's end, so that every
rank stops after the same batch; validation is sharded across the ranks.

What the loss is, what validation reports and how a share of a batch is weighted are the
``objective``'s (engine/objectives.py; default: classification, the model's own
cross-entropy); whether a smaller or a larger monitored metric is better, ``settings.MONITORS``'s.
"""

from __future__ import annotations

import math
import signal
import threading
from dataclasses import dataclass, field

import numpy as np

from .batching import Encoded, bucket_batches, collate
from .distributed import Communicator, DataParallel, SingleProcess
from .errors import ConfigError, DataError, TrainingDiverged
from .objectives import CLASSIFICATION, Objective
from .optim import Optimizer, clip_grad_norm, lr_multiplier
from .settings import MONITORS, TrainerSettings


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
    """Trains ``model`` with ``optimizer``. ``comm`` (engine/distributed.py; default: one
    process) makes it one rank of a data-parallel run; every rank then builds its own Trainer
    on the same data, and only the root's callbacks should write files or print."""

    def __init__(self, model, optimizer: Optimizer, settings: TrainerSettings | None = None,
                 callbacks=(), state: TrainState | None = None, sampler=None,
                 comm: Communicator | None = None, objective: Objective | None = None):
        """``sampler(train, epoch) -> Encoded`` re-draws the training split for each epoch
        (engine/sampling.py: class balance, random crops); None trains on it as it is.
        ``objective``: the loss and the validation metrics (engine/objectives.py; default
        classification)."""
        self.model = model
        self.optimizer = optimizer
        self.settings = settings or TrainerSettings()
        self.objective = objective or CLASSIFICATION
        self.sampler = sampler
        self.callbacks = list(callbacks)
        self.state = state or TrainState()
        self.comm = comm or SingleProcess()
        self.parallel: DataParallel | None = None
        self._stop_reason: str | None = None
        self._stop_agreed = False

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop after the current batch (safe point: parameters and state agree); with
        several ranks, after the batch at which every rank has heard of it."""
        self._stop_reason = reason

    def _stopping(self) -> bool:
        if self.parallel is None:
            return self._stop_reason is not None
        return self._stop_agreed

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
        if self.comm.size > 1 and cfg.batch_size < self.comm.size:
            raise ConfigError(f"batch_size {cfg.batch_size} is the global batch, shared by "
                              f"{self.comm.size} ranks: it must be at least the number of ranks")
        if validation is not None and len(validation) and cfg.monitor not in self.objective.metrics:
            raise ConfigError(f"monitor {cfg.monitor!r} is not a validation metric of the {self.objective.name} "
                              f"objective; it reports {', '.join(self.objective.metrics)}")
        if cfg.label_smoothing and not self.objective.smooths_labels:
            raise ConfigError(f"label_smoothing {cfg.label_smoothing} applies to classification; the "
                              f"{self.objective.name} objective of this task has no label smoothing (set it to 0)")
        st.stopped = None
        self._stop_agreed = False
        total = self.total_steps(len(train))
        previous = _install_sigint(self)
        try:
            # one backend session for the whole run: the cpu backend reuses a step's
            # arrays for the next step there
            with self.model.backend.session():
                if self.comm.size > 1:
                    self.parallel = DataParallel(self.comm, self.model, self.optimizer)
                    self.parallel.start(self)
                self._emit("on_train_begin")
                while st.epoch < cfg.epochs and not self._stopping():
                    epoch_train = train if self.sampler is None else self.sampler(train, st.epoch)
                    lengths = epoch_train.lengths
                    batches = bucket_batches(lengths, cfg.batch_size,
                                             np.random.default_rng([cfg.seed, st.epoch]))
                    self._emit("on_epoch_begin", len(batches))
                    losses = []
                    for idx in batches[st.batch:]:
                        loss, lr = self._train_step(epoch_train, lengths, idx, total)
                        losses.append(loss)
                        st.batch += 1
                        st.step += 1
                        if self.parallel is not None and st.step % self.parallel.check_every == 0:
                            self.parallel.check(self)
                        self._emit("on_batch_end", loss, lr)
                        if self._stopping():
                            break
                    if self._stopping():
                        break
                    record = {"epoch": st.epoch + 1, "step": st.step,
                              "train_loss": float(np.mean(losses)) if losses else None}
                    if validation is not None and len(validation):
                        record.update({f"val_{k}": v for k, v in self.evaluate(validation).items()
                                       if k in self.objective.metrics})
                    st.epoch += 1
                    st.batch = 0
                    self._update_best(record)
                    st.history.append(record)
                    if self.parallel is not None:
                        self.parallel.check(self)          # before a checkpoint is written
                    self._emit("on_epoch_end", record)
                    if self.parallel is not None:
                        self._stop_agreed = self.parallel.agree(self._stop_reason is not None)
                if self._stopping():
                    st.stopped = self._stop_reason or "interrupted"
                    self._emit("on_stop")
        finally:
            self._stop_reason = None
            self._stop_agreed = False
            _restore_sigint(previous)
        self._emit("on_train_end")
        return st

    def _train_step(self, train: Encoded, lengths: np.ndarray, idx, total_steps: int) -> tuple[float, float]:
        """One optimizer step on the global batch ``idx`` (this rank's share of it when
        there are several ranks); ``lengths`` are the training set's."""
        cfg, model, parallel = self.settings, self.model, self.parallel
        rows, window = (idx, None) if parallel is None else parallel.share(idx, lengths)
        grads, loss = None, 0.0
        if len(rows):
            inputs, row_lengths, targets = collate(train, rows, model.dtype)
            logits = model.forward(inputs, row_lengths, training=True,
                                   **({} if window is None else {"window": window}))
            loss, d_logits = self.objective.loss(model, logits, targets, row_lengths, cfg.label_smoothing)
            if parallel is None:
                self._check_finite(loss)
            grads = model.backward(d_logits)
        if parallel is not None:
            weight = self.objective.loss_weight
            fraction = weight(model, lengths[rows]) / weight(model, lengths[idx])
            grads, loss, stop = parallel.reduce(grads, loss, fraction, self._stop_reason is not None)
            self._stop_agreed = self._stop_agreed or stop
            if parallel.empty_shares(len(idx)):
                parallel.sync_generator()
            self._check_finite(loss)
        if cfg.clip_norm is not None:
            clip_grad_norm(grads, cfg.clip_norm, model.backend)
        lr = self.optimizer.lr * lr_multiplier(self.state.step, total_steps, cfg.schedule, cfg.warmup_steps,
                                               cfg.step_size, cfg.gamma)
        self.optimizer.step(model.parameters(), grads, lr, backend=model.backend)
        return loss, lr

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss} at step {self.state.step + 1} (epoch "
                f"{self.state.epoch + 1}); training stopped and the last good checkpoint was kept. "
                f"Try a lower --lr or a tighter clip_norm.")

    def _update_best(self, record: dict) -> None:
        st, key = self.state, f"val_{self.settings.monitor}"
        value = record.get(key)
        if value is None:
            return
        smaller = MONITORS[self.settings.monitor] == "min"
        better = st.best is None or (value < st.best if smaller else value > st.best)
        record["best"] = bool(better)
        if better:
            st.best, st.best_epoch, st.bad_epochs = value, record["epoch"], 0
        else:
            st.bad_epochs += 1

    def evaluate(self, data: Encoded) -> dict:
        return self.objective.evaluate(self.model, data, self.settings.eval_batch_size, self.comm)


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
