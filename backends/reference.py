"""The NumPy reference backend: the oracle every other backend is tested against.

Shapes: T steps, B batch, I inputs, H hidden; gates G = 4H in the order i, f, g, o.
x (T, B, I), w_ih (4H, I), w_hh (4H, H), bias (4H,), h0/c0 (B, H); all time-major.

It is written to be read, not to be fast: one step at a time, every intermediate kept.
"""

from __future__ import annotations

import numpy as np

from .base import Backend


def _sigmoid(z):
    # The tanh form never overflows exp() for large |z|.
    return 0.5 * np.tanh(0.5 * z) + 0.5


def _step_order(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def facts(self) -> dict:
        return {"numpy": np.__version__}

    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths, reverse, keep):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        x_proj = x @ w_ih.T + bias                     # (T, B, 4H), all steps at once
        y = np.zeros((T, B, H), dtype=x.dtype)
        gates = np.zeros((T, B, 4 * H), dtype=x.dtype)
        c_new = np.zeros((T, B, H), dtype=x.dtype)
        h_prev = np.zeros((T, B, H), dtype=x.dtype)
        c_prev = np.zeros((T, B, H), dtype=x.dtype)
        active = np.arange(T)[:, None] < lengths[None, :]          # (T, B)
        h, c = h0.copy(), c0.copy()
        for t in _step_order(T, reverse):
            z = x_proj[t] + h @ w_hh.T
            i = _sigmoid(z[:, :H])
            f = _sigmoid(z[:, H:2 * H])
            g = np.tanh(z[:, 2 * H:3 * H])
            o = _sigmoid(z[:, 3 * H:])
            c_t = f * c + i * g
            h_t = o * np.tanh(c_t)
            m = active[t][:, None]
            h_prev[t], c_prev[t] = h, c
            gates[t] = np.concatenate([i, f, g, o], axis=1)
            c_new[t] = c_t
            y[t] = np.where(m, h_t, 0)
            h = np.where(m, h_t, h)
            c = np.where(m, c_t, c)
        cache = None
        if keep:
            cache = dict(x=x, w_ih=w_ih, w_hh=w_hh, gates=gates, c_new=c_new,
                         h_prev=h_prev, c_prev=c_prev, active=active, reverse=reverse)
        return y, h, c, cache

    def layer_backward(self, cache, dy, dh_n, dc_n):
        x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
        gates, active = cache["gates"], cache["active"]
        T, B, _ = x.shape
        H = w_hh.shape[1]
        d_pre = np.zeros((T, B, 4 * H), dtype=x.dtype)   # gradient of the gate pre-activations
        dh, dc = dh_n.copy(), dc_n.copy()
        for t in reversed(_step_order(T, cache["reverse"])):
            m = active[t][:, None]
            i, f, g, o = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
            tanh_c = np.tanh(cache["c_new"][t])
            # An inactive step passed h and c through untouched: its gradient does too.
            dh_t = np.where(m, dh + dy[t], 0)
            dc_t = np.where(m, dc + dh_t * o * (1 - tanh_c ** 2), 0)
            d_pre[t] = np.concatenate([
                dc_t * g * i * (1 - i),
                dc_t * cache["c_prev"][t] * f * (1 - f),
                dc_t * i * (1 - g ** 2),
                dh_t * tanh_c * o * (1 - o),
            ], axis=1)
            dh = np.where(m, d_pre[t] @ w_hh, dh)
            dc = np.where(m, dc_t * f, dc)
        flat = d_pre.reshape(T * B, 4 * H)
        dx = d_pre @ w_ih
        dw_ih = flat.T @ x.reshape(T * B, -1)
        dw_hh = flat.T @ cache["h_prev"].reshape(T * B, H)
        dbias = flat.sum(axis=0)
        return dx, dw_ih, dw_hh, dbias, dh, dc
