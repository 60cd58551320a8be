"""Streaming inference: sequences that arrive in chunks, with (h, c) carried between them.

Shapes: T the steps of one chunk (any number, different from chunk to chunk), B the stream's
sequences (``batch_size``), b the ones a call touches (all B, or ``rows``), I inputs, H hidden
units, L layers, C classes. Chunks are time-major like ``LSTM.forward`` ((T, b, I), or
(b, T, I) for a batch_first LSTM) and may be ragged: ``lengths`` (b,) gives each sequence's
valid steps in the chunk (right padding, >= 1 each).

- ``LSTMStream`` (``LSTM.stream()``): ``push(chunk)`` returns the chunk's outputs (T, b, H);
  the state after a sequence's last valid step is kept, so pushing a sequence in chunks gives
  the outputs and final states of one forward over the whole sequence (the same arithmetic,
  step for step; only the cpu backend's batched input projection may round differently).
- ``ClassifierStream`` (``SequenceClassifier.stream()``): a per-step head returns the new
  steps' probabilities (T, b, C). A pooled head returns a running prediction (b, C): what the
  classifier would say about everything seen so far, i.e. ``predict_proba`` on the whole
  prefix: ``last`` uses the state after the latest step, ``mean`` the mean of every output
  seen so far (a running sum and count), ``max`` their running elementwise maximum. A model
  with n-gram embeddings (``ngram_buckets``) keeps each sequence's last tokens, so the n-grams
  that span two chunks are those of the whole sequence.
- ``PredictorStream`` (for a predictor: ``model``, ``encoder``, ``labels``, ``task``): raw
  input per stream, text pieces (language-id) or feature frames (F columns), any length, empty
  included; the running prediction again equals ``predictor.predict_proba`` on the input seen
  so far, up to the encoder's ``window`` ``above`` steps (past them the stream goes on reading
  the whole text: windows would mean a stream per window). Text is normalised as the encoder
  does (NFC, whitespace collapsed, lower-cased when the encoder says so, cut at max_length);
  NFC may still change the last character when a combining mark arrives, so each text's
  steps from its last starter character (Unicode combining class 0) on are held back: they
  enter the running prediction through a look-ahead from the committed state (``peek``) and
  are committed once a later starter arrives. Feature frames must be computed as in training;
  a model trained with per-utterance normalisation sees different frames when a live stream
  cannot know the whole utterance.

A stream runs the LSTM on weights prepared once (``LSTM.prepare``: the cpu backend's packed
panels), not packed again for every chunk; it prepares them again when the parameters are
replaced (``load_state_dict``), but does not see their values changed in place (an optimizer
step while the stream is open): make a new stream after training.

Only unidirectional stacks stream: the reverse direction of a bidirectional layer starts at
the sequence's last step, so its first output depends on input that has not arrived yet.
"""

from __future__ import annotations

import numpy as np

from . import layers
from .errors import ArgumentError, ArgumentTypeError

_BIDIRECTIONAL = ("streaming needs a unidirectional LSTM (bidirectional=False): the reverse "
                  "direction of a bidirectional layer reads each sequence from its last step, so "
                  "its outputs depend on input that has not arrived yet; run the whole sequence "
                  "through forward() / predict_proba() instead")


def _batch_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {value!r}")
    return int(value)


