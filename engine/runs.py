"""A training run from start to finish: settings, data, model, training, test evaluation and
the run folder; also resuming a run and loading a trained model to predict.

Run folder: ``config.json`` (every setting), ``metrics.jsonl`` (one line per epoch),
``last.safetensors`` (resumable), ``best.safetensors`` (best validation epoch; the model
that was tested), ``results.json`` (test metrics), and PNG plots when matplotlib is installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .batching import Encoded
from .callbacks import Checkpointer, EarlyStopping, MetricsLog, ProgressBar
from .checkpoint import CheckpointError, atomic_write, load_checkpoint
from .classifier import SequenceClassifier
from .optim import make_optimizer
from .tasks import get_task
from .trainer import TrainConfig, Trainer, TrainState, predict_proba

# Settings that may differ when a run is resumed; the rest must match the checkpoint.
RESUMABLE_OVERRIDES = {"epochs", "patience"}


def resolve_config(task, *layers: dict) -> dict:
    """The task's defaults overlaid by each layer in turn (config file, then flags); ``None``
    values mean "not given". Unknown names are an error that lists the known ones."""
    config = task.defaults()
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key not in config:
                raise ValueError(f"unknown setting {key!r} for task {task.name}; known settings: "
                                 f"{', '.join(sorted(config))}")
            config[key] = value
    return config


def _write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _train_config(config: dict) -> TrainConfig:
    return TrainConfig(epochs=int(config["epochs"]), batch_size=int(config["batch_size"]),
                       seed=int(config["seed"]), clip_norm=config["clip_norm"], schedule=config["schedule"],
                       warmup_steps=int(config["warmup_steps"]), step_size=int(config["step_size"]),
                       gamma=float(config["gamma"]))


def _optimizer(config: dict):
    return make_optimizer(config["optimizer"], lr=float(config["lr"]),
                          **({"weight_decay": float(config["weight_decay"])} if config["weight_decay"] else {}))


def run(task_name: str, config: dict | None = None, out="runs/latest", *, backend="auto",
        resume: bool = False, test: bool = True, progress: bool | None = None) -> dict:
    """Train ``task_name`` with ``config`` (settings over the task's defaults), write the run
    folder ``out`` and return a summary. ``resume=True`` continues the run in ``out`` from
    its ``last.safetensors``. ``test=False`` skips the test-split evaluation (``train``)."""
    task = get_task(task_name)
    out = Path(out)
    started = time.perf_counter()
    ckpt = None
    if resume:
        last = out / "last.safetensors"
        if not last.exists():
            raise FileNotFoundError(f"nothing to resume in {out}: {last.name} is missing")
        ckpt = load_checkpoint(last)
        if ckpt.task.get("name") != task.name:
            raise CheckpointError(f"{last} is a {ckpt.task.get('name')!r} run, not {task.name!r}")
        stored = ckpt.train["run"]["config"]
        changed = {k for k, v in (config or {}).items()
                   if v is not None and k not in RESUMABLE_OVERRIDES and stored.get(k) != v}
        if changed:
            raise ValueError(f"cannot change {', '.join(sorted(changed))} when resuming {out}; "
                             f"only {', '.join(sorted(RESUMABLE_OVERRIDES))} may differ")
        config = resolve_config(task, stored, {k: v for k, v in (config or {}).items() if k in RESUMABLE_OVERRIDES})
    else:
        config = resolve_config(task, config)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    data_options = task.data_options(config)
    splits = task.load_data(data_options)
    if len(splits["train"]) == 0:
        raise ValueError(f"the training split of {task.name} data is empty ({data_options})")
    if ckpt is not None:
        encoder, labels = ckpt.task["encoder"], ckpt.task["labels"]
    else:
        encoder = task.fit_encoder(splits["train"], config)
        labels = sorted(set(splits["train"].labels))
    if len(labels) < 2:
        raise ValueError(f"the training split has {len(labels)} label(s); a classifier needs at least 2")
    encoded, dropped = {}, {}
    for split, examples in splits.items():
        encoded[split], dropped[split] = task.encode(examples, encoder, labels)
    data_seconds = time.perf_counter() - t0

    model = SequenceClassifier.from_config(task.model_config(config, encoder, len(labels)),
                                           backend=backend, seed=int(config["seed"]))
    optimizer = _optimizer(config)
    state = None
    if ckpt is not None:
        model.load_state_dict(ckpt.tensors)
        model.rng.bit_generator.state = ckpt.train["rng"]
        optimizer.steps = int(ckpt.train["optimizer"]["steps"])
        optimizer.state = {slot: {k: model.backend.asarray(v, dtype=model.dtype) for k, v in table.items()}
                           for slot, table in ckpt.optimizer.items()}
        state = TrainState(**ckpt.train["state"])
    task_meta = {"name": task.name, "encoder": encoder, "labels": labels, "data": data_options}
    run_meta = {"config": config}
    _write_json(out / "config.json", {"task": task.name, "backend": model.backend.name, **config})

    callbacks = [ProgressBar(disable=None if progress is None else not progress),
                 MetricsLog(out / "metrics.jsonl"), Checkpointer(out, task_meta, run_meta)]
    if int(config["patience"]) > 0:
        callbacks.append(EarlyStopping(int(config["patience"])))
    trainer = Trainer(model, optimizer, _train_config(config), callbacks, state)
    t0 = time.perf_counter()
    state = trainer.fit(encoded["train"], encoded["validation"])
    train_seconds = time.perf_counter() - t0

    summary: dict[str, Any] = {
        "task": task.name, "backend": model.backend.name, "out": str(out), "status": state.stopped or "completed",
        "epochs": state.epoch, "steps": state.step, "best_epoch": state.best_epoch,
        "num_classes": len(labels), "sizes": {k: len(v) for k, v in encoded.items()},
        "dropped_unknown_label": dropped, "data_seconds": round(data_seconds, 2),
        "train_seconds": round(train_seconds, 2), "history": state.history,
    }
    if state.stopped == "interrupted":
        summary["resume"] = f"lstm-engine run {task.name} --resume {out}"
        return summary
    if test:
        best = out / "best.safetensors"
        if best.exists():
            model.load_state_dict(load_checkpoint(best).tensors)
        summary["test"] = test_metrics(task, model, splits["test"], encoded["test"], labels)
        summary["plots"] = _plots(out, state.history, summary["test"], labels)
    summary["total_seconds"] = round(time.perf_counter() - started, 2)
    if test:
        _write_json(out / "results.json", summary)
    return summary


def test_metrics(task, model, examples, encoded: Encoded, labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 and confusion matrix, plus the task's breakdowns."""
    from .metrics import scores
    if len(encoded) == 0:
        return {"n": 0}
    probs = predict_proba(model, encoded)
    targets = np.asarray(encoded.targets)
    predicted = probs.argmax(axis=1)
    result = scores(targets, predicted, len(labels))
    result["f1_per_class"] = dict(zip(labels, result["f1_per_class"]))
    result["labels"] = labels
    known = set(labels)
    kept_examples = examples.subset([i for i, lab in enumerate(examples.labels) if lab in known])
    result.update(task.extra_metrics(kept_examples, predicted == targets))
    return result


def _plots(out: Path, history: list, test: dict, labels: list[str]) -> list[str] | str:
    try:
        from . import plots
    except ImportError as e:
        return f"skipped ({e}); install lstm-engine[plots]"
    return [str(p) for p in plots.save_run_plots(out, history, test, labels)]


class Predictor:
    """A trained model with its task, encoder and labels."""

    def __init__(self, task, model: SequenceClassifier, encoder: dict, labels: list[str], data_options: dict):
        self.task, self.model, self.encoder = task, model, encoder
        self.labels, self.data_options = labels, data_options

    @classmethod
    def load(cls, path, backend="auto") -> "Predictor":
        path = Path(path)
        if path.is_dir():
            candidates = [path / "best.safetensors", path / "last.safetensors"]
            found = [p for p in candidates if p.exists()]
            if not found:
                raise CheckpointError(f"no checkpoint in {path} (looked for best.safetensors and last.safetensors)")
            path = found[0]
        ckpt = load_checkpoint(path)
        task = get_task(ckpt.task["name"])
        model = SequenceClassifier.from_config(ckpt.model, backend=backend)
        try:
            model.load_state_dict(ckpt.tensors)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: tensors do not match the stored model config: {e}") from e
        return cls(task, model, ckpt.task["encoder"], ckpt.task["labels"], ckpt.task["data"])

    def predict_proba(self, inputs: list) -> np.ndarray:
        items = self.task.encode_inputs(list(inputs), self.encoder)
        return predict_proba(self.model, Encoded(items, [0] * len(items)))

    def predict(self, inputs: list) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(inputs).argmax(axis=1)]

    def evaluate(self, splits_or_examples, split: str = "test") -> dict:
        examples = splits_or_examples[split] if isinstance(splits_or_examples, dict) else splits_or_examples
        encoded, dropped = self.task.encode(examples, self.encoder, self.labels)
        result = test_metrics(self.task, self.model, examples, encoded, self.labels)
        result["dropped_unknown_label"] = dropped
        return result
