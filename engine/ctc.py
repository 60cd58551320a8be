"""The CTC loss (connectionist temporal classification, Graves et al. 2006) with
``torch.nn.CTCLoss``'s semantics, for training a per-step head on label sequences of unknown
alignment.

Shapes (time-major, as ``SequenceClassifier(per_step=True).forward`` returns them):
    T steps, B sequences, C classes including the blank, S_b labels of sequence b
    logits          (T, B, C)  the head's unnormalised scores, float32 or float64
    input_lengths   (B,)       valid steps of each sequence, 1 <= T_b <= T (right padding)
    targets         one of: (B, S_max) padded, (sum S_b,) concatenated (both with
                    ``target_lengths``), or a sequence of B 1-D label sequences
    target_lengths  (B,)       S_b >= 0

Choices, and why:

* **Logits in, the gradient with respect to the logits out.** torch's ``ctc_loss`` takes
  log-probabilities and is meant to follow a ``log_softmax``; here the log_softmax is part of
  the loss. Its gradient with respect to the logits is ``softmax - posterior occupancy``:
  bounded, one pass, and exactly what ``SequenceClassifier.backward(d_logits)`` takes. The
  loss value equals torch's ``ctc_loss(log_softmax(logits), ...)`` (tested in float64).
* **Reductions as torch's**: ``mean`` divides each sequence's loss by its target length
  (at least 1) and averages over the batch; ``sum`` adds; ``none`` returns the (B,) losses,
  and the gradient is then that of their sum.
* **A target the input cannot hold** (S_b labels plus one blank between each pair of equal
  neighbours need more than T_b steps) has no alignment: torch returns an infinite loss.
  Here ``zero_infinity=True`` gives it loss 0 and gradient 0 (torch's option); otherwise the
  loss raises a ``DataError`` naming the sequence and the steps it needs, because in training
  an infinite loss stops the run without saying which example caused it. ``min_input_lengths``
  lets a caller check a whole data set before training.
* **On the host, compiled with Numba** (``ctc_kernels``: one thread per sequence of the
  batch, float64 inside). The recursions are sequential in time and tiny per step
  (2 S_b + 1 states), a poor fit for a GPU kernel per step. On the ``cuda`` backend the
  logits come to the host and the gradient goes back: T B C itemsize bytes each way per
  batch. On the default connected digit strings (batches of 32 bucketed by length, C 11,
  float32) that is 113 kB each way on average (T 80; at most 325 kB), 28 MB per epoch of
  4000 strings: tens of microseconds per batch over PCIe, small beside the LSTM's own time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ArgumentError, ArgumentTypeError, DataError

REDUCTIONS = ("mean", "sum", "none")


def _int_vector(values, name: str, size: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ArgumentError(f"{name} must be a 1-D array of integers, got dtype {array.dtype} shape {array.shape}")
    if size is not None and array.shape[0] != size:
        raise ArgumentError(f"{name} must have one entry per sequence ({size}), got {array.shape[0]}")
    return array.astype(np.int64)


def flatten_targets(targets, target_lengths=None, batch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Any of the accepted target layouts as (labels (sum S_b,), starts (B,), lengths (B,)).

    ``targets``: (B, S_max) padded or (sum S_b,) concatenated, both with ``target_lengths``
    (as torch); or a list/tuple of B 1-D label sequences (``target_lengths`` then optional)."""
    if isinstance(targets, (list, tuple)):
        seqs = [np.asarray(seq) for seq in targets]
        bad = [b for b, seq in enumerate(seqs) if seq.ndim != 1 or (seq.size and seq.dtype.kind not in "iu")]
        if bad:
            raise ArgumentError(f"targets[{bad[0]}] must be a 1-D sequence of integer labels, "
                                f"got dtype {seqs[bad[0]].dtype} shape {seqs[bad[0]].shape}")
        lengths = np.array([len(seq) for seq in seqs], dtype=np.int64)
        if target_lengths is not None and not np.array_equal(_int_vector(target_lengths, "target_lengths"), lengths):
            raise ArgumentError("target_lengths disagrees with the lengths of the target sequences")
        labels = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
    else:
        array = np.asarray(targets)
        if array.size and array.dtype.kind not in "iu":
            raise ArgumentError(f"targets must hold integer labels, got dtype {array.dtype}")
        if target_lengths is None:
            raise ArgumentError("target_lengths is needed with padded (B, S) or concatenated targets")
        lengths = _int_vector(target_lengths, "target_lengths")
        if lengths.size and lengths.min() < 0:
            raise ArgumentError(f"target_lengths must be >= 0, got {lengths.min()}")
        if array.ndim == 2:
            if array.shape[0] != len(lengths):
                raise ArgumentError(f"padded targets must be (B, S) with B = {len(lengths)}, got {array.shape}")
            if lengths.size and lengths.max() > array.shape[1]:
                raise ArgumentError(f"target_lengths reach {lengths.max()}, beyond the padded width {array.shape[1]}")
            labels = np.concatenate([array[b, :n] for b, n in enumerate(lengths)]).astype(np.int64) \
                if len(lengths) else np.zeros(0, np.int64)
        elif array.ndim == 1:
            if int(lengths.sum()) != array.shape[0]:
                raise ArgumentError(f"target_lengths sum to {int(lengths.sum())}, but the concatenated "
                                    f"targets hold {array.shape[0]} labels")
            labels = array.astype(np.int64)
        else:
            raise ArgumentError(f"targets must be (B, S) padded, (sum S,) concatenated or a list of "
                                f"sequences, got shape {array.shape}")
    if batch is not None and len(lengths) != batch:
        raise ArgumentError(f"targets hold {len(lengths)} sequences, but the batch has {batch}")
    starts = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        starts[1:] = np.cumsum(lengths)[:-1]
    return labels, starts, lengths


