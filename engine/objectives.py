"""Objectives: how a model's outputs meet their targets. An objective gives the training loss
and its gradient, the weight of a share of a batch (data-parallel ranks), the validation
metrics it reports, the test metrics, and the predictions a Predictor returns.

    Classification  one class per sequence (or per step, for a tagger): softmax
                    cross-entropy (``SequenceClassifier.loss``); accuracy, macro-F1, per-class
                    F1 and the confusion matrix (engine/evaluation.py)
    CTC             a label sequence per input sequence, of unknown alignment, from a per-step
                    head whose class 0 is the blank: the CTC loss (engine/ctc.py); best-path
                    or prefix beam search decoding (engine/ctc_decode.py); label error rate,
                    sequence accuracy, substitutions, deletions and insertions, by reference
                    length (engine/metrics.py)

A task picks its objective (``Task.objective``); the Trainer, a run and a Predictor all ask it,
so a task's training, validation, test and predictions share one definition. Whether a
larger or a smaller validation metric is better is ``settings.MONITORS``'s.

Shapes (as ``collate`` pads a batch): T steps, B sequences, C classes. Classification
targets are (B,) class ids, or (T, B) per step; CTC targets are (T, B), each column a label
sequence padded with 0, the blank (``Vocabulary.BLANK``), which no label is: that is how its
length is known, and why the CTC objective's blank is always class 0.
"""

from __future__ import annotations

import time

import numpy as np

from . import evaluation
from .batching import Encoded
from .errors import ArgumentError


class Objective:
    """The protocol; see the module docstring. ``metrics``: what ``evaluate`` reports for
    validation (the trainer records them as ``val_<name>``)."""

    name = "?"
    metrics: tuple[str, ...] = ()
    #: Whether ``loss`` takes a ``label_smoothing`` above 0.
    smooths_labels = False

    def loss(self, model, logits, targets, lengths, label_smoothing: float = 0.0):
        """(loss float, d_logits) of one batch: the mean the loss weight counts."""
        raise NotImplementedError

    def loss_weight(self, model, lengths) -> int:
        """How many terms the loss of a batch with these lengths averages over: ranks weight
        their shares' gradients by it, so that the combined gradient is the whole batch's."""
        raise NotImplementedError

    def evaluate(self, model, data: Encoded, batch_size: int = 256, comm=None) -> dict:
        raise NotImplementedError

    def test_metrics(self, task, model, examples, encoded: Encoded, labels: list[str],
                     batch_size: int = 256, comm=None) -> dict:
        raise NotImplementedError

    def predict_top(self, model, data: Encoded, labels: list[str], k: int = 1, batch_size: int = 256,
                    prepared=None, comm=None) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable predictions of every sequence, best first, each with its
        probability."""
        raise NotImplementedError

    def predict(self, model, data: Encoded, labels: list[str], batch_size: int = 256, prepared=None,
                comm=None) -> list[str]:
        return [top[0][0] for top in self.predict_top(model, data, labels, 1, batch_size, prepared, comm)]


class Classification(Objective):
    """Softmax cross-entropy over the classes; the model's own loss."""

    name = "classification"
    metrics = ("loss", "accuracy", "macro_f1")

    smooths_labels = True

    def loss(self, model, logits, targets, lengths, label_smoothing: float = 0.0):
        return model.loss(logits, targets, lengths, label_smoothing=label_smoothing)

    def loss_weight(self, model, lengths) -> int:
        return model.loss_weight(lengths)

    def evaluate(self, model, data, batch_size=256, comm=None) -> dict:
        return evaluation.evaluate(model, data, batch_size, comm)

    def test_metrics(self, task, model, examples, encoded, labels, batch_size=256, comm=None) -> dict:
        return evaluation.test_metrics(task, model, examples, encoded, labels, batch_size, comm)

    def predict_top(self, model, data, labels, k=1, batch_size=256, prepared=None, comm=None):
        probs = evaluation.predict_proba(model, data, batch_size, prepared=prepared, comm=comm)
        return [[(labels[i], float(row[i])) for i in row.argsort()[::-1][:k]] for row in probs] if len(data) else []

    def predict(self, model, data, labels, batch_size=256, prepared=None, comm=None) -> list[str]:
        probs = evaluation.predict_proba(model, data, batch_size, prepared=prepared, comm=comm)
        return [labels[i] for i in probs.argmax(axis=1)] if len(data) else []


CLASSIFICATION = Classification()

