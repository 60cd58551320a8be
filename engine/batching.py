"""Encoded examples, length-bucketed batches and padding.

An encoded example is a 1-D int array of token ids or a 2-D float array (frames, features);
a batch is time-major: inputs (T, B) or (T, B, F), lengths (B,), targets (B,) (or (T, B) for
per-step labels), with T the longest sequence in the batch and right padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError

@dataclass
class Encoded:
    """A split ready for the model: ``items[i]`` is one sequence, ``targets[i]`` its class id
    (or an int array of per-step ids). ``window`` ({"above": A, "size": S, "stride": R}, from
    the task's encoder, or None): a pooled classifier also reads each sequence longer than A
    steps as windows of S steps every R steps, and adds their log-probabilities to the whole
    sequence's (``evaluation.predict_proba``)."""
    items: list
    targets: list
    window: dict | None = None

    def __post_init__(self):
        if len(self.items) != len(self.targets):
            raise ArgumentError(f"items and targets differ in length: {len(self.items)} != {len(self.targets)}")
        if len(self.items) and any(len(item) == 0 for item in self.items):
            raise ArgumentError("every sequence must have at least one step (found an empty one)")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(item) for item in self.items), dtype=np.int64, count=len(self.items))


def window_starts(length: int, window: dict) -> list[int]:
    """Where the windows of a sequence of ``length`` steps start (see ``Encoded``): every
    ``stride`` steps while a whole window fits, and one more that ends with the sequence; none
    for a sequence of at most ``above`` steps."""
    if length <= window["above"]:
        return []
    size, stride = window["size"], window["stride"]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None,
                   bucket_size: int = 50) -> list[np.ndarray]:
    """Index batches of similar length, so that little of each batch is padding.

    With ``rng``: shuffle, sort by length within windows of ``bucket_size`` batches, cut into
    batches and shuffle the batch order (the usual bucket iterator). Without: sort all by
    length (evaluation order; results are mapped back by index).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    window = batch_size * bucket_size
    for start in range(0, n, window):
        part = order[start:start + window]
        order[start:start + window] = part[np.argsort(lengths[part], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(data: Encoded, indices, dtype=np.float32):
    """Pad the chosen sequences into one time-major batch: (inputs, lengths, targets)."""
    seqs = [data.items[i] for i in indices]
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    T, B = int(lengths.max()), len(seqs)
    first = np.asarray(seqs[0])
    if first.ndim == 1:                                     # token ids; 0 is padding
        inputs = np.zeros((T, B), dtype=np.int64)
    else:
        inputs = np.zeros((T, B, first.shape[1]), dtype=dtype)
    for b, s in enumerate(seqs):
        inputs[:len(s), b] = s
    tgt = [data.targets[i] for i in indices]
    if np.ndim(tgt[0]) == 0:
        targets = np.asarray(tgt, dtype=np.int64)
    else:
        targets = np.zeros((T, B), dtype=np.int64)
        for b, t in enumerate(tgt):
            targets[:len(t), b] = t
    return inputs, lengths, targets
