"""Tests of the cuda backend's kernels, one launch at a time, against the reference's step
functions. Not collected here (the name does not start with test_): tests/test_cuda_emulated.py
(g++ on the host) and tests/test_cuda_gpu.py (a real GPU) import them, and each runs them with
its own `device` fixture (cuda_emulation.EmulatedDevice or cuda._CupyDevice: both launch by
kernel name with the arguments by parameter name) and under its own skip condition."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DTYPES, assert_close

from lstm_engine.backends.reference import sigmoid, step_backward, step_forward


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _on(device, **arrays) -> dict:
    """Copies of host arrays as the device's arrays, C-contiguous (the kernels write some in
    place, and the host originals are what the reference is given)."""
    return {k: device.xp.array(np.ascontiguousarray(v)) for k, v in arrays.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H", [(1, 1), (3, 5), (2, 200)], ids=["B1-H1", "B3-H5", "B2-H200-two-blocks"])
def test_forward_step_kernel(device, dtype, B, H):
    """lstm_forward_step is reference.step_forward of pre = x_proj_t + rec + bias, with row 1
    (when there is one) inactive at this step."""
    rng = np.random.default_rng(B * H)
    G = 4 * H
    host = dict(x_proj_t=rng.standard_normal((B, G)), rec=rng.standard_normal((B, G)),
                bias=rng.standard_normal(G), h_prev_t=rng.standard_normal((B, H)),
                c_prev_t=rng.standard_normal((B, H)))
    host = {k: v.astype(dtype) for k, v in host.items()}
    t = 2
    lengths = np.array([5, 2, 3][:B], np.int64)
    args = _on(device, **host, lengths=lengths,
               **{k: np.full(s, np.nan, dtype) for k, s in
                  [("h_out", (B, H)), ("c_out", (B, H)), ("y_t", (B, H)), ("gates_t", (B, G))]})
    device.launch("lstm_forward_step", dtype, B * H, dict(args, t=t, B=B, H=H, save=1))
    gates, h, c, y = step_forward(host["x_proj_t"] + host["rec"] + host["bias"], host["h_prev_t"],
                                  host["c_prev_t"], t < lengths)
    for name, want in [("h_out", h), ("c_out", c), ("y_t", y), ("gates_t", gates)]:
        assert_close(_host(args[name]), want, dtype, "step", err_msg=name)


def test_forward_step_without_save_leaves_gates_alone(device):
    """save=0 (inference) leaves gates_t alone."""
    B, H = 2, 3
    args = _on(device, x_proj_t=np.ones((B, 4 * H)), rec=np.zeros((B, 4 * H)), bias=np.zeros(4 * H),
               h_prev_t=np.zeros((B, H)), c_prev_t=np.zeros((B, H)), h_out=np.empty((B, H)),
               c_out=np.empty((B, H)), y_t=np.empty((B, H)), gates_t=np.full((B, 4 * H), 7.0),
               lengths=np.array([1, 1], np.int64))
    device.launch("lstm_forward_step", np.float64, B * H, dict(args, t=0, B=B, H=H, save=0))
    assert (_host(args["gates_t"]) == 7.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_after", [0, 1], ids=["last-step", "inner-step"])
def test_backward_step_kernel(device, dtype, has_after):
    """lstm_backward_step is reference.step_backward of the carried gradients: dh entering
    the step is rec where the step after it was active, the carried dh_buf otherwise. Rows:
    active at t and t_after / at t only / at neither / at neither."""
    rng = np.random.default_rng(7 + has_after)
    B, H = 4, 3
    G = 4 * H
    gates = sigmoid(rng.standard_normal((B, G)))
    gates[:, 2 * H:3 * H] = np.tanh(rng.standard_normal((B, H)))
    host = dict(gates_t=gates, c_prev_t=rng.standard_normal((B, H)), dy_t=rng.standard_normal((B, H)),
                rec=rng.standard_normal((B, H)), dh_buf=rng.standard_normal((B, H)),
                dc_buf=rng.standard_normal((B, H)))
    host = {k: v.astype(dtype) for k, v in host.items()}
    t, t_after = 3, 4
    lengths = np.array([5, 4, 3, 1], np.int64)
    args = _on(device, **host, lengths=lengths, d_pre_t=np.full((B, G), np.nan, dtype))
    device.launch("lstm_backward_step", dtype, B * H,
                  dict(args, t=t, t_after=t_after, has_after=has_after, B=B, H=H))
    after_active = bool(has_after) & (t_after < lengths)[:, None]
    dh_carried = np.where(after_active, host["rec"], host["dh_buf"])
    d_pre, dc_prev = step_backward(host["gates_t"], host["c_prev_t"], dh_carried + host["dy_t"],
                                   host["dc_buf"], t < lengths)
    assert_close(_host(args["d_pre_t"]), d_pre, dtype, "step", err_msg="d_pre_t")
    assert_close(_host(args["dh_buf"]), dh_carried, dtype, "step", err_msg="dh_buf")
    assert_close(_host(args["dc_buf"]), dc_prev, dtype, "step", err_msg="dc_buf")


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_finish_kernel(device, dtype):
    """dh0 is the first step's recurrent product where that step was active, else the carried."""
    rng = np.random.default_rng(3)
    B, H = 3, 2
    host = dict(rec=rng.standard_normal((B, H)).astype(dtype), dh_buf=rng.standard_normal((B, H)).astype(dtype))
    lengths = np.array([2, 1, 3], np.int64)
    args = _on(device, **host, dh0=np.empty((B, H), dtype), lengths=lengths)
    device.launch("lstm_backward_finish", dtype, B * H, dict(args, t_first=1, B=B, H=H))
    np.testing.assert_array_equal(_host(args["dh0"]),
                                  np.where((1 < lengths)[:, None], host["rec"], host["dh_buf"]))
