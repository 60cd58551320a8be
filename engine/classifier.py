"""Sequence models on top of the LSTM stack: a classifier (one label per sequence) and a
tagger (one label per valid step).

Input is either token ids (T, B) into an embedding table (``vocab_size`` given) or feature
frames (T, B, F) (``input_size`` given). Token input may add hashed n-gram embeddings
(``ngram_buckets``): each step's input is then its token's row plus the rows of the n-grams
that end there, bigrams up to ``ngram_order`` tokens (``layers.ngram_ids``), as fastText's
input vectors are its n-grams' sum. Parameters carry torch-style names
(``embedding.weight``, ``lstm.weight_ih_l0``, ``head.weight``, ``head.bias``), so a
checkpoint reads like the state_dict of the equivalent ``torch.nn.Module``.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import layers
from .errors import ArgumentError, CallOrderError
from .checks import check_real, host_array, positive_int
from .lstm import LSTM, parameter_shapes
from .settings import ModelSettings

#: The defaults of the model settings (engine/settings.py) are the classifier's defaults.
_MODEL = ModelSettings()


def _ngram_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) \
            or not 2 <= order <= layers.NGRAM_MAX_ORDER:
        raise ArgumentError(f"ngram_order must be an integer from 2 to {layers.NGRAM_MAX_ORDER} (the longest "
                            f"hashed n-gram), got {order!r}")
    return int(order)


def _ngram_buckets(buckets, vocab_size) -> int:
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)) or buckets < 0:
        raise ArgumentError(f"ngram_buckets must be an integer >= 0 (0: no n-gram embeddings), got {buckets!r}")
    if buckets and vocab_size is None:
        raise ArgumentError(f"ngram_buckets={buckets} needs token input (vocab_size); feature input has no n-grams")
    return int(buckets)


class SequenceClassifier:
    """Embedding or features -> LSTM stack -> pooling over valid steps -> dropout -> dense.

    ``per_step=True`` makes it a tagger: the dense head is applied at every step and there is
    no pooling. The loss is softmax cross-entropy (mean over sequences, or over valid steps).
    """

    def __init__(self, num_classes: int, *, vocab_size: int | None = None,
                 embedding_dim: int = _MODEL.embedding_dim, input_size: int | None = None,
                 hidden_size: int = _MODEL.hidden_size, num_layers: int = _MODEL.num_layers,
                 bidirectional: bool = _MODEL.bidirectional, dropout: float = _MODEL.dropout,
                 pooling: str = _MODEL.pooling, per_step: bool = False,
                 ngram_buckets: int = _MODEL.ngram_buckets, ngram_order: int = _MODEL.ngram_order,
                 forget_bias: float = _MODEL.forget_bias, dtype=np.float32, backend="auto",
                 seed: int | None = None):
        if (vocab_size is None) == (input_size is None):
            raise ArgumentError("give exactly one of vocab_size (token input) and input_size (feature input)")
        if vocab_size is not None:
            vocab_size = positive_int("vocab_size", vocab_size)
            embedding_dim = positive_int("embedding_dim", embedding_dim)
        ngram_buckets = _ngram_buckets(ngram_buckets, vocab_size)
        ngram_order = _ngram_order(ngram_order)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ArgumentError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if pooling not in layers.POOLINGS:
            raise ArgumentError(f"pooling must be one of {layers.POOLINGS}, got {pooling!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ArgumentError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.config = dict(num_classes=int(num_classes), vocab_size=vocab_size, embedding_dim=int(embedding_dim),
                           input_size=input_size, hidden_size=int(hidden_size), num_layers=int(num_layers),
                           bidirectional=bool(bidirectional), dropout=float(dropout), pooling=pooling,
                           per_step=bool(per_step), ngram_buckets=ngram_buckets, ngram_order=ngram_order,
                           forget_bias=float(forget_bias),
                           dtype=np.dtype(dtype).name)
        lstm_in = int(embedding_dim) if vocab_size is not None else int(input_size)
        self.lstm = LSTM(lstm_in, hidden_size, num_layers, bidirectional=bidirectional, dropout=dropout,
                         forget_bias=forget_bias, dtype=dtype, backend=backend, seed=seed)
        self.rng = self.lstm._rng                      # one generator: one state to checkpoint
        self._init_head()
        self._saved = None

    @classmethod
    def from_config(cls, config: dict, backend="auto", seed: int | None = None) -> "SequenceClassifier":
        return cls(backend=backend, seed=seed, **config)

    @classmethod
    def parameter_shapes_of(cls, config: dict) -> dict[str, tuple]:
        """The parameters' names and shapes that ``config`` (``self.config``) makes, computed
        without building the model: a checkpoint's config is checked against its tensors
        before anything is allocated, so an absurd declared size allocates nothing."""
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "backend", "seed"}
        if not isinstance(config, dict) or not set(config) <= allowed or "num_classes" not in config:
            raise ArgumentError(f"a model config must be a dict with num_classes and some of "
                                f"{sorted(allowed)}, got {config!r}")
        c = {**{k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k in allowed}, **config}
        if (c["vocab_size"] is None) == (c["input_size"] is None):
            raise ArgumentError("give exactly one of vocab_size (token input) and input_size (feature input)")
        sizes = {k: positive_int(k, c[k]) for k in ("num_classes", "hidden_size", "num_layers")}
        lstm_in = positive_int("embedding_dim", c["embedding_dim"]) if c["vocab_size"] is not None \
            else positive_int("input_size", c["input_size"])
        shapes = {}
        if c["vocab_size"] is not None:
            shapes["embedding.weight"] = (positive_int("vocab_size", c["vocab_size"]), lstm_in)
        if _ngram_buckets(c["ngram_buckets"], c["vocab_size"]):
            shapes["ngram.weight"] = (c["ngram_buckets"], lstm_in)
        shapes.update({f"lstm.{k}": v for k, v in parameter_shapes(
            lstm_in, sizes["hidden_size"], sizes["num_layers"], bool(c["bidirectional"])).items()})
        width = sizes["hidden_size"] * (2 if c["bidirectional"] else 1)
        shapes["head.weight"] = (sizes["num_classes"], width)
        shapes["head.bias"] = (sizes["num_classes"],)
        return shapes

    # -- parameters --------------------------------------------------------------------
    @property
    def backend(self):
        return self.lstm.backend

    @property
    def dtype(self) -> np.dtype:
        return self.lstm.dtype

    def _init_head(self) -> None:
        cfg = self.config
        self.extra: dict[str, Any] = {}
        if cfg["vocab_size"] is not None:
            table = self.rng.standard_normal((cfg["vocab_size"], cfg["embedding_dim"]))  # as nn.Embedding
            table[0] = 0.0                                                              # padding row
            self.extra["embedding.weight"] = self.backend.asarray(table, dtype=self.dtype)
        if cfg["ngram_buckets"]:
            # small, as fastText's input vectors: a rare n-gram's row barely moves from its start
            bound = 1.0 / cfg["embedding_dim"]
            self.extra["ngram.weight"] = self.backend.asarray(
                self.rng.uniform(-bound, bound, (cfg["ngram_buckets"], cfg["embedding_dim"])), dtype=self.dtype)
        width = cfg["hidden_size"] * self.lstm.num_directions
        bound = 1.0 / np.sqrt(width)                                                    # as nn.Linear
        self.extra["head.weight"] = self.backend.asarray(
            self.rng.uniform(-bound, bound, (cfg["num_classes"], width)), dtype=self.dtype)
        self.extra["head.bias"] = self.backend.asarray(
            self.rng.uniform(-bound, bound, cfg["num_classes"]), dtype=self.dtype)

    #: The parameters whose gradient is zero but at the rows a batch looked up (the embedding
    #: tables; ``gradient_rows`` names those rows): data-parallel training may gather them
    #: instead of summing the whole table (engine/distributed.py, DataParallel.reduce).
    row_sparse = ("embedding.weight", "ngram.weight")

    def parameters(self) -> dict[str, Any]:
        """Name -> backend array, the live arrays (optimizers update them in place)."""
        named = {}
        for name in ("embedding.weight", "ngram.weight"):
            if name in self.extra:
                named[name] = self.extra[name]
        named.update({f"lstm.{k}": v for k, v in self.lstm.params.items()})
        named["head.weight"] = self.extra["head.weight"]
        named["head.bias"] = self.extra["head.bias"]
        return named

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: np.array(self.backend.to_numpy(v)) for k, v in self.parameters().items()}

    def load_state_dict(self, state: dict) -> None:
        expected = {k: tuple(v.shape) for k, v in self.parameters().items()}
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise ArgumentError(f"state_dict does not match this model: missing {missing}, unexpected {unexpected}")
        for name, shape in expected.items():
            if tuple(np.shape(state[name])) != shape:
                raise ArgumentError(f"state_dict[{name!r}] has shape {tuple(np.shape(state[name]))}, expected {shape}")
        self.lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        for k in self.extra:
            self.extra[k] = self.backend.asarray(np.asarray(state[k]), dtype=self.dtype)

    def to_backend(self, backend) -> "SequenceClassifier":
        extra = {k: self.backend.to_numpy(v) for k, v in self.extra.items()}
        self.lstm.to_backend(backend)                  # moves the LSTM's own parameters
        for k, v in extra.items():
            self.extra[k] = self.backend.asarray(v, dtype=self.dtype)
        self._saved = None
        return self

    # -- forward and backward ----------------------------------------------------------
    def forward(self, inputs, lengths, training: bool = False, prepared=None,
                window: layers.RowWindow | None = None):
        """inputs: (T, B) token ids or (T, B, F) features; lengths (B,) host ints; prepared:
        ``self.lstm.prepare()``'s weights for inference (see LSTM.prepare). ``window``: this
        batch is a share of a larger one, whose dropout masks it gets (data-parallel training;
        ``layers.RowWindow``).

        Returns logits (B, C), or (T, B, C) for a tagger (padded steps hold garbage).
        """
        xp, cfg = self.backend.xp, self.config
        inputs = host_array("inputs", inputs, xp)
        if len(inputs.shape) < 2 or 0 in inputs.shape[:2]:
            raise ArgumentError(f"inputs must be (T, B) token ids or (T, B, F) features with T, B >= 1, "
                                f"got shape {tuple(inputs.shape)}")
        lengths = self.lstm._check_lengths(lengths, *inputs.shape[:2])
        ngram_ids = None
        if cfg["vocab_size"] is not None:
            if inputs.ndim != 2 or inputs.dtype.kind not in "iu":
                raise ArgumentError(f"inputs must be (T, B) integer token ids, got shape "
                                    f"{tuple(inputs.shape)} dtype {inputs.dtype}")
            tokens = self.backend.asarray(inputs)
            # a negative id would silently index from the end of the table
            if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg["vocab_size"]):
                raise ArgumentError(f"token ids must lie in [0, vocab_size={cfg['vocab_size']}), got "
                                    f"min {int(tokens.min())} and max {int(tokens.max())}")
            x = layers.embedding_forward(xp, self.extra["embedding.weight"], tokens)
            if cfg["ngram_buckets"]:
                ngram_ids, ngram_x = self.ngram_input(tokens)
                x = x + ngram_x
        else:
            tokens = None
            check_real("inputs", inputs)
            x = self.backend.asarray(inputs, dtype=self.dtype)
        out, (h_n, c_n) = self.lstm.forward(x, lengths, training=training, prepared=prepared, window=window)
        D = self.lstm.num_directions
        if cfg["per_step"]:
            features, pool_saved = out, None
        else:
            features, pool_saved = layers.pool_forward(xp, cfg["pooling"], out, h_n, lengths, D,
                                                       max_kernel=self.backend.max_over_steps)
        mask = None
        if training and cfg["dropout"] > 0:
            mask = layers.dropout_mask(xp, self.rng, features.shape, cfg["dropout"], self.dtype, window)
            features = features * mask
        logits = layers.dense_forward(xp, self.extra["head.weight"], self.extra["head.bias"], features)
        self._saved = (tokens, ngram_ids, lengths, out.shape, pool_saved, mask, features, logits.shape) \
            if training else None
        return logits

    __call__ = forward

    def ngram_input(self, tokens, earlier=None):
        """The hashed n-gram ids of token ids (T, B) (``layers.ngram_ids``; ``earlier``: the
        tokens before them, for a stream) and the sum of their rows (T, B, E), which is
        added to the tokens' embedding."""
        xp = self.backend.xp
        ids = layers.ngram_ids(xp, tokens, self.config["ngram_buckets"], earlier, self.config["ngram_order"])
        return ids, self.backend.embedding_sum(self.extra["ngram.weight"], ids)

    def loss(self, logits, targets, lengths=None, label_smoothing: float = 0.0):
        """Cross-entropy of logits against int targets: (B,) for a classifier, (T, B) with
        ``lengths`` for a tagger; ``label_smoothing`` in [0, 1) as in torch's
        ``CrossEntropyLoss``. Returns (loss float, d_logits same shape as logits)."""
        xp = self.backend.xp
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.floating)) \
                or not 0 <= label_smoothing < 1:
            raise ArgumentError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        logits = self.lstm._check_array("logits", logits, (None,) * len(getattr(logits, "shape", ())),
                                        "of this model's logits")
        want = logits.shape[:-1]
        if logits.ndim != (3 if self.config["per_step"] else 2) or logits.shape[-1] != self.config["num_classes"]:
            raise ArgumentError(f"logits must be {'(T, B, C)' if self.config['per_step'] else '(B, C)'} "
                                f"with C = {self.config['num_classes']}, got shape {tuple(logits.shape)}")
        targets = host_array("targets", targets, xp)
        if targets.dtype.kind not in "iu" or tuple(targets.shape) != tuple(want):
            raise ArgumentError(f"targets must be integer class ids of shape {tuple(want)}, got "
                                f"shape {tuple(targets.shape)} dtype {targets.dtype}")
        if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= self.config["num_classes"]):
            raise ArgumentError(f"targets must lie in [0, num_classes={self.config['num_classes']}), got "
                                f"min {int(targets.min())} and max {int(targets.max())}")
        targets = xp.asarray(targets)
        if not self.config["per_step"]:
            return layers.cross_entropy(xp, logits, targets, smoothing=float(label_smoothing))
        T, B, C = logits.shape
        lengths = self.lstm._check_lengths(lengths, T, B)
        weights = layers.valid_mask(xp, lengths, T, logits.dtype).reshape(-1)
        loss, d = layers.cross_entropy(xp, logits.reshape(-1, C), targets.reshape(-1), weights, float(label_smoothing))
        return loss, d.reshape(T, B, C)

    def loss_weight(self, lengths) -> int:
        """How many terms ``loss`` averages over for a batch with these lengths: its sequences,
        or for a tagger its valid steps. Data-parallel ranks weight their shares' gradients
        by it, so that the combined gradient is the whole batch's mean."""
        return int(np.sum(lengths)) if self.config["per_step"] else len(lengths)

    def backward(self, d_logits) -> dict[str, Any]:
        """Gradients of every parameter (same names as ``parameters()``) from d_logits."""
        if self._saved is None:
            raise CallOrderError("backward() needs a forward(..., training=True) first")
        xp, cfg, D = self.backend.xp, self.config, self.lstm.num_directions
        tokens, ngram_ids, lengths, out_shape, pool_saved, mask, features, logits_shape = self._saved
        d_logits = self.lstm._check_array("d_logits", d_logits, logits_shape, str(tuple(logits_shape)))
        self._saved = None
        d_features, d_w, d_b = layers.dense_backward(xp, self.extra["head.weight"], features, d_logits)
        if mask is not None:
            d_features = d_features * mask
        d_h_n = None
        if cfg["per_step"]:
            d_out = d_features
        else:
            d_out, d_top = layers.pool_backward(xp, cfg["pooling"], d_features, pool_saved, out_shape, lengths, D)
            if d_top is not None:
                L = self.lstm.num_layers
                d_h_n = xp.zeros((L * D,) + d_top.shape[1:], dtype=self.dtype)
                d_h_n[-D:] = d_top
        g = self.lstm.backward(d_out, d_h_n=d_h_n)
        grads = {}
        self._looked_up = {"embedding.weight": tokens, "ngram.weight": ngram_ids}
        if tokens is not None:
            grads["embedding.weight"] = layers.embedding_backward(xp, self.extra["embedding.weight"], tokens, g.input,
                                                                  accumulate=self.backend.embedding_grad)
            if ngram_ids is not None:
                every = xp.broadcast_to(g.input, ngram_ids.shape + g.input.shape[-1:])
                grads["ngram.weight"] = layers.embedding_backward(
                    xp, self.extra["ngram.weight"], ngram_ids, every, padding_idx=None,
                    accumulate=self.backend.embedding_grad)
        grads.update({f"lstm.{k}": v for k, v in g.params.items()})
        grads["head.weight"] = d_w
        grads["head.bias"] = d_b
        return grads

    def gradient_rows(self, name: str) -> np.ndarray:
        """The rows of the table ``name`` (one of ``row_sparse``) that the last ``backward``
        may have given a gradient: the distinct ids its batch looked up (host int64,
        ascending). Every other row of that gradient is zero."""
        ids = getattr(self, "_looked_up", {}).get(name)
        if ids is None or name not in self.extra:
            raise CallOrderError(f"gradient_rows({name!r}) needs a backward() of a model with that table first")
        seen = np.zeros(self.extra[name].shape[0], dtype=bool)
        seen[np.asarray(self.backend.to_numpy(ids)).reshape(-1)] = True
        return np.flatnonzero(seen)

    def predict_proba(self, inputs, lengths, prepared=None):
        """Class probabilities as a host array: (B, C), or (T, B, C) for a tagger."""
        logits = self.forward(inputs, lengths, training=False, prepared=prepared)
        return np.asarray(self.backend.to_numpy(layers.softmax(self.backend.xp, logits)))

    # -- deployment (lstm_engine.onnx_export, lstm_engine.streaming) ------------------------
    def to_onnx(self, path, *, labels=None, encoder: dict | None = None, task: str | None = None):
        """Write this classifier as an ONNX model (needs ``lstm-engine[onnx]``); ``labels``,
        ``encoder`` and ``task`` go into its metadata. Returns the path (``onnx_export``)."""
        from .onnx_export import export_classifier
        return export_classifier(self, path, labels=labels, encoder=encoder, task=task)

    def stream(self, batch_size: int = 1):
        """A stateful stream of ``batch_size`` sequences: ``stream.push(inputs)`` returns the
        per-step probabilities of the new steps (per-step head) or the running prediction over
        everything seen so far (pooled) (``streaming.ClassifierStream``). Unidirectional only."""
        from .streaming import ClassifierStream
        return ClassifierStream(self, batch_size)

    def __repr__(self) -> str:
        c = self.config
        source = f"vocab_size={c['vocab_size']}, embedding_dim={c['embedding_dim']}" \
            if c["vocab_size"] is not None else f"input_size={c['input_size']}"
        head = "per_step=True" if c["per_step"] else f"pooling={c['pooling']!r}"
        return f"SequenceClassifier({source}, {self.lstm!r}, {head}, num_classes={c['num_classes']})"
