"""Transcribed speech for recognition: vocabularies of characters or words, and the data
users bring (audio files with transcripts, or feature sequences with label sequences).

An example's label is its **transcript as a string** (``"4071"``, ``"HELLO WORLD"``), NFC
normalised with runs of whitespace made one space; a ``Vocabulary`` says how it splits into
tokens (characters, the space among them, or words) and maps tokens to class ids. Labels
stay strings so that they fit ``Examples`` and print, export and compare as they are.

Sources (``load_transcribed_data`` picks one from its argument):

* a TSV file ``path<TAB>transcript[<TAB>split]`` (paths relative to the TSV's folder, an
  optional header line ``path<TAB>transcript...``); without a split column the split
  follows a stable hash of the path;
* a LibriSpeech folder: ``<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` whose lines are
  ``<utterance-id> <TRANSCRIPT>``, with the audio ``<utterance-id>.flac`` (or ``.wav``) beside
  it. Subset folders named ``train-*``, ``dev-*`` and ``test-*`` (LibriSpeech's own) give the
  splits; otherwise the split follows a stable hash of the speaker, so no speaker is in two;
* an ``.npz`` of feature sequences with transcripts or label sequences
  (``load_transcript_npz``; the format of ``speech.save_sequence_npz``, extended).

Audio becomes features with ``audio_features.extract_features`` (25 ms / 10 ms MFCCs and
deltas with librosa; ``pip install "lstm-engine[audio]"``). Inputs are float32 arrays
(frames, features).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, DataError, DataNotFoundError
from . import SPLITS, Examples, Splits
from .audio_features import FeatureConfig, extract_features
from .speech import SPLIT_SEED, _check_frames, _label_strings, _read_npz, _sequences, _split_names
from .text_formats import DEFAULT_FRACTIONS, _lines, check_fractions, split_column, split_for_key

VOCABULARY_KINDS = ("characters", "words")
AUDIO_SUFFIXES = (".flac", ".wav")
ACCEPTED_LAYOUTS = (
    "a TSV file path<TAB>transcript[<TAB>split] (or a folder holding transcripts.tsv), "
    "a LibriSpeech folder (<speaker>/<chapter>/*.trans.txt beside the audio), "
    "or an .npz with X, lengths and either y (transcripts) or targets and target_lengths"
)
_LIBRISPEECH_SUBSET = re.compile(r"^(train|dev|test)-", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """NFC, surrounding whitespace removed, every run of whitespace one space."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", str(text))).strip()


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Tokens of transcripts and their class ids: id 0 is the CTC blank, token k is id k+1.

    ``kind`` "characters" (every character, the space included) or "words" (split on
    whitespace). ``unknown``: a token that stands for any token not in ``tokens`` (it is one of
    them); None makes an unknown token an error. ``to_dict``/``from_dict`` carry it in a
    checkpoint's JSON."""
    kind: str
    tokens: tuple[str, ...]
    unknown: str | None = None

    BLANK = 0

    def __post_init__(self):
        if self.kind not in VOCABULARY_KINDS:
            raise ArgumentError(f"vocabulary kind must be one of {VOCABULARY_KINDS}, got {self.kind!r}")
        if len(set(self.tokens)) != len(self.tokens) or not self.tokens:
            raise ArgumentError("vocabulary tokens must be distinct, and at least one")
        if self.unknown is not None and self.unknown not in self.tokens:
            raise ArgumentError(f"the unknown token {self.unknown!r} must be one of the tokens")
        object.__setattr__(self, "_ids", {token: k + 1 for k, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, transcripts: Iterable[str], kind: str = "characters", min_count: int = 1,
              unknown: str | None = None) -> "Vocabulary":
        """The tokens seen at least ``min_count`` times in ``transcripts`` (the training
        split's), sorted; with ``unknown`` (e.g. "<unk>") rarer ones map to it."""
        if kind not in VOCABULARY_KINDS:
            raise ArgumentError(f"vocabulary kind must be one of {VOCABULARY_KINDS}, got {kind!r}")
        counts = Counter(token for text in transcripts for token in tokenize(text, kind))
        tokens = sorted(token for token, n in counts.items() if n >= min_count)
        if unknown is not None:
            if unknown in counts:
                raise ArgumentError(f"the unknown token {unknown!r} occurs in the transcripts")
            tokens.append(unknown)
        if not tokens:
            raise DataError("no transcript holds a token: cannot build a vocabulary")
        return cls(kind, tuple(tokens), unknown)

    @property
    def num_classes(self) -> int:
        """Classes of the per-step head: the tokens and the blank."""
        return len(self.tokens) + 1

    def tokenize(self, text: str) -> tuple[str, ...]:
        return tokenize(text, self.kind)

    def encode(self, text: str) -> np.ndarray:
        """(S,) int64 class ids of a transcript's tokens."""
        ids = []
        for token in self.tokenize(text):
            k = self._ids.get(token)
            if k is None:
                if self.unknown is None:
                    raise DataError(f"token {token!r} of the transcript {text!r} is not in the vocabulary "
                                    f"({len(self.tokens)} {self.kind} from the training split)")
                k = self._ids[self.unknown]
            ids.append(k)
        return np.array(ids, dtype=np.int64)

    def decode(self, ids) -> str:
        """The transcript of a sequence of class ids (blanks are not expected, and dropped)."""
        tokens = [self.tokens[int(k) - 1] for k in ids if int(k) != self.BLANK]
        return ("" if self.kind == "characters" else " ").join(tokens)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.tokens), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        return cls(data["kind"], tuple(data["tokens"]), data.get("unknown"))


