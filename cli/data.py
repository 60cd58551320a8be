"""`lstm-engine data`: build (or read from the cache), inspect and export a task's data."""

from __future__ import annotations

import json
from collections import Counter

import click

from .settings import parse_set


@click.command()
@click.argument("task", required=False, default="language-id", metavar="[TASK]")
@click.option("--data", default=None, metavar="PATH", help="Data you bring, instead of the task's default.")
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Data settings, e.g. min_strings=500 max_per_language=3000 (language-id).")
@click.option("--export", "export_path", default=None, metavar="FILE",
              help="Write the data: a label<TAB>text<TAB>split TSV (language-id) or an .npz (speech).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def data(task, data, set_pairs, export_path, as_json):
    """Build and describe TASK's data (per split and label counts); optionally export it."""
    from lstm_engine import settings
    from lstm_engine.tasks import get_task
    t = get_task(task)
    config = settings.resolve(t, ("--set", parse_set(set_pairs)), ("--data", {"data": data}))
    options = t.data_options(config)
    splits = t.load_data(options)
    if export_path:
        t.export(splits, export_path)
    stats = {
        "task": t.name, "options": options,
        "splits": {name: len(ex) for name, ex in splits.items()},
        "labels": {name: dict(sorted(Counter(ex.labels).items())) for name, ex in splits.items()},
    }
    if export_path:
        stats["exported"] = export_path
    if as_json:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    labels = sorted(set().union(*(s.keys() for s in stats["labels"].values())))
    click.echo(f"{t.name}: {len(labels)} labels; " +
               ", ".join(f"{name} {n}" for name, n in stats["splits"].items()))
    click.echo("label\t" + "\t".join(stats["splits"]))
    for lab in labels:
        click.echo(lab + "\t" + "\t".join(str(stats["labels"][s].get(lab, 0)) for s in stats["splits"]))
    if export_path:
        click.echo(f"exported to {export_path}")
