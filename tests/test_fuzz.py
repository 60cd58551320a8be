"""Bad input, fuzzed: property-based tests (hypothesis) of every public surface.

Each case must end in the right result or in one of the project's documented errors (an
LstmEngineError, naming what was wrong): never an interpreter crash, a hang, a silent wrong
answer, or an exception from deep inside NumPy, safetensors, librosa... The right result is
checked, not assumed: a fast backend against the reference, a loaded checkpoint against the
one saved, a predictor's batch against its single inputs, a loader's examples against the
file's lines. And every call that reaches a backend's kernels is checked against the layer
contract first (`contract_spy`), so no fuzzed input reaches a compiled kernel with shapes or
lengths it could index out of bounds with (on the numpy path and the cpu backend; the deep
run also runs the cpu cases with Numba's bounds checking on).

Profiles: ``ci`` (the default: few examples, no deadline) keeps CI fast; ``deep`` (set
LSTM_ENGINE_FUZZ_PROFILE=deep, as benchmarks/fuzz.py does) tries many more. With
LSTM_ENGINE_FUZZ_COUNTS=FILE every case's surface and outcome are counted into FILE.
The ``test_regression_*`` cases are the failures the fuzzing found, each kept as an example.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import struct
import time
import wave
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST_BACKENDS, assert_close

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lstm_engine import LSTM  # noqa: E402
from lstm_engine.classifier import SequenceClassifier  # noqa: E402
from lstm_engine.errors import LstmEngineError  # noqa: E402

settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("deep", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
PROFILE = settings.get_profile(os.environ.get("LSTM_ENGINE_FUZZ_PROFILE", "ci"))
if os.environ.get("LSTM_ENGINE_FUZZ_EXAMPLES"):
    PROFILE = settings(PROFILE, max_examples=int(os.environ["LSTM_ENGINE_FUZZ_EXAMPLES"]))
#: Backends whose layer calls are fuzzed: the reference and the cpu backend (and the others
#: that run here; cuda-emulated compiles the .cu kernels with g++).
BACKENDS = ["numpy"] + FAST_BACKENDS

# -- counting -------------------------------------------------------------------------------------
COUNTS: dict[str, Counter] = defaultdict(Counter)
SLOWEST: dict[str, float] = defaultdict(float)


@atexit.register
def _write_counts() -> None:
    path = os.environ.get("LSTM_ENGINE_FUZZ_COUNTS")
    if path and COUNTS:
        Path(path).write_text(json.dumps({"surfaces": {k: dict(v) for k, v in sorted(COUNTS.items())},
                                          "slowest_case_s": dict(SLOWEST)}, indent=2))


@contextmanager
def case(surface: str):
    """Counts one case of ``surface``: 'result' when it returns, the error's class when it
    raises an LstmEngineError; anything else propagates (and fails the test)."""
    started = time.perf_counter()
    try:
        yield
    except LstmEngineError as e:
        COUNTS[surface][type(e).__name__] += 1
        raise
    else:
        COUNTS[surface]["result"] += 1
    finally:
        SLOWEST[surface] = max(SLOWEST[surface], time.perf_counter() - started)


def outcome(surface: str, fn, *args, **kwargs):
    """(True, value) or (False, error) for a call that must either work or raise an
    LstmEngineError, counted under ``surface``."""
    try:
        with case(surface):
            return True, fn(*args, **kwargs)
    except LstmEngineError as e:
        assert str(e), "an error must say what is wrong"
        return False, e


# -- the layer contract, checked independently at every backend call -------------------------------
class ContractViolation(AssertionError):
    pass


@contextmanager
def contract_spy(backend):
    """Wraps ``backend``'s layer calls: every call that gets past the backend's own checks
    (into its kernels) must satisfy the layer contract of base.py."""
    forward, backward = backend.layer_forward, backend.layer_backward
    calls = Counter()

    def checked_forward(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep, prepared=None):
        out = forward(x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep, prepared=prepared)
        T, B, I = x.shape                         # the call got past the checks: it must fit
        H = w_hh.shape[1]
        lengths = np.asarray(lengths)
        ok = (T >= 1 and B >= 1 and w_ih.shape == (4 * H, I) and w_hh.shape == (4 * H, H)
              and bias.shape == (4 * H,) and h0.shape == (B, H) and c0.shape == (B, H)
              and lengths.shape == (B,) and lengths.min() >= 1 and lengths.max() <= T
              and len({np.dtype(a.dtype) for a in (x, w_ih, w_hh, bias, h0, c0)}) == 1)
        if not ok:
            raise ContractViolation(f"{backend.name}: a kernel ran on x {x.shape}, w_ih {w_ih.shape}, "
                                    f"w_hh {w_hh.shape}, h0 {h0.shape}, lengths {lengths}")
        calls["forward"] += 1
        return out

    def checked_backward(cache, dy, dh_n, dc_n):
        out = backward(cache, dy, dh_n, dc_n)
        dx = out[0]
        if dy.shape[:2] != dx.shape[:2] or dh_n.shape != dc_n.shape or dh_n.shape[0] != dy.shape[1]:
            raise ContractViolation(f"{backend.name}: a backward ran on dy {dy.shape}, dh_n {dh_n.shape}")
        calls["backward"] += 1
        return out

    backend.layer_forward, backend.layer_backward = checked_forward, checked_backward
    try:
        yield calls
    finally:
        del backend.layer_forward, backend.layer_backward


def reference_of(model: LSTM) -> LSTM:
    ref = LSTM(model.input_size, model.hidden_size, model.num_layers, bidirectional=model.bidirectional,
               batch_first=model.batch_first, dtype=model.dtype, backend="numpy")
    ref.load_state_dict(model.state_dict())
    return ref


# -- strategies ----------------------------------------------------------------------------------
DTYPES = [np.float32, np.float64]
ODD_DTYPES = [np.float16, np.int32, np.int64, np.complex64, np.bool_, np.uint8, object, "U3"]


@st.composite
def arrays_near(draw, shape, dtype):
    """An array meant to have ``shape`` and ``dtype``, sometimes not: another shape or dtype,
    NaN/Inf/huge values, non-contiguous, read-only, a nested list or a scalar."""
    kind = draw(st.sampled_from(["good"] * 6 + ["shape", "dtype", "special", "strided", "readonly",
                                                 "list", "scalar", "ragged", "none"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if kind == "shape":
        shape = tuple(max(0, n + draw(st.integers(-1, 1))) for n in shape) + \
            tuple(draw(st.lists(st.integers(1, 2), max_size=1)))
    a = rng.standard_normal(shape)
    if kind == "special" and a.size:
        a.flat[rng.integers(0, a.size, 2)] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    if kind == "dtype":
        odd = draw(st.sampled_from(ODD_DTYPES))
        return a.astype(odd) if odd != "U3" else a.astype("U3")
    a = a.astype(dtype)
    if kind == "strided":
        a = np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a
    if kind == "readonly":
        a.flags.writeable = False
    if kind == "list":
        return a.tolist()
    if kind == "scalar":
        return float(rng.standard_normal())
    if kind == "ragged":
        return [[1.0, 2.0], [3.0]]
    if kind == "none":
        return None
    return a


def _valid(a, shape, dtype) -> bool:
    """Whether ``a`` is a value the API accepts for an array of ``shape`` and ``dtype``
    (lists of numbers become float64 arrays)."""
    if a is None or isinstance(a, float):
        return False
    try:
        arr = np.asarray(a)
    except ValueError:
        return False
    return arr.shape == shape and arr.dtype == np.dtype(dtype)


@st.composite
def lstm_configs(draw):
    return dict(input_size=draw(st.integers(1, 4)), hidden_size=draw(st.integers(1, 5)),
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)))


@st.composite
def lengths_for(draw, T, B):
    kind = draw(st.sampled_from(["none", "good", "good", "good", "zero", "long", "float", "shape", "negative",
                                 "uint64", "list"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    good = rng.integers(1, T + 1, B) if T >= 1 else np.zeros(B, int)
    return {"none": None, "good": good, "zero": np.where(np.arange(B) == 0, 0, good),
            "long": good + T, "float": good.astype(float) + 0.5, "shape": np.append(good, 1),
            "negative": -good, "uint64": good.astype(np.uint64) + np.uint64(2 ** 63),
            "list": good.tolist()}[kind]


def _lengths_valid(lengths, T, B) -> bool:
    if lengths is None:
        return True
    a = np.asarray(lengths)
    return a.shape == (B,) and a.dtype.kind in "iu" and (B == 0 or (a.min() >= 1 and a.max() <= T))


# -- LSTM.forward / backward ----------------------------------------------------------------------
@PROFILE
@given(config=lstm_configs(), T=st.integers(0, 5), B=st.integers(0, 3), data=st.data(),
       backend=st.sampled_from(BACKENDS), training=st.booleans())
def test_lstm_forward(config, T, B, data, backend, training):
    model = LSTM(**config, backend=backend, seed=0)
    D, L, H, I = model.num_directions, model.num_layers, model.hidden_size, model.input_size
    x_shape = (B, T, I) if config["batch_first"] else (T, B, I)
    x = data.draw(arrays_near(x_shape, config["dtype"]), "x")
    lengths = data.draw(lengths_for(T, B), "lengths")
    state = None
    if data.draw(st.booleans(), "with state"):
        state = (data.draw(arrays_near((L * D, B, H), config["dtype"]), "h0"),
                 data.draw(arrays_near((L * D, B, H), config["dtype"]), "c0"))
    # valid against the shape x really has (a perturbed shape can still be a valid one)
    try:
        got_shape = tuple(np.shape(x)) if _valid(x, np.shape(x), config["dtype"]) else None
    except ValueError:                           # a ragged list has no shape
        got_shape = None
    valid = got_shape is not None and len(got_shape) == 3 and got_shape[2] == I and min(got_shape) >= 1
    if valid:
        B, T = got_shape[:2] if config["batch_first"] else got_shape[1::-1]
        valid = (_lengths_valid(lengths, T, B)
                 and (state is None or all(_valid(s, (L * D, B, H), config["dtype"]) for s in state)))
    with contract_spy(model.backend) as calls:
        ok, got = outcome(f"LSTM.forward[{backend}]", model.forward, x, lengths=lengths,
                          initial_state=state, training=training)
    assert ok == valid, (f"valid input refused: {got}" if valid else "invalid input accepted")
    if not ok:
        assert calls["forward"] == 0            # refused before any kernel ran
        return
    out, (h_n, c_n) = got
    want, (want_h, want_c) = reference_of(model).forward(x, lengths=lengths, initial_state=state,
                                                         training=False)
    for g, w in ((out, want), (h_n, want_h), (c_n, want_c)):
        g = model.backend.to_numpy(g)
        assert g.shape == w.shape and g.dtype == model.dtype
        _same_as_reference(g, w, model.dtype)


def _same_as_reference(got, want, dtype, what=""):
    """Equal within the backend tolerance, with NaN and Inf exactly where the reference has
    them (a NaN input must not come out as a finite number)."""
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=f"{what}: non-finite values differ")
    assert_close(got[finite], want[finite], dtype, err_msg=what)


@PROFILE
@given(config=lstm_configs(), T=st.integers(1, 4), B=st.integers(1, 3), data=st.data(),
       backend=st.sampled_from(BACKENDS))
def test_lstm_backward(config, T, B, data, backend):
    model = LSTM(**config, backend=backend, seed=0)
    D, L, H = model.num_directions, model.num_layers, model.hidden_size
    x = np.random.default_rng(T * 7 + B).standard_normal((B, T, model.input_size) if config["batch_first"]
                                                          else (T, B, model.input_size)).astype(config["dtype"])
    lengths = data.draw(lengths_for(T, B).filter(lambda v: _lengths_valid(v, T, B)), "lengths")
    out_shape = (B, T, D * H) if config["batch_first"] else (T, B, D * H)
    grads_in = {"d_outputs": data.draw(st.none() | arrays_near(out_shape, config["dtype"]), "d_outputs"),
                "d_h_n": data.draw(st.none() | arrays_near((L * D, B, H), config["dtype"]), "d_h_n"),
                "d_c_n": data.draw(st.none() | arrays_near((L * D, B, H), config["dtype"]), "d_c_n")}
    shapes = {"d_outputs": out_shape, "d_h_n": (L * D, B, H), "d_c_n": (L * D, B, H)}
    valid = all(v is None or _valid(v, shapes[k], config["dtype"]) for k, v in grads_in.items())
    model.forward(x, lengths=lengths)
    with contract_spy(model.backend) as calls:
        ok, got = outcome(f"LSTM.backward[{backend}]", model.backward, **grads_in)
    assert ok == valid, (f"valid input refused: {got}" if valid else "invalid input accepted")
    if not ok:
        assert calls["backward"] == 0
        ok, got = outcome(f"LSTM.backward[{backend}]", model.backward)   # the tape is still there
        assert ok
        return
    ref = reference_of(model)
    ref.forward(x, lengths=lengths)
    want = ref.backward(**grads_in)
    _same_as_reference(model.backend.to_numpy(got.input), want.input, model.dtype)
    for name in want.params:
        _same_as_reference(model.backend.to_numpy(got.params[name]), want.params[name], model.dtype, name)
    again, err = outcome(f"LSTM.backward[{backend}]", model.backward)     # each forward once
    assert not again and type(err).__name__ == "CallOrderError"


@PROFILE
@given(config=lstm_configs(), data=st.data(), backend=st.sampled_from(BACKENDS))
def test_lstm_load_state_dict(config, data, backend):
    model = LSTM(**config, backend=backend, seed=1)
    before = model.state_dict()
    source = LSTM(**config, backend="numpy", seed=2).state_dict()
    state = dict(source)
    change = data.draw(st.sampled_from(["none", "drop", "extra", "shape", "dtype", "nan", "int", "list",
                                        "float64", "not a dict", "torch"]), "change")
    name = data.draw(st.sampled_from(sorted(state)), "name")
    valid = True
    if change == "drop":
        del state[name]
        valid = False
    elif change == "extra":
        state["weight_ih_l9"] = state[name]
        valid = False
    elif change == "shape":
        state[name] = np.zeros(state[name].shape + (1,))
        valid = False
    elif change == "dtype":
        state[name] = state[name].astype(data.draw(st.sampled_from([np.complex64, np.bool_, object, "U3"])))
        valid = False
    elif change == "nan":
        state[name] = state[name].copy()
        state[name].flat[0] = data.draw(st.sampled_from([np.nan, np.inf]))
        valid = False
    elif change == "int":
        state[name] = np.round(state[name] * 10).astype(np.int64)
    elif change == "list":
        state[name] = state[name].tolist()
    elif change == "float64":
        state[name] = state[name].astype(np.float64)
    elif change == "not a dict":
        state = data.draw(st.sampled_from([None, [1, 2], "weights", 3.0]))
        valid = False
    elif change == "torch":
        torch = pytest.importorskip("torch")
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    ok, err = outcome(f"LSTM.load_state_dict[{backend}]", model.load_state_dict, state)
    assert ok == valid, err
    after = model.state_dict()
    if not ok:                                   # nothing changed
        assert all(np.array_equal(after[k], before[k]) for k in before)
        return
    for k, v in after.items():
        expected = np.asarray(state[k].numpy() if hasattr(state[k], "numpy") else state[k]).astype(model.dtype)
        np.testing.assert_array_equal(v, expected)


def test_gpu_style_arrays_are_refused_by_host_backends():
    """An array that only converts to NumPy by an explicit copy (CuPy, a CUDA torch tensor)."""
    class DeviceArray:
        shape, dtype, ndim = (2, 1, 3), np.dtype(np.float32), 3
        __cuda_array_interface__ = {}

        def __array__(self, *args, **kwargs):
            raise TypeError("Implicit conversion to a NumPy array is not allowed")
    for backend in BACKENDS:
        model = LSTM(3, 2, backend=backend)
        ok, err = outcome(f"LSTM.forward[{backend}]", model.forward, DeviceArray())
        assert not ok and "DeviceArray" in str(err) and type(err).__name__ == "ArgumentTypeError"


# -- the classifier -------------------------------------------------------------------------------
@PROFILE
@given(data=st.data(), backend=st.sampled_from(BACKENDS), tokens=st.booleans(), T=st.integers(0, 4),
       B=st.integers(0, 3))
def test_classifier(data, backend, tokens, T, B):
    C, V, F = 3, 6, 2
    model = SequenceClassifier(C, vocab_size=V if tokens else None, input_size=None if tokens else F,
                               embedding_dim=3, hidden_size=4, backend=backend, seed=0)
    rng = np.random.default_rng(data.draw(st.integers(0, 999), "seed"))
    kind = data.draw(st.sampled_from(["good", "good", "good", "range", "negative", "dtype", "shape", "nan",
                                      "complex", "str", "list"]), "inputs")
    shape = (T, B) if tokens else (T, B, F)
    inputs = rng.integers(0, V, shape) if tokens else rng.standard_normal(shape)
    valid_inputs = T >= 1 and B >= 1
    if kind == "range" and tokens and inputs.size:
        inputs.flat[0], valid_inputs = V, False
    elif kind == "negative" and tokens and inputs.size:
        inputs.flat[0], valid_inputs = -1, False
    elif kind == "dtype":
        inputs = inputs.astype(np.float32) if tokens else inputs.astype(np.int64)
        valid_inputs = valid_inputs and not tokens
    elif kind == "shape":
        inputs, valid_inputs = inputs[..., None], False
    elif kind == "nan" and not tokens and inputs.size:
        inputs.flat[0] = np.nan                 # accepted: NaN logits where it reaches (the
    elif kind == "complex":                     # Predictor refuses non-finite features)
        inputs, valid_inputs = inputs.astype(np.complex64), False
    elif kind == "str":
        inputs, valid_inputs = inputs.astype("U2"), False
    elif kind == "list":
        inputs = inputs.tolist()
        valid_inputs = valid_inputs and (tokens or np.asarray(inputs).dtype.kind == "f")
    lengths = data.draw(lengths_for(T, B), "lengths")
    valid = valid_inputs and _lengths_valid(lengths, T, B)
    training = data.draw(st.booleans(), "training")
    with contract_spy(model.backend) as calls:
        ok, logits = outcome(f"SequenceClassifier[{backend}]", model.forward, inputs, lengths, training=training)
    assert ok == valid, (f"valid input refused: {logits}" if valid else "invalid input accepted")
    if not ok:
        assert calls["forward"] == 0
        return
    assert logits.shape == (B, C)
    if not training:
        return
    targets = data.draw(st.sampled_from(["good", "range", "negative", "float", "shape"]), "targets")
    t = {"good": rng.integers(0, C, B), "range": np.full(B, C), "negative": np.full(B, -1),
         "float": rng.integers(0, C, B).astype(float), "shape": rng.integers(0, C, B + 1)}[targets]
    ok, got = outcome(f"SequenceClassifier[{backend}]", model.loss, logits, t)
    assert ok == (targets == "good")
    if ok:
        d_logits = got[1] if data.draw(st.booleans(), "good d_logits") else np.zeros((B + 1, C), model.dtype)
        ok, grads = outcome(f"SequenceClassifier[{backend}]", model.backward, d_logits)
        assert ok == (d_logits.shape == (B, C))
        if ok:
            assert set(grads) == set(model.parameters())


# -- Predictor.predict ----------------------------------------------------------------------------
TEXT_PIECES = st.sampled_from(["abcd ", "wxyz", " klmn", "\x00", "\t", "\u202e", "\u200f", "\x1b[31m", "\ud800",
                               "é", "\u0301", "日本語", "🙂", "\r\n", "  ", "\ufeff", "\x7f", "a" * 300])


@pytest.fixture(scope="module")
def predictors(lid_run, speech_npz, tmp_path_factory):
    from lstm_engine import runs
    from lstm_engine.predictor import load_predictor
    out = tmp_path_factory.mktemp("speech_run")
    runs.run("speech-digits", {"data": str(speech_npz), "epochs": 1, "hidden_size": 4, "batch_size": 32,
                               "warmup_steps": 0}, out, backend="numpy", progress=False, test=False)
    return {"text": {b: load_predictor(lid_run, backend=b) for b in BACKENDS},
            "speech": {b: load_predictor(out, backend=b) for b in BACKENDS}}


@PROFILE
@given(texts=st.lists(st.one_of(st.lists(TEXT_PIECES, max_size=6).map("".join), st.text(max_size=40),
                                st.integers(), st.none(), st.binary(max_size=5)), max_size=5),
       backend=st.sampled_from(BACKENDS))
def test_predictor_text(predictors, texts, backend):
    pred = predictors["text"][backend]
    valid = all(isinstance(t, str) and t.split() for t in texts)
    ok, probs = outcome(f"Predictor.predict[text,{backend}]", pred.predict_proba, texts)
    assert ok == valid, probs
    if not ok:
        return
    assert probs.shape == (len(texts), len(pred.labels)) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    for text, row in zip(texts, probs):          # a batch predicts what its items predict alone
        np.testing.assert_allclose(pred.predict_proba([text])[0], row, rtol=2e-4, atol=1e-5)
    assert pred.predict(texts) == [pred.labels[i] for i in probs.argmax(axis=1)]


@PROFILE
@given(data=st.data(), backend=st.sampled_from(BACKENDS), n=st.integers(0, 3))
def test_predictor_features(predictors, data, backend, n):
    pred = predictors["speech"][backend]
    width = pred.encoder["input_size"]
    inputs = [data.draw(arrays_near((data.draw(st.integers(0, 6)), width), np.float32)) for _ in range(n)]
    valid = all(_numeric_2d(a, width) for a in inputs)
    ok, probs = outcome(f"Predictor.predict[features,{backend}]", pred.predict_proba, inputs)
    assert ok == valid, probs
    if ok:
        assert probs.shape == (n, len(pred.labels)) and np.isfinite(probs).all()


def _numeric_2d(a, width) -> bool:
    try:
        arr = np.asarray(a)
    except ValueError:
        return False
    if arr.dtype.kind not in "fiu" or arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] < 1:
        return False
    return bool(np.isfinite(arr.astype(np.float32)).all()) if arr.dtype.kind == "f" else True


# -- the checkpoint loader ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_bytes(lid_run):
    from lstm_engine.predictor import checkpoint_in
    return checkpoint_in(lid_run).read_bytes()


def _same_predictor(a, b) -> bool:
    return (a.labels == b.labels and a.encoder == b.encoder and a.data_options == b.data_options
            and a.model.config == b.model.config
            and all(np.array_equal(x, y) for x, y in zip(a.model.state_dict().values(),
                                                           b.model.state_dict().values())))


def _header(raw: bytes) -> tuple[int, dict]:
    n = int.from_bytes(raw[:8], "little")
    return n, json.loads(raw[8:8 + n])


def _with_header(raw: bytes, header: dict) -> bytes:
    n = int.from_bytes(raw[:8], "little")
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


@st.composite
def damaged(draw, raw: bytes):
    n = int.from_bytes(raw[:8], "little")
    kind = draw(st.sampled_from(["flip", "flip header", "flips", "truncate", "truncate header", "append",
                                 "tamper metadata", "tamper tensor", "huge size", "header length"]))
    if kind in ("flip", "flip header", "flips"):
        b = bytearray(raw)
        hi = 8 + n if kind == "flip header" else len(raw)
        for _ in range(draw(st.integers(1, 4)) if kind == "flips" else 1):
            b[draw(st.integers(0, hi - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "truncate":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "truncate header":
        return raw[:draw(st.integers(0, 8 + n))]
    if kind == "append":
        return raw + draw(st.binary(min_size=1, max_size=64))
    _, header = _header(raw)
    names = sorted(k for k in header if k != "__metadata__")
    if kind == "tamper metadata":
        meta = header["__metadata__"]
        key = draw(st.sampled_from(sorted(meta)))
        value = meta[key]
        if key in ("model", "task", "train"):
            obj = json.loads(value)
            field = draw(st.sampled_from(sorted(obj) or ["x"]))
            obj[field] = draw(st.sampled_from([None, 0, -1, 10 ** 12, "x", [], {}, 2.5, True]))
            value = json.dumps(obj)
        else:
            value = draw(st.text(max_size=10))
        header["__metadata__"][key] = value
        return _with_header(raw, header)
    name = draw(st.sampled_from(names))
    if kind == "tamper tensor":
        entry = header[name]
        what = draw(st.sampled_from(["dtype", "shape", "offsets"]))
        if what == "dtype":
            entry["dtype"] = draw(st.sampled_from(["F16", "F64", "I64", "BOOL", "U8", "BF16", "F8_E4M3"]))
        elif what == "shape":
            entry["shape"] = draw(st.lists(st.integers(0, 40), max_size=3))
        else:
            entry["data_offsets"] = [draw(st.integers(0, len(raw))), draw(st.integers(0, len(raw)))]
        return _with_header(raw, header)
    if kind == "huge size":
        header[name]["shape"] = [2 ** draw(st.integers(31, 62))] + header[name]["shape"][1:]
        return _with_header(raw, header)
    return draw(st.integers(n + 1, 2 ** 64 - 1)).to_bytes(8, "little") + raw[8:]


@PROFILE
@given(data=st.data())
def test_checkpoint_loader(checkpoint_bytes, tmp_path_factory, data):
    from lstm_engine.predictor import load_predictor
    path = tmp_path_factory.mktemp("ckpt") / "c.safetensors"
    raw = data.draw(damaged(checkpoint_bytes))
    path.write_bytes(raw)
    original = load_predictor_cached(checkpoint_bytes, tmp_path_factory)
    ok, got = outcome("checkpoint loader", load_predictor, path, backend="numpy")
    if ok:   # accepted only if it is the same model (a harmless byte: header padding, an added tail)
        assert _same_predictor(got, original), "a damaged checkpoint loaded as a different model"
    else:
        assert type(got).__name__ == "CheckpointError"


_ORIGINAL = {}


def load_predictor_cached(raw, tmp_path_factory):
    from lstm_engine.predictor import load_predictor
    if "p" not in _ORIGINAL:
        path = tmp_path_factory.mktemp("ckpt_orig") / "c.safetensors"
        path.write_bytes(raw)
        _ORIGINAL["p"] = load_predictor(path, backend="numpy")
    return _ORIGINAL["p"]


# -- data loaders ---------------------------------------------------------------------------------
LINE_PIECES = st.sampled_from([b"de", b"fr", b"\t", b"\t", b"Guten Tag", b"bonjour", b"\x00", b"\xff\xfe",
                               b"\xc3", b"\xe2\x80\xae", b"\r", b"\x1b", b"train", b"test", b"dev", b"#",
                               b"\xef\xbb\xbf", b"1", b"\\N", b"  ", "é日本".encode(), b"x" * 1000])
LINES = st.lists(st.lists(LINE_PIECES, max_size=7).map(b"".join), max_size=12).map(b"\n".join)


def _check_splits(splits) -> None:
    from lstm_engine.data import SPLITS
    assert set(splits) == set(SPLITS) and sum(len(s) for s in splits.values()) > 0
    for s in splits.values():
        assert len(s.inputs) == len(s.labels)
        for text, label in zip(s.inputs, s.labels):
            assert isinstance(text, str) and isinstance(label, str) and text.strip() and label.strip()
            assert "\n" not in text and "\t" not in label


@PROFILE
@given(content=LINES | st.binary(max_size=200), name=st.sampled_from(["data.tsv", "sentences.csv", "x.txt"]),
       big=st.booleans())
def test_text_loaders(tmp_path_factory, content, name, big):
    from lstm_engine.data.text_formats import load_text_data
    folder = tmp_path_factory.mktemp("text")
    if big:                                       # a line of a megabyte
        content += b"\nde\t" + b"a" * 2 ** 20
    (folder / name).write_bytes(content)
    ok, splits = outcome("text loaders (TSV, Tatoeba)", load_text_data, folder / name)
    if ok:
        _check_splits(splits)
        assert sum(len(s) for s in splits.values()) <= content.count(b"\n") + 1


@PROFILE
@given(x=LINES, y=LINES, x_test=LINES, y_test=LINES)
def test_wili_loader(tmp_path_factory, x, y, x_test, y_test):
    from lstm_engine.data.text_formats import load_text_data
    folder = tmp_path_factory.mktemp("wili")
    for name, content in (("x_train.txt", x), ("y_train.txt", y), ("x_test.txt", x_test), ("y_test.txt", y_test)):
        (folder / name).write_bytes(content)
    ok, splits = outcome("text loaders (WiLI)", load_text_data, folder)
    if ok:
        _check_splits(splits)


NPZ_ARRAYS = st.sampled_from([
    np.zeros((6, 2)), np.ones((6, 2), np.float32), np.zeros(6), np.zeros((0, 2)), np.full((6, 2), np.nan),
    np.full((6, 2), 1e300), np.array([3, 3]), np.array([2, 4]), np.array([0, 6]), np.array([-1, 7]),
    np.array([2 ** 62, 2 ** 62, 2 ** 62, 2 ** 62 + 6]), np.array([3.0, 3.0]), np.array([0, 1]), np.array(["a", "b"]),
    np.array([b"\xff", b"a"]), np.array([0, 5]), np.array(["train", "test"]), np.array([0, 2]), np.array([9, 0]),
    np.zeros((2, 2), complex), np.array([True, False]), np.zeros((2, 1), int), np.array(["low", "high"]),
])


@PROFILE
@given(arrays=st.dictionaries(st.sampled_from(["X", "lengths", "y", "labels", "split", "other"]), NPZ_ARRAYS,
                              max_size=6),
       cut=st.none() | st.integers(0, 400), flip=st.none() | st.integers(0, 10 ** 6))
def test_npz_loader(tmp_path_factory, arrays, cut, flip):
    from lstm_engine.data.speech import load_speech_data
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    raw = buffer.getvalue()
    if flip is not None:
        raw = bytearray(raw)
        raw[flip % len(raw)] ^= 0x40
        raw = bytes(raw)
    if cut is not None:
        raw = raw[:cut]
    path.write_bytes(raw)
    ok, splits = outcome("speech loaders (.npz)", load_speech_data, path)
    if ok:
        seqs = [a for s in splits.values() for a in s.inputs]
        assert all(a.dtype == np.float32 and a.ndim == 2 and len(a) >= 1 and np.isfinite(a).all() for a in seqs)
        if flip is None and cut is None:
            assert sum(len(a) for a in seqs) == len(arrays["X"]) == int(np.sum(arrays["lengths"]))


def _wav_bytes(samples: np.ndarray, rate: int, width: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        kind = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
        w.writeframes(np.asarray(samples).astype(kind).tobytes())
    return buffer.getvalue()


@PROFILE
@given(n=st.integers(0, 4000), rate=st.sampled_from([8000, 16000, 1, 100]), width=st.sampled_from([1, 2, 4]),
       damage=st.sampled_from(["none", "none", "cut", "flip", "header", "float nan", "empty", "text"]),
       at=st.integers(0, 10 ** 6))
def test_wav_loader(tmp_path_factory, n, rate, width, damage, at):
    pytest.importorskip("librosa")
    import soundfile
    from lstm_engine.data.speech import load_fsdd_folder
    folder = tmp_path_factory.mktemp("wav")
    rng = np.random.default_rng(at)
    raw = _wav_bytes(rng.integers(-100, 100, n), rate, width)
    if damage == "cut":
        raw = raw[:at % (len(raw) + 1)]
    elif damage == "flip":
        raw = bytearray(raw)
        raw[at % len(raw)] ^= 0xFF
        raw = bytes(raw)
    elif damage == "header":
        raw = raw[:4] + struct.pack("<I", at) + raw[8:]
    elif damage == "empty":
        raw = b""
    elif damage == "text":
        raw = "not audio ¿".encode()
    path = folder / "3_alice_7.wav"
    if damage == "float nan":
        samples = rng.standard_normal(max(n, 1)).astype(np.float32)
        samples[at % len(samples)] = np.nan
        soundfile.write(path, samples, 8000, subtype="FLOAT")
    else:
        path.write_bytes(raw)
    ok, splits = outcome("speech loaders (WAV)", load_fsdd_folder, folder)
    if ok:
        [features] = [a for s in splits.values() for a in s.inputs]
        assert features.ndim == 2 and features.shape[1] == 39 and np.isfinite(features).all()


# -- settings: config files and --set -------------------------------------------------------------
SETTING_VALUES = st.one_of(st.integers(-5, 10 ** 20), st.floats(allow_nan=True, allow_infinity=True),
                           st.booleans(), st.text(max_size=8), st.sampled_from(["none", "adam", "max", "1e999"]),
                           st.lists(st.integers(), max_size=2))


@PROFILE
@given(values=st.dictionaries(st.sampled_from(["epochs", "lr", "dropout", "pooling", "clip_norm", "hidden_size",
                                               "bidirectional", "optimizer", "data", "max_length", "epochz",
                                               "weight_decay", "seed", "batch_size"]),
                              SETTING_VALUES, max_size=4),
       task=st.sampled_from(["language-id", "speech-digits"]))
def test_settings_values(values, task):
    from lstm_engine import settings
    from lstm_engine.tasks import get_task
    t = get_task(task)
    ok, config = outcome("settings (values)", settings.resolve, t, ("--set", values))
    if ok:
        schema = settings.task_schema(t)
        for key, value in config.items():
            assert schema[key].check(value) == value          # every value is one the setting allows


@PROFILE
@given(text=st.binary(max_size=120) | st.lists(st.sampled_from([
    b"epochs = 2", b"lr = 'x'", b"[train]", b"[model]", b"hidden_size = 1.5", b"dropout = 0.5", b"= 3",
    b"pooling = \"max\"", b"clip_norm = \"none\"", b"\xff\xfe", b"\x00", b"epochs = 99999999999999999999999",
    b"\xef\xbb\xbfseed = 1", b"a.b = 1", b"data = 5", b"[[x]]"]), max_size=6).map(b"\n".join),
       pairs=st.lists(st.text(max_size=12), max_size=3))
def test_config_file_and_set_pairs(tmp_path_factory, text, pairs):
    import click

    from lstm_engine import settings
    from lstm_engine.cli.settings import parse_set, read_config_file
    from lstm_engine.tasks import get_task
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_bytes(text)
    try:
        layers = [("--config", read_config_file(str(path))), ("--set", parse_set(tuple(pairs)))]
    except click.BadParameter:                 # a usage error the CLI prints as one line
        COUNTS["settings (config file, --set)"]["BadParameter"] += 1
        return
    ok, config = outcome("settings (config file, --set)", settings.resolve, get_task("language-id"), *layers)
    if ok:
        schema = settings.task_schema(get_task("language-id"))
        assert all(schema[k].check(v) == v for k, v in config.items())


# -- regressions: the failures the fuzzing found, each kept as an example -------------------------
REGRESSIONS = {
    "ragged list as x": lambda: LSTM(3, 2, backend="numpy").forward([[[1.0, 2.0, 3.0]], [[1.0, 2.0]]]),
    "state_dict None": lambda: LSTM(3, 2, backend="numpy").load_state_dict(None),
    "complex state_dict": lambda: LSTM(2, 1, backend="numpy").load_state_dict(
        {k: v.astype(np.complex64) for k, v in LSTM(2, 1, backend="numpy").state_dict().items()}),
    "NaN state_dict": lambda: LSTM(2, 1, backend="numpy").load_state_dict(
        {k: np.full_like(v, np.nan) for k, v in LSTM(2, 1, backend="numpy").state_dict().items()}),
    "forget_bias not a number": lambda: LSTM(2, 1, forget_bias="x", backend="numpy"),
    "seed not an int": lambda: LSTM(2, 1, seed="x", backend="numpy"),
    "backend not a name": lambda: LSTM(2, 1, backend=5),
    "token id past the vocabulary": lambda: SequenceClassifier(2, vocab_size=4, backend="numpy").forward(
        np.full((3, 1), 4), [3]),
    "negative token id (wrapped silently)": lambda: SequenceClassifier(2, vocab_size=4, backend="numpy").forward(
        np.full((3, 1), -1), [3]),
    "float lengths (truncated silently)": lambda: SequenceClassifier(2, vocab_size=4, backend="numpy").forward(
        np.ones((3, 1), int), [1.5]),
    "string lengths": lambda: SequenceClassifier(2, vocab_size=4, backend="numpy").forward(np.ones((3, 1), int), ["a"]),
    "target past the classes": lambda: _loss(np.array([2])),
    "negative target (wrapped silently)": lambda: _loss(np.array([-1])),
    "complex features (imaginary part dropped)": lambda: SequenceClassifier(2, input_size=2, backend="numpy").forward(
        np.ones((3, 1, 2), complex), [3]),
    "vocab_size 0": lambda: SequenceClassifier(2, vocab_size=0, backend="numpy"),
    "d_logits of the wrong shape": lambda: _backward(np.zeros((3, 3), np.float32)),
}


def _loss(targets):
    model = SequenceClassifier(2, vocab_size=4, backend="numpy")
    return model.loss(model.forward(np.ones((3, 1), int), [3], training=True), targets)


def _backward(d_logits):
    model = SequenceClassifier(2, vocab_size=4, backend="numpy")
    model.forward(np.ones((3, 1), int), [3], training=True)
    return model.backward(d_logits)


@pytest.mark.parametrize("what", sorted(REGRESSIONS))
def test_regression_api(what):
    with pytest.raises(LstmEngineError):
        with case("regressions"):
            REGRESSIONS[what]()


def test_regression_predictor_empty_list_and_nan_features(predictors):
    assert predictors["text"]["numpy"].predict([]) == []
    bad = np.zeros((4, predictors["speech"]["numpy"].encoder["input_size"]), np.float32)
    bad[1, 0] = np.nan                           # was: NaN probabilities, argmax picked class 0
    with pytest.raises(LstmEngineError, match="NaN"):
        predictors["speech"]["numpy"].predict([bad])


def test_regression_checkpoint_metadata_flip_is_caught(checkpoint_bytes, tmp_path):
    """A label changed in the header kept a valid JSON and passed the tensors' sha256: the
    model loaded with a wrong label name (found by byte flips in the header)."""
    from lstm_engine.errors import CheckpointError
    from lstm_engine.predictor import load_predictor
    _, header = _header(checkpoint_bytes)
    task = json.loads(header["__metadata__"]["task"])
    task["labels"][0] = task["labels"][0][::-1] + "z"
    header["__metadata__"]["task"] = json.dumps(task)
    (tmp_path / "c.safetensors").write_bytes(_with_header(checkpoint_bytes, header))
    with pytest.raises(CheckpointError, match="metadata does not match"):
        load_predictor(tmp_path / "c.safetensors", backend="numpy")


def test_regression_absurd_config_allocates_nothing(checkpoint_bytes, tmp_path):
    """A config declaring hidden_size 10**9 (re-signed, so the digests pass) is refused by
    comparing it with the tensors' shapes before the model is built."""
    from lstm_engine.checkpoint import load_checkpoint, save_checkpoint
    from lstm_engine.errors import CheckpointError
    from lstm_engine.predictor import load_predictor
    (tmp_path / "c.safetensors").write_bytes(checkpoint_bytes)
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    ckpt.model["hidden_size"] = 10 ** 9
    save_checkpoint(tmp_path / "big.safetensors", ckpt)
    with pytest.raises(CheckpointError, match="do not match the stored model config"):
        load_predictor(tmp_path / "big.safetensors", backend="numpy")