def tokenize(text: str, kind: str) -> tuple[str, ...]:
    """A transcript's tokens: its characters (after normalisation), or its words."""
    text = normalize_transcript(text)
    return tuple(text) if kind == "characters" else tuple(text.split(" ")) if text else ()


# --------------------------------------------------------------------------- audio with transcripts


def _assemble(records: list[tuple[Path, str, str]], features: FeatureConfig, source) -> Splits:
    """(audio file, transcript, split) records as Splits, features computed in file order."""
    if not records:
        raise DataError(f"no transcribed audio found in {source}")
    inputs = [extract_features(path, features=features) for path, _, _ in records]
    parts = {name: Examples() for name in SPLITS}
    for frames, (_, transcript, split) in zip(inputs, records):
        parts[split].inputs.append(frames)
        parts[split].labels.append(transcript)
    return parts


def _is_header(fields: list[str]) -> bool:
    return len(fields) >= 2 and fields[0].strip().lower() in ("path", "file", "audio") \
        and fields[1].strip().lower() in ("transcript", "text", "sentence", "transcription")


def load_transcript_tsv(path: str | os.PathLike, features: FeatureConfig = FeatureConfig(),
                        fractions=DEFAULT_FRACTIONS) -> Splits:
    """Lines ``path<TAB>transcript[<TAB>split]``: audio paths relative to the TSV's folder (or
    absolute), ``split`` train/validation/test (dev, val accepted). Blank lines and lines
    starting with ``#`` are skipped, and a first line ``path<TAB>transcript`` is a header.
    Lines without a split follow a stable hash of their path. An empty transcript is allowed
    (a recording with nothing to recognise)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no such transcript file: {path}")
    fractions = check_fractions(fractions)
    records = []
    for number, line in _lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not records and _is_header(fields):
            continue
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise DataError(f"{path}, line {number}: expected 'path<TAB>transcript' or "
                            f"'path<TAB>transcript<TAB>split', got {len(fields)} field(s)")
        audio = path.parent / fields[0].strip()
        if not audio.is_file():
            raise DataNotFoundError(f"{path}, line {number}: no such audio file: {audio}")
        if len(fields) == 3:
            split = split_column(fields[2], f"{path}, line {number}")
        else:
            split = split_for_key(fields[0].strip(), fractions)
        records.append((audio, normalize_transcript(fields[1]), split))
    return _assemble(records, features, path)


def _librispeech_split(relative: Path, speaker: str, fractions) -> str:
    match = _LIBRISPEECH_SUBSET.match(relative.parts[0]) if len(relative.parts) > 1 else None
    if match:
        return {"train": "train", "dev": "validation", "test": "test"}[match.group(1).lower()]
    return split_for_key(f"speaker:{speaker}", fractions)


def load_librispeech(folder: str | os.PathLike, features: FeatureConfig = FeatureConfig(),
                     fractions=DEFAULT_FRACTIONS) -> Splits:
    """Every ``*.trans.txt`` under ``folder``; each line ``<utterance-id> <TRANSCRIPT>`` names
    the audio ``<utterance-id>.flac`` (or ``.wav``) in the same folder, and the utterance id
    starts with the speaker (``<speaker>-<chapter>-<n>``). A first folder level named like
    LibriSpeech's subsets (``train-clean-100``, ``dev-other``, ``test-clean``...) gives the
    split; elsewhere a stable hash of the speaker does (no speaker in two splits)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"no such folder: {folder}")
    fractions = check_fractions(fractions)
    listings = sorted(folder.rglob("*.trans.txt"))
    if not listings:
        raise DataError(f"{folder} holds no *.trans.txt (LibriSpeech layout: <speaker>/<chapter>/"
                        f"<speaker>-<chapter>.trans.txt beside the audio)")
    records = []
    for listing in listings:
        for number, line in _lines(listing):
            if not line.strip():
                continue
            utterance, _, transcript = line.strip().partition(" ")
            audio = next((listing.parent / (utterance + suffix) for suffix in AUDIO_SUFFIXES
                          if (listing.parent / (utterance + suffix)).is_file()), None)
            if audio is None:
                raise DataNotFoundError(f"{listing}, line {number}: no audio for utterance {utterance!r} "
                                        f"({' or '.join(utterance + s for s in AUDIO_SUFFIXES)} in {listing.parent})")
            split = _librispeech_split(listing.relative_to(folder), utterance.split("-")[0], fractions)
            records.append((audio, normalize_transcript(transcript), split))
    return _assemble(records, features, folder)


