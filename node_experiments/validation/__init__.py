"""Every config value checked before a run starts: the one validation boundary of node-run.

``validate(cfg)`` checks the composed config of a run (``node-run`` calls it before building anything): each
group's keys against the keys it may have (a key added by mistake, e.g. ``+trainer.max_epoch=2``, is named
with the real key it resembles), each value's type (integers are integers, flags are true or false) and range,
and the consistency between groups (the model's classes and the data's, a flow's direction and the task). A
problem is a ``ConfigError`` of one paragraph that names the key, the value, why it cannot work and a value
that can, e.g.::

    trainer.max_epochs=1.5: the number of epochs to train must be a whole number >= 1, e.g. trainer.max_epochs=10.

Below this boundary, the models, data generators and the solver check their own arguments with plain
``ValueError``s that know nothing of config keys; ``config_arguments`` translates them, in one place.

Which keys a group built from a ``_target_`` may have (``task``, ``model``, ``optimizer``, ``scheduler``,
``data.sampler``) is read from the signature of the class it builds (``signatures``), so a model of one's own is
checked like the project's; the groups node-run reads itself and the range and meaning rules of the keys are in
``schema``. The plain checks come first; those that need torch (the signatures, the device, the solver's dry
run) come after them, so that a plain mistake is reported at once.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError, RunError
from .rules import Config, check_schema, check_values, one_of, show, unknown_key
from .schema import (
    ENERGY_DATA, EXAMPLE_TARGETS, FLOW_DIRECTIONS, GROUPS, LOGGER, MODELS, NFE_MEMORY, NFE_REFERENCE, NFE_STUDY,
    OPTIMIZER_VALUES, PATHS, REGULARIZATION, SAMPLE_DATA, SAMPLERS, SCHEDULER_VALUES, SPIRAL_DATA, STUDIES, TARGET,
    TASKS, TRAINER, _GROUP_NORM_WIDTH, _MODELS, _TASKS,
)
from .signatures import check_arguments, takes
from .solver import check_solver

__all__ = ["ENERGY_DATA", "MODELS", "REGULARIZATION", "SAMPLERS", "SAMPLE_DATA", "SPIRAL_DATA",
           "check_solver", "config_arguments", "solves_an_ode", "validate"]  # fmt: skip
BUILT = {"optimizer": "torch.optim.Optimizer", "scheduler": "torch.optim.lr_scheduler.LRScheduler"}  # and their bases


def solves_an_ode(target: object) -> bool:
    """Whether the model class ``target`` (``model._target_``) solves an ODE: its constructor takes ``solver``."""
    return takes(_import(target, "model._target_"), "solver")


def validate(cfg: DictConfig | Config) -> None:
    """Raise ``ConfigError`` for the first config value of a run that cannot work; return None when all can."""
    config = _resolved(cfg)
    for key, value in config.items():
        if key not in GROUPS:
            raise unknown_key("", key, value, GROUPS)
    for group in ("trainer", "logger", "task", "optimizer", "scheduler"):
        if group not in config:
            raise ConfigError(f"The config has no {group} group: an experiment must pick one, e.g. {group}=...")
    for group in ("task", "data", "model", "study", "optimizer", "scheduler"):
        if group in config and group != "data":
            TARGET.check(f"{group}._target_", _section(config, group).get("_target_"))
        elif group in config:
            _section(config, group)
    check_schema(config["trainer"], "trainer", TRAINER)
    check_schema(config["logger"], "logger", LOGGER)
    if "paths" in config:
        check_schema(config["paths"], "paths", PATHS)
    if "study" in config:
        _check_study(config["study"])
    task = config["task"]["_target_"]
    if task in TASKS:
        _check_known_task(config, *TASKS[task])
    if task in FLOW_DIRECTIONS:
        _check_flow_direction(config, task)
    if "model" in config:
        _check_model_values(config)
    check_values(config["optimizer"], "optimizer", OPTIMIZER_VALUES)
    check_values(config["scheduler"], "scheduler", SCHEDULER_VALUES)

    # The checks that import torch (seconds on a busy machine), once the others have passed.
    if "solver" in config:
        check_solver(config["solver"])
    _check_device(config["trainer"]["device"])
    for group in ("task", "model", "optimizer", "scheduler"):
        if group in config:
            _check_built(config[group], group)
    if "model" in config:
        _check_solver_group(config)
        if "regularization" in config["model"]:  # once the model is known to take it
            _check_regularization(config["model"]["regularization"])
    if "study" in config:
        _import(config["study"]["_target_"], "study._target_")
    if task in FLOW_DIRECTIONS:
        _check_flow_class(config["model"]["_target_"])
    if task == f"{_TASKS}.classification.ClassificationTask":
        _check_image_dataset(config["data"])
    if task == f"{_TASKS}.densities.MaximumLikelihoodTask":
        from ..data.toys import DATASETS

        check_arguments(config["data"]["sampler"], "data.sampler", DATASETS[config["data"]["dataset"]])
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


def _check_known_task(config: Config, task_rules: Config, data_schema: Config, models: tuple[str, ...]) -> None:
    """A task of the project: its settings' values, its data group, and a model of the project that it trains."""
    check_values(config["task"], "task", task_rules)
    data = _section(config, "data")
    check_schema(data, "data", data_schema, extra=("sampler",) if data_schema is SAMPLE_DATA else ())
    if data_schema is SAMPLE_DATA:
        sampler = data.get("sampler")
        if not isinstance(sampler, Mapping):
            raise ConfigError(f"data.sampler={show(sampler)} must hold the sampler's settings, e.g. data.sampler.noise=0.05.")
        check_values(sampler, "data.sampler", SAMPLERS[data["dataset"]])
    target, models = _section(config, "model")["_target_"], [f"{_MODELS}.{model}" for model in models]
    if target in MODELS and target not in models:
        raise ConfigError(
            f"model._target_={show(target)} is not a model that task._target_={show(config['task']['_target_'])} "
            f"trains; the models it trains are {', '.join(models)}."
        )