@pytest.mark.parametrize("arrays, match", [
    pytest.param(dict(X=np.zeros((5, 2)), lengths=np.array([2 ** 62] * 3 + [2 ** 62 + 5]), y=np.arange(4)),
                 "exceeds", id="lengths whose sum wraps around to len(X)"),
    pytest.param(dict(X=np.zeros((6, 2)), lengths=np.array([3, 3]), y=np.array([b"\xff", b"a"])),
                 "not UTF-8", id="labels bytes that are not UTF-8"),
    pytest.param(dict(X=np.full((6, 2), 1e300), lengths=np.array([3, 3]), y=np.array([0, 1])),
                 "float32", id="finite float64 beyond float32 (became inf)"),
])
def test_regression_npz(tmp_path, arrays, match):
    from lstm_engine.data.speech import load_sequence_npz
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(LstmEngineError, match=match):
        load_sequence_npz(tmp_path / "d.npz")


@pytest.mark.parametrize("offset, value", [pytest.param(10, 99, id="compression method"),
                                           pytest.param(8, 0x40, id="encryption flag"),
                                           pytest.param(6, 109, id="zip version")])
def test_regression_npz_damaged_zip_header(tmp_path, offset, value):
    """A changed byte in the central directory naming an unknown compression method, strong
    encryption or zip version 10.9: zipfile's NotImplementedError came through."""
    from lstm_engine.data.speech import load_sequence_npz
    np.savez(tmp_path / "d.npz", X=np.zeros((6, 2)), lengths=np.array([3, 3]), y=np.array([0, 1]))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    raw[raw.index(b"PK\x01\x02") + offset] = value
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    with pytest.raises(LstmEngineError, match="not a readable .npz"):
        load_sequence_npz(tmp_path / "d.npz")