# --------------------------------------------------------------------------- .npz


def load_transcript_npz(path: str | os.PathLike, fractions=DEFAULT_FRACTIONS) -> Splits:
    """Feature sequences with transcripts from an .npz (read with ``allow_pickle=False``).

    Keys: ``X`` (total_frames, F) and ``lengths`` (N,) as in ``save_sequence_npz``; the labels
    either as transcripts, ``y`` (N,) strings or integers indexing ``labels`` (what
    ``save_sequence_npz`` writes), or as label sequences, ``targets`` (total_labels,) integers
    and ``target_lengths`` (N,), with optional ``vocabulary`` (V,) the names of ids 0..V-1
    (else the ids as decimal strings) and optional ``token_separator`` (a 0-d string; " " if
    absent, "" for character tokens) joining them into the transcript. Optional ``split`` (N,)
    as in ``save_sequence_npz``; without it a fixed shuffle (``SPLIT_SEED``) cuts 80/10/10."""
    path = Path(path)
    arrays = _read_npz(path)
    missing = [key for key in ("X", "lengths") if key not in arrays]
    if missing or ("y" not in arrays and "targets" not in arrays):
        raise DataError(f"{path}: expected X, lengths and either y (transcripts) or targets and "
                        f"target_lengths (label sequences); found {', '.join(sorted(arrays)) or 'none'}")
    X, lengths = arrays["X"], arrays["lengths"]
    if "targets" in arrays:
        transcripts = _sequence_transcripts(arrays, len(lengths), path)
        _check_frames(X, lengths, np.zeros(len(lengths)), path)
    else:
        _check_frames(X, lengths, arrays["y"], path)
        transcripts = [normalize_transcript(t) for t in _label_strings(arrays["y"], arrays.get("labels"), path)]
    inputs = [frames.astype(np.float32) for frames in _sequences(X, lengths)]
    if not inputs:
        raise DataError(f"no examples in {path}")
    if "split" in arrays:
        names = _split_names(arrays["split"], len(inputs), path)
    else:
        names = _shuffled_split(len(inputs), check_fractions(fractions))
    parts = {name: Examples() for name in SPLITS}
    for frames, transcript, name in zip(inputs, transcripts, names):
        parts[name].inputs.append(frames)
        parts[name].labels.append(transcript)
    return parts


