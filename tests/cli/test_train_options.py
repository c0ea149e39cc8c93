"""`deepsvdd train` and the library in step: the same defaults and the same choices."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields, replace

import pytest

from cli.main import CLI_DEFAULTS, build_parser
from cli.training_commands import run_spec, train_config
from modelfile.metadata import DECODE_POLICIES
from training.config import (
    DATASETS,
    DEVICES,
    NETS,
    OBJECTIVES,
    PRECISIONS,
    PRETRAIN_TASKS,
    TRANSFORMS,
    RunSpec,
    TrainConfig,
)

# TrainConfig's fields that the command line leaves at the library's default.
NOT_OPTIONS = {"warm_up_epochs"}
# RunSpec's fields whose option is text that `deepsvdd train` parses first ("A,B").
PARSED_OPTIONS = {"anomaly_classes"}
# Each tuple of choices and the field (the option's dest) that takes one of them.
CHOICES = {
    "objective": OBJECTIVES,
    "pretrain_task": PRETRAIN_TASKS,
    "transforms": TRANSFORMS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "arch": NETS,
    "dataset": DATASETS,
    "decode": DECODE_POLICIES,
}
MINIMAL = ["train", "--dataset", "mnist", "--normal-class", "1"]


def train_options() -> dict[str, argparse.Action]:
    """The `train` parser's options by dest."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in sub.choices["train"]._actions}


def test_every_config_field_is_an_option_with_the_configs_default() -> None:
    options = train_options()
    exposed = {f.name for f in fields(TrainConfig)} - NOT_OPTIONS
    assert exposed <= set(options), sorted(exposed - set(options))
    for field in fields(TrainConfig):
        if field.name in exposed:
            want = CLI_DEFAULTS.get(field.name, field.default)
            assert options[field.name].default == want, field.name


def test_the_only_defaults_of_its_own_are_named() -> None:
    assert set(CLI_DEFAULTS) <= {f.name for f in fields(TrainConfig)} - NOT_OPTIONS
    assert all(CLI_DEFAULTS[name] != getattr(TrainConfig, name) for name in CLI_DEFAULTS)


def test_run_spec_options_have_its_defaults() -> None:
    options = train_options()
    shared = [f for f in fields(RunSpec) if f.name in set(options) - PARSED_OPTIONS]
    assert {f.name for f in shared} >= {"arch", "leaky_slope", "models_dir", "checkpoint_every"}
    for field in shared:
        if field.default is not MISSING:
            assert options[field.name].default == field.default, field.name


@pytest.mark.parametrize("dest", sorted(CHOICES))
def test_choices_are_the_librarys_tuples(dest: str) -> None:
    action = train_options()[dest]
    assert tuple(action.choices or ()) == CHOICES[dest]
    if action.default is not None:
        assert action.default in CHOICES[dest]


def test_no_arguments_give_the_default_config_and_spec() -> None:
    args = build_parser().parse_args(MINIMAL)
    assert train_config(args) == replace(TrainConfig(), **CLI_DEFAULTS)
    assert run_spec(args, ()) == RunSpec(dataset="mnist", normal_class="1")


def test_arguments_reach_the_config() -> None:
    args = build_parser().parse_args(
        [*MINIMAL, "--no-pretrain", "--epochs", "3", "--members", "dcae:identity,none:rotations"]
    )
    cfg = train_config(args)
    assert (cfg.pretrain, cfg.epochs) == (False, 3)
    assert cfg.members == ("dcae:identity", "none:rotations")
    assert run_spec(build_parser().parse_args([*MINIMAL, "--net", "cifar10"]), ()).arch == "cifar10"
    assert run_spec(build_parser().parse_args([*MINIMAL, "--decode", "full"]), ()).decode == "full"


def test_unknown_settings_are_refused_by_name() -> None:
    assert TrainConfig.from_overrides({"epochs": 3}) == TrainConfig(epochs=3)
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) epoch;"):
        TrainConfig.from_overrides({"epoch": 3})


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["", *sorted(_subcommands())])
def test_no_command_takes_an_abbreviated_option(command: str) -> None:
    parser = _subcommands()[command] if command else build_parser()
    assert parser.allow_abbrev is False


def test_a_prefix_of_an_option_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`--model patch` must never be read as `--models-dir patch`."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*MINIMAL, "--models", "patch"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --models patch" in capsys.readouterr().err
