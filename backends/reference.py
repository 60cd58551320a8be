"""The NumPy reference backend: the oracle every other backend is tested against.

Shapes and names are base.py's glossary: T steps, B batch, I inputs, H hidden; gates
G = 4H in the order i, f, g, o. x (T, B, I), w_ih (4H, I), w_hh (4H, H), bias (4H,),
h0/c0 (B, H); all time-major.

It is written to be read, not to be fast: one step at a time, every intermediate kept. The
pieces every fast path implements are exported, so that a kernel's test calls them rather
than deriving the math a second time:
    step_order(T, reverse)     the order a direction visits the steps
    active_steps(lengths, T)   which steps of a ragged batch are active
    step_forward(...)          one step of the cell for a batch, forward
    step_backward(...)         the same step backward (the pointwise part)
    sigmoid(z)                 the logistic function, in its tanh form
NumpyBackend.layer_forward/layer_backward are only these, put together.
"""

from __future__ import annotations

import numpy as np

from .base import Backend, check_layer_inputs


def sigmoid(z):
    """1 / (1 + exp(-z)) as 0.5 * tanh(z / 2) + 0.5: the tanh form never overflows exp() for
    large |z|. The Numba (cpu_kernels.act_sigmoid) and CUDA (act_sigmoid) kernels use it too."""
    return 0.5 * np.tanh(0.5 * z) + 0.5


def step_order(T: int, reverse: bool) -> range:
    """The steps t in the order a direction processes them: 0 .. T-1 forward, T-1 .. 0 in
    reverse. Backward visits them in the opposite order."""
    return range(T - 1, -1, -1) if reverse else range(T)


def active_steps(lengths, T: int) -> np.ndarray:
    """(T, B) bool: step t of sequence b is active when t < lengths[b]. An inactive step
    leaves h and c as they were and outputs zeros (base.py), so a reverse direction starts
    each sequence at its own last valid step."""
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def step_forward(pre, h_prev, c_prev, active=None):
    """One step of the cell for a batch.

        pre     (B, G)  gate pre-activations x_proj[t] + h_prev @ w_hh.T + bias
        h_prev, c_prev (B, H)  the state entering the step
        active  (B,) bool, or None for all active

    Returns (gates, h, c, y): gates (B, G) = [i, f, g, o], zero where inactive; h, c (B, H)
    the state after the step (h_prev, c_prev where inactive); y (B, H) the output, h where
    active and zero where not.
    """
    H = h_prev.shape[1]
    i = sigmoid(pre[:, :H])
    f = sigmoid(pre[:, H:2 * H])
    g = np.tanh(pre[:, 2 * H:3 * H])
    o = sigmoid(pre[:, 3 * H:])
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    gates = np.concatenate([i, f, g, o], axis=1)
    if active is None:
        return gates, h, c, h
    m = np.asarray(active)[:, None]
    return np.where(m, gates, 0), np.where(m, h, h_prev), np.where(m, c, c_prev), np.where(m, h, 0)


def step_backward(gates, c_prev, dh, dc, active=None):
    """The pointwise part of one step backward (the recurrent product is the caller's).

        gates   (B, G)  the step's saved [i, f, g, o]
        c_prev  (B, H)  the saved cell state entering the step (c is recomputed from it)
        dh      (B, H)  the gradient of the step's h: carried from the later steps plus the
                        step's own dy[t]
        dc      (B, H)  the gradient of the step's c carried from the later steps
        active  (B,) bool, or None for all active

    Returns (d_pre, dc_prev): d_pre (B, G) the gradient of the pre-activations, zero where
    inactive; dc_prev (B, H) the gradient of c_prev, dc itself where inactive (an inactive
    step passed c through untouched, so its gradient goes through too). The gradient of
    h_prev is d_pre @ w_hh where active and the carried dh (without dy) where not.
    """
    H = c_prev.shape[1]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    tanh_c = np.tanh(f * c_prev + i * g)
    dc_t = dc + dh * o * (1 - tanh_c ** 2)
    d_pre = np.concatenate([
        dc_t * g * i * (1 - i),
        dc_t * c_prev * f * (1 - f),
        dc_t * i * (1 - g ** 2),
        dh * tanh_c * o * (1 - o),
    ], axis=1)
    dc_prev = dc_t * f
    if active is None:
        return d_pre, dc_prev
    m = np.asarray(active)[:, None]
    return np.where(m, d_pre, 0), np.where(m, dc_prev, dc)


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def facts(self) -> dict:
        return {"numpy": np.__version__}

    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep, prepared=None):
        check_layer_inputs(x, w_ih, w_hh, bias, h0, c0, lengths)
        T, B, _ = x.shape
        H = w_hh.shape[1]
        x_proj = x @ w_ih.T                            # (T, B, 4H), all steps at once
        y = np.zeros((T, B, H), dtype=x.dtype)
        gates = np.zeros((T, B, 4 * H), dtype=x.dtype)
        h_prev = np.zeros((T, B, H), dtype=x.dtype)
        c_prev = np.zeros((T, B, H), dtype=x.dtype)
        active = active_steps(lengths, T)
        h, c = h0.copy(), c0.copy()
        for t in step_order(T, reverse):
            h_prev[t], c_prev[t] = h, c
            gates[t], h, c, y[t] = step_forward(x_proj[t] + h @ w_hh.T + bias, h, c, active[t])
        cache = None
        if keep:
            cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, gates=gates, h_prev=h_prev, c_prev=c_prev,
                         active=active, reverse=reverse)
        return y, h, c, cache

    def layer_backward(self, cache, dy, dh_n, dc_n):
        x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
        gates, c_prev, active = cache["gates"], cache["c_prev"], cache["active"]
        T, B, _ = x.shape
        H = w_hh.shape[1]
        d_pre = np.zeros((T, B, 4 * H), dtype=x.dtype)
        dh, dc = dh_n.copy(), dc_n.copy()
        for t in reversed(step_order(T, cache["reverse"])):
            d_pre[t], dc = step_backward(gates[t], c_prev[t], dh + dy[t], dc, active[t])
            # An inactive step passed h through untouched: its gradient does too.
            dh = np.where(active[t][:, None], d_pre[t] @ w_hh, dh)
        flat = d_pre.reshape(T * B, 4 * H)
        dx = d_pre @ w_ih
        dw_ih = flat.T @ x.reshape(T * B, -1)
        dw_hh = flat.T @ cache["h_prev"].reshape(T * B, H)
        dbias = flat.sum(axis=0)
        return dx, dw_ih, dw_hh, dbias, dh, dc
