"""Settings from the command line: a TOML config file, ``--set KEY=VALUE`` and named flags,
in that order of precedence (later wins), over the task's defaults (the schema and its rules
are engine/settings.py's); and `lstm-engine settings`, which lists them."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import click


def read_config_file(path: str | None) -> dict:
    """A flat TOML table of settings (``epochs = 5``); a ``[train]`` table is also accepted."""
    if path is None:
        return {}
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise click.BadParameter(f"file not found: {path}", param_hint="--config") from None
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror or e}", param_hint="--config") from None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")     # a BOM from some editors
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); TOML files "
                                 f"must be UTF-8", param_hint="--config") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path} is not valid TOML: {e}", param_hint="--config") from None
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return {k.replace("-", "_"): v for k, v in flat.items()}


def parse_set(pairs: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs; VALUE is read as a TOML value (numbers, true/false, "strings"),
    else taken as a bare string."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out


def apply_threads(threads: int | None) -> None:
    """--threads: the cpu backend's thread count (an error names the option)."""
    if threads is not None:
        from lstm_engine.backends import set_num_threads
        try:
            set_num_threads(threads)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--threads") from None


def _set_device(ctx, param, value):
    if value is not None:
        from lstm_engine.backends.cuda import DEVICE_ENV
        os.environ[DEVICE_ENV] = str(value)
    return value


#: --device-id for every command that picks a backend: which GPU the cuda backend uses. It must
#: be set before the backend is first made (the registry keeps one instance).
device_option = click.option("--device-id", type=click.IntRange(min=0), default=None, expose_value=False,
                             callback=_set_device, help="GPU for the cuda backend (default 0, or "
                             "$LSTM_ENGINE_CUDA_DEVICE).")


def _set_distributed(ctx, param, value):
    if value is not None:
        from lstm_engine.distributed import MODE_ENV
        os.environ[MODE_ENV] = value
    return value


#: --distributed for the commands that run across ranks under a launcher (run, train,
#: evaluate, predict); like --device-id it is read when the world is first made.
distributed_option = click.option(
    "--distributed", type=click.Choice(["auto", "mpi", "nccl", "off"]), default=None, expose_value=False,
    callback=_set_distributed, help="Ranks under mpiexec/srun: auto (default: MPI when a launcher "
    "started several processes, NCCL for cuda), mpi, nccl, or off (each process on its own). "
    "Default: $LSTM_ENGINE_DISTRIBUTED, else auto.")


def world(backend: str | None, threads: int | None = None):
    """This process's ranks (engine/distributed.py), with this rank's threads and GPU chosen
    before a backend is made; a world of one unless a launcher started several processes."""
    from lstm_engine import distributed
    comm = distributed.world()
    distributed.prepare(comm, backend or "auto", threads)
    return comm


@click.command()
@click.argument("task", required=False, default="language-id", metavar="[TASK]")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def settings(task: str, as_json: bool):
    """List every setting of TASK: its group, default (the task's), allowed values, the flag
    that sets it, whether it may change on --resume, and what it does."""
    from lstm_engine import settings as schema
    from lstm_engine.tasks import get_task
    rows = schema.table(get_task(task))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for group in schema.GROUPS:
        members = [r for r in rows if r["group"] == group]
        if not members:
            continue
        click.echo(f"[{group}]")
        for r in members:
            flag = f" ({r['flag']})" if r["flag"] else ""
            resume = "; may change on --resume" if r["resumable"] else ""
            click.echo(f"  {r['name']} = {r['default']!r}{flag}: {r['allowed']}{resume}")
            click.echo(f"      {r['help']}")