def test_regression_npz_header_declaring_terabytes(tmp_path):
    import zipfile
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", 118) + header.encode().ljust(117) + b"\n"
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("X.npy", member)                 # was: MemoryError (745 GiB asked for)
    from lstm_engine.data.speech import load_sequence_npz
    with pytest.raises(LstmEngineError, match="declares shape"):
        load_sequence_npz(tmp_path / "d.npz")


def test_regression_wili_label_with_a_tab(tmp_path):
    """A y file line 'de<TAB>de' became the label 'de\tde' (found by the deep run)."""
    from lstm_engine.data.text_formats import load_wili
    for part, (x, y) in {"train": (b"Guten Tag", b"de"), "test": (b"de\n\nde", b"de\tde\n\nde")}.items():
        (tmp_path / f"x_{part}.txt").write_bytes(x)
        (tmp_path / f"y_{part}.txt").write_bytes(y)
    with pytest.raises(LstmEngineError, match="line 1: a label must be one code"):
        load_wili(tmp_path)


def test_regression_text_and_wav_and_config(tmp_path):
    import click

    from lstm_engine.cli.settings import read_config_file
    from lstm_engine.data.text_formats import load_tsv
    with pytest.raises(LstmEngineError, match="not a file"):
        load_tsv(tmp_path)                          # was: IsADirectoryError
    (tmp_path / "c.toml").write_bytes("epochs = 1 # caf\xe9".encode("latin-1"))
    with pytest.raises(click.BadParameter, match="not UTF-8"):
        read_config_file(str(tmp_path / "c.toml"))  # was: UnicodeDecodeError
    with pytest.raises(click.BadParameter, match="cannot read"):
        read_config_file(str(tmp_path))             # was: IsADirectoryError
    pytest.importorskip("librosa")
    import soundfile
    (tmp_path / "w").mkdir()
    soundfile.write(tmp_path / "w" / "1_a_9.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    from lstm_engine.data.speech import load_fsdd_folder
    with pytest.raises(LstmEngineError, match="NaN"):
        load_fsdd_folder(tmp_path / "w")            # was: librosa's ParameterError
