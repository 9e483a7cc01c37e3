"""Every experiment config composes, resolves and builds its model; solver settings are checked up front."""

from __future__ import annotations

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from node_experiments.cli import available_experiments, experiment_problem
from node_experiments.errors import ConfigError
from node_experiments.models import check_solver_config

EXPERIMENTS = available_experiments()
MNIST_EXPERIMENTS = ["mnist_mlp", "mnist_odenet", "mnist_resnet", "mnist_rknet"]


def test_the_mnist_experiments_are_there() -> None:
    assert set(MNIST_EXPERIMENTS) <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment: str) -> None:
    cfg = compose(experiment)
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for group in ("task", "model", "data", "optimizer", "scheduler", "trainer", "logger"):
        assert group in container, f"experiment={experiment} has no {group} group"
    if "solver" in cfg:
        check_solver_config(cfg.solver)


@pytest.mark.parametrize("experiment", MNIST_EXPERIMENTS)
@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_mnist_experiments_build_their_model_on_either_data_set(experiment: str, data: str) -> None:
    cfg = compose(experiment, [f"data={data}"])
    assert cfg.data.name == data
    model = instantiate(cfg.model, _convert_="all")
    params = sum(p.numel() for p in model.parameters())
    expected = {"mnist_mlp": 0.24e6, "mnist_odenet": 0.21e6, "mnist_resnet": 0.58e6, "mnist_rknet": 0.21e6}
    assert params == pytest.approx(expected[experiment], rel=0.03)


def test_the_authors_recipe_is_the_default() -> None:
    cfg = compose("mnist_odenet")
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9, 0.0)
    assert list(cfg.scheduler.milestones) == [60, 100, 140] and cfg.scheduler.gamma == 0.1
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.random_crop_padding) == (128, 160, 4)
    assert (cfg.solver.method, cfg.solver.rtol, cfg.solver.atol, cfg.solver.adjoint) == ("dopri5", 1e-3, 1e-3, True)
    assert compose("mnist_rknet").solver.adjoint is False


def test_solver_overrides_reach_the_model_config() -> None:
    cfg = compose("mnist_odenet", ["solver.rtol=1e-5", "solver.method=tsit5", "solver.adjoint_options.norm=seminorm"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert model_cfg["solver"]["rtol"] == 1e-5 and model_cfg["solver"]["method"] == "tsit5"
    assert model_cfg["solver"]["adjoint_options"]["norm"] == "seminorm"


def test_experiment_is_required() -> None:
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="You must specify 'experiment'"):
            hydra_compose("config")


@pytest.mark.parametrize(
    "change, key",
    [
        ({"rtol": -1}, "solver.rtol=-1"),
        ({"atol": float("nan")}, "solver.atol=nan"),
        ({"rtol": "tight"}, "solver.rtol='tight'"),
        ({"rtol": 0, "atol": 0}, "solver.rtol and solver.atol"),
        ({"method": "dopri6"}, "solver.method='dopri6'"),
        ({"adjoint": "yes"}, "solver.adjoint='yes'"),
        ({"options": {"bogus_option": 1}}, "solver.options"),
        ({"adjoint_options": {"bogus_option": 1}}, "solver.adjoint_options"),
    ],
)
def test_bad_solver_values_are_named(change: dict, key: str) -> None:
    solver = {**OmegaConf.to_container(compose("mnist_odenet").solver), **change}
    with pytest.raises(ConfigError) as error:
        check_solver_config(solver)
    assert key in str(error.value)


def test_experiment_names_are_checked_before_hydra_runs() -> None:
    assert experiment_problem(["experiment=mnist_odenet", "solver.rtol=1e-4"]) is None
    assert experiment_problem(["-m", "experiment=mnist_odenet,mnist_mlp"]) is None
    assert "no experiment given" in experiment_problem(["trainer.max_epochs=1"])
    assert "Did you mean experiment=mnist_resnet" in experiment_problem(["-m", "experiment=mnist_mlp,mnist_resnt"])
    assert experiment_problem(["--help"]) is None


@pytest.mark.parametrize(
    "launcher, plugin, target",
    [("joblib", "hydra_joblib_launcher", "hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
     ("slurm", "hydra_submitit_launcher", "node_experiments.cluster.SlurmLauncher")],
)
def test_sweep_launchers_compose(launcher: str, plugin: str, target: str) -> None:
    pytest.importorskip(f"hydra_plugins.{plugin}", reason="the `cluster` extra is not installed")
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = hydra_compose(
            "config", overrides=["experiment=mnist_mlp", f"hydra/launcher={launcher}"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_.endswith(target)
