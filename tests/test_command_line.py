"""What node-run checks on its command line before Hydra runs: experiments, launchers, keys; and how a sweep over
experiments passes a key that only they have (Hydra applies single values to a default-groups config first)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode

from node_experiments.cli import main
from node_experiments.command_line import (
    USAGE,
    command_line_problem,
    experiment_problem,
    hydra_arguments,
    launcher_problem,
)

SPIRALS = "experiment=spiral_latent_ode,spiral_rnn"


def test_experiment_names_are_checked_before_hydra_runs() -> None:
    assert experiment_problem(["experiment=mnist_odenet", "solver.rtol=1e-4"]) is None
    assert experiment_problem(["-m", "experiment=mnist_odenet,mnist_mlp"]) is None
    assert "no experiment given" in experiment_problem(["trainer.max_epochs=1"])
    assert "Did you mean experiment=mnist_resnet" in experiment_problem(["-m", "experiment=mnist_mlp,mnist_resnt"])
    assert "unknown experiment 'base/cnf'" in experiment_problem(["experiment=base/cnf"])
    assert command_line_problem(["--help"]) is None
    assert command_line_problem(["experiment=mnist_mlp", "--cfg", "job"]) is None
    assert "--multirun and --cfg cannot be combined" in command_line_problem(["-m", "experiment=mnist_mlp", "--cfg", "job"])


@pytest.mark.parametrize("arg", ["solver.adjoint=false", "+solver.adjoint=true", "++solver.adjoint=false"])
def test_the_retired_adjoint_flag_names_its_replacement(arg: str) -> None:
    """``solver.adjoint`` (a boolean until the gradient strategies) gets one paragraph naming ``solver.gradient``."""
    message = command_line_problem(["experiment=mnist_odenet", arg])
    assert message.startswith("node-run: solver.adjoint=")
    assert "solver.gradient=backprop" in message and "solver.gradient=adjoint" in message
    assert command_line_problem(["experiment=mnist_odenet", "solver.adjoint_options.norm=seminorm"]) is None


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["experiment=mnist_odenet", "trainer.max_epoch=2"],
         "Could not override 'trainer.max_epoch': Key 'max_epoch' is not in struct (the config of "
         "experiment=mnist_odenet has no key trainer.max_epoch). Did you mean trainer.max_epochs=2? To add a new key "
         "instead, use +trainer.max_epoch=2."),
        (["experiment=mnist_odenet", "max_epochs=3"], "Did you mean trainer.max_epochs=3?"),
        (["experiment=mnist_odenet", "solver.options.firststep=0.1"], "Did you mean solver.options.first_step=0.1?"),
        (["experiment=mnist_resnet", "solver.rtol=1e-4"], "the config of experiment=mnist_resnet has no solver group"),
        (["-m", SPIRALS, "data.nobs=30"], "Did you mean data.n_obs=30?"),
        (["-m", "experiment=mnist_odenet,mnist_resnet", "solver.rtol=1e-4"],
         "Could not override 'solver.rtol' in every job of the sweep: the config of experiment=mnist_resnet has no "
         "such key (that of experiment=mnist_odenet has)."),
        (["-m", "experiment=mnist_mlp", "model=resnet,odenet", "solver.rtol=1e-4"], "model=resnet has no such key"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_named_with_the_closest_real_key(argv: list[str], expected: str) -> None:
    assert expected in command_line_problem(argv)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["experiment=mnist_mlp", "optimizer.betas=[0.9,1.5]"],
         "node-run: optimizer.betas=[0.9,1.5]: torch.optim.SGD, this run's optimizer, takes no argument betas; "
         "torch.optim.Adam does: use optimizer=adam +optimizer.betas=[0.9,1.5], or leave optimizer.betas out."),
        (["experiment=cnf_two_moons", "optimizer.betas=[0.9,0.99]"],
         "node-run: optimizer.betas=[0.9,0.99]: the optimizer config (torch.optim.Adam) does not list betas, which "
         "torch.optim.Adam takes as an argument: add it with +optimizer.betas=[0.9,0.99]."),
        (["experiment=mnist_odenet", "optimizer.nesterov=true"], "add it with +optimizer.nesterov=true."),
        (["experiment=mnist_mlp", "scheduler.step_size=3"],
         "torch.optim.lr_scheduler.MultiStepLR, this run's scheduler, takes no argument step_size; its arguments "
         "are: milestones, gamma, last_epoch."),
    ],
)  # fmt: skip
def test_an_argument_of_the_optimizer_or_scheduler_class_is_named_with_how_to_set_it(
    argv: list[str], expected: str
) -> None:
    """Before: "Did you mean task=[0.9,1.5]?" (a group whose name resembles betas)."""
    message = command_line_problem(argv)
    assert message.startswith("node-run: ") and message.endswith(expected), message


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["experiment=mnist_mlp", "trainer.max_epochs"],
         "node-run: the setting 'trainer.max_epochs' has no value: settings are given as key=value, e.g. "
         "trainer.max_epochs=160 (its value now); ~trainer.max_epochs deletes a key, +trainer.max_epochs=VALUE adds "
         "one."),
        (["experiment=cnf_two_moons", "model.trace"], "e.g. model.trace=exact (its value now)"),
        (["experiment=mnist_mlp", "model.hidden=[1,2"], "node-run: the setting 'model.hidden=[1,2' cannot be read"),
        (["experiment=mnist_mlp,mnist_odenet"], "node-run: experiment=mnist_mlp,mnist_odenet gives several values, "
         "which only a sweep runs: add -m"),
        (["experiment=mnist_mlp", "model=foo"], "node-run: In 'config': Could not find 'model/foo'. Available options "
         "in 'model': cnf, ffjord, latent_ode, mlp, odenet, planar_nf, resnet, spiral_rnn (in the config of "
         "experiment=mnist_mlp)."),
        (["experiment=mnist_mlp", "+model.hidden=3"], "An item is already at 'model.hidden'. Either remove + prefix: "
         "'model.hidden=3'. Or add a second + to add or override 'model.hidden': '++model.hidden=3'"),
    ],
)  # fmt: skip
def test_a_setting_hydra_cannot_read_is_one_paragraph(argv: list[str], expected: str) -> None:
    """Hydra's errors exited 1, over several lines; a command-line mistake is one paragraph and exit status 2."""
    message = command_line_problem(argv)
    assert expected in message and message.count("\n") == 1 and message.endswith(USAGE), message