def _check_model_values(config: Config) -> None:
    """The model's values by the rules of its class (a model of one's own has none), its extra dimensions, and the
    arguments it shares with the data."""
    model, data = config["model"], config.get("data", {})
    check_values(model, "model", MODELS.get(model["_target_"], {}))
    _check_augmentation(config, model)
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


def _check_solver_group(config: Config) -> None:
    """A model that solves an ODE (one whose constructor takes ``solver``) gets the solver group; no other does."""
    target = config["model"]["_target_"]
    solves = solves_an_ode(target)
    if solves and ("solver" not in config["model"] or "solver" not in config):
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
    if model["_target_"] == f"{_MODELS}.mnist.ODENet" and not _GROUP_NORM_WIDTH.accepts(model["width"] + augment):
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


def _check_study(study: Config) -> None:
    """The study's settings, for a study this module knows (its function is imported later)."""
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
    from ..ode import ADAPTIVE_METHODS

    one_of("the reference solve's adaptive method", sorted(ADAPTIVE_METHODS)).check("study.reference.method", method)


def _import(target: Any, key: str) -> Any:
    """The object ``target`` (``module.name``) names; a ConfigError when there is none."""
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}={show(target)} cannot be imported ({error}): give the full dotted path of a class or "
                          f"function, e.g. {key}={EXAMPLE_TARGETS.get(key, 'package.module.Name')}.") from None  # fmt: skip


def _check_built(section: Config, group: str) -> None:
    """``_target_`` can be imported (and for the optimizer and the scheduler, is one), and takes ``section``'s keys."""
    target = _import(section["_target_"], f"{group}._target_")
    if group in BUILT and not (isinstance(target, type) and issubclass(target, _import(BUILT[group], BUILT[group]))):
        raise ConfigError(f"{group}._target_={show(section['_target_'])} is not a {BUILT[group]}, e.g. "
                          f"{group}._target_={EXAMPLE_TARGETS[f'{group}._target_']}.")  # fmt: skip
    check_arguments(section, group, target, MODELS.get(section["_target_"]) if group == "model" else None,
                    name=section["_target_"])


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
    from ..models.flows import Flow

    flow = _import(target, "model._target_")
    if not (isinstance(flow, type) and issubclass(flow, Flow)):
        raise ConfigError(
            f"model._target_={show(target)} is not a normalizing flow (node_experiments.models.flows.Flow), which "
            "this task trains: use model=cnf or model=planar_nf."
        )


def _check_image_dataset(data: Config) -> None:
    from ..data.images import image_dataset_class

    with config_arguments("data", data):
        image_dataset_class(data["dataset"])


def _check_spirals(data: Config) -> None:
    """The spirals' settings together, by the data module's own rules (``check_spiral_arguments``)."""
    from ..data.spirals import check_spiral_arguments

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
