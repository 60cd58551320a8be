"""What the data-parallel tests run on each rank (``mpiexec -n N python tests/mpi_worker.py``)
and, for the single-process reference, in the test process itself.

    train OUT [options]   train a small classifier with Trainer on made-up data (--ctc: a
                          per-step head with the CTC objective on label sequences); rank 0
                          writes OUT.npz (parameters) and OUT.json (history, every rank's facts);
                          --inject fail|drift|stop RANK STEP: raise, perturb a parameter or
                          ask for a stop on RANK after STEP; --backend cuda: on GPUs
    collectives OUT       NCCL allreduce and broadcast on each rank's GPU, checked (GPU machines)
    cli LOGDIR ARGS...    `lstm-engine ARGS...`, with every file write of the run folder logged
                          to LOGDIR/writes-<rank>.txt (--inject ACTION RANK STEP before ARGS:
                          as for train)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from lstm_engine.trainer import Callback


def make_data(n: int, seed: int, vocab: int = 9, classes: int = 3):
    """``n`` token sequences of 1-12 tokens whose class is their most frequent token mod 3."""
    from lstm_engine.batching import Encoded
    rng = np.random.default_rng(seed)
    items = [rng.integers(1, vocab, size=int(rng.integers(1, 13))) for _ in range(n)]
    targets = [int(np.bincount(x).argmax() % classes) for x in items]
    return Encoded(items, targets)


def make_ctc_data(n: int, seed: int, vocab: int = 9):
    """``n`` token sequences of 1-12 tokens whose label sequence is their tokens above 5, as
    labels 1-3, equal neighbours merged (so every sequence is long enough for its labels)."""
    from lstm_engine.batching import Encoded
    rng = np.random.default_rng(seed)
    items = [rng.integers(1, vocab, size=int(rng.integers(1, 13))) for _ in range(n)]
    targets = []
    for x in items:
        labels = [int(t) - 5 for t in x if t > 5]
        targets.append(np.array([v for i, v in enumerate(labels) if i == 0 or v != labels[i - 1]], dtype=np.int64))
    return Encoded(items, targets)


class Inject(Callback):
    """A callback that, on rank ``rank`` after step ``step``, raises, perturbs a parameter or
    asks for a stop (what the tests of failures, drift and stop votes need)."""

    def __init__(self, action: str, rank: int, step: int):
        self.action, self.rank, self.step = action, rank, step

    def on_batch_end(self, trainer, loss, lr):
        if trainer.comm.rank != self.rank or trainer.state.step != self.step:
            return
        if self.action == "fail":
            raise RuntimeError(f"injected failure on rank {self.rank} at step {self.step}")
        if self.action == "drift":
            trainer.model.parameters()["head.bias"][0] += 1e-3
        if self.action == "stop":
            trainer.request_stop()


def train(out=None, dtype="float64", dropout=0.3, pooling="max", epochs=2, batch_size=7, n=29,
          inject=None, comm=None, check_every=None, backend="numpy", ctc=False, ngram_buckets=0,
          gather_min_bytes=None) -> dict:
    """Train the test model; returns {"params", "history", "facts", "rng", "communicator",
    "reductions"} (on every rank). ``ctc``: a per-step head trained with the CTC objective;
    ``ngram_buckets``: an n-gram table; ``gather_min_bytes``: DataParallel's (0: gather the
    embedding tables whatever their size)."""
    from lstm_engine import distributed
    from lstm_engine.classifier import SequenceClassifier
    from lstm_engine.objectives import CTC
    from lstm_engine.optim import make_optimizer
    from lstm_engine.settings import TrainerSettings
    from lstm_engine.trainer import Trainer

    comm = distributed.world() if comm is None else comm
    distributed.prepare(comm, backend)
    if check_every is not None:
        distributed.DataParallel.check_every = check_every
    if gather_min_bytes is not None:
        distributed.DataParallel.gather_min_bytes = gather_min_bytes
    model = SequenceClassifier(4 if ctc else 3, vocab_size=9, embedding_dim=5, hidden_size=6, num_layers=2,
                               bidirectional=True, dropout=dropout, pooling=pooling, per_step=ctc,
                               ngram_buckets=ngram_buckets, dtype=np.dtype(dtype), backend=backend, seed=0)
    comm = distributed.for_backend(comm, model.backend)              # NCCL for cuda
    settings = TrainerSettings(epochs=epochs, batch_size=batch_size, seed=3, clip_norm=0.5, eval_batch_size=5,
                               monitor="label_error_rate" if ctc else "accuracy")
    callbacks = [Inject(*inject)] if inject else []
    trainer = Trainer(model, make_optimizer("adam", lr=0.02), settings, callbacks, comm=comm,
                      objective=CTC() if ctc else None)
    data = make_ctc_data if ctc else make_data
    trainer.fit(data(n, seed=1), data(11, seed=2))
    facts = comm.allgather_object({"rank": comm.rank, "size": comm.size, "local_rank": comm.local_rank,
                                   "local_size": comm.local_size, "cores": comm.cores,
                                   "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
                                   "mpi4py": "mpi4py" in sys.modules})
    parallel = trainer.parallel
    reductions = None if parallel is None else {"gathered": parallel.gathered, "gathers": parallel.gathers,
                                                "whole_tables": parallel.whole_tables}
    result = {"params": model.state_dict(), "history": trainer.state.history, "facts": facts,
              "rng": model.rng.bit_generator.state, "communicator": comm.name, "reductions": reductions}
    if out is not None and comm.is_root:
        np.savez(f"{out}.npz", **result["params"])
        Path(f"{out}.json").write_text(json.dumps({k: result[k] for k in ("history", "facts", "rng", "communicator",
                                                                          "reductions")}))
    return result


def collectives(out: str) -> None:
    """NCCL's allreduce and broadcast on this rank's GPU, float32 and float64, against the
    sums and values they must give; rank 0 writes OUT.json with every rank's findings."""
    import cupy
    from lstm_engine import distributed
    mpi = distributed.world()
    nccl = distributed.NcclCommunicator(mpi if mpi.size > 1 else distributed.MpiCommunicator())
    findings = {"rank": nccl.rank, "device": nccl.device_id, "ok": True, "errors": []}
    n = 1_000_003                                         # odd, past NCCL's small-message paths
    for dtype in (np.float32, np.float64):
        with cupy.cuda.Device(nccl.device_id):
            mine = cupy.arange(n, dtype=dtype) % 97 + nccl.rank
            nccl.allreduce(mine)
            want = (np.arange(n, dtype=dtype) % 97) * nccl.size + sum(range(nccl.size))
            value = cupy.full(n, float(nccl.rank + 1), dtype=dtype)
            nccl.broadcast(value, root=0)
            got, got_value = cupy.asnumpy(mine), cupy.asnumpy(value)
        if not np.array_equal(got, want):
            findings["errors"].append(f"allreduce {np.dtype(dtype).name}: max error {np.abs(got - want).max()}")
        if not np.all(got_value == 1.0):
            findings["errors"].append(f"broadcast {np.dtype(dtype).name}: got {np.unique(got_value)[:5]}")
    findings["ok"] = not findings["errors"]
    everyone = mpi.allgather_object(findings)
    if mpi.is_root:
        Path(f"{out}.json").write_text(json.dumps({"size": nccl.size, "ranks": everyone}))


