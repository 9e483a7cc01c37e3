"""Every experiment config composes, resolves and passes validation; the groups have the shape the runs need:
the solver only where a model solves an ODE, the paths from the environment, debug=quick for every task."""

from __future__ import annotations

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import compose
from node_experiments.command_line import available_experiments
from node_experiments.models import ODEBlock
from node_experiments.validation import solves_an_ode, validate

EXPERIMENTS = available_experiments()
MNIST_EXPERIMENTS = ["mnist_mlp", "mnist_odenet", "mnist_resnet", "mnist_rknet"]
STUDY = {"mnist_nfe_study": ["study.checkpoint=outputs/some_run"]}  # a study needs its checkpoint named


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_resolves_and_validates(experiment: str) -> None:
    cfg = compose(experiment, STUDY.get(experiment, []))
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    for group in ("paths", "task", "model", "data", "optimizer", "scheduler", "trainer", "logger"):
        assert group in container, f"experiment={experiment} has no {group} group"
    validate(cfg)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_only_a_model_that_solves_an_ode_brings_the_solver(experiment: str) -> None:
    cfg = compose(experiment)
    solves = solves_an_ode(cfg.model._target_)
    assert ("solver" in cfg) == ("solver" in cfg.model) == solves
    if solves and experiment != "mnist_nfe_study":
        model = instantiate(cfg.model, _convert_="all")
        (block,) = [module for module in model.modules() if isinstance(module, ODEBlock)]
        assert (block.method, block.rtol, block.atol) == (cfg.solver.method, cfg.solver.rtol, cfg.solver.atol)


def test_a_model_group_brings_its_solver_from_the_command_line() -> None:
    assert "solver" in compose("mnist_resnet", ["model=odenet"])
    assert "solver" not in compose("mnist_odenet", ["model=resnet"])


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
    assert (cfg.solver.method, cfg.solver.rtol, cfg.solver.atol, cfg.solver.gradient) == ("dopri5", 1e-3, 1e-3, "adjoint")
    assert compose("mnist_rknet").solver.gradient == "backprop"
    assert compose("mnist_mlp").data.random_crop_padding == 0  # the paper quotes its MLP, trained without shifts


def test_the_compressed_recipe_keeps_the_drops_at_the_same_fractions() -> None:
    cfg = compose("mnist_odenet", ["scheduler=multistep_scaled", "trainer.max_epochs=10"])
    scheduler = instantiate(cfg.scheduler, optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    assert scheduler.milestones == {4: 1, 6: 1, 9: 1}


@pytest.mark.parametrize(
    "experiment, settings",
    [
        ("cnf_two_moons", {"model.width": 64, "solver.rtol": 1e-5, "optimizer.lr": 3e-3, "trainer.max_epochs": 10}),
        ("cnf_density_matching", {"model.width": 32, "solver.atol": 1e-5, "scheduler.factor": 1.0}),
        ("nf_two_circles", {"model.layers": 64, "model.direction": "density", "optimizer.lr": 1e-2}),
        ("nf_density_matching", {"model.layers": 32, "model.direction": "sample", "trainer.max_epochs": 10}),
        ("spiral_latent_ode", {"solver.rtol": 1e-5, "solver.atol": 1e-6, "scheduler.gamma": 0.995405,
                               "trainer.max_epochs": 500, "trainer.num_threads": 1, "optimizer.lr": 1e-2}),
        ("spiral_rnn", {"scheduler.gamma": 0.995405, "trainer.max_epochs": 500, "data.n_obs": 100}),
        ("ffjord_checkerboard", {"model.hidden": [64, 64, 64], "model.t1": 0.5, "model.trace": "hutchinson",
                                 "solver.rtol": 1e-5, "optimizer.lr": 1e-3, "optimizer.weight_decay": 1e-5,
                                 "trainer.max_epochs": 100, "data.dataset": "checkerboard"}),
        ("ffjord_moons", {"data.sampler.centre": [0.5, 0.1], "data.sampler.scale": 2.0, "data.plot_limit": 4.0}),
    ],
)  # fmt: skip
def test_experiments_built_on_a_base_keep_their_settings(experiment: str, settings: dict) -> None:
    cfg = compose(experiment)
    assert {key: OmegaConf.select(cfg, key) for key in settings} == settings


def test_solver_overrides_reach_the_model_config() -> None:
    cfg = compose("mnist_odenet", ["solver.rtol=1e-5", "solver.method=tsit5", "solver.adjoint_options.norm=seminorm"])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert model_cfg["solver"]["rtol"] == 1e-5 and model_cfg["solver"]["method"] == "tsit5"
    assert model_cfg["solver"]["adjoint_options"]["norm"] == "seminorm"


def test_the_folders_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OmegaConf.to_container(compose("mnist_mlp").paths, resolve=True) == {"data_dir": "data", "output_dir": "outputs"}
    monkeypatch.setenv("NODE_DATA_DIR", "/somewhere/data")
    monkeypatch.setenv("NODE_OUTPUT_DIR", "/somewhere/runs")
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = hydra_compose("config", overrides=["experiment=mnist_mlp"], return_hydra_config=True)
    assert cfg.data.root == "/somewhere/data"
    assert cfg.hydra.sweep.dir.startswith("/somewhere/runs/multirun/")
    assert compose("mnist_mlp", ["data.root=/elsewhere"]).data.root == "/elsewhere"


@pytest.mark.parametrize("experiment", [name for name in EXPERIMENTS if name != "mnist_nfe_study"])
def test_debug_quick_makes_every_experiment_tiny(experiment: str) -> None:
    cfg = compose(experiment, ["debug=quick"])
    validate(cfg)
    assert (cfg.trainer.max_epochs, cfg.trainer.progress_bar, cfg.logger.log_every_n_steps) == (1, False, 1)
    data = cfg.data
    training_examples = {
        "mnist": lambda: data.train_subset,
        "fashion_mnist": lambda: data.train_subset,
        "spirals": lambda: data.n_spirals - data.test_size,
    }.get(data.name, lambda: data.batch_size * data.batches_per_epoch)()
    assert training_examples <= 32
    assert OmegaConf.select(cfg, "task.grid_points", default=0) <= 12


def test_experiment_is_required() -> None:
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="You must specify 'experiment'"):
            hydra_compose("config")


@pytest.mark.parametrize(
    "launcher, plugin, target",
    [("joblib", "hydra_joblib_launcher", "hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
     ("slurm", "hydra_submitit_launcher", "node_experiments.cluster.SlurmLauncher")],
)  # fmt: skip
def test_sweep_launchers_compose(launcher: str, plugin: str, target: str) -> None:
    pytest.importorskip(f"hydra_plugins.{plugin}", reason="the `cluster` extra is not installed")
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = hydra_compose(
            "config", overrides=["experiment=mnist_mlp", f"hydra/launcher={launcher}"], return_hydra_config=True
        )
    assert cfg.hydra.launcher._target_.endswith(target)