#: References up to this many labels long are broken down by their exact length; longer ones
#: (character transcripts of sentences) in the buckets of LONG_BOUNDS.
EXACT_LENGTHS_UP_TO = 12
LONG_BOUNDS = (10, 20, 50, 100, 200, 500)
#: How many misrecognised test sequences a result keeps as examples.
ERRORS_KEPT = 20


class CTC(Objective):
    """Connectionist temporal classification over a per-step head whose class 0 is the
    blank: the loss is ``ctc.ctc_loss`` with reduction ``mean`` (each sequence's loss over its
    target length, averaged over the sequences), so a share of a batch weighs by its number
    of sequences. ``vocabulary`` (data.transcripts.Vocabulary): the tokens of the classes
    1..C-1, to score and print transcripts; without it, predictions are label ids.
    ``beam_width``: prefix beam search with this many prefixes for the test metrics and
    predictions; 0: the best path (greedy). Validation always decodes the best path (cheap,
    every epoch)."""

    name = "ctc"
    metrics = ("loss", "label_error_rate", "sequence_accuracy")
    BLANK = 0

    def __init__(self, vocabulary=None, beam_width: int = 0):
        if isinstance(beam_width, bool) or not isinstance(beam_width, (int, np.integer)) or beam_width < 0:
            raise ArgumentError(f"beam_width must be an integer >= 0 (0: best path), got {beam_width!r}")
        self.vocabulary = vocabulary
        self.beam_width = int(beam_width)

    # -- training ----------------------------------------------------------------------------
    def loss(self, model, logits, targets, lengths, label_smoothing: float = 0.0):
        from .ctc import ctc_loss
        if label_smoothing:
            raise ArgumentError(f"label_smoothing applies to classification; the CTC loss has none "
                                f"(got {label_smoothing!r})")
        targets = np.asarray(targets)
        return ctc_loss(logits, targets.T, lengths, (targets != self.BLANK).sum(axis=0), blank=self.BLANK,
                        backend=model.backend)

    def loss_weight(self, model, lengths) -> int:
        return len(lengths)

    # -- one batch -----------------------------------------------------------------------------
    def _logits(self, model, inputs, lengths, prepared=None) -> np.ndarray:
        return np.asarray(model.backend.to_numpy(model.forward(inputs, lengths, training=False, prepared=prepared)))

    def _scored(self, model, beam: bool):
        """A batch function for ``evaluation.batch_outputs``: per sequence (loss over target
        length, best path, beam search's labelling or None), with the seconds each decoder
        took."""
        from .ctc import ctc_loss
        from .ctc_decode import beam_search_decode, greedy_decode

        def fn(inputs, lengths, targets):
            logits = self._logits(model, inputs, lengths)
            target_lengths = (targets != self.BLANK).sum(axis=0)
            nll, _ = ctc_loss(logits, targets.T, lengths, target_lengths, blank=self.BLANK, reduction="none")
            per_label = nll / np.maximum(target_lengths, 1)
            t0 = time.perf_counter()
            best = greedy_decode(logits, lengths, self.BLANK)
            t1 = time.perf_counter()
            searched = beam_search_decode(logits, lengths, self.beam_width, self.BLANK) if beam else [None] * len(best)
            seconds = {"best_path": t1 - t0, "beam": time.perf_counter() - t1 if beam else 0.0}
            return list(zip(per_label.tolist(), best, searched)), seconds
        return fn

    def _run(self, model, data: Encoded, beam: bool, batch_size: int, comm):
        parts = evaluation.batch_outputs(model, data, self._scored(model, beam), batch_size, comm)
        rows = evaluation.in_order([(idx, rows) for idx, (rows, _) in parts], len(data))
        seconds = {key: sum(s[key] for _, (_, s) in parts) for key in ("best_path", "beam")}
        return rows, seconds

    # -- validation and test -------------------------------------------------------------------
    def evaluate(self, model, data, batch_size=256, comm=None) -> dict:
        """The CTC loss (each sequence's over its target length, averaged) and the best
        path's label error rate and sequence accuracy against the target label ids."""
        from .metrics import sequence_scores
        rows, _ = self._run(model, data, False, batch_size, comm)
        found = sequence_scores([tuple(np.asarray(t).tolist()) for t in data.targets], [r[1] for r in rows])
        return {"n": len(data), "loss": float(np.mean([r[0] for r in rows])) if rows else None,
                "label_error_rate": found["label_error_rate"], "sequence_accuracy": found["sequence_accuracy"]}

    def _tokens(self, ids) -> tuple:
        if self.vocabulary is None:
            return tuple(ids)
        return tuple(self.vocabulary.tokens[k - 1] for k in ids)

    def test_metrics(self, task, model, examples, encoded, labels, batch_size=256, comm=None) -> dict:
        """Label error rate (edits over reference labels), sequence accuracy, substitutions,
        deletions and insertions, all by reference length, of the configured decoder (beam
        search when ``beam_width`` > 0, with the best path's figures beside it under
        ``best_path``), the CTC loss, the decoding time and some misrecognised examples.
        References are the examples' transcripts split into the vocabulary's tokens (a
        token outside the vocabulary stays itself, and counts as an error); ``encoded``
        holds every example of ``examples``, in order."""
        from .metrics import sequence_scores
        if len(encoded) == 0:
            return {"n": 0}
        beam = self.beam_width > 0
        rows, seconds = self._run(model, encoded, beam, batch_size, comm)
        if self.vocabulary is not None:
            references = [self.vocabulary.tokenize(label) for label in examples.labels]
        else:
            references = [tuple(np.asarray(t).tolist()) for t in encoded.targets]
        longest = max(len(r) for r in references)
        bounds = None if longest <= EXACT_LENGTHS_UP_TO else tuple(b for b in LONG_BOUNDS if b < longest)
        chosen = [r[2] if beam else r[1] for r in rows]
        result = sequence_scores(references, [self._tokens(h) for h in chosen], bounds)
        result["loss"] = float(np.mean([r[0] for r in rows]))
        result["decoder"] = {"kind": "beam_search" if beam else "best_path", "beam_width": self.beam_width}
        result["decode_seconds"] = {k: round(v, 3) for k, v in seconds.items() if k == "best_path" or beam}
        if beam:
            greedy = sequence_scores(references, [self._tokens(r[1]) for r in rows], bounds)
            result["best_path"] = {k: greedy[k] for k in ("label_error_rate", "sequence_accuracy", "substitutions",
                                                         "deletions", "insertions")}
        if self.vocabulary is not None:
            result["vocabulary"] = {"kind": self.vocabulary.kind, "tokens": len(self.vocabulary.tokens)}
            result["errors"] = [{"reference": examples.labels[i], "hypothesis": self.vocabulary.decode(h)}
                                for i, h in enumerate(chosen) if self._tokens(h) != tuple(references[i])][:ERRORS_KEPT]
        return result

    # -- prediction ----------------------------------------------------------------------------
    def predict_top(self, model, data, labels, k=1, batch_size=256, prepared=None, comm=None):
        """The ``k`` most probable transcripts of each sequence (label id tuples without a
        vocabulary) with their probabilities p(labelling | input), computed exactly by the
        CTC forward recursion (the sum over every path of the labelling, which a beam only
        approximates). ``k`` = 1 with ``beam_width`` 0: the best path; otherwise the ``k``
        best labellings of prefix beam search with max(beam_width, k) prefixes, ordered by
        their exact probabilities."""
        from .ctc import ctc_loss
        from .ctc_decode import greedy_decode, prefix_beam_search
        from .layers import log_softmax
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ArgumentError(f"k must be a positive integer, got {k!r}")

        def fn(inputs, lengths, _):
            logits = self._logits(model, inputs, lengths, prepared)
            if k == 1 and self.beam_width == 0:
                found = [[path] for path in greedy_decode(logits, lengths, self.BLANK)]
            else:
                lp = log_softmax(np, logits.astype(np.float64))
                width = max(self.beam_width, int(k))
                found = [[labelling for labelling, _ in prefix_beam_search(lp[:n, b], width, self.BLANK)[:k]]
                         for b, n in enumerate(lengths.tolist())]
            owner = [b for b, hyps in enumerate(found) for _ in hyps]
            flat = [np.array(h, dtype=np.int64) for hyps in found for h in hyps]
            nll, _ = ctc_loss(logits[:, owner], flat, lengths[owner], blank=self.BLANK, reduction="none")
            probs = iter(np.exp(-nll).tolist())
            scored = [sorted(((h, next(probs)) for h in hyps), key=lambda pair: -pair[1]) for hyps in found]
            return [[(self.vocabulary.decode(h) if self.vocabulary is not None else h, p) for h, p in pairs]
                    for pairs in scored]
        return evaluation.in_order(evaluation.batch_outputs(model, data, fn, batch_size, comm), len(data))


__all__ = ["Objective", "Classification", "CLASSIFICATION", "CTC"]
