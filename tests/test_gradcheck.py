"""Finite-difference check of the NumPy reference in float64: every parameter, the input and
the initial states, on tiny shapes that cover ragged, bidirectional, deep and dropout."""

import numpy as np
import pytest

from lstm_engine import LSTM

from conftest import make_case

CASES = {
    "single": dict(T=3, B=2, I=3, H=2),
    "ragged-bi-2layer": dict(T=4, B=3, I=2, H=3, num_layers=2, bidirectional=True, lengths=[4, 1, 2]),
    "T1-B1-state": dict(T=1, B=1, I=2, H=2, initial_state=True),
    "ragged-state-3layer": dict(T=3, B=2, I=2, H=2, num_layers=3, lengths=[2, 3], initial_state=True),
    "dropout-bi": dict(T=3, B=2, I=2, H=2, num_layers=2, bidirectional=True, dropout=0.4, lengths=[3, 2]),
}


def _loss(model, case, seed):
    # Reseeding makes every evaluation draw the same dropout masks.
    model._rng = np.random.default_rng(seed)
    out, (h_n, c_n) = model.forward(case["x"], lengths=case["lengths"], initial_state=case["initial_state"])
    return float((out * case["d_outputs"]).sum() + (h_n * case["d_h_n"]).sum() + (c_n * case["d_c_n"]).sum())


def _numeric(f, array, eps=1e-6):
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        orig = array[idx]
        array[idx] = orig + eps
        up = f()
        array[idx] = orig - eps
        down = f()
        array[idx] = orig
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", CASES)
def test_reference_gradients_match_finite_differences(name):
    spec = dict(CASES[name])
    case = make_case(**spec, dtype=np.float64, seed=3)
    if case["initial_state"] is None:
        D = 2 if spec.get("bidirectional") else 1
        shape = (spec.get("num_layers", 1) * D, spec["B"], spec["H"])
        case["initial_state"] = (np.zeros(shape), np.zeros(shape))
    model = LSTM(**case["config"], backend="numpy", seed=7)
    f = lambda: _loss(model, case, seed=11)  # noqa: E731

    f()
    model._rng = np.random.default_rng(11)
    model.forward(case["x"], lengths=case["lengths"], initial_state=case["initial_state"])
    grads = model.backward(case["d_outputs"], case["d_h_n"], case["d_c_n"])

    checks = {"input": (case["x"], grads.input), "h_0": (case["initial_state"][0], grads.h_0),
              "c_0": (case["initial_state"][1], grads.c_0)}
    checks.update({n: (model.params[n], grads.params[n]) for n in model.params})
    for what, (array, analytic) in checks.items():
        numeric = _numeric(f, array)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=what)
        # The check must be able to fail: a gradient of all zeros would pass trivially.
        assert np.abs(numeric).max() > 1e-6, what


def test_padding_gets_no_gradient_and_emits_zeros():
    case = make_case(T=5, B=3, I=2, H=3, num_layers=2, bidirectional=True, lengths=[5, 2, 1], seed=1)
    model = LSTM(**case["config"], backend="numpy", seed=0)
    out, _ = model.forward(case["x"], lengths=case["lengths"])
    grads = model.backward(case["d_outputs"], case["d_h_n"], case["d_c_n"])
    for b, n in enumerate(case["lengths"]):
        assert np.all(out[n:, b] == 0)
        assert np.all(grads.input[n:, b] == 0)
        assert np.abs(grads.input[:n, b]).min() > 0
