"""Every setting of a run, in one typed schema: the home of their names, types, defaults, help
texts and rules.

Settings come in groups, each a dataclass whose fields carry their metadata (``setting()``):

    ModelSettings      the SequenceClassifier: sizes, pooling, dropout, forget-gate bias
    OptimizerSettings  which optimizer and its hyperparameters
    TrainerSettings    epochs, batches, clipping, schedule, early stopping, seed
    <task>.Settings    the task's own: what data is loaded ("data"), how an input is
                       encoded ("input"), how each epoch's training examples are drawn
                       ("sampling") and how outputs become predictions ("decoding"); a
                       subclass of TaskSettings (which has ``data``)

On the command line and in ``config.json`` they form one flat namespace (every name is unique
across groups), in the order: a task's defaults (the schema's defaults overridden by the
task's ``DEFAULTS``), then a TOML file (``--config``), then ``--set KEY=VALUE``, then the named
flags. Everything that reads settings is derived from this module: the Click options
(``click_options``), the validation of every value and its error message (``resolve``), the
settings that may change when a run is resumed (``RESUMABLE``), and ``config.json`` (the
resolved flat dict). A value that is recorded is the value that runs: optimizer defaults that
depend on the optimizer (AdamW's weight decay) are resolved here, before anything is written.

An optional setting (``optional=True``) may be None, written ``"none"`` on the command line
and in TOML (which has no null): ``--set clip_norm=none`` turns clipping off.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .layers import POOLINGS
from .optim import OPTIMIZERS, SCHEDULES

#: Groups in the order they are listed; "data", "input", "sampling" and "decoding" belong to
#: the task.
GROUPS = ("model", "optimizer", "trainer", "data", "input", "sampling", "decoding")


@dataclass(frozen=True)
class Setting:
    """One setting: its name, type, default and rules. ``kind`` is int, float, bool or str."""
    name: str
    kind: type
    default: Any
    help: str
    group: str
    resumable: bool = False          # may differ from the checkpoint's value on --resume
    optional: bool = False           # None is allowed ("none" on the command line)
    choices: tuple = ()
    low: float | None = None         # inclusive bound unless low_open
    high: float | None = None        # inclusive bound unless high_open
    low_open: bool = False
    high_open: bool = False
    flag: str | None = None          # a named command-line flag ("--epochs"), besides --set
    off_flag: str | None = None      # for a bool flag: the name that turns it off

    def describe(self) -> str:
        """What a valid value looks like, for error messages and `lstm-engine settings`."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" (or none)" if self.optional else "")

    def check(self, value: Any, where: str = "") -> Any:
        """``value`` as this setting's type, or ConfigError naming the setting, what was
        expected and ``where`` the value came from."""
        def bad(why: str = "") -> ConfigError:
            origin = f" (from {where})" if where else ""
            return ConfigError(f"setting {self.name!r}{origin} must be {self.describe()}, got "
                               f"{value!r}" + (f": {why}" if why else ""))

        if value is None or (self.optional and isinstance(value, str) and value.strip().lower() == "none"):
            if self.optional:
                return None
            raise bad()
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise bad()
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad()
            if abs(value) >= 2 ** 63:                   # becomes a NumPy int64 somewhere
                raise bad("too large")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            value = float(value)
            if not math.isfinite(value):
                raise bad("not a finite number")
        elif kind is str:
            if not isinstance(value, str):
                raise bad()
        if self.choices and value not in self.choices:
            raise bad()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad()
        return value


def setting(kind: type, default, help: str, **rules):
    """A dataclass field that is a setting (the field's name becomes the setting's name)."""
    return dataclasses.field(default=default, metadata={"setting": (kind, help, rules)})


def _specs(cls, group: str) -> list[Setting]:
    out = []
    for f in dataclasses.fields(cls):
        kind, help_text, rules = f.metadata["setting"]
        rules = dict(rules)
        out.append(Setting(f.name, kind, f.default, help_text, rules.pop("group", group), **rules))
    return out


# -- the groups ---------------------------------------------------------------------------------
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
#: The validation metrics a run can monitor, and whether a larger or a smaller value is better.
#: Which of them a run reports is its objective's (engine/objectives.py): classification
#: reports loss, accuracy and macro_f1; CTC loss, label_error_rate and sequence_accuracy.
MONITORS = {"accuracy": "max", "macro_f1": "max", "loss": "min", "label_error_rate": "min",
            "sequence_accuracy": "max"}


