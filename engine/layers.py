"""The small layers around the LSTM stack, each a forward and a backward function.

They take the backend's array module ``xp`` (NumPy or CuPy share this subset), so the whole
classifier stays on one device. Shapes: T steps, B sequences, E embedding width, D*H the LSTM's
output width, C classes; ``lengths`` (B,) counts the valid steps of each sequence, which are
the first ``lengths[b]`` steps (right padding).

Dropout masks have the shape of what they multiply: (T, B, F) for a time-major sequence of
features, (B, F) for one vector per sequence. A ``RowWindow`` says that a batch is a share
of a larger one (data-parallel training: engine/distributed.py): its masks are then those
of the whole batch, cut to the share's rows and steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArgumentError

POOLINGS = ("last", "mean", "max")


def valid_mask(xp, lengths, T: int, dtype):
    """(T, B, 1) mask: 1 at the valid steps of each sequence, 0 at padding."""
    steps = xp.arange(T).reshape(T, 1, 1)
    return (steps < xp.asarray(lengths).reshape(1, -1, 1)).astype(dtype)


def embedding_forward(xp, weight, tokens):
    """tokens (T, B) int -> (T, B, E)."""
    return weight[tokens]


def embedding_sum(xp, weight, ids):
    """ids (K, T, B) int -> (T, B, E): the sum of weight's rows of the K ids at each step, in
    id order (the n-gram embedding: one id per order)."""
    return embedding_forward(xp, weight, ids).sum(axis=0)


def embedding_grad(xp, weight, tokens, d_out, out=None):
    """(V, E) sum of d_out's rows (N, E) per token id (N,), in token order (``add.at``), into
    a new array or into ``out`` (weight's shape and dtype, zeroed first)."""
    if out is None:
        grad = xp.zeros_like(weight)
    else:
        grad = out
        grad[...] = 0
    xp.add.at(grad, tokens, d_out)
    return grad


def embedding_backward(xp, weight, tokens, d_out, padding_idx: int | None = 0, accumulate=None):
    """Gradient of the embedding table; repeated tokens accumulate (``embedding_grad``, or
    the backend's ``accumulate`` of the same signature less ``xp``), and the padding row gets
    none, as with ``torch.nn.Embedding(padding_idx=0)``."""
    flat, rows = tokens.reshape(-1), d_out.reshape(-1, weight.shape[1])
    grad = accumulate(weight, flat, rows) if accumulate is not None else embedding_grad(xp, weight, flat, rows)
    if padding_idx is not None:
        grad[padding_idx] = 0
    return grad


#: Multipliers of the character n-gram hash, one per position back from the current step
#: (the current token, the one before, ...), and a salt per order, so that a bigram and a
#: trigram of the same last characters fall into unrelated buckets. Odd and far apart; every
#: sum of products stays far inside int64 (ids < 2**20). ONNX export computes the same. The
#: orders are 2 up to the model's ``ngram_order`` (at most NGRAM_MAX_ORDER); a longer order
#: only adds n-grams, so a model's bigram and trigram ids never depend on it.
NGRAM_MULTIPLIERS = (1_000_003, 999_983, 998_561, 1_000_033, 999_979)
NGRAM_SALTS = {2: 104_729, 3: 7_919, 4: 1_299_709, 5: 3_571}
NGRAM_MAX_ORDER = len(NGRAM_MULTIPLIERS)


def ngram_orders(order: int) -> range:
    """The n-gram orders of a model whose longest n-gram has ``order`` tokens."""
    return range(2, order + 1)


def ngram_ids(xp, tokens, buckets: int, earlier=None, order: int = 3):
    """tokens (T, B) int -> (order - 1, T, B) int64 hashed n-gram ids in [0, buckets), one
    row per n-gram order 2..``order``.

    The n-gram ending at step t is the tokens of steps t-n+1..t. ``earlier`` (K, B), K =
    order - 1, holds the K tokens before step 0, oldest first (a stream's previous chunks);
    without it they read as the padding id 0, a start-of-text mark (a crop that starts
    mid-word sees the same mark). Padded steps get ids too; the LSTM ignores their inputs.
    """
    T, B = tokens.shape
    K = order - 1
    before = xp.zeros((K, B), dtype=xp.int64) if earlier is None else xp.asarray(earlier, dtype=xp.int64)
    joined = xp.concatenate([before, tokens.astype(xp.int64)])
    back = [joined[K - k:K - k + T] for k in range(K + 1)]       # back[k]: the token k steps earlier
    out = xp.empty((K, T, B), dtype=xp.int64)
    for i, n in enumerate(ngram_orders(order)):
        h = NGRAM_SALTS[n] + back[0] * NGRAM_MULTIPLIERS[0]
        for k in range(1, n):
            h = h + back[k] * NGRAM_MULTIPLIERS[k]
        out[i] = h % buckets
    return out


def max_over_steps(xp, outputs, lengths):
    """(T, B, F) -> the maximum over each sequence's valid steps (B, F) and the first step
    that holds it (B, F) int64, for the backward.

    A running maximum over the steps (each sequence has step 0; padded steps never
    compete); strictly greater keeps the first maximum, as argmax does, and a NaN never
    wins. argmax over axis 0 itself copies the array into the other order first: 2.3x
    slower at T60 B64.
    """
    best = outputs[0].copy()
    arg = xp.zeros(best.shape, dtype=xp.int64)
    lengths = xp.asarray(lengths).reshape(-1, 1)
    for t in range(1, outputs.shape[0]):
        better = (outputs[t] > best) & (lengths > t)
        xp.copyto(best, outputs[t], where=better)
        arg[better] = t
    return best, arg


def pool_forward(xp, kind: str, outputs, h_n, lengths, num_directions: int, max_kernel=None):
    """Reduce (T, B, D*H) outputs over each sequence's valid steps to (B, D*H).

    ``last`` takes the top layer's final states: for a bidirectional stack, the forward
    direction at the last valid step and the reverse direction at step 0 (both ends).
    ``max`` is ``max_over_steps``, or the backend's ``max_kernel`` of the same signature
    less ``xp``. Returns the pooled array and what ``pool_backward`` needs.
    """
    T = outputs.shape[0]
    if kind == "last":
        top = h_n[-num_directions:]                                  # (D, B, H)
        return xp.concatenate(list(top), axis=1), None
    if kind == "mean":
        mask = valid_mask(xp, lengths, T, outputs.dtype)
        counts = xp.asarray(lengths).reshape(-1, 1).astype(outputs.dtype)
        return (outputs * mask).sum(axis=0) / counts, mask
    if kind == "max":
        return max_kernel(outputs, lengths) if max_kernel is not None else max_over_steps(xp, outputs, lengths)
    raise ArgumentError(f"pooling must be one of {POOLINGS}, got {kind!r}")


def pool_backward(xp, kind: str, d_pooled, saved, out_shape, lengths, num_directions: int):
    """Gradients of ``pool_forward``: returns (d_outputs or None, d_h_n top rows or None)."""
    T, B, DH = out_shape
    if kind == "last":
        H = DH // num_directions
        return None, xp.stack([d_pooled[:, d * H:(d + 1) * H] for d in range(num_directions)])
    if kind == "mean":
        counts = xp.asarray(lengths).reshape(-1, 1).astype(d_pooled.dtype)
        return saved * (d_pooled / counts)[None], None
    d_out = xp.zeros(out_shape, dtype=d_pooled.dtype)
    xp.put_along_axis(d_out, saved[None], d_pooled[None], axis=0)    # max: to the winner only
    return d_out, None


def dense_forward(xp, weight, bias, x):
    """x (..., K) @ weight (C, K).T + bias -> (..., C), as ``torch.nn.Linear``."""
    return x @ weight.T + bias


def dense_backward(xp, weight, x, d_out):
    """Returns (d_x, d_weight, d_bias) for ``dense_forward``; leading axes are flattened."""
    K, C = weight.shape[1], weight.shape[0]
    x2, d2 = x.reshape(-1, K), d_out.reshape(-1, C)
    return (d_out @ weight), d2.T @ x2, d2.sum(axis=0)


def cross_entropy(xp, logits, targets, weights=None, smoothing: float = 0.0):
    """Mean softmax cross-entropy of logits (N, C) against int targets (N,).

    ``weights`` (N,) (0/1 for padded steps of a per-step head) makes it a weighted mean.
    ``smoothing`` in [0, 1): the target distribution is 1 - smoothing on the target class
    plus smoothing / C on every class (torch's ``label_smoothing``).
    Returns (loss as a Python float, d_logits).
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    probs = exp / total
    rows = xp.arange(logits.shape[0])
    log_total = xp.log(total[:, 0])
    nll = log_total - shifted[rows, targets]
    if smoothing:
        # minus the mean log-probability over the classes: log(total) - mean(shifted)
        nll = (1 - smoothing) * nll + smoothing * (log_total - shifted.mean(axis=1))
    if weights is None:
        weights = xp.ones(logits.shape[0], dtype=logits.dtype)
    denom = float(weights.sum())
    loss = float((nll * weights).sum()) / denom
    d_logits = probs                                    # the gradient is built in place
    if smoothing:
        d_logits -= smoothing / logits.shape[1]
    d_logits[rows, targets] -= 1 - smoothing
    d_logits *= (weights / denom)[:, None]
    return loss, d_logits


def softmax(xp, logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = xp.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def log_softmax(xp, logits):
    """log_softmax over the last axis; idempotent, so log-probabilities pass unchanged."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass(frozen=True)
class RowWindow:
    """A batch that is rows [start, start + B) of a whole batch of ``rows`` sequences whose
    longest has ``steps`` steps; the share itself may be padded to fewer steps (T <= steps).

    Data-parallel ranks each run a share of every global batch. Drawing dropout masks for
    the whole batch from the same generator on every rank, and keeping the share's rows and
    first T steps, gives each rank exactly the masks one process would apply to those rows,
    and leaves every rank's generator in the same state as that process's.
    """
    start: int
    rows: int
    steps: int

    def check(self, B: int, T: int) -> None:
        if not (0 <= self.start and self.start + B <= self.rows and 1 <= T <= self.steps):
            raise ArgumentError(f"a share of {B} rows and {T} steps does not fit {self}")


#: Bit generators for which ``advance(n)`` skips exactly n doubles of ``Generator.random``
#: (one 64-bit output each); others (Philox buffers its outputs) draw the whole batch.
_SKIPPABLE = (np.random.PCG64, np.random.PCG64DXSM)


def window_uniforms(rng: np.random.Generator, shape: tuple, window: RowWindow) -> np.ndarray:
    """``rng.random(whole)[share]`` for the share ``window`` describes, and the generator left
    where drawing the whole would leave it. ``shape`` is the share's: (T, B, F) or (B, F).

    The whole batch's draws are laid out in C order (step, row, feature); the share's rows of
    one step are one contiguous run, so the draws of other ranks' rows and of steps past T
    are skipped with ``advance`` instead of drawn: each rank's cost follows its own share."""
    if len(shape) == 3:
        T, B, F = shape
        steps = window.steps
    elif len(shape) == 2:
        (B, F), T, steps = shape, 1, 1
    else:
        raise ArgumentError(f"a dropout mask with a row window must be (T, B, F) or (B, F), got {shape}")
    window.check(B, T if len(shape) == 3 else 1)
    rows, start = window.rows, window.start
    bits = rng.bit_generator
    if not isinstance(bits, _SKIPPABLE):
        whole = rng.random((steps, rows, F))
        return np.ascontiguousarray(whole[:T, start:start + B]).reshape(shape)
    out = np.empty((T, B, F))
    before, after = start * F, (rows - start - B) * F
    for t in range(T):
        if before:
            bits.advance(before)
        out[t] = rng.random((B, F))
        if after:
            bits.advance(after)
    if steps > T:
        bits.advance((steps - T) * rows * F)
    return out.reshape(shape)


def dropout_mask(xp, rng, shape, rate: float, dtype, window: RowWindow | None = None):
    """Inverted dropout: kept units are scaled by 1/(1-rate). Drawn on the host from the
    model's generator so that a seed gives the same masks on every backend; with ``window``,
    the whole batch's masks cut to this share (``RowWindow``)."""
    uniforms = rng.random(shape) if window is None else window_uniforms(rng, tuple(shape), window)
    kept = uniforms >= rate
    return xp.asarray(kept / (1.0 - rate), dtype=dtype)
