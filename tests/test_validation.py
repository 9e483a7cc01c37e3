"""The one validation boundary: every config value is checked before anything is built, and each mistake is one
paragraph naming the key, the value, why and a valid example; below the boundary the models speak of their own
arguments. The cases of the issue "nothing silently wrong" are all here."""

from __future__ import annotations

import re

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from node_experiments.data import densities, spirals, toys
from node_experiments.errors import ConfigError
from node_experiments.models import ffjord, flows, regularization, sequence_rnn
from node_experiments.validation import (
    ENERGY_DATA, MODELS, REGULARIZATION, SAMPLE_DATA, SAMPLERS, SPIRAL_DATA, check_solver, validate,
)

CUDA_ABSENT = not torch.cuda.is_available()


def error_of(experiment: str, *overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        validate(compose(experiment, list(overrides)))
    return str(error.value)


@pytest.mark.parametrize(
    "experiment, override, expected",
    [
        # silently wrong before: a negative clip norm flips the gradients, a negative gamma the learning rate...
        ("mnist_odenet", "trainer.grad_clip_norm=-1", "trainer.grad_clip_norm=-1: the largest global norm of the "
         "gradients must be a finite number > 0, or null, e.g. trainer.grad_clip_norm=1.0."),
        ("mnist_odenet", "scheduler.gamma=-1", "scheduler.gamma=-1: the learning rate's factor must be a number in "
         "(0, 1], e.g. scheduler.gamma=0.1."),
        ("spiral_rnn", "scheduler.gamma=1.5", "scheduler.gamma=1.5"),
        ("mnist_odenet", "trainer.max_epochs=1.5", "trainer.max_epochs=1.5: the number of epochs to train must be a "
         "whole number >= 1, e.g. trainer.max_epochs=10."),
        ("mnist_odenet", "trainer.num_threads=0", "trainer.num_threads=0: torch's number of CPU threads must be a "
         "whole number >= 1, e.g. trainer.num_threads=1"),
        ("mnist_odenet", "data.train_subset=1e8", "data.train_subset=100000000.0: the number of training images used"),
        # ... and a traceback where a sentence belongs
        ("mnist_odenet", "trainer.max_epochs=abc", "trainer.max_epochs='abc'"),
        ("mnist_odenet", "data.batch_size=0", "data.batch_size=0: the number of images per training batch must be"),
        ("mnist_odenet", "data.batch_size=-5", "data.batch_size=-5"),
        ("mnist_odenet", "data.test_batch_size=0", "data.test_batch_size=0"),
        ("mnist_odenet", "trainer.seed=-1", "trainer.seed=-1: the random seed must be a whole number from 0 to"),
        ("mnist_odenet", "trainer.num_threads=-2", "trainer.num_threads=-2"),
        ("mnist_odenet", "logger.log_every_n_steps=0", "logger.log_every_n_steps=0"),
        ("mnist_odenet", "data.num_workers=-1", "data.num_workers=-1: the number of data loader worker processes "
         "must be a whole number >= 0"),
        ("mnist_odenet", "data.random_crop_padding=-1", "data.random_crop_padding=-1"),
        ("mnist_odenet", "model.width=0", "model.width=0: the number of feature channels must be"),
        ("mnist_resnet", "model.width=40", "model.width=40"),
        ("mnist_odenet", "optimizer.lr=-1", "optimizer.lr=-1: the learning rate must be a finite number > 0"),
        ("mnist_odenet", "trainer.progress_bar=1", "trainer.progress_bar=1: whether to show a progress bar must be "
         "true or false"),
        ("mnist_odenet", "trainer.device=gpu", "trainer.device='gpu' is not a device"),
        ("mnist_odenet", "trainer.device=cuda:99", "trainer.device='cuda:99', but this machine has"),
        ("mnist_odenet", "trainer.device=meta", "trainer.device='meta' is not a device node-run trains on: use auto, "
         "cpu, cuda, cuda:N or mps"),
        ("mnist_odenet", "trainer.divergence_factor=1", "trainer.divergence_factor=1: the factor of the run's loss "
         "scale above which a loss is a divergence must be a finite number > 1, or null"),
        ("mnist_odenet", "trainer.divergence_factor=-5", "trainer.divergence_factor=-5"),
        # a solve that fails at its first step, not a value for the backward solve to trip over
        ("mnist_odenet", "solver.atol=0", "solver.atol=0 is not a valid tolerance: it must be a finite number > 0 "
         "(for example solver.atol=1e-6). With atol = 0 a state component at zero gets an error tolerance of zero"),
        ("cnf_two_moons", "solver.atol=0.0", "solver.atol=0.0 is not a valid tolerance"),
        # a key nothing reads: Hydra takes it with +, node-run does not
        ("mnist_odenet", "+trainer.max_epoch=2", "trainer.max_epoch=2 is not a setting of node-run: nothing reads "
         "it. Did you mean trainer.max_epochs=2?"),
        ("mnist_odenet", "+optimizer.moment=0.5", "Did you mean optimizer.momentum=0.5?"),
        ("mnist_odenet", "+tranier.seed=1", "tranier={'seed': 1} is not a setting of node-run"),
        ("cnf_two_moons", "+data.sampler.factor=0.5", "data.sampler.factor=0.5 is not a setting"),
        ("mnist_odenet", "+solver.options.bogus=1", "solver.options: options ['bogus'] not accepted"),
        # consistency between groups
        ("mnist_odenet", "model=cnf", "is not a model that task._target_="),
        ("mnist_odenet", "model.in_channels=3", "model.in_channels=3 does not match data.channels=1"),
        ("nf_two_moons", "model.direction=sample", "model.direction='sample': this task trains through the flow's "
         "log_prob (of data), which gives gradients only with model.direction=density"),
        ("nf_density_matching", "model.direction=density", "use model.direction=sample"),
        ("nf_density_matching", "data.target=U9", "data.target='U9': the target density must be one of U1, U2, U3, U4"),
        ("spiral_latent_ode", "data.noise=0", "model.obs_std=0: the Gaussian likelihood's fixed standard deviation"),
        ("spiral_latent_ode", "data.n_obs=101", "data.n_obs=101 is more than data.window=100"),
        ("spiral_rnn", "data.test_size=1000", "data.test_size=1000 must be below data.n_spirals=1000"),
        ("spiral_rnn", "data.grid_points=100", "data.grid_points=100 is too few for data.window=100"),
        ("spiral_rnn", "data.curve=authors", "data.curve='authors': the spiral curves must be one of mirrored, "
         "torchdiffeq_example"),
        ("spiral_rnn", "data.test_range=all", "data.test_range='all': where the test spirals start must be one of"),
        ("spiral_rnn", "data.test_range=observed data.grid_points=300", "data.test_range=observed needs "
         "data.grid_points >= 400"),
        ("spiral_latent_ode", "model.rnn_cell=lstm", "model.rnn_cell='lstm': the recognition network's cell must be "
         "one of gru, rnn"),
        ("spiral_latent_ode", "model.dynamics_layers=1.5", "model.dynamics_layers=1.5"),
        ("cnf_two_circles", "data.sampler.factor=1.5", "data.sampler.factor=1.5: the inner radius relative to the "
         "outer must be a number in (0, 1)"),
        ("cnf_density_matching", "model.trace=diagonal", "model.trace='diagonal': the trace method must be one of "
         "exact, closed_form, hutchinson"),
        ("cnf_density_matching", "model.t1=0", "model.t1=0"),
        # RNODE's penalties and ANODE's augmentation on every ODE model, FFJORD's field and toy samplers
        ("mnist_odenet", "model.regularization.kinetic=-1", "model.regularization.kinetic=-1: the kinetic energy's "
         "weight in the loss (0: off) must be a finite number >= 0, e.g. model.regularization.kinetic=0.01."),
        ("ffjord_moons", "model.regularization.jacobian=nan", "model.regularization.jacobian=nan: the Jacobian "
         "Frobenius norm's weight in the loss (0: off) must be a finite number >= 0"),
        ("spiral_latent_ode", "model.regularization.kinetic=abc", "model.regularization.kinetic='abc'"),
        ("cnf_two_moons", "model.regularization.jacobian=inf", "model.regularization.jacobian=inf"),
        ("mnist_odenet", "model.regularization=0.1", "model.regularization=0.1 must hold the penalties' weights, "
         "e.g. model.regularization.kinetic=0.01 (0: off)."),
        ("mnist_odenet", "+model.regularization.kinetik=1", "model.regularization.kinetik=1 is not a setting of "
         "node-run: nothing reads it. Did you mean model.regularization.kinetic=1?"),
        ("mnist_resnet", "+model.regularization.kinetic=1", "model.regularization={'kinetic': 1} is not a setting"),
        ("mnist_odenet", "model.augment_dim=-1", "model.augment_dim=-1: the number of ANODE's extra dimensions must "
         "be a whole number >= 0, e.g. model.augment_dim=0."),
        ("ffjord_rings", "model.augment_dim=1.5", "model.augment_dim=1.5"),
        ("mnist_odenet", "model.augment_dim=8", "model.augment_dim=8 with model.width=64 gives 72 channels, which "
         "GroupNorm(min(32, C), C) cannot normalise: the sum must be at most 32 or a multiple of 32, e.g. "
         "model.augment_dim=32."),
        ("mnist_odenet", "model.width=16 model.augment_dim=20", "e.g. model.augment_dim=16."),
        ("cnf_density_matching", "model.augment_dim=2", "model.augment_dim=2: density matching needs the exact "
         "density of the flow's samples"),
        ("spiral_latent_ode", "+model.augment_dim=2", "model.augment_dim=2 is not a setting of node-run"),
        ("ffjord_moons", "model.hidden=[]", "model.hidden=[]: the hidden layers' widths must be a non-empty list of "
         "whole numbers >= 1, e.g. model.hidden=[64,64,64]."),
        ("ffjord_moons", "model.hidden=[64,0]", "model.hidden=[64,0]"),
        ("ffjord_moons", "model.hidden=64", "model.hidden=64"),
        ("ffjord_moons", "model.activation=relu", "model.activation='relu': the activation between the layers must "
         "be one of tanh, softplus, elu, swish, e.g. model.activation=tanh."),
        ("ffjord_moons", "model.trace=closed_form", "model.trace='closed_form': the trace method must be one of "
         "hutchinson, exact"),
        ("ffjord_moons", "model.probe=uniform", "model.probe='uniform': Hutchinson's probe distribution"),
        ("ffjord_moons", "model.t1=-0.5", "model.t1=-0.5: the end time of the flow must be a finite number > 0"),
        ("ffjord_moons", "model.dim=3", "model.dim=3 does not match the data, which are 2-D: use model.dim=2."),
        ("ffjord_8gaussians", "data.sampler.std=0", "data.sampler.std=0: the modes' standard deviation"),
        ("ffjord_pinwheel", "data.sampler.arms=2.5", "data.sampler.arms=2.5: the number of arms must be a whole "
         "number >= 1, e.g. data.sampler.arms=5."),
        ("ffjord_rings", "data.sampler.radii=[1,-1]", "data.sampler.radii=[1,-1]: the rings' radii must be a "
         "non-empty list of numbers > 0"),
        ("ffjord_checkerboard", "+data.sampler.size=4", "data.sampler.size=4 is not a setting of node-run: nothing "
         "reads it. data.sampler takes no settings: remove it."),
        ("mnist_odenet", "data.dataset=MNST", "data.dataset='MNST' is not a torchvision.datasets class"),
        ("mnist_odenet", "task._target_=no.such.Task", "task._target_='no.such.Task' cannot be imported"),
        ("mnist_odenet", "optimizer._target_=torch.nn.Linear", "optimizer._target_='torch.nn.Linear' is not a "
         "torch.optim.Optimizer"),
        ("mnist_odenet", "scheduler.milestones=[100,60]", "scheduler.milestones=[100,60]"),
        ("mnist_odenet", "scheduler=multistep_scaled scheduler.fractions=[0.6,1.2]", "scheduler.fractions=[0.6,1.2]: "
         "the fractions of training after which the learning rate decays must be an increasing list of numbers in "
         "(0, 1)"),
        # the study
        ("mnist_nfe_study", "study.tolerances=[]", "study.checkpoint is not set"),
        ("mnist_nfe_study", "study.checkpoint=run study.tolerances=[]", "study.tolerances=[]"),
        ("mnist_nfe_study", "study.checkpoint=run study.tolerances=[1e-3,-1]", "study.tolerances=[0.001,-1]"),
        ("mnist_nfe_study", "study.checkpoint=run study.num_batches=0", "study.num_batches=0"),
        ("mnist_nfe_study", "study.checkpoint=run study.reference.method=rk4", "study.reference.method='rk4': the "
         "reference solve's adaptive method must be one of"),
        ("mnist_nfe_study", "study.checkpoint=run study.reference.tolerance=0", "study.reference.tolerance=0"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_with_why_and_an_example(experiment: str, override: str, expected: str) -> None:
    if "cuda:99" in override and not CUDA_ABSENT:
        expected = "trainer.device='cuda:99', but this machine has"
    message = error_of(experiment, *override.split())
    assert expected in message
    assert "\n" not in message, "one paragraph"


@pytest.mark.skipif(not CUDA_ABSENT, reason="this machine has a CUDA device")
def test_cuda_on_a_machine_without_it_says_what_to_use() -> None:
    assert "trainer.device=auto" in error_of("mnist_mlp", "trainer.device=cuda")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_mps_on_a_machine_without_it_says_what_to_use() -> None:
    message = error_of("mnist_mlp", "trainer.device=mps")
    assert message.startswith("trainer.device='mps', but this machine has no MPS device")
    assert "trainer.device=cpu" in message


def test_every_valid_setting_passes() -> None:
    validate(compose("mnist_odenet", ["trainer.grad_clip_norm=1", "trainer.num_threads=2", "data.train_subset=6000",
                                      "+optimizer.nesterov=true", "scheduler=exponential", "scheduler.gamma=0.95",
                                      "solver.options.norm=max"]))
    validate(compose("mnist_odenet", ["optimizer=adam", "+optimizer.betas=[0.9,0.99]"]))
    validate(compose("mnist_odenet", ["solver.rtol=0", "solver.atol=1e-6", "trainer.divergence_factor=null"]))
    assert "optimizer.nesterov=true is not an argument of torch.optim.Adam" in error_of(
        "mnist_odenet", "optimizer=adam", "+optimizer.nesterov=true")
    validate(compose("mnist_resnet", ["model.width=16", "model.num_blocks=0", "data=fashion_mnist"]))  # fmt: skip
    validate(compose("mnist_odenet", ["model.width=16", "model.augment_dim=16", "model.regularization.kinetic=0.01",
                                      "model.regularization.jacobian=0"]))
    validate(compose("ffjord_moons", ["model.augment_dim=2", "model.hidden=[8,8]", "model.activation=softplus",
                                      "model.regularization.jacobian=0.01"]))
    validate(compose("spiral_latent_ode", ["model.regularization.kinetic=1e-3"]))  # fmt: skip


@pytest.mark.parametrize(
    "change, key",
    [
        ({"rtol": -1}, "solver.rtol=-1"),
        ({"atol": float("nan")}, "solver.atol=nan"),
        ({"rtol": "tight"}, "solver.rtol='tight'"),
        ({"rtol": 0, "atol": 0}, "solver.atol=0 is not a valid tolerance"),
        ({"atol": -1e-6}, "solver.atol=-1e-06 is not a valid tolerance: it must be a finite number > 0"),
        ({"method": "dopri6"}, "solver.method='dopri6'"),
        ({"gradient": "yes"}, "solver.gradient='yes'"),
        ({"gradient": True}, "solver.gradient=true is not a gradient strategy"),
        ({"adjoint": True}, "solver.adjoint=true is no longer a setting"),
        ({"options": {"bogus_option": 1}}, "solver.options"),
        ({"adjoint_options": {"bogus_option": 1}}, "solver.adjoint_options"),
        ({"step_size": 0.1}, "solver.step_size=0.1 is not a setting"),
    ],
)
def test_bad_solver_values_are_named(change: dict, key: str) -> None:
    solver = {**OmegaConf.to_container(compose("mnist_odenet").solver), **change}
    with pytest.raises(ConfigError) as error:
        check_solver(solver)
    assert key in str(error.value)


def test_the_choices_are_those_the_code_accepts() -> None:
    """The schemas list choices without importing torch; they must stay the ones the models and data accept."""
    cnf, nf = MODELS["node_experiments.models.flows.PlanarCNF"], MODELS["node_experiments.models.flows.PlanarNF"]
    choices = lambda rule: re.findall(r"[\w]+", rule.must_be.removeprefix("one of "))  # noqa: E731
    assert choices(cnf["trace"]) == list(flows.TRACES) and choices(cnf["probe"]) == list(flows.PROBES)
    assert choices(nf["direction"]) == list(flows.DIRECTIONS)
    ffjord_model = MODELS["node_experiments.models.ffjord.FFJORD"]
    assert set(choices(ffjord_model["trace"])) <= set(flows.TRACES)
    assert choices(ffjord_model["probe"]) == list(flows.PROBES)
    assert choices(ffjord_model["activation"]) == list(ffjord.ACTIVATIONS)
    assert list(REGULARIZATION) == list(regularization.KINDS)
    for model in ("latent_ode.LatentODE", "sequence_rnn.SequenceRNN"):
        schema = MODELS[f"node_experiments.models.{model}"]
        rule = schema.get("rnn_cell") or schema["cell"]
        assert choices(rule) == list(sequence_rnn.RECURRENT_CELLS)
    assert choices(SPIRAL_DATA["curve"]) == list(spirals.CURVES)
    assert choices(SPIRAL_DATA["test_range"]) == list(spirals.TEST_RANGES)
    assert choices(ENERGY_DATA["target"]) == list(densities.ENERGIES)
    assert choices(SAMPLE_DATA["dataset"]) == list(toys.DATASETS) == list(SAMPLERS)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: flows.PlanarCNF(trace="diagonal"), "trace='diagonal' is not a trace method"),
        (lambda: flows.PlanarCNF(t1=0), "t1=0 must be positive"),
        (lambda: flows.PlanarNF(direction="up"), "direction='up' must be one of"),
        (lambda: sequence_rnn.SequenceRNN(obs_std=0.0), "obs_std=0.0 must be a positive standard deviation"),
        (lambda: sequence_rnn.SequenceRNN(cell="lstm"), "cell='lstm' is not a recurrent cell"),
        (lambda: densities.energy("U9"), "'U9' is not a target density"),
        (lambda: ffjord.FFJORD(activation="relu"), "activation='relu' is not one of: tanh"),
        (lambda: ffjord.FFJORD(hidden=[]), "hidden=[] must be positive"),
        (lambda: ffjord.FFJORD(trace="closed_form"), "trace='closed_form' needs a vector field with a divergence"),
        (lambda: regularization.Regularization.of({"kinetic": -1.0}), "kinetic=-1.0 must be a finite weight >= 0"),
    ],
)
def test_below_the_boundary_errors_speak_of_arguments_not_config_keys(build, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        build()
    assert not isinstance(error.value, ConfigError) and "model." not in str(error.value) and "data." not in str(error.value)