class LSTMStream:
    """(h, c) of ``batch_size`` sequences between chunks; see the module docstring."""

    def __init__(self, lstm, batch_size: int = 1, initial_state=None):
        if lstm.bidirectional:
            raise ArgumentError(_BIDIRECTIONAL)
        self.lstm = lstm
        self.batch_size = _batch_size(batch_size)
        self._prepared = None
        self.reset(initial_state)

    def reset(self, initial_state=None) -> None:
        """Start over: zero states (or ``initial_state``, (h_0, c_0) each (L, B, H))."""
        lstm, shape = self.lstm, (self.lstm.num_layers, self.batch_size, self.lstm.hidden_size)
        if initial_state is None:
            self.h = lstm.backend.xp.zeros(shape, dtype=lstm.dtype)
            self.c = lstm.backend.xp.zeros(shape, dtype=lstm.dtype)
        else:
            if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
                raise ArgumentError("initial_state must be a pair (h_0, c_0)")
            what = str(shape)
            self.h = lstm._check_array("initial_state[0] (h_0)", initial_state[0], shape, what).copy()
            self.c = lstm._check_array("initial_state[1] (c_0)", initial_state[1], shape, what).copy()
        #: (B,) steps pushed so far per sequence
        self.steps = np.zeros(self.batch_size, dtype=np.int64)

    @property
    def state(self):
        """(h, c), each (L, B, H): the states after each sequence's latest step."""
        return self.h, self.c

    def rows(self, rows) -> np.ndarray | None:
        """``rows`` checked: None (every sequence) or distinct indices into the B sequences."""
        if rows is None:
            return None
        idx = np.asarray(rows)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) == 0:
            raise ArgumentError(f"rows must be a non-empty 1-D list of sequence indices, got {rows!r}")
        if idx.min() < 0 or idx.max() >= self.batch_size or len(np.unique(idx)) != len(idx):
            raise ArgumentError(f"rows must be distinct indices in [0, {self.batch_size}), got {idx.tolist()}")
        return idx.astype(np.int64)

    def run(self, chunk, lengths=None, rows=None):
        """The chunk through the stack from the current states, without keeping the new ones:
        (outputs, (h, c) of the rows, lengths (b,) host ints). ``push`` keeps them."""
        rows = self.rows(rows)
        b = self.batch_size if rows is None else len(rows)
        batch_axis = 0 if self.lstm.batch_first else 1
        shape = getattr(chunk, "shape", None)
        if shape is None or len(shape) != 3 or shape[batch_axis] != b:
            layout = "(b, T, input_size)" if self.lstm.batch_first else "(T, b, input_size)"
            raise ArgumentError(f"chunk must be {layout} with b = {b} sequences "
                                f"({'batch_size' if rows is None else 'len(rows)'}), got shape "
                                f"{None if shape is None else tuple(shape)}")
        T = shape[1 - batch_axis]
        lengths = np.full(b, T, dtype=np.int64) if lengths is None else lengths
        h0, c0 = (self.h, self.c) if rows is None else (self.h[:, rows], self.c[:, rows])
        # the weights packed once, not per chunk; made again if the parameters were replaced
        if self._prepared is None or not self._prepared.matches(self.lstm):
            self._prepared = self.lstm.prepare()
        out, (h, c) = self.lstm.forward(chunk, lengths=lengths, initial_state=(h0, c0), training=False,
                                        prepared=self._prepared)
        return out, (h, c), np.asarray(lengths, dtype=np.int64)

    def commit(self, h, c, lengths, rows=None) -> None:
        """Keep (h, c) of a ``run`` as the rows' states."""
        rows = self.rows(rows)
        if rows is None:
            self.h, self.c = h, c
            self.steps += lengths
        else:
            self.h[:, rows], self.c[:, rows] = h, c
            self.steps[rows] += lengths

    def push(self, chunk, lengths=None, rows=None):
        """Run the next steps of the sequences (all, or ``rows``); returns the chunk's outputs
        (T, b, H) (batch-first if the LSTM is), zeros past a sequence's ``lengths``."""
        out, (h, c), lengths = self.run(chunk, lengths, rows)
        self.commit(h, c, lengths, rows)
        return out


