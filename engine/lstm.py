"""The LSTM stack: PyTorch's parameters and semantics, run on any registered backend.

Shapes follow torch.nn.LSTM: x (T, B, I) or, with batch_first, (B, T, I); outputs
(T, B, D*H) (or batch-first); states (L*D, B, H) with row l*D + d for layer l, direction d
(d = 1 is the reverse direction). Gates are stacked in the order i, f, g, o.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import Backend, get_backend
from .checks import check_real, finite_number, host_array, positive_int, seed_value
from .errors import ArgumentError, ArgumentTypeError, CallOrderError
from .layers import RowWindow, dropout_mask

_DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}


@dataclass
class Gradients:
    """What `LSTM.backward` returns: the gradient of every input of `forward`."""
    input: Any            # same shape and layout as x
    h_0: Any              # (L*D, B, H)
    c_0: Any              # (L*D, B, H)
    params: dict          # parameter name -> gradient, same names and shapes as state_dict()


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in _DTYPES:
        raise ArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def parameter_shapes(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool) -> dict[str, tuple]:
    """The parameters' names and shapes in PyTorch's order, without building anything."""
    H, D, shapes = hidden_size, 2 if bidirectional else 1, {}
    for layer in range(num_layers):
        in_size = input_size if layer == 0 else H * D
        for d in range(D):
            s = f"l{layer}" + ("_reverse" if d else "")
            shapes[f"weight_ih_{s}"] = (4 * H, in_size)
            shapes[f"weight_hh_{s}"] = (4 * H, H)
            shapes[f"bias_ih_{s}"] = (4 * H,)
            shapes[f"bias_hh_{s}"] = (4 * H,)
    return shapes


@dataclass
class PreparedWeights:
    """What ``LSTM.prepare`` returns: per layer-direction suffix ("l0", "l1_reverse"...), the
    summed bias and the backend's prepared weights; and the parameter arrays it was made from,
    to tell when they have been replaced."""
    backend: Any
    params: dict
    layers: dict

    def matches(self, lstm) -> bool:
        return lstm.backend is self.backend and lstm.params.keys() == self.params.keys() and all(
            lstm.params[k] is v for k, v in self.params.items())


class LSTM:
    """A multi-layer, optionally bidirectional LSTM with explicit forward and backward.

    Parameters are held under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``...)
    and shapes, so ``state_dict()`` loads into ``torch.nn.LSTM`` and back. ``forget_bias`` is
    added to the forget-gate slice of ``bias_ih`` at initialisation (Keras's
    ``unit_forget_bias`` uses 1.0; PyTorch's default is 0.0).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                 forget_bias: float = 0.0, dtype=np.float32, backend: str | Backend | None = "auto",
                 seed: int | None = None, check_finite: bool = False):
        self.input_size = positive_int("input_size", input_size)
        self.hidden_size = positive_int("hidden_size", hidden_size)
        self.num_layers = positive_int("num_layers", num_layers)
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        self.forget_bias = finite_number("forget_bias", forget_bias)
        self.dtype = _check_dtype(dtype)
        self.check_finite = bool(check_finite)
        self.backend = get_backend(backend)
        self._rng = np.random.default_rng(seed_value(seed))
        self._tape = None
        self.params: dict[str, Any] = {}
        self._init_parameters()

    # -- parameters --------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffix(self, layer: int, direction: int) -> str:
        return f"l{layer}" + ("_reverse" if direction else "")

    def parameter_shapes(self) -> dict[str, tuple]:
        """Names and shapes in PyTorch's order."""
        return parameter_shapes(self.input_size, self.hidden_size, self.num_layers, self.bidirectional)

    def _init_parameters(self) -> None:
        H = self.hidden_size
        bound = 1.0 / np.sqrt(H)
        for name, shape in self.parameter_shapes().items():
            value = self._rng.uniform(-bound, bound, size=shape)
            if name.startswith("bias_ih"):
                value[H:2 * H] += self.forget_bias
            self.params[name] = self.backend.asarray(value, dtype=self.dtype)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the parameters under PyTorch's names."""
        return {name: np.array(self.backend.to_numpy(v)) for name, v in self.params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Load parameters by name; accepts NumPy arrays, array-likes and torch tensors. Every
        value must have its parameter's shape and hold finite real numbers; nothing is
        changed unless all of them do."""
        if not isinstance(state, Mapping):
            raise ArgumentTypeError(f"state_dict must be a mapping of parameter names to arrays, "
                                    f"got {type(state).__name__}")
        shapes = self.parameter_shapes()
        missing = [n for n in shapes if n not in state]
        unexpected = [n for n in state if n not in shapes]
        if missing or unexpected:
            raise ArgumentError(f"state_dict does not match this LSTM: missing {missing}, unexpected {unexpected}")
        loaded = {}
        for name, shape in shapes.items():
            value = state[name]
            if hasattr(value, "detach"):                       # a torch tensor
                value = value.detach().cpu().numpy()
            if hasattr(value, "get") and not isinstance(value, Mapping):   # a CuPy array
                value = value.get()
            value = host_array(f"state_dict[{name!r}]", value)
            if value.shape != shape:
                raise ArgumentError(f"state_dict[{name!r}] has shape {value.shape}, expected {shape}")
            check_real(f"state_dict[{name!r}]", value)
            if not np.isfinite(value).all():
                raise ArgumentError(f"state_dict[{name!r}] contains NaN or Inf values")
            loaded[name] = value
        self.params = {name: self.backend.asarray(value, dtype=self.dtype) for name, value in loaded.items()}

    def to_backend(self, backend: str | Backend) -> "LSTM":
        """Move the parameters to another backend (in place); returns self."""
        state = self.state_dict()
        self.backend = get_backend(backend)
        self.load_state_dict(state)
        self._tape = None
        return self

    # -- validation --------------------------------------------------------------------
    def _check_array(self, name: str, a, shape: tuple, what: str):
        a = host_array(name, a, self.backend.xp)
        if len(a.shape) != len(shape):
            raise ArgumentError(f"{name} must be {len(shape)}-D {what}, got shape {tuple(a.shape)}")
        for k, (got, want) in enumerate(zip(a.shape, shape)):
            if want is not None and got != want:
                raise ArgumentError(f"{name} must have shape {what}, got {tuple(a.shape)} "
                                    f"(dimension {k} is {got}, expected {want})")
        if np.dtype(a.dtype) != self.dtype:
            raise ArgumentTypeError(f"{name} has dtype {np.dtype(a.dtype)}, but this LSTM is {self.dtype}; "
                                    f"convert it with .astype(np.{self.dtype}) or build the LSTM with "
                                    f"dtype=np.{np.dtype(a.dtype)}")
        if self.check_finite and not bool(self.backend.xp.isfinite(self.backend.asarray(a)).all()):
            raise ArgumentError(f"{name} contains NaN or Inf values")
        return self.backend.asarray(a)

    def _check_lengths(self, lengths, T: int, B: int) -> np.ndarray:
        if lengths is None:
            return np.full(B, T, dtype=np.int64)
        if hasattr(lengths, "get"):                            # a CuPy array
            lengths = lengths.get()
        if hasattr(lengths, "detach"):
            lengths = lengths.detach().cpu().numpy()
        lengths = host_array("lengths", lengths)
        if lengths.shape != (B,):
            raise ArgumentError(f"lengths must have shape ({B},) (one per sequence), got {lengths.shape}")
        if lengths.dtype.kind not in "iu":
            raise ArgumentTypeError(f"lengths must be integers, got dtype {lengths.dtype}")
        if B and (lengths.min() < 1 or lengths.max() > T):
            raise ArgumentError(f"lengths must lie in [1, T={T}], got min {lengths.min()} and max {lengths.max()}")
        return lengths.astype(np.int64)

    # -- forward and backward ----------------------------------------------------------
    def prepare(self) -> "PreparedWeights":
        """The weights made ready for repeated inference calls, ``forward(...,
        training=False, prepared=p)``: the cpu backend packs them into its product panels once
        here instead of in every call (what streams and predictors do). A snapshot: replacing
        the parameters (``load_state_dict``, ``to_backend``) makes ``forward`` refuse it, but an
        in-place change of their values (an optimizer step) is not seen: prepare again."""
        prepared = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                s = self._suffix(layer, d)
                p = self.params
                bias = p[f"bias_ih_{s}"] + p[f"bias_hh_{s}"]
                prepared[s] = (bias, self.backend.prepare(p[f"weight_ih_{s}"], p[f"weight_hh_{s}"], bias))
        return PreparedWeights(self.backend, dict(self.params), prepared)

    def forward(self, x, lengths=None, initial_state=None, training: bool = True, prepared=None,
                window: RowWindow | None = None):
        """Run the stack.

        x: (T, B, input_size), or (B, T, input_size) with batch_first. lengths: (B,) valid steps
        per sequence (right padding), None for all T. initial_state: (h_0, c_0), each
        (num_layers * num_directions, B, hidden_size); zeros when None. With training=True,
        dropout is applied and what backward needs is kept; otherwise nothing is kept.
        prepared: what ``prepare()`` returned, for inference only. window: this batch is a
        share of a larger one (data-parallel training); dropout masks are the larger batch's,
        cut to this share (``layers.RowWindow``).

        Returns (outputs, (h_n, c_n)): outputs (T, B, D*H) (batch-first if so built), zeros at
        padded steps; h_n and c_n from each sequence's last valid step.
        """
        if not isinstance(training, (bool, np.bool_)):
            raise ArgumentTypeError(f"training must be True or False, got {training!r}")
        xp, L, D, H = self.backend.xp, self.num_layers, self.num_directions, self.hidden_size
        if prepared is not None:
            if training:
                raise ArgumentError("prepared weights are for inference: call forward(..., training=False)")
            if not prepared.matches(self):
                raise CallOrderError("these prepared weights were made for other parameters (they "
                                     "were replaced since): call prepare() again")
        x = self._check_array("x", x, (None, None, self.input_size),
                              "(B, T, input_size)" if self.batch_first else "(T, B, input_size)")
        if self.batch_first:
            x = xp.ascontiguousarray(x.transpose(1, 0, 2))
        T, B = x.shape[:2]
        if T == 0 or B == 0:
            raise ArgumentError(f"x must have at least one step and one sequence, got shape {tuple(x.shape)}")
        lengths = self._check_lengths(lengths, T, B)
        if window is not None:
            window.check(B, T)
        if initial_state is None:
            h0 = c0 = xp.zeros((L * D, B, H), dtype=self.dtype)
        else:
            if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
                raise ArgumentError("initial_state must be a pair (h_0, c_0)")
            h0 = self._check_array("initial_state[0] (h_0)", initial_state[0], (L * D, B, H), f"({L * D}, {B}, {H})")
            c0 = self._check_array("initial_state[1] (c_0)", initial_state[1], (L * D, B, H), f"({L * D}, {B}, {H})")

        tape = {"T": T, "lengths": lengths, "layers": [], "masks": []}
        h_n, c_n = [], []
        layer_in = x
        for layer in range(L):
            outs = []
            caches = []
            for d in range(D):
                s = self._suffix(layer, d)
                p = self.params
                bias, packed = (prepared.layers[s] if prepared is not None else
                                (p[f"bias_ih_{s}"] + p[f"bias_hh_{s}"], None))
                y, h, c, cache = self.backend.layer_forward(
                    layer_in, p[f"weight_ih_{s}"], p[f"weight_hh_{s}"], bias, h0[layer * D + d],
                    c0[layer * D + d], lengths, reverse=bool(d), keep=training, prepared=packed)
                outs.append(y)
                caches.append(cache)
                h_n.append(h)
                c_n.append(c)
            layer_out = outs[0] if D == 1 else xp.concatenate(outs, axis=2)
            mask = None
            if training and self.dropout > 0 and layer < L - 1:
                mask = dropout_mask(xp, self._rng, layer_out.shape, self.dropout, self.dtype, window)
                layer_out = layer_out * mask
            tape["layers"].append(caches)
            tape["masks"].append(mask)
            layer_in = layer_out
        self._tape = tape if training else None
        out = xp.ascontiguousarray(layer_in.transpose(1, 0, 2)) if self.batch_first else layer_in
        return out, (xp.stack(h_n), xp.stack(c_n))

    __call__ = forward

    def backward(self, d_outputs=None, d_h_n=None, d_c_n=None) -> Gradients:
        """Backpropagate through the last `forward(training=True)`.

        d_outputs: gradient of the outputs (same shape), d_h_n / d_c_n: of the final states;
        any may be None (zero). The kept activations are released afterwards.
        """
        if self._tape is None:
            raise CallOrderError("backward() needs a forward(..., training=True) first "
                                 "(and each forward can be backpropagated once)")
        tape = self._tape
        xp, L, D, H = self.backend.xp, self.num_layers, self.num_directions, self.hidden_size
        T, B = tape["T"], len(tape["lengths"])
        out_shape = (B, T, D * H) if self.batch_first else (T, B, D * H)
        if d_outputs is None:
            d_layer = xp.zeros((T, B, D * H), dtype=self.dtype)
        else:
            d_layer = self._check_array("d_outputs", d_outputs, out_shape, str(out_shape))
            if self.batch_first:
                d_layer = xp.ascontiguousarray(d_layer.transpose(1, 0, 2))
        zeros = xp.zeros((L * D, B, H), dtype=self.dtype)
        d_h_n = zeros if d_h_n is None else self._check_array("d_h_n", d_h_n, (L * D, B, H), f"({L * D}, {B}, {H})")
        d_c_n = zeros if d_c_n is None else self._check_array("d_c_n", d_c_n, (L * D, B, H), f"({L * D}, {B}, {H})")
        self._tape = None                       # inputs are valid: the tape is used up now

        grads: dict[str, Any] = {}
        dh0 = [None] * (L * D)
        dc0 = [None] * (L * D)
        for layer in reversed(range(L)):
            mask = tape["masks"][layer]
            if mask is not None:
                d_layer = d_layer * mask
            d_in = None
            for d in range(D):
                s = self._suffix(layer, d)
                dy = d_layer[:, :, d * H:(d + 1) * H]
                dx, dw_ih, dw_hh, db, dh, dc = self.backend.layer_backward(
                    tape["layers"][layer][d], dy, d_h_n[layer * D + d], d_c_n[layer * D + d])
                grads[f"weight_ih_{s}"] = dw_ih
                grads[f"weight_hh_{s}"] = dw_hh
                grads[f"bias_ih_{s}"] = db
                grads[f"bias_hh_{s}"] = db.copy()
                dh0[layer * D + d], dc0[layer * D + d] = dh, dc
                d_in = dx if d_in is None else d_in + dx
            d_layer = d_in
        d_x = xp.ascontiguousarray(d_layer.transpose(1, 0, 2)) if self.batch_first else d_layer
        ordered = {name: grads[name] for name in self.parameter_shapes()}
        return Gradients(input=d_x, h_0=xp.stack(dh0), c_0=xp.stack(dc0), params=ordered)

    # -- deployment (lstm_engine.onnx_export, lstm_engine.streaming) ------------------------
    def to_onnx(self, path, *, with_state: bool = True):
        """Write this LSTM as an ONNX model (needs ``lstm-engine[onnx]``); returns the path.
        Inputs input, lengths[, h0, c0]; outputs output, h_n, c_n (``onnx_export``)."""
        from .onnx_export import export_lstm
        return export_lstm(self, path, with_state=with_state)

    def stream(self, batch_size: int = 1, initial_state=None):
        """A stateful stream: ``stream.push(chunk)`` runs the next steps of ``batch_size``
        sequences, carrying (h, c) between chunks (``streaming.LSTMStream``). Unidirectional
        only: a reverse direction needs the steps that have not arrived yet."""
        from .streaming import LSTMStream
        return LSTMStream(self, batch_size, initial_state)

    def __repr__(self) -> str:
        extra = ", bidirectional=True" if self.bidirectional else ""
        extra += f", dropout={self.dropout}" if self.dropout else ""
        extra += ", batch_first=True" if self.batch_first else ""
        return (f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}{extra}, "
                f"dtype={self.dtype}, backend={self.backend.name!r})")
