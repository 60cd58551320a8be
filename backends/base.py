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
`reference.step_order` and `reference.active_steps` are the executable form of this.

Glossary: one name per quantity, the same in reference.py, cpu_kernels.py and
lstm_kernels.cu (a `_t` suffix on a CUDA kernel argument means "step t's slice of").
    x_proj   (T, B, G)  the input projection x @ w_ih.T (no bias)
    pre      (B, G)     a step's gate pre-activations x_proj[t] + h_prev @ w_hh.T + bias
    i, f, g, o (B, H)   the activated gates: input, forget (sigmoid), cell candidate (tanh),
                        output (sigmoid); `g` is always the candidate, never an index
    h_prev, c_prev (B, H)  the hidden and cell state entering a step (h0, c0 for the first)
    c = f * c_prev + i * g     h = o * tanh(c)     the state after an active step
    d_pre    (B, G)     the gradient of `pre`; dh, dc the gradients carried back through h, c
Saved activations (what a training forward keeps for its backward, per step t):
    gates    (T, B, G)  [i, f, g, o] of each step, zero where the step is inactive
    c_prev   (T, B, H)  the cell state entering each step; backward recomputes c from it
    h_prev   (T, B, H)  the hidden state entering each step, for dW_hh = d_pre.T @ h_prev
                        (the cpu backend keeps it packed with x as xh, see cpu_kernels)

The model above this layer (stacking, directions, dropout, batch_first) is backend-agnostic
and talks to a backend only through this class. Three steps of the layers around the stack
(the max over steps of max pooling, the n-gram embedding's sum and the embedding table's
gradient), the optimizer's Adam update and the gradients' squared norm are methods here
too, with engine/layers.py's and engine/optim.py's array code as their default, so that a
backend can compile them.
The registry (backends/__init__.py) learns whether a backend can run here from the class
alone (`needs`, `extra`, `unavailable_reason()`), so a backend's module must import without
its heavy dependencies: Numba and CuPy are imported inside methods or by sibling kernel
modules loaded lazily.
"""

from __future__ import annotations

import contextlib
import importlib.util
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


def check_layer_inputs(x, w_ih, w_hh, bias, h0, c0, lengths) -> None:
    """The contract of layer_forward's arguments (shapes, dtypes, 1 <= lengths <= T), checked
    before a compiled kernel indexes with them: the LSTM validates what users pass, and this
    keeps a direct call of a backend from reading or writing out of bounds. Cheap: shapes
    and a pass over the B lengths."""
    from ..errors import ArgumentError
    if len(x.shape) != 3:
        raise ArgumentError(f"x must be (T, B, I), got shape {tuple(x.shape)}")
    T, B, I = x.shape
    if T < 1 or B < 1 or I < 1 or len(w_hh.shape) != 2 or w_hh.shape[1] < 1:
        raise ArgumentError(f"x {tuple(x.shape)} and w_hh {tuple(w_hh.shape)} need T, B, I, H >= 1")
    H = w_hh.shape[1]
    want = {"w_ih": (4 * H, I), "w_hh": (4 * H, H), "bias": (4 * H,), "h0": (B, H), "c0": (B, H),
            "lengths": (B,)}
    for name, a in zip(want, (w_ih, w_hh, bias, h0, c0, lengths)):
        if tuple(a.shape) != want[name]:
            raise ArgumentError(f"{name} must have shape {want[name]} for x {tuple(x.shape)} and "
                                f"H={H}, got {tuple(a.shape)}")
        if name != "lengths" and a.dtype != x.dtype:
            raise ArgumentError(f"{name} has dtype {a.dtype}, x has {x.dtype}")
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu" or lengths.min() < 1 or lengths.max() > T:
        raise ArgumentError(f"lengths must be integers in [1, T={T}], got {lengths!r:.80}")


def check_upstream(T: int, B: int, H: int, dy, dh_n, dc_n) -> None:
    """The contract of layer_backward's gradients: dy (T, B, H), dh_n and dc_n (B, H)."""
    from ..errors import ArgumentError
    for name, a, shape in (("dy", dy, (T, B, H)), ("dh_n", dh_n, (B, H)), ("dc_n", dc_n, (B, H))):
        if tuple(a.shape) != shape:
            raise ArgumentError(f"{name} must have shape {shape}, got {tuple(a.shape)}")