class ClassifierStream:
    """A ``SequenceClassifier`` on streams; see the module docstring for what ``push`` returns."""

    def __init__(self, model, batch_size: int = 1):
        self.model = model
        self.lstm_stream = LSTMStream(model.lstm, batch_size)
        self.reset()

    @property
    def batch_size(self) -> int:
        return self.lstm_stream.batch_size

    @property
    def steps(self) -> np.ndarray:
        return self.lstm_stream.steps

    def reset(self) -> None:
        self.lstm_stream.reset()
        xp, width = self.model.backend.xp, self.model.lstm.hidden_size
        # the running mean's sum or the running maximum, (B, H); unused for last / per-step
        self._pooled = xp.zeros((self.batch_size, width), dtype=self.model.dtype)
        # (K, B): each sequence's last K tokens, oldest first, 0 (the start mark) before its
        # first; the n-grams of a chunk's first steps reach back into them
        self._history = np.zeros((self.model.config["ngram_order"] - 1, self.batch_size), dtype=np.int64)

    def _lstm_input(self, inputs, rows):
        model, xp = self.model, self.model.backend.xp
        if model.config["vocab_size"] is None:
            return model.backend.asarray(inputs, dtype=model.dtype)
        tokens = xp.asarray(inputs)
        if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
            raise ArgumentError(f"inputs must be (T, b) integer token ids, got shape "
                                f"{tuple(tokens.shape)} dtype {tokens.dtype}")
        x = layers.embedding_forward(xp, model.extra["embedding.weight"], tokens)
        if model.config["ngram_buckets"]:
            b = self.batch_size if rows is None else len(rows)
            if tokens.shape[1] != b:
                raise ArgumentError(f"inputs must be (T, b) with b = {b} sequences, got shape {tuple(tokens.shape)}")
            x = x + model.ngram_input(tokens, self._history if rows is None else self._history[:, rows])[1]
        return x

    def _keep_history(self, inputs, lengths, rows) -> None:
        """After a push: each row's last K tokens, its valid steps of the chunk included."""
        K = self._history.shape[0]
        earlier = self._history if rows is None else self._history[:, rows]
        joined = np.concatenate([earlier, np.asarray(self.model.backend.to_numpy(inputs), dtype=np.int64)])
        last = joined[lengths.reshape(1, -1) + np.arange(K).reshape(-1, 1), np.arange(joined.shape[1])]
        if rows is None:
            self._history = last
        else:
            self._history[:, rows] = last

    def _probabilities(self, features):
        model, xp = self.model, self.model.backend.xp
        logits = layers.dense_forward(xp, model.extra["head.weight"], model.extra["head.bias"], features)
        return np.asarray(model.backend.to_numpy(layers.softmax(xp, logits)))

    def _advance(self, inputs, lengths, rows, keep: bool):
        stream, xp, cfg = self.lstm_stream, self.model.backend.xp, self.model.config
        rows = stream.rows(rows)
        out, (h, c), lengths = stream.run(self._lstm_input(inputs, rows), lengths, rows)
        if cfg["per_step"]:
            probs = self._probabilities(out)
        else:
            pooled = self._pooled if rows is None else self._pooled[rows]
            seen = stream.steps if rows is None else stream.steps[rows]
            total = xp.asarray((seen + lengths).reshape(-1, 1).astype(self.model.dtype))
            kind = cfg["pooling"]
            if kind == "last":
                features = h[-1]
            elif kind == "mean":
                mask = layers.valid_mask(xp, lengths, out.shape[0], out.dtype)
                pooled = pooled + (out * mask).sum(axis=0)
                features = pooled / total
            else:
                chunk_max, _ = self.model.backend.max_over_steps(out, lengths)
                fresh = xp.asarray((seen == 0).reshape(-1, 1))
                pooled = xp.where(fresh, chunk_max, xp.maximum(pooled, chunk_max))
                features = pooled
            probs = self._probabilities(features)
            if keep and kind != "last":
                if rows is None:
                    self._pooled = pooled
                else:
                    self._pooled[rows] = pooled
        if keep:
            stream.commit(h, c, lengths, rows)
            if cfg["vocab_size"] is not None and cfg["ngram_buckets"]:
                self._keep_history(inputs, lengths, rows)
        return probs

    def push(self, inputs, lengths=None, rows=None):
        """The next steps of the sequences (all, or ``rows``): inputs (T, b) token ids or
        (T, b, F) features, ``lengths`` (b,) valid steps. Returns host probabilities: (T, b, C)
        for a per-step head, else the running prediction (b, C)."""
        return self._advance(inputs, lengths, rows, keep=True)

    def peek(self, inputs, lengths=None, rows=None):
        """What ``push`` would return, leaving the stream as it is."""
        return self._advance(inputs, lengths, rows, keep=False)

    def probabilities(self, rows=None):
        """The running prediction (b, C) of a pooled head; NaN rows for sequences that have
        seen nothing yet."""
        cfg, stream = self.model.config, self.lstm_stream
        if cfg["per_step"]:
            raise ArgumentError("a per-step head has no running prediction; push() returns each "
                                "step's probabilities")
        rows = stream.rows(rows)
        idx = np.arange(self.batch_size) if rows is None else rows
        if cfg["pooling"] == "last":
            features = stream.h[-1][idx]
        elif cfg["pooling"] == "mean":
            count = np.maximum(stream.steps[idx], 1).reshape(-1, 1).astype(self.model.dtype)
            features = self._pooled[idx] / self.model.backend.xp.asarray(count)
        else:
            features = self._pooled[idx]
        probs = self._probabilities(features)
        probs[stream.steps[idx] == 0] = np.nan
        return probs


class _TextState:
    """One text stream's raw input and the ids committed to the classifier stream."""

    def __init__(self):
        self.raw = ""
        self.committed: list[int] = []
        self.pending = np.zeros(0, dtype=np.int64)      # ids held back (from the last starter on)
        self.full = False                   # max_length reached: later text cannot matter


