"""Every config value checked before a run starts: the one validation boundary of node-run.

``validate(cfg)`` checks the composed config of a run (``node-run`` calls it before building anything): each
group's keys against the keys it may have (a key added by mistake, e.g. ``+trainer.max_epoch=2``, is named
with the real key it resembles), each value's type (integers are integers, flags are true or false) and range,
and the consistency between groups (the model's classes and the data's, a flow's direction and the task). A
problem is a ``ConfigError`` of one paragraph that names the key, the value, why it cannot work and a value
that can, e.g.::

    trainer.max_epochs=1.5: the number of epochs to train must be a whole number >= 1, e.g. trainer.max_epochs=10.

Below this boundary, the models, data generators and the solver check their own arguments with plain
``ValueError``s that know nothing of config keys.

Which keys a group may have follows from the class the config instantiates (``task._target_``,
``model._target_``) or, for the optimizer and the scheduler, from their constructors' signatures; a task or a
model of one's own (a ``_target_`` this module does not know) is checked for importability only. The checks that
need torch (the device, the ``_target_`` classes, the solver's dry run) come after the others, so that a plain
mistake is reported at once.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, RunError, retired_adjoint_setting

Config = Mapping[str, Any]


# ---------------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """What one key may hold: ``accepts(value)`` and, for the message, what it means, what it must be, an example."""

    meaning: str  # "the number of epochs to train"
    must_be: str  # "a whole number >= 1"
    accepts: Callable[[Any], bool]
    example: Any
    optional: bool = False  # null is allowed too

    def check(self, key: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if value is None or not self.accepts(value):
            must_be = f"{self.must_be}, or null" if self.optional else self.must_be
            example = show(self.example, quote=False)
            raise ConfigError(f"{key}={show(value)}: {self.meaning} must be {must_be}, e.g. {key}={example}.")


def show(value: Any, quote: bool = True) -> str:
    """A value as it is written on the command line: null for None, lists in brackets, strings quoted (so that
    spaces show) unless ``quote`` is false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value) if quote else value
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(item, quote) for item in value) + "]"
    return str(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(meaning: str, example: int, minimum: int = 1, maximum: int | None = None, optional: bool = False) -> Rule:
    """A whole number (an int: 1.5, 1e3 and true are refused) in [minimum, maximum]."""
    bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    return Rule(
        meaning,
        f"a whole number {bound}",
        lambda v: _is_whole(v) and v >= minimum and (maximum is None or v <= maximum),
        example,
        optional,
    )


def positive(meaning: str, example: float, optional: bool = False) -> Rule:
    """A finite number > 0."""
    return Rule(meaning, "a finite number > 0", lambda v: _is_number(v) and v > 0, example, optional)


def non_negative(meaning: str, example: float) -> Rule:
    """A finite number >= 0."""
    return Rule(meaning, "a finite number >= 0", lambda v: _is_number(v) and v >= 0, example)


def in_range(meaning: str, example: float, low: float, high: float, *, low_open: bool, high_open: bool) -> Rule:
    """A finite number between ``low`` and ``high``, each end included unless it is open."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def accepts(v: Any) -> bool:
        if not _is_number(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Rule(meaning, f"a number in {interval}", accepts, example)


def one_of(meaning: str, choices: Iterable[str]) -> Rule:
    """One of the named ``choices``."""
    choices = tuple(choices)
    return Rule(meaning, f"one of {', '.join(choices)}", lambda v: v in choices, choices[0])


def flag(meaning: str) -> Rule:
    """true or false (not 1, not 'yes')."""
    return Rule(meaning, "true or false", lambda v: isinstance(v, bool), True)


def text(meaning: str, example: str, optional: bool = False) -> Rule:
    """A non-empty string."""
    return Rule(meaning, "a non-empty string", lambda v: isinstance(v, str) and v != "", example, optional)


def numbers(meaning: str, example: list, accepts: Callable[[Any], bool], must_be: str) -> Rule:
    """A non-empty list of numbers, each accepted by ``accepts``."""
    return Rule(
        meaning,
        f"a non-empty list of {must_be}",
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_number(x) and accepts(x) for x in v),
        example,
    )


TARGET = text("the class or function to instantiate", "package.module.Name")
EXAMPLE_TARGETS = {
    "task._target_": "node_experiments.tasks.classification.ClassificationTask",
    "model._target_": "node_experiments.models.mnist.ODENet",
    "study._target_": "node_experiments.studies.nfe_study.run_nfe_study",
    "optimizer._target_": "torch.optim.Adam",
    "scheduler._target_": "torch.optim.lr_scheduler.ExponentialLR",
}
Schema = Mapping[str, Rule]


def check_schema(section: Config, group: str, schema: Schema, extra: Iterable[str] = ()) -> None:
    """Check every key of ``section`` (the config group ``group``) against ``schema``; no other key is allowed
    (but those in ``extra``, checked elsewhere)."""
    allowed = {*schema, *extra}
    for key, value in section.items():
        if key not in allowed:
            raise unknown_key(group, key, value, allowed)
        if key in schema:
            schema[key].check(f"{group}.{key}", value)
    missing = [key for key in schema if key not in section and not schema[key].optional]
    if missing:
        raise ConfigError(
            f"{group} has no {', '.join(missing)}: {schema[missing[0]].meaning} must be set, e.g. "
            f"+{group}.{missing[0]}={show(schema[missing[0]].example)}."
        )


def unknown_key(
    group: str, name: str, value: Any, known: Iterable[str], why: str = "is not a setting of node-run: nothing reads it"
) -> ConfigError:
    """The error for a key ``group.name`` that no code reads, with the real key of ``group`` it resembles."""
    prefix, known = (f"{group}." if group else ""), sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        hint = f" Did you mean {prefix}{close[0]}={show(value)}?"
    elif known:
        hint = f" The keys {f'of {group} ' if group else ''}are: {', '.join(known)}."
    else:
        hint = f" {group} takes no settings: remove it."
    return ConfigError(f"{prefix}{name}={show(value)} {why}.{hint}")


# ------------------------------------------------------------------------------------------ the groups
GROUPS = ("paths", "task", "data", "model", "solver", "optimizer", "scheduler", "trainer", "logger", "study")

PATHS: Schema = {
    "data_dir": text("the folder of the data sets", "data"),
    "output_dir": text("the folder runs are written under", "outputs"),
}

TRAINER: Schema = {
    "device": text("the device to train on (auto, cpu, cuda or cuda:N)", "auto"),
    "max_epochs": whole("the number of epochs to train", 10),
    "seed": whole("the random seed", 0, minimum=0, maximum=2**32 - 1),
    "num_threads": whole("torch's number of CPU threads", 1),
    "grad_clip_norm": positive("the largest global norm of the gradients", 1.0, optional=True),
    "divergence_factor": Rule("the factor of the run's loss scale above which a loss is a divergence",
                              "a finite number > 1", lambda v: _is_number(v) and v > 1, 100, optional=True),
    "progress_bar": flag("whether to show a progress bar"),
    "checkpoint": flag("whether to write checkpoints"),
    "resume": text("the run folder or checkpoint to continue from", "outputs/mnist_odenet/DATE/TIME", optional=True),
    "resume_changes": one_of("what resuming with other settings does", ("refuse", "apply")),
}

LOGGER: Schema = {
    "tensorboard": flag("whether to write TensorBoard events"),
    "log_every_n_steps": whole("the number of training steps between logged scalars", 50),
}

# ---- data, by the task that reads it
IMAGE_DATA: Schema = {
    "name": text("the data group's name", "mnist"),
    "dataset": text("the torchvision.datasets class", "MNIST"),
    "root": text("the folder that holds <dataset>/raw", "data"),
    "download": flag("whether to download a missing data set"),
    "train_subset": whole("the number of training images used (the first N)", 6000, optional=True),
    "test_subset": whole("the number of test images used (the first N)", 1000, optional=True),
    "batch_size": whole("the number of images per training batch", 128),
    "test_batch_size": whole("the number of images per test batch", 1000),
    "num_workers": whole("the number of data loader worker processes", 0, minimum=0),
    "random_crop_padding": whole("the random crop's zero padding in pixels (0: no augmentation)", 4, minimum=0),
    "channels": whole("the images' number of channels", 1),
    "image_size": whole("the images' height and width in pixels", 28),
    "num_classes": whole("the number of classes", 10, minimum=2),
}

SPIRAL_DATA: Schema = {
    "name": text("the data group's name", "spirals"),
    "n_spirals": whole("the number of spirals (training and test)", 1000, minimum=2),
    "test_size": whole("the number of test spirals", 200),
    "n_obs": whole("the number of observations per spiral", 100),
    "window": whole("the number of grid times per window", 100),
    "noise": non_negative("the observation noise's standard deviation", 0.1),
    "curve": one_of("the spiral curves", ("mirrored", "torchdiffeq_example")),
    "grid_points": whole("the number of points of the base curve", 1000),
    "turns": positive("the base curve's number of turns", 3.0),
    "growth": positive("the spiral's growth, r = growth * theta", 0.3),
    "test_range": one_of("where the test spirals start", ("same", "observed")),
    "seed": whole("the seed of the data set", 0, minimum=0, maximum=2**63 - 1),
    "batch_size": whole("the number of spirals per training batch", 100),
    "test_batch_size": whole("the number of spirals per test batch", 200),
}

_SAMPLED = {
    "name": text("the data group's name", "two_moons"),
    "batch_size": whole("the number of samples per batch", 256),
    "batches_per_epoch": whole("the number of batches per epoch", 50),
    "eval_samples": whole("the number of evaluation samples", 4096),
    "eval_batch_size": whole("the number of evaluation samples per batch", 4096),
    "eval_seed": whole("the seed of the evaluation samples", 1234, minimum=0, maximum=2**63 - 1),
    "plot_limit": positive("the half-width of the figures' window", 3.0),
}
ENERGY_DATA: Schema = {
    **_SAMPLED,
    "target": one_of("the target density", ("U1", "U2", "U3", "U4")),
    "dim": whole("the dimension of the target (the energies U1..U4 are 2-D)", 2, minimum=2, maximum=2),
}
_TOYS = ("two_moons", "two_circles", "eight_gaussians", "checkerboard", "rings", "pinwheel")
SAMPLE_DATA: Schema = {**_SAMPLED, "dataset": one_of("the 2-D data set", _TOYS)}
SAMPLERS: dict[str, Schema] = {
    "two_moons": {
        "noise": non_negative("the noise's standard deviation relative to the moons' radius", 0.05),
        "scale": positive("the moons' radius", 1.5),
        "centre": Rule("the point of make_moons' plane moved to the origin", "two finite numbers",
                       lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v), [0.5, 0.25]),
    },
    "two_circles": {
        "noise": non_negative("the noise's standard deviation relative to the outer radius", 0.05),
        "factor": in_range("the inner radius relative to the outer", 0.5, 0, 1, low_open=True, high_open=True),
        "scale": positive("the outer radius", 2.0),
    },
    "eight_gaussians": {
        "scale": positive("the centres' radius (before FFJORD's division by 1.414)", 4.0),
        "std": positive("the modes' standard deviation (before FFJORD's division by 1.414)", 0.5),
    },
    "checkerboard": {},
    "rings": {
        "radii": numbers("the rings' radii", [0.75, 1.5, 2.25, 3.0], lambda x: x > 0, "numbers > 0"),
        "noise": non_negative("the noise's standard deviation", 0.08),
    },
    "pinwheel": {
        "arms": whole("the number of arms", 5),
        "radial_std": positive("the radial standard deviation", 0.3),
        "tangential_std": positive("the tangential standard deviation", 0.1),
        "rate": non_negative("how fast an arm turns with exp(radius)", 0.25),
    },
}

# ---- tasks, with the data and model groups they read
_TASKS = "node_experiments.tasks"
_FIGURES = {
    "figure_samples": whole("the number of samples shown in the figures", 20000),
    "grid_points": whole("the density images' points per side", 120, minimum=2),
    "figure_fractions": numbers(
        "the figures' fractions of the way from noise to data", [0.0, 0.5, 1.0], lambda x: 0 <= x <= 1, "numbers in [0, 1]"
    ),
}
_MODELS = "node_experiments.models"
_CLASSIFIERS = ("mnist.ODENet", "mnist.ResNet", "mnist.MLP")
_FLOWS = ("flows.PlanarCNF", "flows.PlanarNF", "ffjord.FFJORD")
_SEQUENCE_MODELS = ("latent_ode.LatentODE", "sequence_rnn.SequenceRNN")
TASKS: dict[str, tuple[Schema, Schema, tuple[str, ...]]] = {  # task class -> (task keys, data keys, known models)
    f"{_TASKS}.classification.ClassificationTask": ({}, IMAGE_DATA, _CLASSIFIERS),
    f"{_TASKS}.sequences.SequenceTask": (
        {
            "objective": one_of("the training objective", ("reconstruct", "forecast")),
            "eval_seed": whole("the seed of the test ELBO's posterior samples", 0, minimum=0, maximum=2**63 - 1),
            "figure_spirals": whole("the number of test spirals in the predictions figure", 4),
            "figure_latent_spirals": whole("the number of test spirals in the latent figure", 100, minimum=2),
            "latent_offsets": numbers(
                "the latent moves, in standard deviations", [-1, 0, 1], lambda x: True, "finite numbers"
            ),
        },
        SPIRAL_DATA,
        _SEQUENCE_MODELS,
    ),
    f"{_TASKS}.densities.DensityMatchingTask": (_FIGURES, ENERGY_DATA, _FLOWS),
    f"{_TASKS}.densities.MaximumLikelihoodTask": (_FIGURES, SAMPLE_DATA, _FLOWS),
}
FLOW_DIRECTIONS = {  # the direction a planar NF needs for the task to train through it
    f"{_TASKS}.densities.DensityMatchingTask": "sample",
    f"{_TASKS}.densities.MaximumLikelihoodTask": "density",
}

# ---- models
_CHANNELS = {
    "in_channels": whole("the input images' number of channels", 1),
    "num_classes": whole("the number of classes", 10, minimum=2),
    "width": Rule(
        "the number of feature channels",
        "a whole number >= 1 that is at most 32 or a multiple of 32 (GroupNorm uses min(32, width) groups)",
        lambda v: _is_whole(v) and v >= 1 and (v <= 32 or v % 32 == 0),
        64,
    ),
}
_STD = positive("the Gaussian likelihood's fixed standard deviation (by default data.noise)", 0.1)
_CELLS = ("gru", "rnn")
_AUGMENT = whole("the number of ANODE's extra dimensions", 0, minimum=0)
MODELS: dict[str, Schema] = {
    f"{_MODELS}.mnist.ODENet": {**_CHANNELS, "augment_dim": _AUGMENT},
    f"{_MODELS}.mnist.ResNet": {**_CHANNELS, "num_blocks": whole("the number of residual blocks", 6, minimum=0)},
    f"{_MODELS}.mnist.MLP": {
        "in_channels": _CHANNELS["in_channels"],
        "num_classes": _CHANNELS["num_classes"],
        "image_size": whole("the input images' height and width in pixels", 28),
        "hidden": whole("the number of hidden units", 300),
    },
    f"{_MODELS}.flows.PlanarCNF": {
        "dim": whole("the data's dimension", 2),
        "width": whole("the number of hidden units M", 64),
        "hidden": whole("the width of the hypernetwork's hidden layers", 32),
        "gated": flag("whether each unit has the paper's gate"),
        "t1": positive("the end time of the flow", 1.0),
        "trace": one_of("the trace method", ("exact", "closed_form", "hutchinson")),
        "probe": one_of("Hutchinson's probe distribution", ("rademacher", "gaussian")),
        "base_std": positive("the base density's standard deviation", 1.0),
        "augment_dim": _AUGMENT,
    },
    f"{_MODELS}.ffjord.FFJORD": {
        "dim": whole("the data's dimension", 2),
        "hidden": Rule("the hidden layers' widths", "a non-empty list of whole numbers >= 1",
                       lambda v: isinstance(v, list) and len(v) > 0 and all(_is_whole(x) and x >= 1 for x in v),
                       [64, 64, 64]),
        "activation": one_of("the activation between the layers", ("tanh", "softplus", "elu", "swish")),
        "t1": positive("the end time of the flow", 0.5),
        "trace": one_of("the trace method", ("hutchinson", "exact")),
        "probe": one_of("Hutchinson's probe distribution", ("rademacher", "gaussian")),
        "base_std": positive("the base density's standard deviation", 1.0),
        "augment_dim": _AUGMENT,
    },
    f"{_MODELS}.flows.PlanarNF": {
        "dim": whole("the data's dimension", 2),
        "layers": whole("the number of planar layers K", 32),
        "direction": one_of("the direction the layers map", ("sample", "density")),
        "base_std": positive("the base density's standard deviation", 1.0),
    },
    f"{_MODELS}.latent_ode.LatentODE": {
        "obs_dim": whole("the observations' dimension", 2),
        "latent_dim": whole("the latent state's dimension", 4),
        "rnn_hidden": whole("the recognition network's hidden units", 25),
        "dynamics_hidden": whole("the dynamics' hidden units", 20),
        "dynamics_layers": whole("the dynamics' number of hidden layers", 1),
        "decoder_hidden": whole("the decoder's hidden units", 20),
        "obs_std": _STD,
        "rnn_cell": one_of("the recognition network's cell", _CELLS),
    },
    f"{_MODELS}.sequence_rnn.SequenceRNN": {
        "obs_dim": whole("the observations' dimension", 2),
        "hidden": whole("the number of hidden units", 25),
        "obs_std": _STD,
        "cell": one_of("the recurrent cell", _CELLS),
    },
}
ODE_MODELS = {
    f"{_MODELS}.{name}" for name in ("mnist.ODENet", "flows.PlanarCNF", "ffjord.FFJORD", "latent_ode.LatentODE")
}
REGULARIZATION: Schema = {  # model.regularization of every ODE model: RNODE's penalty weights
    "kinetic": non_negative("the kinetic energy's weight in the loss (0: off)", 0.01),
    "jacobian": non_negative("the Jacobian Frobenius norm's weight in the loss (0: off)", 0.01),
}

# ---- solver
SOLVER_KEYS = ("method", "rtol", "atol", "gradient", "options", "adjoint_options")

# ---- optimizer and scheduler: any torch class; these keys, where the class takes them, are checked
_RATE = positive("the learning rate", 0.1)
OPTIMIZER_VALUES: Schema = {
    "lr": _RATE,
    "weight_decay": non_negative("the weight decay", 0.0),
    "momentum": in_range("the momentum", 0.9, 0, 1, low_open=False, high_open=True),
    "eps": positive("the denominator's epsilon", 1e-8),
    "betas": Rule(
        "the averaging coefficients",
        "two numbers in [0, 1)",
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) and 0 <= x < 1 for x in v),
        [0.9, 0.999],
    ),
}
_DECAY = in_range("the learning rate's factor", 0.1, 0, 1, low_open=True, high_open=False)
SCHEDULER_VALUES: Schema = {
    "gamma": _DECAY,
    "factor": _DECAY,
    "total_iters": whole("the number of epochs the factor applies", 0, minimum=0),
    "step_size": whole("the number of epochs between decays", 30),
    "milestones": Rule(
        "the epochs after which the learning rate decays",
        "an increasing list of whole numbers >= 1",
        lambda v: isinstance(v, list) and all(_is_whole(x) and x >= 1 for x in v) and v == sorted(set(v)),
        [60, 100, 140],
    ),
    "epochs": whole("the number of epochs the schedule spans", 160),
    "fractions": Rule(
        "the fractions of training after which the learning rate decays",
        "an increasing list of numbers in (0, 1)",
        lambda v: isinstance(v, list) and len(v) > 0 and all(_is_number(x) and 0 < x < 1 for x in v)
        and v == sorted(set(v)),
        [0.375, 0.625, 0.875],
    ),
}

# ---- studies
NFE_STUDY = "node_experiments.studies.nfe_study.run_nfe_study"
STUDIES: dict[str, Schema] = {
    NFE_STUDY: {
        "checkpoint": text("the trained mnist_odenet run (a run folder or its checkpoints/last.pt)",
                           "outputs/mnist_odenet/DATE/TIME"),  # fmt: skip
        "tolerances": numbers("the ODE block's tolerances (rtol = atol)", [1e-1, 1e-3, 1e-5], lambda x: x > 0,
                              "numbers > 0"),  # fmt: skip
        "batch_size": whole("the number of test images per batch", 128),
        "num_batches": whole("the number of test batches", 4),
        "timing_repeats": whole("the number of timed forward passes per batch", 3),
        "seminorm": flag("whether to count backward NFE with the seminorm too"),
    }
}
NFE_REFERENCE: Schema = {"tolerance": positive("the reference solve's tolerance (rtol = atol)", 1e-8)}  # and method
NFE_MEMORY: Schema = {
    "enabled": flag("whether to measure memory against NFE"),
    "resnet_blocks": Rule("the ResNet depths measured", "a list of whole numbers >= 1",
                          lambda v: isinstance(v, list) and all(_is_whole(x) and x >= 1 for x in v), [1, 2, 4]),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ the boundary
def validate(cfg: DictConfig | Config) -> None:
    """Raise ``ConfigError`` for the first config value of a run that cannot work; return None when all can."""
    config = _resolved(cfg)
    for key, value in config.items():
        if key not in GROUPS:
            raise unknown_key("", key, value, GROUPS)
    for group in ("trainer", "logger", "task", "optimizer", "scheduler"):
        if group not in config:
            raise ConfigError(f"The config has no {group} group: an experiment must pick one, e.g. {group}=...")
    check_schema(config["trainer"], "trainer", TRAINER)
    check_schema(config["logger"], "logger", LOGGER)
    if "paths" in config:
        check_schema(config["paths"], "paths", PATHS)
    if "study" in config:
        _check_study(config["study"])
    task = _check_task(config)
    if task in FLOW_DIRECTIONS:
        _check_flow_direction(config, task)
    for group, values in (("optimizer", OPTIMIZER_VALUES), ("scheduler", SCHEDULER_VALUES)):
        _check_values(config[group], group, values)

    # The checks that import torch (seconds on a busy machine), once the others have passed.
    if "solver" in config:
        check_solver(config["solver"])
    _check_device(config["trainer"]["device"])
    _check_torch_target(config["optimizer"], "optimizer", "torch.optim.Optimizer", skip=("params",))
    _check_torch_target(config["scheduler"], "scheduler", "torch.optim.lr_scheduler.LRScheduler", skip=("optimizer",))
    for group in ("task", "model", "study"):
        if group in config:
            _import(config[group].get("_target_"), f"{group}._target_")
    if task in FLOW_DIRECTIONS:
        _check_flow_class(config["model"]["_target_"])
    if task == f"{_TASKS}.classification.ClassificationTask":
        _check_image_dataset(config["data"]["dataset"])
    if "study" in config and config["study"]["_target_"] == NFE_STUDY:
        _check_reference_method(config["study"]["reference"]["method"])
    if task in TASKS and TASKS[task][1] is SPIRAL_DATA:
        _check_spirals(config["data"])


def _resolved(cfg: DictConfig | Config) -> dict[str, Any]:
    """The config as plain containers with every interpolation resolved; a failed interpolation is a ConfigError."""
    try:
        return OmegaConf.to_container(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg), resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "a config value"
        raise ConfigError(f"{key} cannot be resolved: {str(error).splitlines()[0]}") from None


def _section(config: Config, group: str) -> Config:
    section = config.get(group)
    if not isinstance(section, Mapping):
        raise ConfigError(f"{group}={show(section)} must be a config group (a mapping of keys), e.g. {group}=...")
    return section


def _check_task(config: Config) -> str:
    """Check the task group and, for a task this module knows, the data and model groups it reads."""
    task = _section(config, "task")
    target = task.get("_target_")
    TARGET.check("task._target_", target)
    for group in ("data", "model"):
        if group in config:
            _section(config, group)
    if target not in TASKS:
        return target  # a task of one's own: it checks its own settings
    task_schema, data_schema, models = TASKS[target]
    check_schema(task, "task", {"_target_": TARGET, **task_schema})
    data = _section(config, "data")
    extra = ("sampler",) if data_schema is SAMPLE_DATA else ()
    check_schema(data, "data", data_schema, extra)
    _check_data_consistency(data, data_schema)
    _check_model(config, [f"{_MODELS}.{model}" for model in models])
    return target


def _check_data_consistency(data: Config, schema: Schema) -> None:
    if schema is SAMPLE_DATA:
        sampler = data.get("sampler")
        if not isinstance(sampler, Mapping):
            raise ConfigError(f"data.sampler={show(sampler)} must hold the sampler's settings, e.g. data.sampler.noise=0.05.")
        check_schema(sampler, "data.sampler", SAMPLERS[data["dataset"]])


def _check_model(config: Config, task_models: Sequence[str]) -> None:
    """The model group of a known model class: one the task trains, fitting the data, with its solver settings."""
    model = _section(config, "model")
    target = model.get("_target_")
    TARGET.check("model._target_", target)
    if target not in MODELS:
        return  # a model of one's own
    if target not in task_models:
        raise ConfigError(
            f"model._target_={show(target)} is not a model that task._target_={show(config['task']['_target_'])} "
            f"trains; the models it trains are {', '.join(task_models)}."
        )
    solves = target in ODE_MODELS
    extra = ("solver", "regularization") if solves else ()
    check_schema(model, "model", {"_target_": TARGET, **MODELS[target]}, extra=extra)
    if solves and "regularization" in model:
        _check_regularization(model["regularization"])
    _check_augmentation(config, model)
    if solves and ("solver" not in model or "solver" not in config):
        raise ConfigError(
            f"model._target_={show(target)} solves an ODE but the config has no solver settings: its model config "
            "adds the solver group (defaults: - /solver@solver: dopri5, as configs/model/odenet.yaml does) and passes "
            "solver: ${solver}."
        )
    if not solves and "solver" in config:
        raise ConfigError(
            f"The config has a solver group but model._target_={show(target)} solves no ODE: remove the solver "
            "group (it would be checked and recorded, never used)."
        )
    data = config["data"]
    expected = {"in_channels": "channels", "num_classes": "num_classes", "image_size": "image_size"}
    for model_key, data_key in expected.items():
        if model_key in model and data_key in data and model[model_key] != data[data_key]:
            raise ConfigError(
                f"model.{model_key}={model[model_key]} does not match data.{data_key}={data[data_key]}: the model "
                f"must fit the data, e.g. model.{model_key}=${{data.{data_key}}} (the default)."
            )
    for model_key in ("dim", "obs_dim"):
        if model_key in model and model[model_key] != data.get("dim", 2):
            raise ConfigError(
                f"model.{model_key}={model[model_key]} does not match the data, which are {data.get('dim', 2)}-D: "
                f"use model.{model_key}={data.get('dim', 2)}."
            )


def _check_regularization(weights: Any) -> None:
    if not isinstance(weights, Mapping):
        raise ConfigError(f"model.regularization={show(weights)} must hold the penalties' weights, e.g. "
                          "model.regularization.kinetic=0.01 (0: off).")  # fmt: skip
    check_schema(weights, "model.regularization", REGULARIZATION)


def _check_augmentation(config: Config, model: Config) -> None:
    """ANODE's extra dimensions: the ODE-Net's channels must still suit GroupNorm; a flow's have no exact density of
    samples, which density matching needs."""
    augment = model.get("augment_dim", 0)
    if not augment:
        return
    if model["_target_"] == f"{_MODELS}.mnist.ODENet" and not _CHANNELS["width"].accepts(model["width"] + augment):
        raise ConfigError(
            f"model.augment_dim={augment} with model.width={model['width']} gives {model['width'] + augment} channels, "
            "which GroupNorm(min(32, C), C) cannot normalise: the sum must be at most 32 or a multiple of 32, e.g. "
            f"model.augment_dim={32 - model['width'] % 32}."
        )
    if config["task"]["_target_"] == f"{_TASKS}.densities.DensityMatchingTask":
        raise ConfigError(
            f"model.augment_dim={augment}: density matching needs the exact density of the flow's samples, which an "
            "augmented flow does not have (its extra coordinates are integrated out); use model.augment_dim=0, or "
            "an augmented flow with task=maximum_likelihood."
        )


def _check_flow_direction(config: Config, task: str) -> None:
    """A density task trains a planar NF through the direction it needs."""
    needed = FLOW_DIRECTIONS[task]
    direction = config["model"].get("direction", "both")
    if direction not in (needed, "both"):
        method = "push_forward (samples of the base density)" if needed == "sample" else "log_prob (of data)"
        raise ConfigError(
            f"model.direction={show(direction)}: this task trains through the flow's {method}, which gives "
            f"gradients only with model.direction={needed}; use model.direction={needed}."
        )


def _check_values(section: Config, group: str, schema: Schema) -> None:
    """``_target_`` is set, and the keys of ``schema`` that ``section`` holds are valid."""
    TARGET.check(f"{group}._target_", section.get("_target_"))
    for key, rule in schema.items():
        if key in section:
            rule.check(f"{group}.{key}", section[key])


def _check_study(study: Config) -> None:
    """The study's settings, for a study this module knows (its function is imported later)."""
    TARGET.check("study._target_", study.get("_target_"))
    if study["_target_"] not in STUDIES:
        return
    if not study.get("checkpoint"):
        raise ConfigError(
            "study.checkpoint is not set: give the folder of a trained ODE-Net run (or its checkpoints/last.pt), "
            "e.g. node-run experiment=mnist_nfe_study study.checkpoint=outputs/mnist_odenet/DATE/TIME"
        )
    schema = STUDIES[study["_target_"]]
    check_schema(study, "study", {"_target_": TARGET, **schema}, extra=("reference", "memory"))
    check_schema(_section(study, "reference"), "study.reference", NFE_REFERENCE, extra=("method",))
    check_schema(_section(study, "memory"), "study.memory", NFE_MEMORY)


def _check_reference_method(method: Any) -> None:
    from .ode import ADAPTIVE_METHODS

    one_of("the reference solve's adaptive method", sorted(ADAPTIVE_METHODS)).check("study.reference.method", method)


# ---------------------------------------------------------------------------------- checks needing torch
def _import(target: Any, key: str) -> Any:
    """The object ``target`` (``module.name``) names; a ConfigError when there is none."""
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}={show(target)} cannot be imported ({error}): give the full dotted path of a class or "
                          f"function, e.g. {key}={EXAMPLE_TARGETS.get(key, 'package.module.Name')}.") from None  # fmt: skip


