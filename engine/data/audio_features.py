"""Frame-level speech features: MFCCs from audio, plus the NumPy post-processing they share
with pre-computed features (delta coefficients and per-utterance normalisation).

The post-processing (``delta``, ``add_deltas``, ``normalize_utterance``, ``postprocess``) needs
only NumPy, so the bundled pre-computed digits never require an audio stack. Reading audio and
computing MFCCs needs librosa (``pip install "lstm-engine[audio]"``), imported only when used.

Every function returns float32 arrays of shape (frames, features).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArgumentError, DataError, DataNotFoundError, MissingDependencyError

AUDIO_EXTRA_HINT = 'pip install "lstm-engine[audio]"'


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes frames of features.

    ``sample_rate`` None keeps each file's own rate (FSDD is 8 kHz, Speech Commands 16 kHz);
    window and hop are in milliseconds so they mean the same thing at any rate. 40 mel bands
    leave no empty filter at 8 kHz with a 25 ms window (checked against librosa's filter bank).
    ``deltas`` appends delta and delta-delta coefficients (13 MFCCs -> 39 features);
    ``delta_width`` is N of the HTK regression formula (window of 2N+1 frames).
    ``normalize`` scales each utterance to zero mean, unit variance per feature.
    """
    sample_rate: int | None = None
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_mfcc: int = 13
    n_mels: int = 40
    fmax: float | None = None
    deltas: bool = True
    normalize: bool = True
    delta_width: int = 2

    def __post_init__(self):
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ArgumentError(f"sample_rate must be positive or None, got {self.sample_rate}")
        if self.window_ms <= 0 or self.hop_ms <= 0:
            raise ArgumentError(f"window_ms and hop_ms must be positive, got {self.window_ms} and {self.hop_ms}")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ArgumentError(f"need 1 <= n_mfcc <= n_mels, got n_mfcc={self.n_mfcc}, n_mels={self.n_mels}")
        if self.delta_width < 1:
            raise ArgumentError(f"delta_width must be >= 1, got {self.delta_width}")

    @property
    def num_features(self) -> int:
        return self.n_mfcc * (3 if self.deltas else 1)


# --------------------------------------------------------------------------- post-processing


