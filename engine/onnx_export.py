"""ONNX export: the LSTM stack, a trained classifier, or a predictor (a classifier with its
task's encoder and labels) as a standard ONNX file, built with the ``onnx`` package's helpers,
checked with ``onnx.checker`` and run, in the tests, by onnxruntime (extra ``onnx``).

Shapes: T steps and B sequences (both dynamic, named ``time`` and ``batch`` in the file), I
inputs, F features, E embedding width, H hidden units, D directions (1 or 2), L layers, C
classes. Every float is float32.

The graphs
----------
``LSTM.to_onnx(path)`` / ``export_lstm``:

    inputs   input     float32 (T, B, I), or (B, T, I) for a batch_first LSTM
             lengths   int64 (B,)          valid steps per sequence, 1..T (right padding)
             h0, c0    float32 (L*D, B, H)  initial states, row l*D + d (omitted with
                                            with_state=False: zeros)
    outputs  output    float32 (T, B, D*H), or batch-first; zeros at padded steps
             h_n, c_n  float32 (L*D, B, H)  each sequence's final states (the reverse
                                            direction's at step 0)

``SequenceClassifier.to_onnx(path)`` / ``export_classifier`` / ``export_predictor``
(batch-major: one row per sequence, as a program that pads a list of inputs builds them):

    inputs   tokens    int64 (B, T) ids    (embedding models; pad with any valid id), or
             features  float32 (B, T, F)   (feature models)
             lengths   int64 (B,)          valid steps per sequence, 1..T
    outputs  probabilities  float32 (B, C): softmax over the classes, columns in the order of
                            the ``labels`` metadata; (B, T, C) for a per-step head, whose
                            padded steps hold the head applied to zeros (ignore them)
             logits         float32, the same shape, before the softmax

Inside, per layer: one ONNX ``LSTM`` node (``direction`` forward or bidirectional;
``sequence_lens`` from ``lengths``, so a ragged batch runs as PyTorch's packed sequences do:
padded steps emit zeros, final states come from each sequence's last valid step, the reverse
direction starts there); stacked layers are consecutive nodes, Y (T, D, B, H) reshaped to
(T, B, D*H) in between; dropout is left out (inference). Then an embedding ``Gather`` in front
(with ``ngram_buckets``, plus the hashed n-grams' rows: the hash of ``layers.ngram_ids`` in
int64 ``Mul``/``Add``/``Mod`` on the tokens shifted by ``Pad`` and ``Slice``, a ``Gather`` per
order), and behind: pooling over the valid steps (``last``: the top layer's final states, both
ends of a bidirectional layer as in ``layers.pool_forward``; ``mean`` and ``max`` with a (T, B, 1)
mask built from ``lengths``), the dense head and the softmax.

Weights: ONNX stacks the gates i, o, f, c (PyTorch and this engine: i, f, g, o), so the
blocks are reordered; ONNX keeps both biases, B = [Wb, Rb] (D, 8H). A float64 model is cast
to float32 (onnxruntime's CPU ``LSTM`` kernel is float32 only); the metadata
``source_dtype`` says so, and the outputs then agree with the float64 engine to float32
rounding only.

Opset 14 (IR version 8, the pair onnx's VERSION_TABLE gives): ``LSTM``'s last semantic
revision is 14 (``layout``; 22 only adds bfloat16), and every other operator used here
(Softmax over one axis, ReduceSum with axes as an input, Slice, Squeeze, Range, Where) has its
present form by 13; a low opset keeps the file loadable by older runtimes (onnxruntime 1.8 on,
TensorRT 8, OpenVINO, onnxruntime-mobile).

Metadata (``metadata_props``, string key -> string value; "JSON" values are UTF-8 JSON),
enough for a program in another language to use the file without this package:

    format        "lstm-engine-onnx/1"
    producer      "lstm-engine <version>"
    kind          "lstm" or "classifier"
    config        JSON: the LSTM's or classifier's settings (hidden_size, num_layers,
                  bidirectional, pooling, per_step, ...)
    source_dtype  "float32", or "float64" when the weights were cast
    inputs        the input layout in words (as above)
    labels        JSON array of class names, column k of probabilities is labels[k]
                  (classifiers exported with labels; every predictor)
    task          the task name ("language-id", "speech-digits", "speech-recognition"),
                  predictors only
    encoder       JSON: how raw input becomes the graph's input (predictors only):
      text ("type": "chars"): {"chars": a string of the vocabulary, "max_length": N,
         "lowercase": true/false (absent: false), "pad_id": 0, "unknown_id": 1,
         "first_char_id": 2, "normalization": ...}.
         To encode a text: (1) Unicode NFC; (2) split on whitespace (the characters for which
         Python's str.isspace() is true) and join the pieces with one U+0020 space, which also
         drops leading and trailing whitespace; (2b) when lowercase is true, each code point
         becomes its Unicode lower-case mapping (Python's str.lower() of that one code point)
         where the mapping is one code point, and stays as it is otherwise ('İ');
         (3) keep the first max_length code points;
         (4) a code point at index k of ``chars`` (counted in code points) has id
         first_char_id + k, any other code point unknown_id. A text that is empty after (2)
         cannot be classified. Batch: tokens (B, T) right-padded with pad_id, lengths the
         number of code points. With "window": {"above": A, "size": S, "stride": R} (absent:
         skip this), (5) a text of more than A ids is also classified as the windows
         ids[s:s+S], s = 0, R, 2R, ... while s + S <= its length, plus one that ends with the
         text when the last of those does not; its probabilities are the softmax of the sum of
         the log-probabilities of the whole text and of its windows.
      features ("type": "features"): {"input_size": F, "features": null (the model was
         trained on precomputed feature frames: give the same kind) or the settings of
         lstm_engine.data.audio_features.FeatureConfig used to compute the frames from audio
         (sample rate, window and hop in ms, MFCCs, mel bands, deltas, per-utterance
         mean/variance normalisation)}. A speech-recognition model (a per-step head trained
         with CTC) adds "ctc": {"blank": 0, "beam_width": N, "vocabulary": {"kind":
         "characters" or "words", "tokens": [...], "unknown": null or the token standing for
         unknown ones}}: class k > 0 of the probabilities is tokens[k - 1]. To read a
         transcript: take the most probable class at each valid step, merge repeats, drop the
         blank (or search prefixes with a beam of beam_width), and join the tokens with ""
         (characters) or " " (words).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import layers
from .errors import ArgumentError, ArgumentTypeError, require

FORMAT = "lstm-engine-onnx/1"
OPSET = 14
IR_VERSION = 8
#: Row blocks of PyTorch's (i, f, g, o) gate stack in ONNX's order (i, o, f, c).
ONNX_GATE_ORDER = (0, 3, 1, 2)
#: The symbolic dimensions of the file's inputs and outputs.
BATCH, TIME = "batch", "time"

_TEXT_NORMALIZATION = ("NFC; whitespace runs (str.isspace) -> one U+0020, leading/trailing "
                       "whitespace removed; if lowercase, each code point -> its lower case where "
                       "that is one code point; first max_length code points")
_LSTM_INPUTS = ("input float32 (time, batch, input_size) [(batch, time, input_size) if batch_first]; "
                "lengths int64 (batch,) valid steps, right padding; h0, c0 float32 "
                "(num_layers*num_directions, batch, hidden_size) when exported with state")
_CLASSIFIER_INPUTS = ("{source} (batch, time{width}); lengths int64 (batch,) valid steps per "
                      "sequence, right padding")


def _onnx():
    return require("onnx", "onnx", "ONNX export")


def _onnxruntime():
    return require("onnxruntime", "onnx", "running an exported ONNX model")


class _Graph:
    """Nodes and initializers of one ONNX graph, with unique value names."""

    def __init__(self):
        self.onnx = _onnx()
        self.nodes, self.initializers, self._count = [], [], 0

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value) -> str:
        name = self._fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        return self.const("ints", np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, *inputs: str, outputs=None, n_out: int = 1, **attrs):
        """Add a node; returns its output name (a tuple when n_out > 1). ``outputs`` names
        them (the graph's outputs); otherwise fresh names are made."""
        names = list(outputs) if outputs else [self._fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if len(names) == 1 else tuple(names)


def _float32(array) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(array), dtype=np.float32)


def onnx_gate_order(w: np.ndarray, hidden_size: int) -> np.ndarray:
    """(4H, ...) rows stacked i, f, g, o -> i, o, f, c (ONNX's LSTM)."""
    H = hidden_size
    return np.concatenate([w[k * H:(k + 1) * H] for k in ONNX_GATE_ORDER], axis=0)


def _lstm_stack(g: _Graph, lstm, x_tm: str, lengths: str, h0: str | None, c0: str | None):
    """The ONNX LSTM nodes of ``lstm`` on time-major x. Returns (y (T, B, D*H), [Y_h per
    layer], [Y_c per layer]), each Y_h/Y_c (D, B, H)."""
    L, D, H = lstm.num_layers, lstm.num_directions, lstm.hidden_size
    state = lstm.state_dict()
    seq_lens = g.op("Cast", lengths, to=g.onnx.TensorProto.INT32)   # the LSTM op takes int32
    layer_in, h_parts, c_parts = x_tm, [], []
    for layer in range(L):
        suffixes = [lstm._suffix(layer, d) for d in range(D)]
        W = np.stack([onnx_gate_order(_float32(state[f"weight_ih_{s}"]), H) for s in suffixes])
        R = np.stack([onnx_gate_order(_float32(state[f"weight_hh_{s}"]), H) for s in suffixes])
        B = np.stack([np.concatenate([onnx_gate_order(_float32(state[f"bias_ih_{s}"]), H),
                                      onnx_gate_order(_float32(state[f"bias_hh_{s}"]), H)]) for s in suffixes])
        if h0 is None:
            init_h = init_c = ""                            # optional inputs left out: zeros
        elif L == 1:
            init_h, init_c = h0, c0
        else:
            rows = (g.ints(layer * D), g.ints((layer + 1) * D), g.ints(0))
            init_h, init_c = g.op("Slice", h0, *rows), g.op("Slice", c0, *rows)
        Y, Y_h, Y_c = g.op("LSTM", layer_in, g.const(f"W_l{layer}", W), g.const(f"R_l{layer}", R),
                           g.const(f"B_l{layer}", B), seq_lens, init_h, init_c, n_out=3,
                           hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if D == 1:
            layer_in = g.op("Squeeze", Y, g.ints(1))                        # (T, 1, B, H) -> (T, B, H)
        else:
            tbdh = g.op("Transpose", Y, perm=[0, 2, 1, 3])                  # (T, B, 2, H)
            layer_in = g.op("Reshape", tbdh, g.ints(0, 0, -1))              # (T, B, 2H)
        h_parts.append(Y_h)
        c_parts.append(Y_c)
    return layer_in, h_parts, c_parts


def _value_info(g: _Graph, name: str, elem_type, shape):
    return g.onnx.helper.make_tensor_value_info(name, elem_type, list(shape))


def _save(g: _Graph, path, name: str, inputs, outputs, metadata: dict, doc: str) -> Path:
    """Assemble, check (onnx.checker with strict shape inference) and write atomically."""
    from . import __version__
    from .checkpoint import atomic_write
    onnx, helper = g.onnx, g.onnx.helper
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="lstm-engine", producer_version=__version__, doc_string=doc)
    model.ir_version = IR_VERSION
    meta = {"format": FORMAT, "producer": f"lstm-engine {__version__}", **metadata}
    helper.set_model_props(model, {k: str(v) for k, v in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return atomic_write(path, model.SerializeToString())


def _source_dtype(model) -> str:
    return np.dtype(model.dtype).name


def export_lstm(lstm, path, *, with_state: bool = True) -> Path:
    """Write ``lstm`` (an ``LSTM``) to ``path`` as an ONNX model (module docstring: graph,
    metadata); returns the path. ``with_state=False`` leaves out the h0/c0 inputs (zeros)."""
    from .lstm import LSTM
    if not isinstance(lstm, LSTM):
        raise ArgumentTypeError(f"export_lstm needs an lstm_engine.LSTM, got {type(lstm).__name__}")
    g = _Graph()
    F32, I64 = g.onnx.TensorProto.FLOAT, g.onnx.TensorProto.INT64
    L, D, H = lstm.num_layers, lstm.num_directions, lstm.hidden_size
    x_dims = (BATCH, TIME, lstm.input_size) if lstm.batch_first else (TIME, BATCH, lstm.input_size)
    inputs = [_value_info(g, "input", F32, x_dims), _value_info(g, "lengths", I64, (BATCH,))]
    if with_state:
        inputs += [_value_info(g, name, F32, (L * D, BATCH, H)) for name in ("h0", "c0")]
    x_tm = g.op("Transpose", "input", perm=[1, 0, 2]) if lstm.batch_first else "input"
    y, h_parts, c_parts = _lstm_stack(g, lstm, x_tm, "lengths", "h0" if with_state else None,
                                      "c0" if with_state else None)
    if lstm.batch_first:
        g.op("Transpose", y, outputs=["output"], perm=[1, 0, 2])
    else:
        g.op("Identity", y, outputs=["output"])
    for out, parts in (("h_n", h_parts), ("c_n", c_parts)):
        g.op("Concat", *parts, outputs=[out], axis=0)
    y_dims = (BATCH, TIME, D * H) if lstm.batch_first else (TIME, BATCH, D * H)
    outputs = [_value_info(g, "output", F32, y_dims),
               *(_value_info(g, name, F32, (L * D, BATCH, H)) for name in ("h_n", "c_n"))]
    config = dict(input_size=lstm.input_size, hidden_size=H, num_layers=L, bidirectional=lstm.bidirectional,
                  batch_first=lstm.batch_first, with_state=bool(with_state))
    metadata = {"kind": "lstm", "config": json.dumps(config), "source_dtype": _source_dtype(lstm),
                "inputs": _LSTM_INPUTS}
    return _save(g, path, "lstm_engine_lstm", inputs, outputs, metadata,
                 f"lstm-engine LSTM: {L} layer(s), {'bidirectional' if D == 2 else 'unidirectional'}, "
                 f"hidden {H}; see the metadata")


def _pool(g: _Graph, kind: str, y: str, h_top: str, x_tm: str, lengths: str, D: int) -> str:
    """(T, B, D*H) outputs -> (B, D*H) over each sequence's valid steps (layers.pool_forward)."""
    if kind == "last":
        if D == 1:
            return g.op("Squeeze", h_top, g.ints(0))
        bdh = g.op("Transpose", h_top, perm=[1, 0, 2])                      # (B, 2, H): fwd, rev
        return g.op("Reshape", bdh, g.ints(0, -1))
    T = g.op("Gather", g.op("Shape", x_tm), g.const("zero", np.int64(0)), axis=0)
    steps = g.op("Range", g.const("zero", np.int64(0)), T, g.const("one", np.int64(1)))
    valid = g.op("Less", g.op("Unsqueeze", steps, g.ints(1)), lengths)      # (T, 1) < (B,) -> (T, B)
    valid = g.op("Unsqueeze", valid, g.ints(2))                             # (T, B, 1)
    if kind == "mean":
        mask = g.op("Cast", valid, to=g.onnx.TensorProto.FLOAT)
        total = g.op("ReduceSum", g.op("Mul", y, mask), g.ints(0), keepdims=0)
        counts = g.op("Unsqueeze", g.op("Cast", lengths, to=g.onnx.TensorProto.FLOAT), g.ints(1))
        return g.op("Div", total, counts)
    if kind == "max":
        lowest = g.const("neg_inf", np.array(-np.inf, dtype=np.float32))
        return g.op("ReduceMax", g.op("Where", valid, y, lowest), axes=[0], keepdims=0)
    raise ArgumentError(f"cannot export pooling {kind!r}: expected one of last, mean, max")


def _ngram_input(g: _Graph, tokens_tm: str, table, order: int) -> str:
    """(T, B, E): the n-gram rows of ``layers.ngram_ids``, summed, from int64 tokens (T, B):
    each earlier step's tokens are the tokens padded with k zeros in front, the last k cut."""
    back = [tokens_tm]
    for k in range(1, order):
        padded = g.op("Pad", tokens_tm, g.ints(k, 0, 0, 0), g.const("zero", np.array(0, dtype=np.int64)))
        back.append(g.op("Slice", padded, g.ints(0), g.ints(-k), g.ints(0)))
    rows, total = g.const("ngram", _float32(table)), None
    for n in layers.ngram_orders(order):
        h = g.op("Add", g.const("salt", np.array(layers.NGRAM_SALTS[n], dtype=np.int64)),
                 g.op("Mul", back[0], g.const("mult", np.array(layers.NGRAM_MULTIPLIERS[0], dtype=np.int64))))
        for k in range(1, n):
            h = g.op("Add", h, g.op("Mul", back[k], g.const("mult", np.array(layers.NGRAM_MULTIPLIERS[k],
                                                                              dtype=np.int64))))
        ids = g.op("Mod", h, g.const("buckets", np.array(table.shape[0], dtype=np.int64)))
        part = g.op("Gather", rows, ids, axis=0)
        total = part if total is None else g.op("Add", total, part)
    return total


def _encoder_metadata(encoder: dict) -> dict:
    """The predictor's encoder, with what the module docstring promises for its type."""
    kind = encoder.get("type") if isinstance(encoder, dict) else None
    if kind == "chars":
        from .tasks.language_id import PAD, UNK
        return {**encoder, "pad_id": PAD, "unknown_id": UNK, "first_char_id": UNK + 1,
                "normalization": _TEXT_NORMALIZATION}
    if kind == "features":
        return dict(encoder)
    raise ArgumentError(f"cannot export encoder type {kind!r}: the ONNX metadata describes 'chars' "
                        f"(text) and 'features' encoders only")


def export_classifier(model, path, *, labels=None, encoder: dict | None = None,
                      task: str | None = None) -> Path:
    """Write ``model`` (a ``SequenceClassifier``) to ``path`` as an ONNX model (module
    docstring: graph, metadata); returns the path. ``labels`` (one name per class),
    ``encoder`` (the task's, as stored in checkpoints) and ``task`` go into the metadata."""
    from .classifier import SequenceClassifier
    if not isinstance(model, SequenceClassifier):
        raise ArgumentTypeError(f"export_classifier needs a SequenceClassifier, got {type(model).__name__}")
    cfg, lstm = model.config, model.lstm
    C, D = cfg["num_classes"], lstm.num_directions
    metadata = {"kind": "classifier", "config": json.dumps(cfg), "source_dtype": _source_dtype(model)}
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != C:
            raise ArgumentError(f"labels must name the model's {C} classes, got {len(labels)}")
        metadata["labels"] = json.dumps(labels, ensure_ascii=False)
    if encoder is not None:
        metadata["encoder"] = json.dumps(_encoder_metadata(encoder), ensure_ascii=False)
    if task is not None:
        metadata["task"] = str(task)

    g = _Graph()
    F32, I64 = g.onnx.TensorProto.FLOAT, g.onnx.TensorProto.INT64
    params = model.state_dict()
    if cfg["vocab_size"] is not None:
        source = _value_info(g, "tokens", I64, (BATCH, TIME))
        table = g.const("embedding", _float32(params["embedding.weight"]))
        tokens_tm = g.op("Transpose", "tokens", perm=[1, 0])                             # (T, B)
        x_tm = g.op("Gather", table, tokens_tm, axis=0)                                  # (T, B, E)
        if cfg["ngram_buckets"]:
            x_tm = g.op("Add", x_tm, _ngram_input(g, tokens_tm, params["ngram.weight"], cfg["ngram_order"]))
        metadata["inputs"] = _CLASSIFIER_INPUTS.format(source="tokens int64", width="")
    else:
        source = _value_info(g, "features", F32, (BATCH, TIME, cfg["input_size"]))
        x_tm = g.op("Transpose", "features", perm=[1, 0, 2])
        metadata["inputs"] = _CLASSIFIER_INPUTS.format(source="features float32", width=", input_size")
    inputs = [source, _value_info(g, "lengths", I64, (BATCH,))]
    y, h_parts, _ = _lstm_stack(g, lstm, x_tm, "lengths", None, None)
    weight_t = g.const("head_weight_t", _float32(params["head.weight"]).T.copy())    # (D*H, C)
    bias = g.const("head_bias", _float32(params["head.bias"]))
    if cfg["per_step"]:
        features = g.op("Transpose", y, perm=[1, 0, 2])                                # (B, T, D*H)
        out_dims = (BATCH, TIME, C)
    else:
        features = _pool(g, cfg["pooling"], y, h_parts[-1], x_tm, "lengths", D)        # (B, D*H)
        out_dims = (BATCH, C)
    logits = g.op("Add", g.op("MatMul", features, weight_t), bias, outputs=["logits"])
    g.op("Softmax", logits, outputs=["probabilities"], axis=-1)
    outputs = [_value_info(g, "probabilities", F32, out_dims), _value_info(g, "logits", F32, out_dims)]
    return _save(g, path, "lstm_engine_classifier", inputs, outputs, metadata,
                 f"lstm-engine sequence classifier ({task or 'no task'}), {C} classes; see the metadata")


def export_predictor(predictor, path) -> Path:
    """Write a predictor (an object with ``model``, ``encoder``, ``labels`` and ``task``, as
    ``lstm_engine.predictor.load_predictor`` returns) to ``path`` as an ONNX model whose metadata
    holds the labels and the encoder."""
    for attribute in ("model", "encoder", "labels", "task"):
        if not hasattr(predictor, attribute):
            raise ArgumentTypeError(f"export_predictor needs a predictor with .model, .encoder, .labels "
                                    f"and .task; {type(predictor).__name__} has no .{attribute}")
    return export_classifier(predictor.model, path, labels=predictor.labels, encoder=predictor.encoder,
                             task=predictor.task.name)


# -- running an exported file ----------------------------------------------------------------
def onnx_session(path, threads: int | None = None):
    """An onnxruntime CPU session on ``path``; ``threads`` sets its intra-op threads (default:
    onnxruntime's own choice). One inter-op thread: the graph is a chain."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def metadata(path) -> dict:
    """The file's metadata_props, JSON values decoded."""
    onnx = _onnx()
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    for key in ("config", "labels", "encoder"):
        if key in props:
            props[key] = json.loads(props[key])
    return props


def classifier_feeds(model, inputs, lengths) -> dict:
    """The ONNX feeds for the engine's time-major classifier inputs: (T, B) ids or (T, B, F)
    features and (B,) lengths -> batch-major tokens/features and int64 lengths."""
    inputs = np.asarray(inputs)
    lengths = np.asarray(lengths, dtype=np.int64)
    if model.config["vocab_size"] is not None:
        return {"tokens": np.ascontiguousarray(inputs.T, dtype=np.int64), "lengths": lengths}
    return {"features": np.ascontiguousarray(inputs.transpose(1, 0, 2), dtype=np.float32), "lengths": lengths}


def compare_with_engine(model, path, *, batch: int = 8, max_steps: int = 20, seed: int = 0) -> dict:
    """Run the exported classifier ``path`` in onnxruntime and ``model`` in the engine on the
    same random ragged batch; returns {"max_abs_diff": of the probabilities (valid steps only
    for a per-step head), "batch", "lengths"}."""
    rng = np.random.default_rng(seed)
    cfg = model.config
    lengths = rng.integers(1, max_steps + 1, size=batch)
    lengths[0] = max_steps                                     # T = max_steps
    if cfg["vocab_size"] is not None:
        inputs = rng.integers(1, cfg["vocab_size"], size=(max_steps, batch))
    else:
        inputs = rng.standard_normal((max_steps, batch, cfg["input_size"])).astype(model.dtype)
    want = model.predict_proba(inputs, lengths)
    got = onnx_session(path).run(["probabilities"], classifier_feeds(model, inputs, lengths))[0]
    if cfg["per_step"]:
        got = got.transpose(1, 0, 2)
        valid = np.arange(max_steps)[:, None] < lengths[None, :]
        got, want = got[valid], want[valid]
    return {"max_abs_diff": float(np.abs(got - want).max()), "batch": batch, "lengths": lengths.tolist()}