def _subclass(candidate: Any, base: type) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, base)


def _check_torch_target(section: Config, group: str, base_path: str, skip: Sequence[str]) -> None:
    """``_target_`` names a subclass of ``base_path`` whose constructor takes every other key of ``section``."""
    target = _import(section["_target_"], f"{group}._target_")
    base = _import(base_path, base_path)
    if not _subclass(target, base):
        raise ConfigError(f"{group}._target_={show(section['_target_'])} is not a {base_path}, e.g. "
                          f"{group}._target_={EXAMPLE_TARGETS[f'{group}._target_']}.")  # fmt: skip
    parameters = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [name for name in parameters if name not in skip and name != "self"]
    for key, value in section.items():
        if not key.startswith("_") and key not in accepted and not takes_any:
            raise unknown_key(group, key, value, accepted, f"is not an argument of {section['_target_']}")


def _check_device(spec: str) -> None:
    import torch

    if spec == "auto":
        return
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device={show(spec)} is not a device node-run trains on: use auto, cpu, cuda, "
                          "cuda:N or mps, e.g. trainer.device=auto.")  # fmt: skip
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.device={show(spec)}, but this machine has no MPS device (the GPU of Apple "
                          "silicon, with a PyTorch built for it): use trainer.device=auto (CUDA when there is one, "
                          "else the CPU) or trainer.device=cpu.")  # fmt: skip
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"trainer.device={show(spec)}, but this machine has no CUDA device: use "
                              "trainer.device=auto (CUDA when there is one) or trainer.device=cpu.")  # fmt: skip
        if device.index is not None and device.index >= count:
            raise ConfigError(f"trainer.device={show(spec)}, but this machine has {count} CUDA device(s), "
                              f"cuda:0 to cuda:{count - 1}: e.g. trainer.device=cuda:0.")  # fmt: skip


