"""`lstm-engine`: the command-line entry point (a Click group)."""

from __future__ import annotations

import json
import os
import traceback

import click

from lstm_engine import backends as registry
from lstm_engine import distributed
from lstm_engine.errors import LstmEngineError

from .bench import bench
from .data import data
from .export import export
from .settings import apply_threads, device_option, settings
from .training import evaluate, predict, run, train


class _Commands(click.Group):
    """The command group: the project's own errors (LstmEngineError: bad settings, data,
    checkpoints, backends...) and running out of memory print as one line with exit status 1;
    anything else is a bug and shows its traceback. Under a launcher with more than one rank,
    any error on any rank prints (with the rank) and aborts every rank, so that none is left
    waiting in a collective."""

    def invoke(self, ctx):
        try:
            try:
                return super().invoke(ctx)
            except LstmEngineError as exc:
                raise click.ClickException(str(exc)) from None
            except MemoryError as exc:
                # sizes the settings allow but this machine cannot hold (hidden_size=10**9...)
                raise click.ClickException(f"out of memory ({exc or 'MemoryError'}); choose smaller "
                                           f"sizes (hidden_size, batch_size, max_length...)") from None
        except (click.exceptions.Exit, SystemExit):
            raise                                  # a deliberate exit, which every rank takes
        except BaseException as exc:
            comm = distributed.current()
            if comm is None or comm.size == 1:
                raise
            if isinstance(exc, click.ClickException):
                message = exc.format_message()
            elif isinstance(exc, (KeyboardInterrupt, click.Abort)):
                message = "interrupted"
            else:
                message = "".join(traceback.format_exception(exc))
            distributed.abort(comm, message)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lstm-engine")
def main():
    """lstm-engine: fast LSTM training and inference on CPU (Numba) and GPU (CUDA)."""


@main.command()
@click.option("--backend", default=None, metavar="NAME",
              help="Check that NAME (auto, numpy, cpu, ...) runs here: exit status 1 with the "
                   f"reason if not. Default: ${registry.ENV_VAR}, else auto.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--threads", type=int, default=None, help="Threads for the cpu backend.")
@device_option
def backends(backend: str | None, as_json: bool, threads: int | None):
    """List the backends, whether each is available here (and why not), and device facts."""
    apply_threads(threads)
    if backend is not None:
        try:
            registry.get_backend(backend)
        except registry.BackendError as exc:
            raise click.ClickException(str(exc)) from None
    infos = [registry.probe(name) for name in registry.names()]
    wanted = backend or os.environ.get(registry.ENV_VAR) or "auto"
    try:
        chosen = registry.get_backend(wanted).name
    except registry.BackendError as exc:
        chosen = None
        if not as_json:
            click.echo(f"note: {exc}", err=True)
    if as_json:
        click.echo(json.dumps({
            "default": chosen,
            "backends": [{"name": i.name, "available": i.available, "reason": i.reason or None,
                          "facts": i.facts} for i in infos],
        }, indent=2))
        return
    for info in infos:
        mark = "*" if info.name == chosen else " "
        state = "available" if info.available else f"unavailable: {info.reason}"
        click.echo(f"{mark} {info.name:<6} {state}")
        for key, value in info.facts.items():
            click.echo(f"         {key}: {value}")
    click.echo(f"(* = the backend {wanted!r} resolves to here: {chosen})")


for _command in (run, train, evaluate, predict, data, bench, settings, export):
    main.add_command(_command)

if __name__ == "__main__":
    main()
