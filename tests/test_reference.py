"""The NumPy reference, the oracle of every other test: its step functions (the pieces every
fast path implements) and the whole stack, both checked by finite differences in float64 on
tiny shapes that cover ragged, bidirectional, deep and dropout."""

import warnings

import numpy as np
import pytest

from lstm_engine import LSTM
from lstm_engine.backends.reference import (
    active_steps,
    sigmoid,
    step_backward,
    step_forward,
    step_order,
)

from helpers import assert_close, make_case, numeric_gradient

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
        numeric = numeric_gradient(f, array)
        assert_close(analytic, numeric, np.float64, "finite_difference", err_msg=what)
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


# -- the step functions -------------------------------------------------------------------
def test_step_order_and_active_steps():
    assert list(step_order(4, reverse=False)) == [0, 1, 2, 3]
    assert list(step_order(4, reverse=True)) == [3, 2, 1, 0]
    np.testing.assert_array_equal(active_steps(np.array([3, 1, 4]), 4),
                                  [[1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 0, 1]])


def test_sigmoid_is_the_logistic_function_without_overflow():
    z = np.linspace(-30, 30, 601)
    # absolute accuracy: the tanh form loses relative precision far in the lower tail
    np.testing.assert_allclose(sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-14, atol=1e-16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # exp(1000) would overflow
        assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def _step_case(B=4, H=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, 4 * H)), rng.standard_normal((B, H)), rng.standard_normal((B, H)),
            np.array([True, False, True, False])[:B])


def test_step_forward_is_the_lstm_cell_and_leaves_inactive_rows_alone():
    pre, h_prev, c_prev, active = _step_case()
    H = h_prev.shape[1]
    gates, h, c, y = step_forward(pre, h_prev, c_prev, active)
    i, f, g, o = (1 / (1 + np.exp(-pre[:, :H])), 1 / (1 + np.exp(-pre[:, H:2 * H])),
                  np.tanh(pre[:, 2 * H:3 * H]), 1 / (1 + np.exp(-pre[:, 3 * H:])))
    c_want = f * c_prev + i * g
    a = active[:, None]
    assert_close(c, np.where(a, c_want, c_prev), np.float64, "step")
    assert_close(h, np.where(a, o * np.tanh(c_want), h_prev), np.float64, "step")
    assert_close(y, np.where(a, o * np.tanh(c_want), 0), np.float64, "step")
    assert_close(gates, np.where(a, np.concatenate([i, f, g, o], axis=1), 0), np.float64, "step")
    # without a mask every row is active
    all_on = step_forward(pre, h_prev, c_prev)
    assert_close(all_on[2], c_want, np.float64, "step")


@pytest.mark.parametrize("masked", [False, True], ids=["all-active", "ragged"])
def test_step_backward_is_the_gradient_of_step_forward(masked):
    """d_pre and dc_prev against central differences of L = sum(dh * h) + sum(dc * c), where
    h and c are step_forward's new state: the backward step is the forward step's gradient,
    inactive rows included (their c passes through, so dc does)."""
    pre, h_prev, c_prev, active = _step_case(seed=3)
    active = active if masked else None
    rng = np.random.default_rng(4)
    dh, dc = rng.standard_normal(h_prev.shape), rng.standard_normal(c_prev.shape)

    def loss():
        _, h, c, _ = step_forward(pre, h_prev, c_prev, active)
        return float((dh * h).sum() + (dc * c).sum())

    gates = step_forward(pre, h_prev, c_prev, active)[0]
    d_pre, dc_prev = step_backward(gates, c_prev, dh, dc, active)
    numeric_pre, numeric_c = numeric_gradient(loss, pre), numeric_gradient(loss, c_prev)
    assert_close(d_pre, numeric_pre, np.float64, "finite_difference", err_msg="d_pre")
    assert_close(dc_prev, numeric_c, np.float64, "finite_difference", err_msg="dc_prev")
    assert np.abs(numeric_pre).max() > 1e-3
    if masked:
        assert not d_pre[~active].any()
        np.testing.assert_array_equal(dc_prev[~active], dc[~active])