@dataclass
class ModelSettings:
    hidden_size: int = setting(int, 128, "Hidden units per direction of each LSTM layer.", low=1,
                               flag="--hidden-size")
    num_layers: int = setting(int, 1, "Stacked LSTM layers.", low=1, flag="--num-layers")
    bidirectional: bool = setting(bool, False, "A reverse direction in every layer.",
                                  flag="--bidirectional", off_flag="--unidirectional")
    embedding_dim: int = setting(int, 64, "Width of the token embedding (text tasks).", low=1)
    ngram_buckets: int = setting(int, 0, "Hashed n-gram embeddings (bigrams up to ngram_order) added to "
                                 "each token's (text tasks): rows in their shared table; 0: none.", low=0)
    ngram_order: int = setting(int, 3, "The longest hashed n-gram, in tokens (with ngram_buckets): "
                               "3 = bigrams and trigrams, 4 adds 4-grams.", low=2, high=5)
    dropout: float = setting(float, 0.0, "Dropout between LSTM layers and before the head.",
                             low=0.0, high=1.0, high_open=True)
    pooling: str = setting(str, "last", "How a sequence's outputs become one vector: the final "
                           "states (both ends when bidirectional), or the mean or maximum over "
                           "the valid steps.", choices=POOLINGS)
    forget_bias: float = setting(float, 1.0, "Added to the forget gate's bias at initialisation "
                                 "(Keras's unit_forget_bias; the bare LSTM class uses PyTorch's 0).")


@dataclass
class OptimizerSettings:
    optimizer: str = setting(str, "adam", "sgd (with momentum), adam or adamw (torch.optim's rules).",
                             choices=OPTIMIZER_NAMES, flag="--optimizer")
    lr: float = setting(float, 2e-3, "Learning rate (the peak, after warm-up).", low=0.0, low_open=True,
                        flag="--lr")
    weight_decay: float | None = setting(float, None, "L2 penalty (adam, sgd) or decoupled decay "
                                         "(adamw); none: the optimizer's own default (0.01 for "
                                         "adamw, 0 otherwise), resolved and recorded.",
                                         low=0.0, optional=True)
    momentum: float = setting(float, 0.9, "Momentum of sgd (ignored by adam and adamw).", low=0.0,
                              high=1.0, high_open=True)


@dataclass
class TrainerSettings:
    epochs: int = setting(int, 10, "Passes over the training split.", low=1, resumable=True,
                          flag="--epochs")
    batch_size: int = setting(int, 64, "Sequences per optimizer step (batches are bucketed by length).",
                              low=1, flag="--batch-size")
    seed: int = setting(int, 0, "Seeds the initial weights, the batch order and dropout.", low=0,
                        flag="--seed")
    clip_norm: float | None = setting(float, 1.0, "Clip the gradients' global L2 norm to this; none: off.",
                                      low=0.0, low_open=True, optional=True)
    schedule: str = setting(str, "constant", "Learning-rate schedule after the warm-up.", choices=SCHEDULES)
    warmup_steps: int = setting(int, 0, "Steps of linear learning-rate warm-up.", low=0)
    step_size: int = setting(int, 1000, "Steps between decays of the step schedule.", low=1)
    gamma: float = setting(float, 0.5, "Decay factor of the step schedule.", low=0.0, low_open=True)
    patience: int = setting(int, 0, "Early stopping: epochs without a better validation score; 0: off.",
                            low=0, resumable=True)
    monitor: str = setting(str, "accuracy", "Validation metric that picks the best checkpoint "
                           "(loss and label_error_rate: lower is better); it must be one the task "
                           "reports.", choices=tuple(MONITORS))
    eval_batch_size: int = setting(int, 256, "Sequences per batch when evaluating.", low=1)
    label_smoothing: float = setting(float, 0.0, "Classification: training targets keep 1 - this on "
                                     "their class and spread this evenly over all classes (torch's "
                                     "label_smoothing); validation and test losses stay plain "
                                     "cross-entropy.", low=0.0, high=1.0, high_open=True)
    balance_temperature: float = setting(float, 1.0, "Each epoch draws classes in proportion to "
                                         "their training examples ** this: 1 keeps the data's own "
                                         "proportions, 0 draws every class equally often.",
                                         low=0.0, high=1.0)


@dataclass
class TaskSettings:
    """Base of a task's own settings: every task reads ``data``."""
    data: str | None = setting(str, None, "Data to use instead of the task's default (a file or folder).",
                               optional=True, flag="--data", group="data")


COMMON_GROUPS = (("model", ModelSettings), ("optimizer", OptimizerSettings), ("trainer", TrainerSettings))


def common_settings() -> dict[str, Setting]:
    """The settings every task shares (model, optimizer, trainer, and ``data``)."""
    out: dict[str, Setting] = {}
    for group, cls in COMMON_GROUPS:
        out.update((s.name, s) for s in _specs(cls, group))
    out.update((s.name, s) for s in _specs(TaskSettings, "data"))
    return out