def test_a_command_line_mistake_exits_with_status_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """docs/configuration.md: exit status 2 for the command line (Hydra's own parse error exited 1)."""
    monkeypatch.setattr(sys, "argv", ["node-run", "experiment=mnist_mlp", "trainer.max_epochs"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2 and "has no value" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["experiment=mnist_odenet", "debug=quick", "trainer.max_epochs=2", "+solver.options.max_step=0.5"],
        ["experiment=mnist_odenet", "~optimizer.weight_decay"],
        ["experiment=mnist_odenet", "model=resnet", "model.num_blocks=2"],
        ["-m", SPIRALS, "data.n_obs=30"],
        ["-m", SPIRALS, "data.n_obs=30,50", "++data.noise=0.2"],
        ["experiment=mnist_odenet", "--cfg", "job"],
    ],
)
def test_keys_the_config_has_pass(argv: list[str]) -> None:
    assert command_line_problem(argv) is None


def test_a_sweep_over_experiments_takes_their_own_keys_without_plus_plus() -> None:
    """Hydra composes a multirun's sweep-level config from the default groups, the swept experiment left out, and
    applies the single values to it; a swept value it applies only to each job's config. So `++` was needed exactly
    for a single value of a key that the default config (MNIST, the ODE-Net) lacks."""
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        hydra = GlobalHydra.instance().hydra

        def sweep_level_config(argv: list[str]) -> None:
            hydra.compose_config("config", argv, run_mode=RunMode.MULTIRUN)

        with pytest.raises(ConfigCompositionException, match="Could not override 'data.n_obs'"):
            sweep_level_config([SPIRALS, "data.n_obs=30"])
        sweep_level_config([SPIRALS, "data.n_obs=30,50"])
        sweep_level_config(hydra_arguments(["-m", SPIRALS, "data.n_obs=30"])[1:])
    assert hydra_arguments(["-m", SPIRALS, "data.n_obs=30", "trainer.seed=1,2", "data.noise=0.2"]) == [
        "-m", SPIRALS, "++data.n_obs=30", "trainer.seed=1,2", "++data.noise=0.2",
    ]  # fmt: skip
    unchanged = [
        ["experiment=spiral_rnn", "data.n_obs=30"],  # a single run composes the experiment's config at once
        ["-m", "experiment=spiral_rnn", "data.n_obs=30"],  # no config group is swept
        ["-m", SPIRALS, "+data.extra=1", "hydra.sweep.dir=x", "model=spiral_rnn"],
    ]
    for argv in unchanged:
        assert hydra_arguments(argv) == argv


def test_a_launcher_without_its_plugin_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    assert launcher_problem(["experiment=mnist_mlp", "hydra/launcher=basic"]) is None
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "launcher" in name else real_find_spec(name, *a)
    )
    for launcher, package in (("joblib", "hydra-joblib-launcher"), ("slurm", "hydra-submitit-launcher")):
        message = command_line_problem(["-m", "experiment=mnist_mlp", f"hydra/launcher={launcher}"])
        assert f"hydra/launcher={launcher} needs Hydra's {package} plugin" in message
        assert "pip install 'node-experiments[cluster]'" in message
