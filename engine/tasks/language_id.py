"""language-id: which language a piece of text is in, from its characters.

Default data: the gettext catalogs of the machine (``lstm_engine.data.gettext_corpus``);
``data`` may instead name a WiLI-2018 folder, a Tatoeba sentences.csv or a label<TAB>text TSV.
Text is NFC-normalised and cut to ``max_length`` characters; characters seen fewer than
``min_char_count`` times in training share the unknown id 1 (0 is padding).
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import numpy as np

from ..data import Examples, Splits
from .base import Task, model_config_from

PAD, UNK = 0, 1
LENGTH_BUCKETS = (("<=20", 0, 20), ("21-50", 21, 50), (">50", 51, None))


def normalize_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


class LanguageId(Task):
    name = "language-id"
    kind = "text"
    description = "character-level language identification (default data: this machine's gettext catalogs)"
    DEFAULTS = {
        "epochs": 5, "batch_size": 64, "embedding_dim": 48, "hidden_size": 128, "num_layers": 1,
        "bidirectional": True, "pooling": "max", "dropout": 0.1, "lr": 3e-3, "schedule": "cosine",
        "warmup_steps": 100, "max_length": 128, "min_char_count": 3, "max_vocab": 4000,
        "min_strings": 1000, "max_per_language": 3000,
    }
    DATA_OPTIONS = ("min_strings", "max_per_language")

    def load_data(self, options: dict) -> Splits:
        if options.get("data"):
            from ..data.text_formats import load_text_data
            return load_text_data(options["data"])
        from ..data.gettext_corpus import load_gettext_corpus
        return load_gettext_corpus(min_strings=int(options.get("min_strings", 1000)),
                                   max_per_language=options.get("max_per_language"))

    def fit_encoder(self, train: Examples, config: dict) -> dict:
        counts = Counter()
        limit = int(config["max_length"])
        for text in train.inputs:
            counts.update(normalize_text(text)[:limit])
        frequent = [ch for ch, n in counts.most_common(int(config["max_vocab"]))
                    if n >= int(config["min_char_count"])]
        return {"type": "chars", "chars": "".join(frequent), "max_length": limit}

    def encode_inputs(self, inputs: list, encoder: dict) -> list[np.ndarray]:
        index = {ch: i + 2 for i, ch in enumerate(encoder["chars"])}
        limit = encoder["max_length"]
        out = []
        for k, text in enumerate(inputs):
            if not isinstance(text, str):
                raise TypeError(f"language-id input {k} must be a str, got {type(text).__name__}")
            clean = normalize_text(text)[:limit]
            if not clean:
                raise ValueError(f"language-id input {k} is empty (or only whitespace); there is nothing to classify")
            out.append(np.fromiter((index.get(ch, UNK) for ch in clean), dtype=np.int64, count=len(clean)))
        return out

    def model_config(self, config: dict, encoder: dict, num_classes: int) -> dict:
        return model_config_from(config, num_classes, vocab_size=len(encoder["chars"]) + 2,
                                 embedding_dim=int(config["embedding_dim"]))

    def read_inputs(self, sources: list[str], encoder: dict) -> tuple[list, list[str]]:
        return list(sources), list(sources)

    def export(self, splits: Splits, path) -> None:
        from ..data.text_formats import export_tsv
        export_tsv(splits, path)

    def extra_metrics(self, examples: Examples, correct: np.ndarray) -> dict:
        lengths = np.array([len(normalize_text(t)) for t in examples.inputs])
        out = {}
        for name, lo, hi in LENGTH_BUCKETS:
            sel = (lengths >= lo) & (lengths <= (hi if hi is not None else lengths.max(initial=0)))
            out[name] = {"n": int(sel.sum()), "accuracy": float(correct[sel].mean()) if sel.any() else None}
        return {"accuracy_by_length": out}