def task_schema(task) -> dict[str, Setting]:
    """Every setting of ``task`` with the task's defaults: name -> Setting, in group order.
    A task's own settings are the fields of its ``Settings`` dataclass (default group "data";
    a field with ``group="input"`` shapes how inputs are encoded, not what data is loaded)."""
    specs = common_settings()
    for s in _specs(task.Settings, "data"):
        if s.name in specs and s.name != "data":
            raise TypeError(f"task {task.name}: setting {s.name!r} is already a common setting")
        specs[s.name] = s
    for name, value in task.DEFAULTS.items():
        if name not in specs:
            raise TypeError(f"task {task.name}: DEFAULTS names an unknown setting {name!r}")
        specs[name] = dataclasses.replace(specs[name], default=specs[name].check(value, f"{task.name} defaults"))
    return dict(sorted(specs.items(), key=lambda kv: GROUPS.index(kv[1].group)))


#: Settings that may change when a run is resumed; every other one must match the checkpoint.
RESUMABLE = frozenset(s.name for s in common_settings().values() if s.resumable)


def defaults(task) -> dict:
    return {name: s.default for name, s in task_schema(task).items()}


def given(task, *layers) -> dict:
    """The settings given in ``layers``, validated and merged (later layers win); a layer is a
    dict, or a pair (where, dict) whose ``where`` ("--config run.toml", "--set") is named in
    errors. ``None`` means "not given". Unknown names and bad values raise ConfigError."""
    schema = task_schema(task)
    merged = {}
    for layer in layers:
        where, values = layer if isinstance(layer, tuple) else ("", layer)
        for key, value in (values or {}).items():
            if value is None:
                continue
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1)
                raise ConfigError(f"unknown setting {key!r}" + (f" (from {where})" if where else "")
                                  + f" for task {task.name}"
                                  + (f"; did you mean {close[0]!r}?" if close else "")
                                  + f" Known settings: {', '.join(schema)}")
            merged[key] = schema[key].check(value, where)
    return merged


def resolve(task, *layers) -> dict:
    """The task's defaults overlaid by ``given(task, *layers)``: the flat, validated config of a
    run, with the optimizer-dependent defaults resolved (what config.json records)."""
    config = {**defaults(task), **given(task, *layers)}
    if config["weight_decay"] is None:
        config["weight_decay"] = OPTIMIZERS[config["optimizer"]].default_weight_decay
    return config


def group_values(config: dict, cls) -> Any:
    """The ``cls`` group (a settings dataclass) filled from a flat config."""
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})


def values_in(config: dict, task, group: str) -> dict:
    """The settings of one group ("data", "input"...) of a flat config, by name."""
    return {name: config[name] for name, s in task_schema(task).items() if s.group == group}


# -- the command line ---------------------------------------------------------------------------
def click_options():
    """Click options for every setting that has a named flag, derived from the schema (type,
    range, choices and help); each defaults to None ("not given")."""
    import click

    options = []
    for s in common_settings().values():
        if s.flag is None:
            continue
        dest = s.name
        if s.kind is bool:
            options.append(click.option(f"{s.flag}/{s.off_flag}", dest, default=None, help=s.help))
            continue
        if s.choices:
            kind = click.Choice(list(s.choices))
        elif s.low is None and s.high is None:
            kind = s.kind
        elif s.kind is int:
            kind = click.IntRange(min=s.low, max=s.high, min_open=s.low_open, max_open=s.high_open)
        elif s.kind is float:
            kind = click.FloatRange(min=s.low, max=s.high, min_open=s.low_open, max_open=s.high_open)
        else:
            kind = str
        metavar = "PATH" if s.name == "data" else None
        options.append(click.option(s.flag, dest, type=kind, default=None, help=s.help, metavar=metavar))
    return options


def flag_names() -> list[str]:
    """The settings with a named flag (the keyword arguments click_options() adds)."""
    return [s.name for s in common_settings().values() if s.flag is not None]


def table(task) -> list[dict]:
    """The schema of ``task`` as rows (for `lstm-engine settings` and the README)."""
    return [{"name": s.name, "group": s.group, "type": s.kind.__name__, "default": s.default,
             "allowed": s.describe(), "resumable": s.resumable, "flag": s.flag, "help": s.help}
            for s in task_schema(task).values()]


__all__ = ["Setting", "setting", "ModelSettings", "OptimizerSettings", "TrainerSettings", "TaskSettings",
           "POOLINGS", "OPTIMIZER_NAMES", "SCHEDULES", "MONITORS", "RESUMABLE", "task_schema", "defaults",
           "given", "resolve", "group_values", "values_in", "click_options", "flag_names", "table", "common_settings"]
