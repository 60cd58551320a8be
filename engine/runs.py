"""A training run from start to finish: settings, data, model, training, test evaluation and
the run folder; also resuming a run.

Run folder: ``config.json`` (every setting), ``metrics.jsonl`` (one line per epoch),
``last.safetensors`` (resumable), ``best.safetensors`` (best validation epoch; the model
that was tested), ``results.json`` (test metrics, the metrics on each held-out evaluation set,
the data's manifest), and PNG plots when matplotlib is installed. The data's manifest (for
language-id's default corpus: sources, package versions, strings per language) is also in every
checkpoint's task metadata, so that ``evaluate`` can tell when the data it rebuilds differs.
Loading a trained model to predict is engine/predictor.py's; scoring it, the task's objective's
(engine/objectives.py, engine/evaluation.py).

Under a launcher (``mpiexec -n N``) the same call trains data-parallel (engine/distributed.py):
every rank reads the data and, on --resume, the checkpoint (a shared filesystem, as usual on
a cluster); the encoder and labels are rank 0's, and the ranks check that they built the same
training data; only rank 0 writes the run folder, logs and checkpoints and shows progress.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import distributed, settings
from .batching import Encoded
from .callbacks import Checkpointer, EarlyStopping, MetricsLog, ProgressBar
from .checkpoint import atomic_write, load_checkpoint
from .classifier import SequenceClassifier
from .errors import CheckpointError, ConfigError, DataError, DataNotFoundError
from .optim import optimizer_from
from .predictor import check_task_meta
from .tasks import get_task
from .trainer import Trainer, TrainState


def _write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _resumed_config(task, out: Path, given: dict):
    """(checkpoint, config) of the run in ``out``: its stored settings, with only the
    resumable ones (settings.RESUMABLE) taken from ``given``."""
    last = out / "last.safetensors"
    if not last.exists():
        raise DataNotFoundError(f"nothing to resume in {out}: {last.name} is missing")
    ckpt = load_checkpoint(last)
    check_task_meta(ckpt, last)                 # before a model of its declared sizes is built
    if ckpt.task.get("name") != task.name:
        raise CheckpointError(f"{last} is a {ckpt.task.get('name')!r} run, not {task.name!r}")
    try:
        stored = ckpt.train["run"]["config"]
        ckpt.train["rng"], ckpt.train["optimizer"]["steps"], TrainState(**ckpt.train["state"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{last} holds no resumable training state ({type(e).__name__}: {e})") from e
    wanted = settings.resolve(task, stored, given)
    changed = sorted(k for k, v in given.items()
                     if v is not None and k not in settings.RESUMABLE and wanted[k] != stored.get(k))
    if changed:
        raise ConfigError(f"cannot change {', '.join(changed)} when resuming {out}; only "
                          f"{', '.join(sorted(settings.RESUMABLE))} may differ")
    return ckpt, settings.resolve(task, stored, {k: v for k, v in given.items() if k in settings.RESUMABLE})


def run(task_name: str, config: dict | None = None, out="runs/latest", *, backend="auto",
        resume: bool = False, test: bool = True, progress: bool | None = None, comm=None) -> dict:
    """Train ``task_name`` with ``config`` (settings over the task's defaults; see
    engine/settings.py), write the run folder ``out`` and return a summary. ``resume=True``
    continues the run in ``out`` from its ``last.safetensors``. ``test=False`` skips the
    test-split evaluation (``train``). ``comm``: the ranks to train on (default
    ``distributed.world()``: this process alone unless a launcher started several)."""
    comm = distributed.world() if comm is None else comm
    root = comm.is_root
    distributed.prepare(comm, backend)
    task = get_task(task_name)
    out = Path(out)
    started = time.perf_counter()
    ckpt = None
    if resume:
        ckpt, config = _resumed_config(task, out, config or {})
    else:
        config = settings.resolve(task, config)
    if root:
        out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data_options = task.data_options(config)
    data = distributed.node_first(comm, lambda: task.load(data_options))
    splits = data.splits
    if len(splits["train"]) == 0:
        raise DataError(f"the training split of {task.name} data is empty ({data_options})")
    if ckpt is not None:
        encoder, labels = ckpt.task["encoder"], ckpt.task["labels"]
    else:
        def fitted():
            encoder = task.fit_encoder(splits["train"], config)
            return encoder, task.labels(splits["train"], encoder)
        encoder, labels = comm.bcast_object(fitted() if root else None)
    if len(labels) < 2:
        raise DataError(f"the training split has {len(labels)} label(s); a classifier needs at least 2")
    encoded, dropped = {}, {}
    for split, examples in splits.items():
        try:
            encoded[split], dropped[split] = task.encode(examples, task.encoder_for(split, encoder, config), labels)
        except DataError as e:
            raise DataError(f"the {split} split: {e}") from None
    distributed.same_everywhere(comm, "training data", _digest(encoded["train"]))
    data_seconds = time.perf_counter() - t0

    model = SequenceClassifier.from_config(task.model_config(config, encoder, len(labels)),
                                           backend=backend, seed=config["seed"])
    comm = distributed.for_backend(comm, model.backend)
    optimizer = optimizer_from(settings.group_values(config, settings.OptimizerSettings))
    state = None
    if ckpt is not None:
        model.load_state_dict(ckpt.tensors)
        model.rng.bit_generator.state = ckpt.train["rng"]
        optimizer.steps = int(ckpt.train["optimizer"]["steps"])
        optimizer.state = {slot: {k: model.backend.asarray(v, dtype=model.dtype) for k, v in table.items()}
                           for slot, table in ckpt.optimizer.items()}
        state = TrainState(**ckpt.train["state"])
    task_meta = {"name": task.name, "encoder": encoder, "labels": labels, "data": data_options}
    if data.manifest is not None:
        task_meta["corpus"] = data.manifest
    run_meta = {"config": config}
    if root:
        _write_json(out / "config.json", {"task": task.name, "backend": model.backend.name, **config})

    trainer_settings = settings.group_values(config, settings.TrainerSettings)
    callbacks = [ProgressBar(disable=None if progress is None else not progress),
                 MetricsLog(out / "metrics.jsonl"), Checkpointer(out, task_meta, run_meta)] if root else []
    if trainer_settings.patience > 0:
        callbacks.append(EarlyStopping(trainer_settings.patience))
    objective = task.objective(encoder)
    trainer = Trainer(model, optimizer, trainer_settings, callbacks, state,
                      sampler=task.epoch_sampler(config, encoder), comm=comm, objective=objective)
    t0, cpu0 = time.perf_counter(), time.process_time()
    state = trainer.fit(encoded["train"], encoded["validation"])
    train_seconds, train_cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0

    summary: dict[str, Any] = {
        "task": task.name, "backend": model.backend.name, "out": str(out), "status": state.stopped or "completed",
        "epochs": state.epoch, "steps": state.step, "best_epoch": state.best_epoch,
        "num_classes": len(labels), "sizes": {k: len(v) for k, v in encoded.items()},
        "dropped_unknown_label": dropped, "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2), "train_cpu_seconds": round(train_cpu_seconds, 2),
        "history": state.history,
    }
    if data.manifest is not None:
        summary["data_messages"] = list(data.manifest.get("messages", []))
    if trainer.parallel is not None:
        summary["distributed"] = {"ranks": comm.size, "communicator": comm.name,
                                  "allreduce_seconds": round(trainer.parallel.allreduce_seconds, 3)}
    if state.stopped == "interrupted":
        summary["resume"] = f"lstm-engine run {task.name} --resume --out {out}"
        return summary
    if test:
        best = out / "best.safetensors"
        # rank 0 wrote it; the others take its tensors from rank 0, not from the filesystem
        tensors = comm.bcast_object(load_checkpoint(best).tensors if root and best.exists() else None)
        if tensors is not None:
            model.load_state_dict(tensors)
        summary["test"] = objective.test_metrics(task, model, splits["test"], encoded["test"], labels,
                                                 trainer_settings.eval_batch_size, comm)
        if data.held_out:
            summary["held_out"] = held_out_metrics(task, objective, model, data.held_out, encoder, labels,
                                                   trainer_settings.eval_batch_size, comm)
        summary["plots"] = _plots(out, state.history, summary["test"], labels) if root else []
    summary["total_seconds"] = round(time.perf_counter() - started, 2)
    if data.manifest is not None:
        summary["corpus"] = data.manifest
    if test and root:
        _write_json(out / "results.json", summary)
    return summary


def held_out_metrics(task, objective, model, held_out: dict, encoder: dict, labels: list[str],
                     batch_size: int = 256, comm=None) -> dict:
    """The test metrics (without the confusion matrix) on each held-out evaluation set: text of
    a domain kept out of training; with several sets, also on all of them together (``all``)."""
    from .data import Examples
    sets = dict(held_out)
    if len(sets) > 1:
        sets["all"] = Examples([x for ex in held_out.values() for x in ex.inputs],
                               [y for ex in held_out.values() for y in ex.labels])
    out = {}
    for name, examples in sets.items():
        encoded, dropped = task.encode(examples, encoder, labels)
        metrics = objective.test_metrics(task, model, examples, encoded, labels, batch_size, comm)
        metrics.pop("confusion", None)
        out[name] = {**metrics, "dropped_unknown_label": dropped}
    return out


def _digest(data: Encoded) -> str:
    """A checksum of an encoded split (sequences, lengths, targets)."""
    if not len(data):
        return distributed.digest_of_arrays([])
    return distributed.digest_of_arrays([data.lengths, np.concatenate([np.ravel(t) for t in data.targets]),
                                         np.concatenate([np.ravel(x) for x in data.items])])


def _plots(out: Path, history: list, test: dict, labels: list[str]) -> list[str] | str:
    try:
        from . import plots
    except ImportError as e:
        return f"skipped ({e}); install lstm-engine[plots]"
    return [str(p) for p in plots.save_run_plots(out, history, test, labels)]
