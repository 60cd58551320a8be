"""`lstm-engine run`, `train`, `evaluate` and `predict`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from lstm_engine import settings as settings_schema
from lstm_engine.errors import DataError

from .settings import apply_threads, device_option, distributed_option, parse_set, read_config_file, world

DEFAULT_TASK = "language-id"


def _task_names():
    from lstm_engine.tasks import TASKS
    return sorted(TASKS)


def _training_options(f):
    options = [
        click.argument("task", required=False, default=DEFAULT_TASK, metavar="[TASK]"),
        click.option("--backend", default=None, metavar="NAME", help="numpy, cpu, cuda or auto (default)."),
        device_option,
        distributed_option,
        # the named settings (--epochs, --hidden-size, ...), derived from engine/settings.py
        *settings_schema.click_options(),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Threads for the cpu backend (per rank; default under a launcher: the "
                          "rank's share of its node's cores)."),
        click.option("--out", default=None, metavar="DIR",
                     help="Run folder (default: runs/<task>-<time>). With --resume: the run to continue."),
        click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint."),
        click.option("--config", "config_file", default=None, metavar="FILE.toml",
                     help="Settings file; --set and flags override it."),
        click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
                     help="Any setting (dropout=0.2, pooling=mean, patience=3, clip_norm=none...); "
                          "`lstm-engine settings TASK` lists them."),
        click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON on stdout."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bars on stderr (default: only on a terminal)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _train(test: bool, task, backend, threads, out, resume, config_file, set_pairs, as_json, progress,
           **flags):
    from lstm_engine import runs
    from lstm_engine.tasks import get_task

    if task not in _task_names():
        raise click.BadParameter(f"expected one of {', '.join(_task_names())}, got {task!r}", param_hint="TASK")
    comm = world(backend, threads)
    apply_threads(threads)
    overrides = settings_schema.given(get_task(task), (f"--config {config_file}", read_config_file(config_file)),
                                      ("--set", parse_set(set_pairs)), ("a flag", flags))
    if resume and out is None:
        raise click.UsageError("--resume needs --out DIR, the run folder to continue")
    # the ranks agree on rank 0's view: its clock names the folder, its filesystem decides
    out = comm.bcast_object(out or str(Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"))
    if comm.bcast_object(not resume and (Path(out) / "last.safetensors").exists()):
        raise click.UsageError(f"{out} already holds a run; continue it with --resume, or choose another --out")
    summary = runs.run(task, overrides, out, backend=backend or "auto", resume=resume, test=test,
                       progress=progress, comm=comm)
    if comm.is_root:
        _report(summary, as_json)
    if summary["status"] == "interrupted":
        sys.exit(130)


def _echo_by_length(metrics: dict) -> None:
    for bucket, r in metrics.get("accuracy_by_length", {}).items():
        if r["n"]:
            click.echo(f"  length {bucket:>6}: accuracy {r['accuracy']:.4f} ({r['n']})")
    for length, r in metrics.get("by_reference_length", {}).items():
        rate = "n/a" if r["label_error_rate"] is None else f"{r['label_error_rate']:.2%}"
        click.echo(f"  {length:>7} labels: label error rate {rate}, sequence accuracy "
                   f"{r['sequence_accuracy']:.2%} ({r['n']})")


def _echo_scores(split: str, metrics: dict, suffix: str = "") -> None:
    """One line of a split's scores (classification, or label sequences), then by length."""
    if "label_error_rate" in metrics:
        decoder = metrics["decoder"]
        how = "best path" if decoder["kind"] == "best_path" else f"beam search, width {decoder['beam_width']}"
        rate = "n/a" if metrics["label_error_rate"] is None else f"{metrics['label_error_rate']:.2%}"
        click.echo(f"{split}: label error rate {rate} ({how}; {metrics['substitutions']} substitutions, "
                   f"{metrics['deletions']} deletions, {metrics['insertions']} insertions in "
                   f"{metrics['reference_labels']} labels), sequence accuracy {metrics['sequence_accuracy']:.2%} "
                   f"on {metrics['n']} examples{suffix}")
        if "best_path" in metrics and metrics["best_path"]["label_error_rate"] is not None:
            click.echo(f"  best path: label error rate {metrics['best_path']['label_error_rate']:.2%}")
    else:
        click.echo(f"{split}: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
                   f"on {metrics['n']} examples{suffix}")
    _echo_by_length(metrics)


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        # results.json keeps the history and the data's manifest; stdout gets the figures
        click.echo(json.dumps({k: v for k, v in summary.items() if k not in ("history", "corpus")}, indent=2,
                              ensure_ascii=False))
        return
    sizes = summary["sizes"]
    click.echo(f"{summary['task']} on {summary['backend']}: {summary['status']} after {summary['epochs']} "
               f"epochs ({summary['train_seconds']:.1f} s training); train/validation/test "
               f"{sizes['train']}/{sizes['validation']}/{sizes['test']} examples, {summary['num_classes']} classes")
    if summary["status"] == "interrupted":
        click.echo(f"interrupted; a resumable checkpoint is in {summary['out']}. Continue with:\n  {summary['resume']}")
        return
    test = summary.get("test")
    if test and test.get("n"):
        _echo_scores("test", test)
    for name, metrics in summary.get("held_out", {}).items():
        if metrics.get("n"):
            _echo_scores(f"held out ({name}, a domain kept out of training)", metrics)
    click.echo(f"run folder: {summary['out']}")
    for message in summary.get("data_messages", []):
        # said while the data was built, and again here where it is not lost among the progress bars
        click.echo(f"note: {message}", err=True)


