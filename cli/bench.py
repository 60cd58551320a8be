"""`lstm-engine bench`: the speed suite on this machine, every backend and torch side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .settings import apply_threads, device_option


def _parse_shapes(ctx, param, values):
    from lstm_engine.bench import ShapeError, parse_shape
    try:
        return tuple(parse_shape(v) for v in values)
    except ShapeError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _engines(backend_names: tuple[str, ...], no_torch: bool) -> tuple[list[str], str]:
    """The backends asked for (each must run here), else every available one; then torch when
    importable. Returns (engines, why torch is left out or "")."""
    from lstm_engine import backends as registry
    from lstm_engine.bench import torch_or_reason
    names = []
    for name in backend_names:
        key = name.strip().lower()
        if key not in registry.names():
            raise click.BadParameter(f"unknown backend {name!r}; expected some of: {', '.join(registry.names())} "
                                     "(torch is compared unless --no-torch)", param_hint="--backend")
        info = registry.probe(key)
        if not info.available:
            raise click.BadParameter(f"backend {key!r} does not run here: {info.reason}", param_hint="--backend")
        if key not in names:
            names.append(key)
    names = names or registry.available()
    torch, reason = torch_or_reason(no_torch)
    return names + (["torch"] if torch is not None else []), reason


@click.command()
@click.option("--backend", "backend_names", multiple=True, metavar="NAME",
              help="A backend to time (numpy, cpu, cuda); repeatable. Default: every available one.")
@click.option("--shape", "shapes", multiple=True, callback=_parse_shapes, metavar="B,T,I,H[,layers[,bi]]",
              help="A shape of your own; repeatable.")
@click.option("--only", default="", metavar="NAMES",
              help="Comma-separated named shapes: latency, speech, speech-2L-bi, char, deepbench, "
                   "db-H512-B16-T25, ... Default (with no --shape): the five standard ones.")
@click.option("--no-torch", is_flag=True, help="Leave torch.nn.LSTM out even where it is installed.")
@click.option("--repeat", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed calls per cell (the median is reported).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed calls before them.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for the cpu backend, and for torch.")
@device_option
@click.option("--no-memory", is_flag=True,
              help="Skip the peak memory of the training step (a subprocess per cell).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Also write the JSON results to FILE.")
def bench(backend_names, shapes, only, no_torch, repeat, warmup, threads, no_memory, as_json, out):
    """Time LSTM forward and forward+backward (float32, time-major) on every backend and
    torch.nn.LSTM, side by side: median ms, first-call ms, GFLOP/s, share of this machine's
    GEMM rate, ratio to torch, and peak memory of a training step. Progress goes to stderr."""
    from lstm_engine.bench import (
        markdown_table,
        run_suite,
        select_shapes,
        write_results,
    )
    apply_threads(threads)
    try:
        selected = select_shapes(only, shapes)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--only: "), param_hint="--only") from None
    engines, torch_reason = _engines(backend_names, no_torch)
    result = run_suite(engines, selected, warmup, repeat, memory=not no_memory, threads=threads,
                       log=lambda msg: click.echo(msg, err=True))
    result["torch_skipped"] = torch_reason or None
    if out is not None:
        write_results(result, out)
    click.echo(json.dumps(result, indent=2) if as_json else markdown_table(result))