class Backend(ABC):
    """One way of running the LSTM cell and its BPTT. Instances are cheap and stateless
    apart from device handles; the registry creates one per name."""

    name: ClassVar[str] = ""
    #: The array namespace of this backend's arrays (numpy, or cupy).
    xp: Any = np
    #: Modules it imports that may be missing (looked up with importlib.util.find_spec).
    needs: ClassVar[tuple[str, ...]] = ()
    #: The pip extra of lstm-engine that installs `needs` ("" when they are dependencies of
    #: the package itself).
    extra: ClassVar[str] = ""

    # -- can it run here? --------------------------------------------------------------
    @classmethod
    def install_hint(cls) -> str:
        """The command that installs what `needs` names."""
        return f"pip install 'lstm-engine[{cls.extra}]'" if cls.extra else "pip install 'lstm-engine'"

    @classmethod
    def unavailable_reason(cls) -> str:
        """Why this backend cannot run here, or "" when it can. Cheap and import-free for a
        backend that cannot run: the base checks `needs`; subclasses extend it (a device, a
        compiler) after calling it."""
        missing = [m for m in cls.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"missing {', '.join(missing)} (install with: {cls.install_hint()})"
        return ""

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

    def check_ready(self) -> None:
        """Raise now if this instance cannot run after all (the cuda backend compiles and
        loads its kernels here), so that the registry finds out when the backend is chosen
        (`auto` then falls back to the next one) rather than at the first forward. The default
        has nothing to check."""

    # -- the layers around the stack (engine/layers.py) ----------------------------------
    def max_over_steps(self, outputs, lengths):
        """outputs (T, B, F), lengths (B,) -> (best (B, F), arg (B, F) int64): the maximum
        over each sequence's valid steps and the first step that holds it. The default is
        engine/layers.py's array code; the cpu backend compiles it."""
        from ..layers import max_over_steps
        return max_over_steps(self.xp, outputs, lengths)

    def embedding_sum(self, weight, ids):
        """weight (V, E), ids (K, T, B) -> (T, B, E): the sum of the K ids' rows at each step,
        in id order (the n-gram embedding). The default is engine/layers.py's gather and sum;
        the cpu backend compiles it into one pass without the (K, T, B, E) gather."""
        from ..layers import embedding_sum
        return embedding_sum(self.xp, weight, ids)

    def embedding_grad(self, weight, tokens, d_out, out=None):
        """weight (V, E), tokens (N,) ids, d_out (N, E) -> (V, E): d_out's rows summed per
        id, in token order, in a new array or in ``out`` (V, E) (overwritten). The default is
        engine/layers.py's ``add.at``."""
        from ..layers import embedding_grad
        return embedding_grad(self.xp, weight, tokens, d_out, out)

    def adam_update(self, p, g, m, v, *, lr, betas, eps, step, weight_decay, decoupled):
        """One Adam (or AdamW) step of parameter ``p`` in place, with its moments ``m`` and
        ``v``, from gradient ``g`` (all of p's shape). The default is engine/optim.py's
        array code; the cpu backend compiles it into one pass."""
        from ..optim import adam_update
        adam_update(p, g, m, v, lr=lr, betas=betas, eps=eps, step=step, weight_decay=weight_decay,
                    decoupled=decoupled)

    def sum_of_squares(self, a):
        """a (any shape) -> 0-d float64 array on the device: the sum of a's elements squared
        in float64, one term of the gradients' global norm (optim.clip_grad_norm adds them up
        on the device and transfers once). The default is engine/optim.py's array code; the
        cpu backend compiles it into one pass without a scratch array."""
        from ..optim import sum_of_squares
        return sum_of_squares(self.xp, a)

    # -- the cell through time -------------------------------------------------------
    def prepare(self, w_ih, w_hh, bias):
        """One layer-direction's weights made ready for repeated inference calls, passed back
        as `layer_forward(..., prepared=...)`: the cpu backend packs them into its product
        panels once instead of on every call. A snapshot: it does not see later in-place
        changes of the arrays. The default has nothing to prepare (None)."""
        return None

    @abstractmethod
    def layer_forward(self, x, w_ih, w_hh, bias, h0, c0, lengths: np.ndarray,
                      reverse: bool, keep: bool, prepared=None):
        """Run one layer-direction.

        Returns (y, h_n, c_n, cache): y (T, B, H) with zeros at inactive steps, h_n and c_n
        (B, H), and `cache`, an opaque object for `layer_backward` (None unless `keep`).
        `prepared` is what `prepare(w_ih, w_hh, bias)` returned for these same weights, or None.
        """

    @abstractmethod
    def layer_backward(self, cache, dy, dh_n, dc_n):
        """Backpropagate through one layer-direction.

        dy (T, B, H) is the gradient of y, dh_n and dc_n (B, H) those of the final state.
        Returns (dx, dw_ih, dw_hh, dbias, dh0, dc0) with the shapes of the forward inputs;
        dbias is the gradient of the summed bias (the same for bias_ih and bias_hh).
        """
