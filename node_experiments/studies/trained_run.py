"""A training run as a study sees it: the trained model rebuilt from its checkpoint, and its per-epoch history.

``study.checkpoint`` (and ``load_trained_run``'s ``location``) is a run folder, a checkpoint file, or a model file:

- the trainer's checkpoint (``<run>/checkpoints/last.pt``, see ``node_experiments.training.checkpoint``) holds the
  model's state dict and the run's composed config, with all else needed to resume training;
- a model file (``node-report model-state RUN FILE``, ``node_experiments.reports.model_state``) holds only
  ``{"model": state dict in float32, "config": the run's composed config}``, small enough to commit (the ODE-Net
  of Table 1 in 0.8 MB).

Either way the model is rebuilt with ``hydra.utils.instantiate`` of the config's ``model`` group and needs nothing
else. The history (one record per epoch, as in ``metrics.jsonl``) comes from the ``metrics.jsonl`` beside the file
(a model file among a run's committed records) or in the run folder holding it (``checkpoints/last.pt``), else
from the checkpoint itself, which keeps the same records.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from ..errors import ConfigError
from ..models import ODEBlock
from ..tasks import Task, build_task
from ..training.checkpoint import load_checkpoint, resolve_checkpoint
from ..training.run_logger import METRICS_FILE


@dataclass
class TrainedRun:
    """A trained model with the config and the history of the run that trained it."""

    model: nn.Module
    config: dict[str, Any]  # the training run's composed config, resolved
    checkpoint: Path
    history: list[dict[str, Any]]  # one record per completed epoch, as in metrics.jsonl

    @property
    def ode_block(self) -> ODEBlock:
        """The model's one ODE block; a ``ConfigError`` when the model has none or several."""
        blocks = [module for module in self.model.modules() if isinstance(module, ODEBlock)]
        if len(blocks) != 1:
            raise ConfigError(
                f"study.checkpoint={str(self.checkpoint)!r} holds a {type(self.model).__name__} with "
                f"{len(blocks)} ODE blocks; this study needs a model with exactly one, such as a run of "
                "experiment=mnist_odenet."
            )
        return blocks[0]

    def task(self, device: torch.device) -> Task:
        """The run's task (its data and metrics), rebuilt from the run's config."""
        return build_task(OmegaConf.create(self.config), device)


def _with_gradient_setting(config: dict[str, Any]) -> dict[str, Any]:
    """A config saved before ``solver.gradient`` replaced the boolean ``solver.adjoint``, in today's terms."""
    for group in (config.get("solver"), config.get("model", {}).get("solver")):
        if isinstance(group, dict) and isinstance(group.get("adjoint"), bool):
            group["gradient"] = "adjoint" if group.pop("adjoint") else "backprop"
    return config


def load_trained_run(location: str | Path, device: torch.device, key: str = "study.checkpoint") -> TrainedRun:
    """Rebuild the model saved at ``location`` (a run folder or a checkpoint file) on ``device``, in eval mode."""
    path = resolve_checkpoint(location, key=key)
    checkpoint = load_checkpoint(path, key=key, required=("model", "config"))
    config = _with_gradient_setting(checkpoint["config"])
    try:
        model = instantiate(config["model"], _convert_="all")
        model.load_state_dict(checkpoint["model"])
    except Exception as error:
        raise ConfigError(
            f"{key}={str(location)!r}: the model could not be rebuilt from the checkpoint's config ({error}). "
            "Was the checkpoint written by another version of node-experiments?"
        ) from None
    history = _metrics_history(path) or list(checkpoint.get("position", {}).get("history", []))
    return TrainedRun(model.to(device).eval(), config, path, history)


def _metrics_history(checkpoint: Path) -> list[dict[str, Any]]:
    """The records of the ``metrics.jsonl`` beside ``checkpoint`` or in the run folder holding it (empty when there
    is none)."""
    found = [folder / METRICS_FILE for folder in (checkpoint.parent, checkpoint.parent.parent)]
    metrics = next((path for path in found if path.is_file()), None)
    if metrics is None:
        return []
    lines = metrics.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@contextlib.contextmanager
def solver_settings(block: ODEBlock, **settings: Any) -> Iterator[ODEBlock]:
    """Set attributes of ``block`` (``rtol``, ``atol``, ``gradient``, ``adjoint_options`` ...) inside the block only."""
    saved = {name: getattr(block, name) for name in settings}
    for name, value in settings.items():
        setattr(block, name, value)
    try:
        yield block
    finally:
        for name, value in saved.items():
            setattr(block, name, value)