def delta(frames: np.ndarray, width: int = 2) -> np.ndarray:
    """HTK regression deltas along time (axis 0):

        d_t = sum_{n=1..N} n * (c_{t+n} - c_{t-n}) / (2 * sum_{n=1..N} n^2),   N = width

    with the first and last frames repeated beyond the edges, as HTK does. This equals
    ``librosa.feature.delta(c, width=2N+1, order=1, mode="nearest", axis=0)``, but works for
    any number of frames (librosa's needs at least ``width`` frames), which matters because
    the shortest FSDD utterances have 6 frames.
    """
    x = np.asarray(frames, dtype=np.float64)
    steps = len(x)
    if steps == 0:
        return np.zeros_like(x)
    padded = np.pad(x, [(width, width)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    numerator = sum(n * (padded[width + n: width + n + steps] - padded[width - n: width - n + steps])
                    for n in range(1, width + 1))
    return numerator / (2 * sum(n * n for n in range(1, width + 1)))


def add_deltas(frames: np.ndarray, width: int = 2) -> np.ndarray:
    """[c, delta(c), delta(delta(c))]: F features become 3F.

    The second derivative is the delta of the deltas (HTK's definition), not librosa's
    ``order=2`` Savitzky-Golay fit, so one formula defines both."""
    first = delta(frames, width)
    return np.concatenate([np.asarray(frames, dtype=np.float64), first, delta(first, width)], axis=1)


def normalize_utterance(frames: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per feature over one utterance (cepstral mean and variance
    normalisation): removes the channel and loudness of the recording, which say nothing
    about the word. A constant feature (e.g. every delta of a one-frame utterance) becomes 0
    rather than a division by zero."""
    x = np.asarray(frames, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)


def postprocess(frames: np.ndarray, *, deltas: bool = True, normalize: bool = True,
                delta_width: int = 2) -> np.ndarray:
    """Deltas first (from the raw coefficients), then normalisation over all features."""
    x = np.asarray(frames, dtype=np.float64)
    if deltas:
        x = add_deltas(x, delta_width)
    if normalize:
        x = normalize_utterance(x)
    return x.astype(np.float32)


# --------------------------------------------------------------------------- audio


def require_librosa():
    """librosa, or an ImportError that says how to get it."""
    try:
        import librosa
    except ImportError as exc:
        raise MissingDependencyError(f"reading audio files needs librosa: {AUDIO_EXTRA_HINT}") from exc
    return librosa


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their rate, resampled when ``sample_rate`` is given.

    Read with soundfile rather than ``librosa.load`` so a broken file fails at once with a
    clear error, instead of librosa's deprecated fallback to audioread/ffmpeg."""
    librosa = require_librosa()
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no such audio file: {path}")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports every malformed file differently
        raise DataError(f"cannot read audio file {path}: {exc}") from exc
    samples = samples.mean(axis=1)
    if samples.size == 0:
        raise DataError(f"audio file {path} holds no samples")
    if not np.isfinite(samples).all():                 # float WAVs can hold NaN or Inf
        raise DataError(f"audio file {path} holds NaN or infinite samples")
    if sample_rate is not None and sample_rate != rate:
        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate)
        rate = sample_rate
    return samples.astype(np.float32), int(rate)


def _as_samples(array: np.ndarray) -> np.ndarray:
    """A 1-D float signal; integer PCM is scaled to [-1, 1] as a file read would be."""
    samples = np.asarray(array)
    if samples.ndim != 1:
        raise ArgumentError(f"expected a 1-D (mono) signal, got shape {samples.shape}")
    if samples.size == 0:
        raise ArgumentError("the signal holds no samples")
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        # unsigned PCM (8-bit WAV) is centred on the middle of its range
        offset = (int(info.max) + 1) // 2 if samples.dtype.kind == "u" else 0
        return ((samples.astype(np.float64) - offset) / (int(info.max) + 1 - offset)).astype(np.float32)
    if samples.dtype.kind != "f":
        raise ArgumentError(f"expected numeric samples, got dtype {samples.dtype}")
    return samples.astype(np.float32)


def mfcc_frames(samples: np.ndarray, rate: int, features: FeatureConfig) -> np.ndarray:
    """(frames, n_mfcc) MFCCs; window and hop converted from milliseconds at this rate."""
    librosa = require_librosa()
    window = max(1, round(rate * features.window_ms / 1000))
    hop = max(1, round(rate * features.hop_ms / 1000))
    coefficients = librosa.feature.mfcc(
        y=samples, sr=rate, n_mfcc=features.n_mfcc, n_fft=window, win_length=window,
        hop_length=hop, n_mels=features.n_mels, fmax=features.fmax)
    return coefficients.T


def extract_features(path_or_array, sr: int | None = None,
                     features: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Features of one recording, (frames, features.num_features) float32.

    ``path_or_array``: a path to an audio file (its rate is read from the file; set
    ``features.sample_rate`` to resample), or a 1-D signal whose rate ``sr`` must be given.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        if sr is not None:
            raise ArgumentError("sr is the rate of an array signal; to resample a file set FeatureConfig.sample_rate")
        samples, rate = read_audio(path_or_array, features.sample_rate)
        source = str(path_or_array)
    else:
        if sr is None or sr <= 0:
            raise ArgumentError("a signal given as an array needs its sample rate: sr=...")
        samples, rate, source = _as_samples(path_or_array), int(sr), "the signal"
        if features.sample_rate is not None and features.sample_rate != rate:
            samples = require_librosa().resample(samples, orig_sr=rate, target_sr=features.sample_rate)
            rate = features.sample_rate
    coefficients = mfcc_frames(samples, rate, features)
    if not np.all(np.isfinite(coefficients)):
        raise DataError(f"non-finite features computed from {source}")
    return postprocess(coefficients, deltas=features.deltas, normalize=features.normalize,
                       delta_width=features.delta_width)
