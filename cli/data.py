"""`lstm-engine data`: build (or read from the cache), inspect and export a task's data.

For language-id's default data (the many-source corpus, ``lstm_engine.data.lid_corpus``) it
prints the table of languages by source, with the splits, the held-out sets and what is
missing; ``--json`` gives the same data (and the whole manifest)."""

from __future__ import annotations

import json

import click

from .settings import parse_set


@click.command()
@click.argument("task", required=False, default="language-id", metavar="[TASK]")
@click.option("--data", default=None, metavar="PATH", help="Data you bring, instead of the task's default.")
@click.option("--set", "set_pairs", multiple=True, metavar="KEY=VALUE",
              help="Data settings, e.g. min_strings=500 max_per_language=6000 (language-id); for its default "
                   "corpus also sources=gettext,fortunes held_out_sources=fortunes max_per_source=1000 "
                   "download=false.")
@click.option("--export", "export_path", default=None, metavar="FILE",
              help="Write the data: a label<TAB>text<TAB>split TSV (language-id) or an .npz (speech).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def data(task, data, set_pairs, export_path, as_json):
    """Build and describe TASK's data (per split and label counts; for language-id's default
    corpus, per source too; for speech-recognition, token counts and sequence sizes);
    optionally export it."""
    from lstm_engine import settings
    from lstm_engine.data import lid_corpus
    from lstm_engine.tasks import get_task
    t = get_task(task)
    config = settings.resolve(t, ("--set", parse_set(set_pairs)), ("--data", {"data": data}))
    options = t.data_options(config)
    loaded = t.load(options)
    splits, manifest = loaded.splits, loaded.manifest
    if export_path:
        t.export(splits, export_path)
    stats = {
        "task": t.name, "options": options,
        "splits": {name: len(ex) for name, ex in splits.items()},
        **t.describe(splits),
    }
    if manifest is not None:
        stats["by_source"] = lid_corpus.source_table(manifest)
        stats["manifest"] = manifest
    if export_path:
        stats["exported"] = export_path
    if as_json:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    counted = "labels" if "labels" in stats else "tokens"
    labels = sorted(set().union(*(s.keys() for s in stats[counted].values())))
    click.echo(f"{t.name}: {len(labels)} {'labels' if counted == 'labels' else 'characters'}; " +
               ", ".join(f"{name} {n}" for name, n in stats["splits"].items()))
    if manifest is not None:
        _echo_source_table(stats["by_source"])
    else:
        click.echo(("label" if counted == "labels" else "character") + "\t" + "\t".join(stats["splits"]))
        for lab in labels:
            shown = lab if counted == "labels" or not lab.isspace() else repr(lab)
            click.echo(shown + "\t" + "\t".join(str(stats[counted][s].get(lab, 0)) for s in stats["splits"]))
    for name, sizes in stats.get("sequences", {}).items():
        click.echo(f"{name}: {sizes['n']} sequences, {sizes['distinct_transcripts']} distinct transcripts; " +
                   "; ".join(f"{what} {r['min']}-{r['max']} (mean {r['mean']})"
                             for what, r in sizes.items() if isinstance(r, dict) and r))
    if export_path:
        click.echo(f"exported to {export_path}")


def _echo_source_table(table: dict) -> None:
    """Languages by source, then the splits; the held-out sets. (What is missing went to stderr
    while the corpus was built, and is in the --json output.)"""
    sources, rows = table["sources"], table["rows"]
    columns = ["language", *sources, "train", "validation", "test", "total"]
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    click.echo("  ".join(c.rjust(width[c]) if c != "language" else c.ljust(width[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row[c]).rjust(width[c]) if c != "language" else row[c].ljust(width[c])
                             for c in columns))
    totals = {c: sum(r[c] for r in rows) for c in columns[1:]}
    click.echo("  ".join(["all".ljust(width["language"])] + [str(totals[c]).rjust(width[c]) for c in columns[1:]]))
    for source, per_label in table["held_out"].items():
        click.echo(f"held out: {source}: {sum(per_label.values())} strings in {len(per_label)} languages "
                   f"({', '.join(f'{k} {v}' for k, v in per_label.items())})")