def _check_flow_class(target: str) -> None:
    """A model of one's own for a density task must be a normalizing flow."""
    from .models.flows import Flow

    if not _subclass(_import(target, "model._target_"), Flow):
        raise ConfigError(
            f"model._target_={show(target)} is not a normalizing flow (node_experiments.models.flows.Flow), which "
            "this task trains: use model=cnf or model=planar_nf."
        )


def _check_image_dataset(name: str) -> None:
    from torchvision import datasets

    if not isinstance(getattr(datasets, name, None), type):
        raise ConfigError(f"data.dataset={show(name)} is not a torchvision.datasets class: use one with the MNIST "
                          "layout, e.g. data.dataset=MNIST or data.dataset=FashionMNIST.")  # fmt: skip


def _check_spirals(data: Config) -> None:
    """The spirals' settings together, by the data module's own rules (``check_spiral_arguments``)."""
    from .data.spirals import check_spiral_arguments

    with config_arguments("data", data):
        check_spiral_arguments(**{name: data[name] for name in inspect.signature(check_spiral_arguments).parameters})


@contextmanager
def config_arguments(group: str, section: Config) -> Iterator[None]:
    """Turn a ``ValueError`` raised below the boundary into the ``ConfigError`` naming the config key, in one place.

    Data classes and functions name an argument in their messages as ``name=value`` (or ``name >= n``), where
    ``name`` is a key of the ``group`` config section they were built from; each such name becomes ``group.name``,
    so the message keeps its value, what is wrong and the fix, now in the command line's terms. A ``RunError``
    (missing or damaged data) already speaks to the user and passes unchanged.
    """
    try:
        yield
    except RunError:
        raise
    except ValueError as error:
        names = "|".join(sorted(map(re.escape, section), key=len, reverse=True))
        message = re.sub(rf"(?<![\w.])({names})(?=\s?[<>]?=)", rf"{group}.\1", str(error))
        raise ConfigError(message) from error


