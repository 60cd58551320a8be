"""CTC training of the per-step head on connected digit strings, through the library alone:
how the pieces of speech recognition fit together, and what settings reach which label error
rate in what time (the figures behind the speech-recognition task's defaults).

    python benchmarks/ctc_prototype.py [--hidden-size 64 --num-layers 2 --epochs 10 ...] [--json out.json]

The defaults are the settings found for the task (label error rate 1.07-1.68% greedy over
seeds 0-2 on the 1000 test strings): 2 bidirectional layers of 64, dropout 0.2, 10 epochs of
the 4000 default training strings in batches of 32, Adam 3e-3 with 100 warm-up steps and
cosine decay, clipping at norm 1.

Trains ``SequenceClassifier(input_size=39, per_step=True)`` with ``ctc.ctc_loss`` and the
project's optimizer, clipping and schedule on ``load_connected_digits`` strings; decodes the
validation split after each epoch (best path) and the test split at the end (best path and
prefix beam search), scored with ``metrics.sequence_scores``. Prints one JSON line per epoch
and a summary; ``--json`` writes everything, with the test strings it got wrong. Training
time is given as wall and process CPU seconds with the load average, since the machine may
be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from lstm_engine.batching import Encoded, bucket_batches, collate
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.ctc import ctc_loss
from lstm_engine.ctc_decode import beam_search_decode, greedy_decode
from lstm_engine.data.connected_digits import DEFAULT_EXAMPLES, ConnectedDigitsConfig, load_connected_digits
from lstm_engine.data.transcripts import Vocabulary
from lstm_engine.metrics import sequence_scores
from lstm_engine.optim import clip_grad_norm, lr_multiplier, make_optimizer


def ctc_batch(data: Encoded, idx, dtype=np.float32):
    """A padded batch and its label sequences: collate pads the targets time-major with 0,
    the blank, which no label is, so each sequence's labels are its nonzero entries."""
    inputs, lengths, targets = collate(data, idx, dtype)
    return inputs, lengths, targets.T, (targets != Vocabulary.BLANK).sum(axis=0)


def decode(model, data: Encoded, beam_width: int = 0, batch_size: int = 256) -> list[tuple[int, ...]]:
    out: list = [None] * len(data)
    with model.backend.session():
        for idx in bucket_batches(data.lengths, batch_size, None):
            inputs, lengths, _, _ = ctc_batch(data, idx, model.dtype)
            logits = model.backend.to_numpy(model.forward(inputs, lengths, training=False))
            decoded = beam_search_decode(logits, lengths, beam_width) if beam_width else greedy_decode(logits, lengths)
            for i, seq in zip(idx, decoded):
                out[i] = seq
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--unidirectional", action="store_true")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--clip-norm", type=float, default=1.0)
    p.add_argument("--examples", type=int, nargs=3, default=[DEFAULT_EXAMPLES[k] for k in ("train", "validation", "test")],
                   metavar=("TRAIN", "VALIDATION", "TEST"), help="connected digit strings per split")
    p.add_argument("--gap", type=int, nargs=2, default=ConnectedDigitsConfig.gap_frames, metavar=("LOW", "HIGH"))
    p.add_argument("--beam-width", type=int, default=8, help="0: no beam search on the test split")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    data = load_connected_digits(ConnectedDigitsConfig(examples=tuple(args.examples), gap_frames=tuple(args.gap)))
    vocab = Vocabulary.build(data["train"].labels, kind="characters")
    encoded = {name: Encoded(ex.inputs, [vocab.encode(label) for label in ex.labels]) for name, ex in data.items()}
    t_data = time.perf_counter() - t0

    model = SequenceClassifier(vocab.num_classes, input_size=encoded["train"].items[0].shape[1],
                               hidden_size=args.hidden_size, num_layers=args.num_layers,
                               bidirectional=not args.unidirectional, dropout=args.dropout, per_step=True,
                               backend=args.backend, seed=args.seed)
    optimizer = make_optimizer("adam", args.lr)
    train = encoded["train"]
    total = args.epochs * -(-len(train) // args.batch_size)
    history, step, wall, cpu = [], 0, 0.0, 0.0
    for epoch in range(args.epochs):
        t1, c1 = time.perf_counter(), time.process_time()
        losses = []
        with model.backend.session():
            for idx in bucket_batches(train.lengths, args.batch_size, np.random.default_rng([args.seed, epoch])):
                inputs, lengths, targets, target_lengths = ctc_batch(train, idx, model.dtype)
                logits = model.forward(inputs, lengths, training=True)
                loss, d_logits = ctc_loss(logits, targets, lengths, target_lengths, backend=model.backend)
                grads = model.backward(d_logits)
                clip_grad_norm(grads, args.clip_norm, model.backend)
                lr = args.lr * lr_multiplier(step, total, args.schedule, args.warmup_steps)
                optimizer.step(model.parameters(), grads, lr)
                losses.append(loss)
                step += 1
        wall += time.perf_counter() - t1
        cpu += time.process_time() - c1
        refs = [tuple(t.tolist()) for t in encoded["validation"].targets]
        val = sequence_scores(refs, decode(model, encoded["validation"]))
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "val_label_error_rate": val["label_error_rate"], "val_sequence_accuracy": val["sequence_accuracy"],
                        "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
                        "load": round(os.getloadavg()[0], 1)})
        print(json.dumps(history[-1]), flush=True)

    import numba
    refs = [tuple(t.tolist()) for t in encoded["test"].targets]
    t2 = time.perf_counter()
    hyps = decode(model, encoded["test"])
    result = {"settings": vars(args), "threads": numba.get_num_threads(), "cores": os.cpu_count(),
              "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1), "data_seconds": round(t_data, 1),
              "history": history, "test_greedy": sequence_scores(refs, hyps),
              "test_greedy_seconds": round(time.perf_counter() - t2, 2)}
    if args.beam_width:
        t3 = time.perf_counter()
        result["test_beam"] = sequence_scores(refs, decode(model, encoded["test"], args.beam_width))
        result["test_beam_seconds"] = round(time.perf_counter() - t3, 2)
    result["load_at_end"] = round(os.getloadavg()[0], 1)
    result["test_errors"] = [(vocab.decode(r), vocab.decode(h)) for r, h in zip(refs, hyps) if r != h]
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "test_errors")}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