def min_input_lengths(targets, target_lengths=None) -> np.ndarray:
    """(B,) the fewest steps in which each label sequence can be emitted: its length plus
    one blank between every two equal neighbours (CTC collapses repeats otherwise)."""
    labels, starts, lengths = flatten_targets(targets, target_lengths)
    repeats = np.zeros(len(lengths), dtype=np.int64)
    if labels.size > 1:
        same = labels[1:] == labels[:-1]
        owner = np.repeat(np.arange(len(lengths)), lengths)
        within = owner[1:] == owner[:-1]
        np.add.at(repeats, owner[1:][same & within], 1)
    return lengths + repeats


def check_blank(blank, num_classes: int) -> None:
    """The blank must be one of the class ids."""
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)) or not 0 <= blank < num_classes:
        raise ArgumentError(f"blank must be a class id in [0, {num_classes}), got {blank!r}")


def _describe_infeasible(bad: np.ndarray, needed: np.ndarray, lengths: np.ndarray, input_lengths: np.ndarray) -> str:
    b = int(bad[0])
    repeats = int(needed[b] - lengths[b])
    more = f" ({len(bad) - 1} more sequence(s) of the batch too: {bad[1:6].tolist()})" if len(bad) > 1 else ""
    return (f"CTC: sequence {b} of the batch has {int(lengths[b])} target labels"
            + (f" with {repeats} repeated neighbour(s) that need a blank between them" if repeats else "")
            + f", so it needs at least {int(needed[b])} input steps, but its input has {int(input_lengths[b])}"
            + f"{more}; no alignment exists (infinite loss). Drop or shorten such examples, or pass "
              "zero_infinity=True to give them zero loss and gradient")


def ctc_loss(logits, targets, input_lengths, target_lengths=None, *, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False, backend=None) -> tuple[Any, Any]:
    """CTC loss of ``logits`` (T, B, C) against label sequences, and its gradient.

    Returns ``(loss, d_logits)``: ``loss`` a float (``mean``, ``sum``) or a (B,) float64 array
    (``none``); ``d_logits`` (T, B, C) in the dtype of ``logits``, zero at padded steps, the
    gradient of the returned loss (of the sum of the losses for ``none``). With ``backend``
    (a Backend, e.g. ``model.backend``) ``logits`` may be that backend's array; it is moved
    to the host with ``backend.to_numpy`` and ``d_logits`` is returned with ``backend.asarray``.
    See the module docstring for the layouts of ``targets`` and for infeasible targets."""
    if reduction not in REDUCTIONS:
        raise ArgumentError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    host = np.asarray(backend.to_numpy(logits) if backend is not None else logits)
    if host.dtype not in (np.float32, np.float64):
        raise ArgumentTypeError(f"logits must be float32 or float64, got {host.dtype}")
    if host.ndim != 3 or 0 in host.shape:
        raise ArgumentError(f"logits must be (T, B, C) with every size >= 1, got shape {host.shape}")
    T, B, C = host.shape
    check_blank(blank, C)
    input_lengths = _int_vector(input_lengths, "input_lengths", B)
    if input_lengths.min() < 1 or input_lengths.max() > T:
        raise ArgumentError(f"input_lengths must be in [1, T={T}], got {input_lengths.min()}..{input_lengths.max()}")
    labels, starts, lengths = flatten_targets(targets, target_lengths, B)
    if labels.size and (labels.min() < 0 or labels.max() >= C or (labels == blank).any()):
        owner = np.repeat(np.arange(B), lengths)
        b = int(owner[(labels < 0) | (labels >= C) | (labels == blank)][0])
        raise ArgumentError(f"targets of sequence {b} must be class ids in [0, {C}) other than the "
                            f"blank {blank}, got {labels[starts[b]:starts[b] + lengths[b]].tolist()}")
    needed = min_input_lengths(labels, lengths)
    infeasible = np.flatnonzero(needed > input_lengths)
    if infeasible.size and not zero_infinity:
        raise DataError(_describe_infeasible(infeasible, needed, lengths, input_lengths))

    per_target = 1.0 / np.maximum(lengths, 1)
    scale = {"mean": per_target / B, "sum": np.ones(B), "none": np.ones(B)}[reduction]
    from .ctc_kernels import ctc_loss_kernel               # Numba: imported when first used
    nll = np.empty(B, dtype=np.float64)
    d_logits = np.empty_like(host)
    ctc_loss_kernel(np.ascontiguousarray(host), labels, starts, lengths, input_lengths, int(blank),
                    scale.astype(np.float64), nll, d_logits)
    if zero_infinity:
        nll[infeasible] = 0.0                               # the kernel left their gradient at 0
    if reduction == "none":
        loss: Any = nll
    elif reduction == "sum":
        loss = float(nll.sum())
    else:
        loss = float((nll * per_target).mean())
    if backend is not None:
        d_logits = backend.asarray(d_logits, dtype=host.dtype)
    return loss, d_logits


__all__ = ["REDUCTIONS", "ctc_loss", "flatten_targets", "min_input_lengths", "check_blank"]
