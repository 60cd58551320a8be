"""Bad input gets a clear error naming the argument and what was expected."""

import numpy as np
import pytest

from lstm_engine import LSTM, ArgumentError, BackendError, get_backend

from helpers import FAST_BACKENDS

BACKENDS = ["numpy"] + FAST_BACKENDS


@pytest.fixture(params=BACKENDS)
def model(request):
    return LSTM(3, 4, num_layers=2, bidirectional=True, backend=request.param, seed=0)


def x_of(T=5, B=2, I=3, dtype=np.float32):
    return np.zeros((T, B, I), dtype)


@pytest.mark.parametrize("x,match", [
    (np.zeros((5, 3), np.float32), r"x must be 3-D \(T, B, input_size\), got shape \(5, 3\)"),
    (np.zeros((5, 2, 4), np.float32), r"x must have shape .*dimension 2 is 4, expected 3"),
    (np.zeros((0, 2, 3), np.float32), r"x must have at least one step"),
])
def test_bad_x_shape(model, x, match):
    with pytest.raises(ValueError, match=match):
        model.forward(x)


def test_dtype_mismatch(model):
    with pytest.raises(TypeError, match=r"x has dtype float64, but this LSTM is float32.*astype"):
        model.forward(x_of(dtype=np.float64))


@pytest.mark.parametrize("lengths,error,match", [
    ([5, 0], ValueError, r"lengths must lie in \[1, T=5\], got min 0"),
    ([6, 5], ValueError, r"lengths must lie in \[1, T=5\], got min 5 and max 6"),
    ([5, 5, 5], ValueError, r"lengths must have shape \(2,\)"),
    ([[5, 5]], ValueError, r"lengths must have shape \(2,\)"),
    ([4.0, 5.0], TypeError, r"lengths must be integers"),
])
def test_bad_lengths(model, lengths, error, match):
    with pytest.raises(error, match=match):
        model.forward(x_of(), lengths=lengths)


def test_bad_initial_state(model):
    good = np.zeros((4, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"initial_state\[0\] \(h_0\) must have shape \(4, 2, 4\)"):
        model.forward(x_of(), initial_state=(np.zeros((2, 2, 4), np.float32), good))
    with pytest.raises(TypeError, match=r"initial_state\[1\] \(c_0\) has dtype float64"):
        model.forward(x_of(), initial_state=(good, good.astype(np.float64)))
    with pytest.raises(ValueError, match="pair"):
        model.forward(x_of(), initial_state=good)


def test_nan_check_is_opt_in():
    x = x_of()
    x[2, 1, 0] = np.nan
    LSTM(3, 4, backend="numpy").forward(x)                      # off by default: no error
    checked = LSTM(3, 4, backend="numpy", check_finite=True)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        checked.forward(x)
    x[2, 1, 0] = np.inf
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        checked.forward(x)


def test_bad_backward(model):
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward"):
        model.backward()
    out, _ = model.forward(x_of())
    with pytest.raises(ValueError, match=r"d_outputs must have shape \(5, 2, 8\)"):
        model.backward(np.zeros((5, 2, 4), np.float32))
    model.backward(np.zeros_like(out))
    with pytest.raises(RuntimeError, match="once"):
        model.backward(np.zeros_like(out))


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=0, hidden_size=4), "input_size must be a positive integer"),
    (dict(input_size=3, hidden_size=2.5), "hidden_size must be a positive integer"),
    (dict(input_size=3, hidden_size=4, num_layers=0), "num_layers must be a positive integer"),
    (dict(input_size=3, hidden_size=4, dropout=1.0), r"dropout must be a number in \[0, 1\)"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), "dtype must be float32 or float64"),
    (dict(input_size=3, hidden_size=4, dtype="int32"), "dtype must be float32 or float64"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSTM(**kwargs, backend="numpy")


def test_bad_state_dict(model):
    state = model.state_dict()
    bad = dict(state)
    bad.pop("weight_hh_l1")
    with pytest.raises(ArgumentError, match=r"missing \[.weight_hh_l1.\]"):
        model.load_state_dict(bad)
    bad = dict(state, weight_ih_l0=np.zeros((16, 5)))
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l0'\] has shape \(16, 5\), expected \(16, 3\)"):
        model.load_state_dict(bad)


def test_unknown_backend_lists_what_is_available():
    with pytest.raises(BackendError, match=r"unknown backend 'tpu'; expected one of: auto, numpy(?s:.*)numpy: available"):
        get_backend("tpu")
    with pytest.raises(BackendError, match="unknown backend"):
        LSTM(3, 4, backend="tpu")
