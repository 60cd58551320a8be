"""The contract every backend fulfils: one LSTM layer-direction over a whole sequence.

Shapes (time-major, C-contiguous unless said otherwise):
    T  time steps          B  batch size
    I  input features      H  hidden units
    G = 4H gate rows, in PyTorch's order i, f, g, o
    x        (T, B, I)     w_ih (G, I)    w_hh (G, H)    bias (G,) = bias_ih + bias_hh
    h0, c0   (B, H)        lengths (B,) int64 on the host, 1 <= lengths[b] <= T

Semantics of ragged batches (PyTorch's packed sequences): step t of sequence b is
*active* when t < lengths[b]. Inactive steps leave h and c unchanged and emit zeros, so a
forward layer's final state is the one after its last valid step, and a reverse layer
(which walks t = T-1 .. 0) starts from h0 at each sequence's own last valid step.

The model above this layer (stacking, directions, dropout, batch_first) is backend-agnostic
and talks to a backend only through this class.
"""

from __future__ import annotations

import contextlib

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Backend(ABC):
    """One way of running the LSTM cell and its BPTT. Instances are cheap and stateless
    apart from device handles; the registry creates one per name."""

    name: str = ""
    #: The array namespace of this backend's arrays (numpy, or cupy).
    xp: Any = np

    # -- moving arrays ---------------------------------------------------------------
    def asarray(self, a, dtype=None):
        """`a` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """`a` as a host NumPy array."""
        return np.asarray(a)

    def session(self):
        """A context to run a whole training or prediction step in (around the small array
        work between the kernels too); the cpu backend keeps BLAS single-threaded there."""
        return contextlib.nullcontext()

    def facts(self) -> dict:
        """Device facts for `lstm-engine backends` (threads, library versions, GPU...)."""
        return {}

    # -- the cell through time -------------------------------------------------------
    @abstractmethod
    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths: np.ndarray,
                      reverse: bool, keep: bool):
        """Run one layer-direction.

        Returns (y, h_n, c_n, cache): y (T, B, H) with zeros at inactive steps, h_n and c_n
        (B, H), and `cache`, an opaque object for `layer_backward` (None unless `keep`).
        """

    @abstractmethod
    def layer_backward(self, cache, dy, dh_n, dc_n):
        """Backpropagate through one layer-direction.

        dy (T, B, H) is the gradient of y, dh_n and dc_n (B, H) those of the final state.
        Returns (dx, dw_ih, dw_hh, dbias, dh0, dc0) with the shapes of the forward inputs;
        dbias is the gradient of the summed bias (the same for bias_ih and bias_hh).
        """