@click.command()
@_training_options
def run(**kwargs):
    """Train TASK (default: language-id) on its data, test it, and write the run folder."""
    _train(True, **kwargs)


@click.command()
@_training_options
def train(**kwargs):
    """Train TASK and keep the checkpoints, without the test evaluation."""
    _train(False, **kwargs)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--data", default=None, metavar="PATH", help="Evaluate on this data instead of the run's own.")
@click.option("--split", type=click.Choice(["train", "validation", "test", "all", "held-out"]), default="test",
              show_default=True, help="Which split; 'all' joins the three (for data you bring); 'held-out' "
                                      "the evaluation sets of the sources the run held out of training.")
@click.option("--backend", default=None, metavar="NAME")
@device_option
@distributed_option
@click.option("--json", "as_json", is_flag=True)
def evaluate(checkpoint, data, split, backend, as_json):
    """Score a checkpoint (file or run folder) on labelled data (sharded across the ranks
    under mpiexec/srun; rank 0 prints). The run's own data is rebuilt from the settings stored
    in the checkpoint; a warning says when it differs from the data the model was trained on."""
    from lstm_engine import distributed
    from lstm_engine.data import Examples
    from lstm_engine.predictor import load_predictor
    comm = world(backend)
    pred = load_predictor(checkpoint, backend=backend or "auto", comm=comm)
    options = dict(pred.data_options, **({"data": data} if data else {}))
    loaded = distributed.node_first(comm, lambda: pred.task.load(options))
    changes = pred.task.data_changes(pred.manifest, loaded.manifest) \
        if not data and pred.manifest is not None and loaded.manifest is not None else []
    if changes and comm.is_root:
        click.echo("lstm-engine: warning: the data rebuilt for this evaluation differs from the data the model "
                   "was trained on, so the figures may differ from the run's own: " + "; ".join(changes), err=True)
    if split == "all":
        parts = list(loaded.splits.values())
    elif split == "held-out":
        parts = list(loaded.held_out.values())
        if not parts:
            raise click.UsageError("this run held no source out of training (the held_out_sources setting)")
    else:
        parts = [loaded.splits[split]]
    examples = Examples(sum((s.inputs for s in parts), []), sum((s.labels for s in parts), []))
    result = pred.evaluate(examples)
    if changes:
        result["data_changes"] = changes
    if not comm.is_root:
        return
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if not result.get("n"):
        raise click.ClickException(f"no examples to evaluate in the {split} split "
                                   f"({result['dropped_unknown_label']} had labels the model does not know)")
    left_out = "" if "label_error_rate" in result else f" ({result['dropped_unknown_label']} left out: unknown labels)"
    _echo_scores(split, result, left_out)


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1)
@click.option("--backend", default=None, metavar="NAME")
@device_option
@distributed_option
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True,
              help="Labels (transcripts) per input, most probable first.")
@click.option("--among", metavar="LABELS", default=None,
              help="Choose only among these labels, comma-separated (e.g. hr,sl,de): their "
                   "probabilities renormalised (classifiers).")
def predict(checkpoint, inputs, backend, top, among):
    """Predict with a checkpoint (file or run folder).

    language-id: INPUTS are texts; without them, one text per line of stdin (blank lines give
    blank output lines). speech tasks: INPUTS are WAV or .npz files. Prints
    label<TAB>probability per input (then <TAB>source for files); speech-recognition prints
    the transcript and its probability. Under mpiexec/srun the inputs are sharded across the
    ranks; rank 0 reads stdin and prints.
    """
    from lstm_engine.predictor import load_predictor
    comm = world(backend)
    pred = load_predictor(checkpoint, backend=backend or "auto", comm=comm)
    among = None if among is None else [label.strip() for label in among.split(",") if label.strip()]
    if pred.task.kind == "text":
        texts = list(inputs) if inputs else comm.bcast_object(_stdin_lines() if comm.is_root else None)
        _print_text_predictions(pred, texts, top, comm.is_root, among)
    else:
        if not inputs:
            raise click.UsageError("give one or more WAV or .npz files to predict on")
        values, names = pred.task.read_inputs(list(inputs), pred.encoder)
        ranked = pred.predict_top(values, top, among)
        for name, row in zip(names, ranked) if comm.is_root else ():
            click.echo(_top(row) + f"\t{name}")


def _top(ranked: list[tuple[str, float]]) -> str:
    return "\t".join(f"{label}\t{p:.4f}" for label, p in ranked)


def _stdin_lines() -> list[str]:
    lines = []
    for n, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as e:
            raise DataError(f"stdin line {n} is not valid UTF-8 ({e.reason} at byte {e.start}); "
                            f"texts must be UTF-8") from None
    return lines


def _print_text_predictions(pred, texts: list[str], top: int, show: bool = True, among=None) -> None:
    filled = [i for i, t in enumerate(texts) if t.strip()]
    ranked = pred.predict_top([texts[i] for i in filled], top, among) if filled or among else []
    if not show:
        return
    rows = dict(zip(filled, ranked))
    for i in range(len(texts)):
        click.echo(_top(rows[i]) if i in rows else "")
