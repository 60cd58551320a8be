"""The settings schema (engine/settings.py) and the error family as the command line shows it."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_engine import runs, settings
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.classifier import SequenceClassifier
from lstm_engine.cli.main import main
from lstm_engine.errors import ConfigError, DataError, LstmEngineError
from lstm_engine.tasks import TASKS, get_task


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_every_default_is_valid_and_every_group_is_known(task_name):
    task = get_task(task_name)
    schema = settings.task_schema(task)
    for name, s in schema.items():
        assert s.check(s.default) == s.default, name
        assert s.group in settings.GROUPS and s.help, name
    config = settings.resolve(task)
    assert set(config) == set(schema)
    from lstm_engine.optim import OPTIMIZERS
    own = OPTIMIZERS[config["optimizer"]].default_weight_decay     # the optimizer's own, resolved,
    assert config["weight_decay"] == task.DEFAULTS.get("weight_decay", own)   # unless the task sets it


def test_values_are_checked_and_errors_name_setting_source_and_rule():
    task = get_task("language-id")
    cases = [
        ({"epochs": "abc"}, r"'epochs' \(from --set\) must be an integer >= 1, got 'abc'"),
        ({"epochs": 0}, r"'epochs' .* >= 1, got 0"),
        ({"epochs": True}, r"'epochs' .* an integer"),           # a bool is not a number here
        ({"dropout": 1.0}, r"'dropout' .* >= 0 and < 1"),
        ({"lr": 0}, r"'lr' .* > 0"),
        ({"lr": float("nan")}, r"'lr' .* not a finite number"),
        ({"bidirectional": 1}, r"'bidirectional' .* true or false"),
        ({"pooling": "sum"}, r"'pooling' .* one of 'last', 'mean', 'max'"),
        ({"clip_norm": "off"}, r"'clip_norm' .* \(or none\)"),
        ({"epoch": 3}, r"unknown setting 'epoch' \(from --set\) .* did you mean 'epochs'\?"),
    ]
    for values, match in cases:
        with pytest.raises(ConfigError, match=match):
            settings.resolve(task, ("--set", values))
    assert settings.resolve(task, {"lr": 1})["lr"] == 1.0 and isinstance(settings.resolve(task, {"lr": 1})["lr"], float)
    assert settings.resolve(task, {"clip_norm": "None"})["clip_norm"] is None
    assert settings.resolve(task, {"epochs": 4.0})["epochs"] == 4
    # later layers win, None means "not given"
    assert settings.resolve(task, {"epochs": 2}, {"epochs": None}, {"hidden_size": 7})["epochs"] == 2


def test_only_epochs_and_patience_may_change_on_resume():
    assert settings.RESUMABLE == {"epochs", "patience"}


def test_a_task_cannot_name_an_unknown_or_shadowing_setting():
    class Bad:
        name, Settings, DEFAULTS = "bad", settings.TaskSettings, {"hiden_size": 3}
    with pytest.raises(TypeError, match="unknown setting 'hiden_size'"):
        settings.task_schema(Bad)

    @dataclasses.dataclass
    class Shadow(settings.TaskSettings):
        lr: float = settings.setting(float, 1.0, "again")

    class Bad2:
        name, Settings, DEFAULTS = "bad2", Shadow, {}
    with pytest.raises(TypeError, match="'lr' is already a common setting"):
        settings.task_schema(Bad2)


def test_the_classifier_takes_its_defaults_from_the_model_settings():
    model = SequenceClassifier(3, input_size=4, backend="numpy")
    defaults = dataclasses.asdict(settings.ModelSettings())
    del defaults["embedding_dim"]
    assert {k: model.config[k] for k in defaults} == defaults


def test_adamw_runs_with_the_weight_decay_config_json_records(tmp_path, lid_tsv):
    """The bug the schema fixed: adamw trained with 0.01 while config.json said 0.0."""
    out = tmp_path / "run"
    # language-id sets its own decay (0.03): "none" asks for the optimizer's
    runs.run("language-id", {"data": str(lid_tsv), "epochs": 1, "hidden_size": 6, "embedding_dim": 4,
                             "optimizer": "adamw", "weight_decay": "none"}, out, backend="numpy", progress=False,
             test=False)
    recorded = json.loads((out / "config.json").read_text())["weight_decay"]
    ran = load_checkpoint(out / "last.safetensors").train["optimizer"]["weight_decay"]
    assert recorded == ran == 0.01
    out2 = tmp_path / "run2"
    runs.run("language-id", {"data": str(lid_tsv), "epochs": 1, "hidden_size": 6, "embedding_dim": 4,
                             "optimizer": "adamw", "weight_decay": 0.0}, out2, backend="numpy",
             progress=False, test=False)
    assert load_checkpoint(out2 / "last.safetensors").train["optimizer"]["weight_decay"] == 0.0


def test_click_flags_are_derived_from_the_schema():
    text = CliRunner().invoke(main, ["run", "--help"]).output
    for s in settings.common_settings().values():
        if s.flag:
            assert s.flag in text, s.flag
    r = CliRunner().invoke(main, ["run", "--dropout", "0.2"])         # no flag: only --set
    assert r.exit_code == 2 and "No such option" in r.output


def test_settings_command_lists_every_setting_with_the_task_defaults():
    r = CliRunner().invoke(main, ["settings", "speech-digits", "--json"])
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert set(rows) == set(settings.task_schema(get_task("speech-digits")))
    assert rows["epochs"]["default"] == 30 and rows["epochs"]["resumable"]
    text = CliRunner().invoke(main, ["settings"]).output
    assert "[input]" in text and "max_length = 256" in text and "train_length = 64" in text


def test_config_file_errors_name_the_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('epochs = "three"\n')
    r = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert r.exit_code == 1 and f"from --config {cfg}" in r.output and "'epochs'" in r.output


def test_cli_prints_our_errors_as_one_line_and_lets_bugs_show_their_traceback(monkeypatch):
    def ours(*a, **k):
        raise DataError("the data is bad in a way we know")
    monkeypatch.setattr(runs, "run", ours)
    r = CliRunner().invoke(main, ["run", "--backend", "numpy"])
    assert r.exit_code == 1 and r.output == "Error: the data is bad in a way we know\n"
    assert isinstance(r.exception, SystemExit)

    def bug(*a, **k):
        return np.zeros(2)[5]
    monkeypatch.setattr(runs, "run", bug)
    r = CliRunner().invoke(main, ["run", "--backend", "numpy"])
    assert isinstance(r.exception, IndexError)               # not turned into a tidy message


def test_every_error_is_also_the_builtin_a_user_would_catch():
    from lstm_engine import errors
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and cls is not LstmEngineError:
            assert issubclass(cls, LstmEngineError)
            builtins = [b for b in cls.__mro__ if b.__module__ == "builtins"
                        and b not in (Exception, BaseException, object)]
            assert builtins, f"{name} should also derive from a built-in exception"