def log_writes(logdir: Path) -> None:
    """Record every run-folder write (checkpoints, JSON) with the writing rank."""
    from lstm_engine import checkpoint, distributed, runs

    original = checkpoint.atomic_write

    def logged(path, data):
        rank = distributed.world().rank
        with open(logdir / f"writes-{rank}.txt", "a") as f:
            f.write(f"{Path(path).name}\n")
        return original(path, data)
    checkpoint.atomic_write = runs.atomic_write = logged


def fit_with(action: str, rank: int, step: int):
    """Trainer.fit that first adds ``Inject(action, rank, step)`` to the trainer's callbacks
    (for runs whose trainer is built inside runs.run)."""
    from lstm_engine.trainer import Trainer

    original = Trainer.fit

    def fit(self, *args, **kwargs):
        self.callbacks.append(Inject(action, rank, step))
        return original(self, *args, **kwargs)
    return fit


def main(argv: list[str]) -> None:
    if argv and argv[0] == "cli":
        logdir, rest = Path(argv[1]), argv[2:]
        log_writes(logdir)
        if rest[:1] == ["--inject"]:
            from lstm_engine.trainer import Trainer
            Trainer.fit = fit_with(rest[1], int(rest[2]), int(rest[3]))
            rest = rest[4:]
        from lstm_engine.cli.main import main as cli_main
        cli_main(rest, prog_name="lstm-engine")
        return
    if argv and argv[0] == "collectives":
        collectives(argv[1])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train"])
    parser.add_argument("out")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--pooling", default="max")
    parser.add_argument("--inject", nargs=3, metavar=("ACTION", "RANK", "STEP"))
    parser.add_argument("--check-every", type=int)
    parser.add_argument("--ctc", action="store_true")
    parser.add_argument("--ngram-buckets", type=int, default=0)
    parser.add_argument("--gather-min-bytes", type=int)
    args = parser.parse_args(argv)
    inject = (args.inject[0], int(args.inject[1]), int(args.inject[2])) if args.inject else None
    train(args.out, args.dtype, args.dropout, args.pooling, inject=inject, check_every=args.check_every,
          backend=args.backend, ctc=args.ctc, ngram_buckets=args.ngram_buckets,
          gather_min_bytes=args.gather_min_bytes)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])
