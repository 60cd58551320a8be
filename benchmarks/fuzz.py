"""The fuzz tests (tests/test_fuzz.py) with the deep profile, counted: cases per surface and
how each ended, the failures, and the regression examples of the failures found and fixed.

    python benchmarks/fuzz.py                         # -> results/fuzz.json
    python benchmarks/fuzz.py --examples 30 --out /tmp/f.json     # a quick run

Two pytest runs in fresh interpreters: every fuzz test with LSTM_ENGINE_FUZZ_PROFILE=deep,
then the ones that reach the cpu backend again with NUMBA_BOUNDSCHECK=1 (Numba then checks
every array index of the compiled loops and raises IndexError instead of reading or writing
out of bounds; in a cache folder of its own, as it recompiles them). The counts come from the
runs themselves (each case is counted by the test as it ends: 'result' for a returned value,
the error's class for a refused input); a failing test is listed with its message.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
#: Hypothesis examples per fuzz test in the counted run.
DEEP_EXAMPLES = 300

#: The failures the fuzzing found (and the probes that preceded it), fixed in the code; each
#: is kept as a regression example in tests/test_fuzz.py (the test named here).
FOUND_AND_FIXED = [
    ("LSTM.forward", "a ragged nested list as x raised NumPy's ValueError", "test_regression_api[ragged list as x]"),
    ("LSTM.forward", "a torch tensor as x raised TypeError from np.dtype(torch.float32)", "test_lstm_forward"),
    ("LSTM.forward", "a GPU array (CuPy-like) on a host backend raised TypeError from deep in NumPy",
     "test_gpu_style_arrays_are_refused_by_host_backends"),
    ("LSTM.load_state_dict", "None (not a mapping) raised TypeError", "test_regression_api[state_dict None]"),
    ("LSTM.load_state_dict", "complex values were cast silently, dropping the imaginary part",
     "test_regression_api[complex state_dict]"),
    ("LSTM.load_state_dict", "NaN/Inf parameters were accepted silently", "test_regression_api[NaN state_dict]"),
    ("LSTM()", "forget_bias='x' raised ValueError from float()", "test_regression_api[forget_bias not a number]"),
    ("LSTM()", "seed='x' raised TypeError from NumPy's SeedSequence", "test_regression_api[seed not an int]"),
    ("LSTM()", "backend=5 raised a bare TypeError", "test_regression_api[backend not a name]"),
    ("SequenceClassifier", "token ids >= vocab_size raised IndexError", "test_regression_api[token id past the vocabulary]"),
    ("SequenceClassifier", "negative token ids indexed the embedding from the end: a silent wrong answer",
     "test_regression_api[negative token id (wrapped silently)]"),
    ("SequenceClassifier", "float lengths were truncated to integers silently",
     "test_regression_api[float lengths (truncated silently)]"),
    ("SequenceClassifier", "string lengths raised ValueError from int()", "test_regression_api[string lengths]"),
    ("SequenceClassifier.loss", "targets >= num_classes raised IndexError", "test_regression_api[target past the classes]"),
    ("SequenceClassifier.loss", "negative targets picked the last class silently",
     "test_regression_api[negative target (wrapped silently)]"),
    ("SequenceClassifier", "complex features were cast to float silently",
     "test_regression_api[complex features (imaginary part dropped)]"),
    ("SequenceClassifier", "vocab_size=0 raised IndexError", "test_regression_api[vocab_size 0]"),
    ("SequenceClassifier.backward", "d_logits of the wrong shape raised matmul's ValueError",
     "test_regression_api[d_logits of the wrong shape]"),
    ("Predictor.predict", "an empty list raised AttributeError on None",
     "test_regression_predictor_empty_list_and_nan_features"),
    ("Predictor.predict", "NaN features gave NaN probabilities and argmax picked class 0: a silent wrong answer",
     "test_regression_predictor_empty_list_and_nan_features"),
    ("checkpoint loader", "a byte changed in the metadata (a label, a setting) passed the tensors-only sha256",
     "test_regression_checkpoint_metadata_flip_is_caught"),
    ("checkpoint loader", "a config declaring absurd sizes was built (allocated) before its tensors were compared",
     "test_regression_absurd_config_allocates_nothing"),
    (".npz loader", "huge lengths whose int64 sum wrapped around to len(X) were accepted",
     "test_regression_npz[lengths whose sum wraps around to len(X)]"),
    (".npz loader", "non-UTF-8 label bytes raised UnicodeDecodeError", "test_regression_npz[labels bytes that are not UTF-8]"),
    (".npz loader", "finite float64 features beyond float32's range became inf silently",
     "test_regression_npz[finite float64 beyond float32 (became inf)]"),
    (".npz loader", "a flipped byte in a zip header (compression method, encryption flag, version) raised "
     "zipfile's NotImplementedError", "test_regression_npz_damaged_zip_header[compression method]"),
    (".npz loader", "a member header declaring 745 GiB was allocated (MemoryError)",
     "test_regression_npz_header_declaring_terabytes"),
    ("TSV loader", "a folder as the file raised IsADirectoryError", "test_regression_text_and_wav_and_config"),
    ("WiLI loader", "a label line with a tab inside ('de<TAB>de') became a label that no export can write",
     "test_regression_wili_label_with_a_tab"),
    ("config file", "a non-UTF-8 TOML file raised UnicodeDecodeError; a folder IsADirectoryError",
     "test_regression_text_and_wav_and_config"),
    ("WAV loader", "a float WAV holding NaN raised librosa's ParameterError", "test_regression_text_and_wav_and_config"),
]


def _pytest(args: list[str], env: dict, junit: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           str(ROOT / "tests" / "test_fuzz.py")] + args
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def _junit(path: Path) -> dict:
    """{test id: None (passed), 'skipped: why' or the failure's first line}."""
    out = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = tc.get("name")
        bad = next(iter(list(tc.findall("failure")) + list(tc.findall("error"))), None)
        skip = tc.find("skipped")
        out[name] = (bad.get("message") or "failed").splitlines()[0][:300] if bad is not None else \
            (f"skipped: {skip.get('message')}" if skip is not None else None)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=DEEP_EXAMPLES,
                        help=f"hypothesis examples per fuzz test (default {DEEP_EXAMPLES})")
    parser.add_argument("--no-boundscheck", action="store_true", help="skip the NUMBA_BOUNDSCHECK run")
    parser.add_argument("--select", default=None, metavar="EXPR", help="only the fuzz tests pytest -k EXPR picks")
    parser.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = parser.parse_args(argv)
    result = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("deep", {}, ["-k", args.select] if args.select else [])]
        if not args.no_boundscheck:
            runs.append(("deep, cpu backend with NUMBA_BOUNDSCHECK=1",
                         {"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(Path(tmp) / "numba")},
                         ["-k", "lstm_forward or lstm_backward or classifier or predictor"]))
        for k, (name, extra, selection) in enumerate(runs):
            counts, junit = Path(tmp) / f"counts{k}.json", Path(tmp) / f"junit{k}.xml"
            env = dict(os.environ, LSTM_ENGINE_FUZZ_PROFILE="deep", LSTM_ENGINE_FUZZ_COUNTS=str(counts),
                       LSTM_ENGINE_FUZZ_EXAMPLES=str(args.examples), **extra)
            started = time.perf_counter()
            done = _pytest(selection, env, junit)
            tests = _junit(junit)
            record = json.loads(counts.read_text()) if counts.exists() else {"surfaces": {}}
            record.update(name=name, seconds=round(time.perf_counter() - started, 1), exit_status=done.returncode,
                          environment=extra and {k: v for k, v in extra.items() if k != "NUMBA_CACHE_DIR"},
                          failures={t: why for t, why in tests.items() if why and not why.startswith("skipped")},
                          skipped={t: why for t, why in tests.items() if why and why.startswith("skipped")})
            record["cases"] = {s: sum(c.values()) for s, c in record["surfaces"].items()}
            result["runs"].append(record)
            print(f"{name}: {sum(record['cases'].values())} cases, {len(record['failures'])} failing tests, "
                  f"{record['seconds']} s", file=sys.stderr)
            if k == 0:
                first = tests
    result["profile"] = {"name": "deep", "max_examples": args.examples}
    result["cases_per_surface"] = result["runs"][0]["cases"]
    result["open_failures"] = sum(len(r["failures"]) for r in result["runs"])
    result["found_and_fixed"] = [{"surface": s, "failure": what, "regression": test,
                                  "passes_now": first.get(test, "missing from the run") is None}
                                 for s, what, test in FOUND_AND_FIXED]
    from lstm_engine.bench import machine_facts, write_results
    result["machine"] = machine_facts()
    write_results(result, args.out)
    return result


if __name__ == "__main__":
    main()
