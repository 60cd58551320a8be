"""What the model sees in each epoch: the training split re-drawn per epoch, seeded.

An epoch sampler is a callable ``sampler(train, epoch) -> Encoded`` that the Trainer calls at
the start of every epoch; it returns as many sequences as ``train`` holds (so the number of
steps, and with it the learning-rate schedule, does not depend on the draw) and depends only on
its seed and the epoch, so a run resumed mid-epoch sees the same batches as an uninterrupted one.

- ``BalancedSampler``: draws the epoch's examples class by class with probabilities
  proportional to n_c ** temperature (n_c: the class's training examples). temperature 1 keeps
  the corpus's own proportions, 0 gives every class the same share; between, the long tail of
  small classes is seen more often without the big ones being starved (the sampling
  temperature of multilingual language models, e.g. XLM's alpha).
- ``RandomCrops``: cuts a share of the epoch's sequences to a random window: a start at a word
  boundary (or the beginning) and a length drawn log-uniformly between ``min_length`` and the
  sequence's length, so that the model learns from short inputs (a few words, the first
  characters of a sentence) as well as whole texts. Crops are applied to token ids; the word
  boundary is the id of the space character.
- ``RandomJoins``: extends a share of the epoch's sequences shorter than ``max_length`` with
  other training sequences of the same class (a boundary id between them), up to
  ``max_length``: a class whose sources hold only short strings is then seen in long text too,
  so the model does not learn that long text belongs to the classes that have long examples.
  Applied before the crops, which then also cut windows across a join.
- ``RandomSubstitution``: in a share of the epoch's sequences, replaces every id by its entry
  in a table (ids it leaves alone map to themselves): language-id uses it to drop the accents
  of a share of its training texts, text as it is typed on a keyboard without them.
- ``chain(...)`` applies several in turn.
"""

from __future__ import annotations

import numpy as np

from .batching import Encoded
from .errors import ArgumentError


class BalancedSampler:
    def __init__(self, temperature: float, seed: int):
        if not 0.0 <= temperature <= 1.0:
            raise ArgumentError(f"temperature must be in [0, 1], got {temperature!r}")
        self.temperature, self.seed = float(temperature), int(seed)

    def __call__(self, train: Encoded, epoch: int) -> Encoded:
        if self.temperature == 1.0:
            return train                      # the corpus's own proportions: nothing to draw
        targets = np.asarray(train.targets)
        classes, counts = np.unique(targets, return_counts=True)
        weights = counts.astype(np.float64) ** self.temperature
        rng = np.random.default_rng([self.seed, epoch, 1])
        # how many of the epoch's N draws each class gets (largest remainders, so they sum to N)
        share = weights / weights.sum() * len(train)
        take = np.floor(share).astype(np.int64)
        take[np.argsort(share - take)[::-1][:len(train) - take.sum()]] += 1
        chosen = []
        for c, n in zip(classes, take):
            members = np.flatnonzero(targets == c)
            # without replacement as far as the class goes, then again (every example is seen
            # before any is repeated)
            reps = [rng.permutation(members) for _ in range(-(-n // len(members)))]
            chosen.append(np.concatenate(reps)[:n] if reps else members[:0])
        idx = np.concatenate(chosen)
        return Encoded([train.items[i] for i in idx], [train.targets[i] for i in idx])


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ArgumentError(f"fraction must be in [0, 1], got {fraction!r}")


def _change_a_share(train: Encoded, fraction: float, rng: np.random.Generator, change) -> Encoded:
    """``train`` with ``change(sequence)`` in place of a random ``fraction`` of its sequences."""
    chosen = rng.random(len(train)) < fraction
    items = list(train.items)
    for i in np.flatnonzero(chosen):
        items[i] = change(items[i])
    return Encoded(items, train.targets)


class RandomCrops:
    def __init__(self, fraction: float, min_length: int, boundary_id: int | None, seed: int):
        _check_fraction(fraction)
        if min_length < 1:
            raise ArgumentError(f"min_length must be >= 1, got {min_length!r}")
        self.fraction, self.min_length = float(fraction), int(min_length)
        self.boundary_id, self.seed = boundary_id, int(seed)

    def __call__(self, train: Encoded, epoch: int) -> Encoded:
        if self.fraction == 0.0:
            return train
        rng = np.random.default_rng([self.seed, epoch, 2])
        return _change_a_share(train, self.fraction, rng, lambda seq: self.crop(seq, rng))

    def crop(self, seq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = len(seq)
        if n <= self.min_length:
            return seq
        starts = [0]
        if self.boundary_id is not None:
            starts += list(np.flatnonzero(seq[:n - self.min_length] == self.boundary_id) + 1)
        start = int(starts[rng.integers(len(starts))])
        room = n - start
        length = int(round(np.exp(rng.uniform(np.log(self.min_length), np.log(room))))) \
            if room > self.min_length else room
        return seq[start:start + length]


class RandomJoins:
    #: Joins per sequence at most: a guard against classes of one- or two-id sequences.
    MAX_JOINS = 16

    def __init__(self, fraction: float, max_length: int, boundary_id: int | None, seed: int):
        _check_fraction(fraction)
        if max_length < 1:
            raise ArgumentError(f"max_length must be >= 1, got {max_length!r}")
        self.fraction, self.max_length = float(fraction), int(max_length)
        self.boundary_id, self.seed = boundary_id, int(seed)

    def __call__(self, train: Encoded, epoch: int) -> Encoded:
        if self.fraction == 0.0:
            return train
        rng = np.random.default_rng([self.seed, epoch, 4])
        targets = np.asarray(train.targets)
        chosen = np.flatnonzero(rng.random(len(train)) < self.fraction)
        _, inverse, counts = np.unique(targets, return_inverse=True, return_counts=True)
        # each class's sequences, in index order: one sort, not one scan of them all per class
        members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
        between = [] if self.boundary_id is None else [np.array([self.boundary_id], dtype=np.int64)]
        items = list(train.items)
        for i in chosen:
            pool, parts, length = members[inverse[i]], [items[i]], len(items[i])
            for _ in range(self.MAX_JOINS):
                if length >= self.max_length:
                    break
                other = train.items[pool[rng.integers(len(pool))]]   # partners as they came in
                parts += [*between, other]
                length += len(between) + len(other)
            if len(parts) > 1:
                items[i] = np.concatenate(parts)[:self.max_length]
        return Encoded(items, train.targets)


class RandomSubstitution:
    def __init__(self, fraction: float, table: np.ndarray, seed: int):
        _check_fraction(fraction)
        table = np.asarray(table)
        if table.ndim != 1 or table.dtype.kind not in "iu" or (len(table) and not
                                                               (0 <= table.min() and table.max() < len(table))):
            raise ArgumentError("table must be a 1-D array of ids, each one an index into the table")
        self.fraction, self.table, self.seed = float(fraction), table.astype(np.int64), int(seed)

    def __call__(self, train: Encoded, epoch: int) -> Encoded:
        if self.fraction == 0.0:
            return train
        rng = np.random.default_rng([self.seed, epoch, 3])
        return _change_a_share(train, self.fraction, rng, lambda seq: self.table[seq])


def chain(*samplers):
    """The samplers applied in turn (None entries are skipped); None when there are none."""
    active = [s for s in samplers if s is not None]
    if not active:
        return None

    def sample(train: Encoded, epoch: int) -> Encoded:
        for s in active:
            train = s(train, epoch)
        return train
    return sample


__all__ = ["BalancedSampler", "RandomCrops", "RandomJoins", "RandomSubstitution", "chain"]
