"""The interface between the shared trainer and a kind of experiment.

The trainer (``node_experiments.training.trainer``) runs every experiment of the project; everything that
differs between kinds of experiment lives in a ``Task``. To add an experiment:

1. write a ``Task`` subclass (for example ``node_experiments/tasks/sequences.py``) that implements the methods
   below;
2. write a ``configs/task/<name>.yaml`` holding ``_target_: <module>.<Class>`` and the task's settings, which are
   the keyword arguments of its constructor (the validation boundary accepts exactly those keys), plus the
   model/data groups it needs;
3. write ``configs/experiment/<name>.yaml`` (``# @package _global_``) that picks those groups.

The trainer builds the task as ``Class(cfg, device, **settings)`` with the whole composed config and the task
group's other keys, then::

    model = task.build_model()                       # moved to the device by the trainer
    train_loader, eval_loader = task.dataloaders(generator)
    each training batch:  loss, metrics = task.training_step(model, to_device(batch))
                          loss.backward(); optimizer.step()
    each epoch:           metrics = task.evaluate(model, eval_loader)       # model in eval mode
    at the end:           figures = task.figures(model, eval_loader)
                          summary.json gets task.summary(history) added to the trainer's own entries

What the trainer does around these calls, so that a task need not: seeding, the optimizer and scheduler
(``optimizer``/``scheduler`` groups), gradient clipping, the device, counting solver NFE (every
``node_experiments.ode`` solve inside ``training_step`` and its backward is counted, through
``record_stats``), measuring memory, timing, the progress bar, TensorBoard, ``metrics.jsonl``,
``summary.json``, checkpoints and resuming.

Names: ``training_step``'s metrics are logged as ``train/<name>`` (averaged over steps), ``evaluate``'s as
``test/<name>`` and in ``summary.json`` as ``test_<name>``. A classification task returns ``accuracy`` and
``error`` (fractions) and ``loss``; other tasks return what suits them (``elbo``, ``bits_per_dim`` ...).
``best_metric`` names the one of them that picks the run's best epoch, kept as ``checkpoints/best.pt``.

Regularised dynamics (``model.regularization``, RNODE's penalties integrated by the model's ODE blocks): a task's
``training_step`` passes its loss through ``add_regularization``, which adds the weighted penalties of the step's
solves to the loss and logs each penalty as ``train/reg_<kind>``; the model and the trainer need nothing else.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from ..models.regularization import collect_penalties
from ..validation import config_arguments


class Task:
    """One kind of experiment, as the trainer sees it. Subclasses implement the methods below (``build_model``
    has a default).

    Attributes:
        cfg: the whole composed config (``cfg.task``, ``cfg.model``, ``cfg.data``, ...).
        device: where the trainer puts the model and the training batches.
    """

    # The test metric that picks the best epoch (checkpoints/best.pt): a name ``evaluate`` returns, and whether
    # lower ("min") or higher ("max") is better. A run whose evaluation lacks it writes no best.pt.
    best_metric: tuple[str, str] = ("loss", "min")

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device

    def build_model(self) -> nn.Module:
        """The network to train: the ``model`` group instantiated. A ``ValueError`` of the model's own, naming an
        argument as ``name=value``, becomes the ``ConfigError`` naming ``model.name`` (``validation.config_arguments``)."""
        with config_arguments("model", self.cfg.model):
            try:
                return instantiate(self.cfg.model, _convert_="all")
            except InstantiationException as error:  # Hydra's wrapper around the constructor's own error
                raise error.__cause__ if isinstance(error.__cause__, ValueError) else error from None

    def dataloaders(self, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
        """The training and evaluation loaders.

        The training loader must draw its randomness (shuffling) from ``generator``: the trainer seeds it and
        saves its state in checkpoints, so that a resumed run sees the same data order.
        """
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """The loss to minimise on one batch (already on ``self.device``), and metrics to log for it.

        Return metrics as 0-dim tensors or floats; the trainer converts them once per step.
        """
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Metrics over the whole evaluation loader; the model is in eval mode. Move batches with ``to_device``.

        The task decides whether gradients are needed (a classifier uses ``torch.no_grad()``; a continuous
        normalizing flow needs autograd for its log-density).
        """
        raise NotImplementedError

    def figures(self, model: nn.Module, loader: DataLoader) -> dict[str, Figure]:
        """Figures made once at the end of training, saved as ``<run>/figures/<name>.png`` and to TensorBoard."""
        return {}

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Entries of the task's own to add to ``summary.json`` (e.g. ``final_loss``); none by default.

        ``history`` holds one record per epoch, as written to ``metrics.jsonl`` (``test/<name>``, ``train/<name>``,
        ``nfe/*``, ...).
        """
        return {}


def add_regularization(
    model: nn.Module, loss: torch.Tensor, metrics: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The loss plus the weighted penalties that ``model``'s ODE blocks integrated during the step (none unless
    ``model.regularization`` has a positive weight), and the metrics plus each penalty (``reg_kinetic``,
    ``reg_jacobian``)."""
    penalty, values = collect_penalties(model)
    if penalty is None:
        return loss, metrics
    return loss + penalty, {**metrics, **values}


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a batch (a tensor, or tuples, lists and dicts of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


def build_task(cfg: DictConfig, device: torch.device) -> Task:
    """Instantiate the class named by ``cfg.task._target_`` as ``Class(cfg, device, **settings)``, the settings being
    the task group's other keys (``node_experiments.validation`` has checked that the class can be imported and
    takes them)."""
    task_class = get_class(cfg.task._target_)
    if not issubclass(task_class, Task):
        raise TypeError(f"{task_class.__qualname__} is not a subclass of node_experiments.tasks.Task.")
    settings = {key: value for key, value in cfg.task.items() if not str(key).startswith("_")}
    return task_class(cfg, device, **settings)