def _sequence_transcripts(arrays: dict, count: int, source) -> list[str]:
    targets, target_lengths = arrays["targets"], arrays.get("target_lengths")
    if target_lengths is None:
        raise DataError(f"{source}: 'targets' needs 'target_lengths' (N,), the labels of each sequence")
    if targets.ndim != 1 or (targets.size and targets.dtype.kind not in "iu"):
        raise DataError(f"{source}: 'targets' must be a 1-D integer array, got {targets.dtype} {targets.shape}")
    if target_lengths.shape != (count,) or target_lengths.dtype.kind not in "iu" or \
            (count and target_lengths.min() < 0):
        raise DataError(f"{source}: 'target_lengths' must be {count} integers >= 0, "
                        f"got {target_lengths.dtype} {target_lengths.shape}")
    if int(target_lengths.sum()) != len(targets):
        raise DataError(f"{source}: 'target_lengths' sum to {int(target_lengths.sum())} but 'targets' "
                        f"holds {len(targets)} labels")
    names = arrays.get("vocabulary")
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{source}: 'vocabulary' must be a 1-D array of strings, got {names.dtype} {names.shape}")
        if targets.size and (targets.min() < 0 or targets.max() >= len(names)):
            raise DataError(f"{source}: 'targets' must index 'vocabulary' (0..{len(names) - 1}), "
                            f"got {targets.min()}..{targets.max()}")
        tokens = [str(name) for name in names.tolist()]
    separator = str(arrays["token_separator"]) if "token_separator" in arrays else " "
    out = []
    for seq in np.split(targets, np.cumsum(target_lengths)[:-1]) if count else []:
        out.append(normalize_transcript(separator.join(tokens[k] if names is not None else str(k)
                                                       for k in seq.tolist())))
    return out


def _shuffled_split(count: int, fractions) -> list[str]:
    """Split names for ``count`` examples: a fixed permutation cut at the fractions."""
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    n_train = int(round(count * fractions[0]))
    n_validation = int(round(count * fractions[1]))
    names = np.empty(count, dtype=object)
    names[order[:n_train]] = "train"
    names[order[n_train:n_train + n_validation]] = "validation"
    names[order[n_train + n_validation:]] = "test"
    return names.tolist()


# --------------------------------------------------------------------------- dispatch


def load_transcribed_data(path: str | os.PathLike | None = None, *,
                          features: FeatureConfig = FeatureConfig()) -> Splits:
    """Transcribed speech from wherever ``path`` points (see the module docstring); nothing
    gives the default connected digit strings (``connected_digits.load_connected_digits``)."""
    if path is None:
        from .connected_digits import load_connected_digits
        return load_connected_digits()
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"no such file or folder: {path}")
    if path.is_file() and path.suffix.lower() == ".npz":
        return load_transcript_npz(path)
    if path.is_file() and path.name.lower().endswith(".trans.txt"):
        return load_librispeech(path.parent, features)
    if path.is_file() and path.suffix.lower() in (".tsv", ".txt"):
        return load_transcript_tsv(path, features)
    if path.is_dir() and (path / "transcripts.tsv").is_file():
        return load_transcript_tsv(path / "transcripts.tsv", features)
    if path.is_dir() and next(path.rglob("*.trans.txt"), None) is not None:
        return load_librispeech(path, features)
    raise DataError(f"cannot tell what transcribed speech {path} holds; accepted: {ACCEPTED_LAYOUTS}")


__all__ = ["VOCABULARY_KINDS", "Vocabulary", "tokenize", "normalize_transcript", "load_transcript_tsv",
           "load_librispeech", "load_transcript_npz", "load_transcribed_data"]