# ---------------------------------------------------------------------------------------------- solver
def check_solver(solver: Config, key: str = "solver") -> None:
    """Raise ``ConfigError`` naming ``key.<field>`` when the solver settings cannot work.

    Checks the keys, the tolerances, the gradient strategy and the method name here, then lets the solver itself
    judge the options by solving dy/dt = -y over [0, 1] once (and its adjoint once, when ``gradient`` is
    ``adjoint``): that costs microseconds and catches every option the solver rejects, in the solver's own words.
    """
    if "adjoint" in solver:  # the boolean of earlier versions
        raise retired_adjoint_setting(show(solver["adjoint"], quote=False), key)
    for name, value in solver.items():
        if name not in SOLVER_KEYS:
            raise unknown_key(key, name, value, SOLVER_KEYS)
    rtol, atol = solver.get("rtol"), solver.get("atol")
    if not _is_number(rtol) or rtol < 0:
        raise ConfigError(f"{key}.rtol={show(rtol)} is not a valid tolerance: it must be a finite number >= 0 (for "
                          f"example {key}.rtol=1e-3).")  # fmt: skip
    if not _is_number(atol) or atol <= 0:
        zero = (" With atol = 0 a state component at zero gets an error tolerance of zero, which no step can meet "
                "(the adjoint's parameter gradients and many features start at zero), so the first solve would "
                "fail." if _is_number(atol) and atol == 0 else "")  # fmt: skip
        raise ConfigError(f"{key}.atol={show(atol)} is not a valid tolerance: it must be a finite number > 0 (for "
                          f"example {key}.atol=1e-6).{zero}")  # fmt: skip
    for name in ("options", "adjoint_options"):
        if not isinstance(solver.get(name) or {}, Mapping):
            raise ConfigError(f"{key}.{name}={show(solver[name])} must be a mapping of solver options, e.g. "
                              f"{key}.{name}.max_num_steps=1000.")  # fmt: skip
    from .ode import GRADIENTS, METHODS  # loads torch

    method = solver.get("method")
    if method not in METHODS:
        raise ConfigError(
            f"{key}.method={show(method)} is not a solver method. Choose one of: {', '.join(sorted(METHODS))}."
        )
    gradient = solver.get("gradient")
    if gradient not in GRADIENTS:
        raise ConfigError(
            f"{key}.gradient={show(gradient)} is not a gradient strategy. Choose one of: {', '.join(GRADIENTS)} "
            f"(adjoint: memory independent of the solver's steps; backprop: through the solver's operations; "
            f"checkpoint: backprop's gradients for one saved state per step)."
        )
    _dry_run(solver, key)


def _dry_run(solver: Config, key: str) -> None:
    """Solve dy/dt = w y (w = -1) once with these settings, and its adjoint, so the solver judges the options."""
    import torch

    from .models.ode_block import ODEBlock
    from .ode import InvalidArgumentError

    class Decay(torch.nn.Module):  # one parameter, so that the adjoint has a parameter gradient to compute
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(-1.0))

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.weight * y

    field = Decay()
    settings = dict(method=solver["method"], rtol=solver["rtol"], atol=solver["atol"], options=solver.get("options"))
    try:
        ODEBlock(field, gradient="backprop", **settings)(torch.ones(1))
    except InvalidArgumentError as error:
        raise ConfigError(f"{key}.options: {error}") from None
    if solver["gradient"] == "adjoint":
        block = ODEBlock(field, gradient="adjoint", adjoint_options=solver.get("adjoint_options"), **settings)
        try:
            block(torch.ones(1)).sum().backward()
        except InvalidArgumentError as error:
            raise ConfigError(f"{key}.adjoint_options: {error}") from None