class PredictorStream:
    """A predictor (``model``, ``encoder``, ``labels``, ``task``) on raw input streams; see the
    module docstring."""

    def __init__(self, predictor, batch_size: int = 1):
        for attribute in ("model", "encoder", "labels", "task"):
            if not hasattr(predictor, attribute):
                raise ArgumentTypeError(f"a predictor stream needs .model, .encoder, .labels and .task; "
                                        f"{type(predictor).__name__} has no .{attribute}")
        kind = predictor.encoder.get("type")
        if kind not in ("chars", "features"):
            raise ArgumentError(f"cannot stream encoder type {kind!r}: 'chars' (text) and 'features' are streamable")
        self.predictor = predictor
        self.text = kind == "chars"
        self.classifier = ClassifierStream(predictor.model, batch_size)
        self.reset()

    @property
    def batch_size(self) -> int:
        return self.classifier.batch_size

    @property
    def labels(self) -> list:
        return self.predictor.labels

    def reset(self) -> None:
        self.classifier.reset()
        self._texts = [_TextState() for _ in range(self.batch_size)]

    def _chunks(self, chunks) -> list:
        one = isinstance(chunks, str) or isinstance(chunks, np.ndarray)
        if one and self.batch_size == 1:
            chunks = [chunks]
        if not isinstance(chunks, (list, tuple)) or len(chunks) != self.batch_size:
            raise ArgumentError(f"push takes a list of {self.batch_size} chunks, one per stream "
                                f"(a single chunk when batch_size is 1), got {type(chunks).__name__}"
                                + (f" of {len(chunks)}" if isinstance(chunks, (list, tuple)) else ""))
        for k, chunk in enumerate(chunks):
            if self.text and not isinstance(chunk, str):
                raise ArgumentTypeError(f"chunk {k} must be a str for a text model, got {type(chunk).__name__}")
        return list(chunks)

    def _run(self, items: dict[int, list], keep: bool):
        """Push (keep) or peek the id or frame sequences ``items`` (stream -> steps)."""
        from .batching import Encoded, collate
        rows = sorted(items)
        inputs, lengths, _ = collate(Encoded([items[r] for r in rows], [0] * len(rows)),
                                     range(len(rows)), self.predictor.model.dtype)
        advance = self.classifier.push if keep else self.classifier.peek
        return rows, advance(inputs, lengths, rows=rows)

    def push(self, chunks):
        """The next piece of each stream (a list of ``batch_size`` str or (frames, F) arrays,
        empty ones included; a bare chunk when batch_size is 1). Returns the running
        probabilities (B, C) of a pooled model (NaN rows for streams with nothing to classify
        yet), or, for a per-step head, a list of (new committed steps, C) arrays."""
        chunks = self._chunks(chunks)
        if self.text:
            new, pending = self._text_steps(chunks)
        else:
            # an empty chunk (a stream with nothing new) is not an utterance: the task refuses those
            given = [k for k, c in enumerate(chunks) if np.shape(c)[:1] != (0,)]
            frames = self.predictor.task.encode_inputs([chunks[k] for k in given], self.predictor.encoder)
            new, pending = dict(zip(given, frames)), {}
        per_step = self.predictor.model.config["per_step"]
        if per_step:
            C = self.predictor.model.config["num_classes"]
            out = [np.zeros((0, C)) for _ in range(self.batch_size)]
            if new:
                rows, probs = self._run(new, keep=True)
                for j, r in enumerate(rows):
                    out[r] = probs[:len(new[r]), j]
            return out
        if new:
            self._run(new, keep=True)
        probs = self.classifier.probabilities()
        if pending:
            rows, ahead = self._run(pending, keep=False)
            probs[rows] = ahead
        return probs

    def _text_steps(self, chunks):
        """Per text stream: the ids to commit now and the held-back ids of its last starter."""
        from unicodedata import combining

        from .tasks.language_id import normalize_text
        task, encoder = self.predictor.task, self.predictor.encoder
        limit = int(encoder["max_length"])
        new = {}
        for k, chunk in enumerate(chunks):
            state = self._texts[k]
            if state.full or not chunk:
                continue
            state.raw += chunk
            norm = normalize_text(state.raw)   # for positions only: lower-casing keeps them
            if not norm:
                continue
            ids = [int(i) for i in task.encode_inputs([state.raw], encoder)[0]]   # the predictor's ids
            last_starter = max(i for i, ch in enumerate(norm) if combining(ch) == 0)
            state.full = last_starter >= limit
            settled = len(ids) if state.full else last_starter
            if ids[:len(state.committed)] != state.committed:
                raise AssertionError(f"text stream {k}: committed ids changed (a bug in lstm_engine.streaming)")
            if settled > len(state.committed):
                new[k] = np.asarray(ids[len(state.committed):settled], dtype=np.int64)
                state.committed = ids[:settled]
            state.pending = np.asarray(ids[settled:], dtype=np.int64)
        return new, {k: state.pending for k, state in enumerate(self._texts) if len(state.pending)}


def predictor_stream(predictor, batch_size: int = 1) -> PredictorStream:
    """A stream on a predictor (``Predictor.stream()`` calls this)."""
    return PredictorStream(predictor, batch_size)
