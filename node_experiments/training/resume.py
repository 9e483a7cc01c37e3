"""Resuming means the same run, or explicitly changed settings.

A checkpoint records the config of the run that wrote it, and resuming compares it key by key with the config of
the resuming run. Keys that say where and how a run executes, not what it computes (``EXECUTION_KEYS``: the number
of epochs to train to, the device and threads, logging, where the data lie, when a loss counts as diverged), may
differ. Any other difference is
refused (``trainer.resume_changes=refuse``, the default) with the list of changed keys. With
``trainer.resume_changes=apply`` the run continues from the checkpoint's position with the new settings:

- the weights, the position in training, the history and the random states are the checkpoint's (the model is
  built from the new settings, so it must have the same shape: a change of its shape, or of the model or the task
  itself, is refused in either mode, in one paragraph naming the cause);
- the optimizer's state (momentum, Adam's moments) is kept when the optimizer is of the same class, with the new
  hyperparameters; another optimizer starts with a fresh state;
- when the optimizer or scheduler settings changed, the learning rate follows the new schedule, replayed from the
  first epoch to the checkpoint's, as if the run had used the new settings from its start;
- the changes and the position where they took effect are appended to the checkpoint's ``settings_changed`` list,
  which ``summary.json`` repeats, and the new run's ``.hydra/config.yaml`` records the new config: what ran from
  there on.

With no change, every state is restored as saved, so an interrupted run resumes bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .checkpoint import restore_rng
from .run_logger import flatten

RESUME_CHANGES = ("refuse", "apply")
IDENTITY_KEYS = ("task._target_", "model._target_")  # what a run is: no resumption may change them
LISTED = 6  # changed settings a refusal lists by name; the rest are counted
# Settings that may differ between a run and its resumption: they do not change what is computed.
EXECUTION_KEYS = (
    "trainer.resume", "trainer.resume_changes", "trainer.max_epochs", "trainer.progress_bar", "trainer.checkpoint",
    "trainer.device", "trainer.num_threads", "trainer.divergence_factor", "logger", "data.root", "data.download",
    "data.num_workers", "paths",
)  # fmt: skip
_ABSENT = "<absent>"


def resume_changes_mode(trainer: Mapping[str, Any]) -> str:
    """``trainer.resume_changes`` (``refuse`` when the config has no such key), checked."""
    mode = trainer.get("resume_changes", "refuse")
    if mode not in RESUME_CHANGES:
        raise ConfigError(
            f"trainer.resume_changes={mode!r} is not a choice: use refuse (resuming with other settings is an "
            "error, the default) or apply (continue with the new settings and record them), e.g. "
            "trainer.resume_changes=apply."
        )
    return mode


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{key: [saved value, current value]}`` for every setting, outside ``EXECUTION_KEYS``, that differs."""
    before, after = flatten(saved), flatten(current)
    changes = {}
    for key in sorted(before.keys() | after.keys()):
        if any(key == free or key.startswith(free + ".") for free in EXECUTION_KEYS):
            continue
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old != new:
            changes[key] = [old, new]
    return changes


def check_changes(
    checkpoint: Mapping[str, Any], current: Mapping[str, Any], path: Path, mode: str
) -> dict[str, list[Any]]:
    """The settings of ``current`` changed since ``checkpoint`` (read from ``path``) was written; a ``ConfigError``
    listing them when ``mode`` refuses changes."""
    changes = changed_settings(checkpoint["config"], current)
    identity = [key for key in IDENTITY_KEYS if key in changes]
    if identity:
        raise ConfigError(
            f"trainer.resume: the checkpoint {path} is of another kind of run: "
            f"{'; '.join(f'{key}: {_show(changes[key][0])} -> {_show(changes[key][1])}' for key in identity)} (and "
            f"{len(_distinct(changes)) - len(identity)} other settings differ). A run continues only with the model "
            "and task it trained: resume it with its own experiment and settings (recorded in its run folder's "
            ".hydra/config.yaml), or start this run afresh without trainer.resume."
        )
    if changes and mode != "apply":
        raise ConfigError(_refusal(path, changes, checkpoint["position"]["epoch"]))
    return changes


def restore(
    checkpoint: Mapping[str, Any],
    path: Path,
    config: Mapping[str, Any],
    mode: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Load ``checkpoint`` (read from ``path``) into the freshly built objects of a run with ``config``.

    Returns the checkpoint's position (a dict) and the run's ``settings_changed`` records, this resumption's last
    when it changed settings. Raises ``ConfigError`` when settings changed and ``mode`` is ``refuse``, or when the
    weights do not fit the model.
    """
    position = dict(checkpoint["position"])
    changes = check_changes(checkpoint, config, path, mode)
    misfit = _shape_mismatch(checkpoint["model"], model.state_dict())
    if misfit:
        causes = [key for key in _distinct(changes) if key.startswith("model.")]
        cause = f", as {_listed({key: changes[key] for key in causes})} changes its shape" if causes else ""
        raise ConfigError(
            f"trainer.resume: the checkpoint {path} does not fit this run's model: {misfit}{cause}. With "
            "trainer.resume_changes=apply a run continues with new settings only while its model keeps its shape: "
            "leave the model settings as the run that wrote the checkpoint had them, or start this run afresh "
            "without trainer.resume."
        )
    try:
        model.load_state_dict(checkpoint["model"])
        if any(key.startswith(("optimizer.", "scheduler.")) for key in changes):
            same_class = checkpoint["config"]["optimizer"].get("_target_") == config["optimizer"].get("_target_")
            _follow_new_schedule(checkpoint["optimizer"] if same_class else None, optimizer, scheduler,
                                 position["epoch"])  # fmt: skip
        else:
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
    except (RuntimeError, ValueError, KeyError) as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise ConfigError(
            f"trainer.resume: the checkpoint {path} does not fit this run's model or optimizer ({reason}). Resume "
            "with the experiment and the model/optimizer settings of the run that wrote it."
        ) from None
    restore_rng(checkpoint["rng"], generator)
    records = list(checkpoint.get("settings_changed", []))
    if changes:
        records.append({"epoch": position["epoch"], "batches_done": position["batches_done"],
                        "step": position["step"], "changes": changes})  # fmt: skip
    return position, records


def _follow_new_schedule(
    optimizer_state: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, scheduler: Any, epochs: int
) -> None:
    """Keep the saved optimizer state (when given) under the new hyperparameters, and replay the new schedule over
    the ``epochs`` completed (the trainer steps the scheduler once per epoch)."""
    new_settings = [{key: value for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        for group, settings in zip(optimizer.param_groups, new_settings):
            group.update(settings)
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs):
            scheduler.step()


def _shape_mismatch(saved: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> str | None:
    """How the saved weights fail to fit the model's, in a few words (counts and one example); None when they fit."""
    missing = [name for name in current if name not in saved]
    unexpected = [name for name in saved if name not in current]
    resized = [name for name in current if name in saved and tuple(saved[name].shape) != tuple(current[name].shape)]
    if not (missing or unexpected or resized):
        return None
    parts = []
    if resized:
        name = resized[0]
        shapes = f"{list(saved[name].shape)} in the checkpoint, {list(current[name].shape)} in this model"
        parts.append(f"{len(resized)} of its {len(saved)} tensors have other shapes (e.g. {name}: {shapes})")
    if missing:
        parts.append(f"this model has {len(missing)} tensors it lacks (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"it holds {len(unexpected)} tensors this model has not (e.g. {unexpected[0]})")
    return "; ".join(parts)


def _distinct(changes: Mapping[str, list[Any]]) -> list[str]:
    """The changed keys without ``model.solver.*``, the copy of the ``solver`` group that an ODE model is given."""
    return [key for key in changes if not (key.startswith("model.solver.") and key[len("model."):] in changes)]


def _listed(changes: Mapping[str, list[Any]]) -> str:
    """The first ``LISTED`` changes as ``key: old -> new``, and how many more there are."""
    keys = _distinct(changes)
    shown = "; ".join(f"{key}: {_show(changes[key][0])} -> {_show(changes[key][1])}" for key in keys[:LISTED])
    return shown + (f" (and {len(keys) - LISTED} more)" if len(keys) > LISTED else "")


def _refusal(path: Path, changes: Mapping[str, list[Any]], epoch: int) -> str:
    listed = _listed(changes)
    return (
        f"trainer.resume: the checkpoint {path} was written with other settings than this run's: {listed}. To "
        f"continue that run as it was, leave these overrides out. To continue it with the new settings from epoch "
        f"{epoch + 1} on (weights, optimizer state and position from the checkpoint, the learning-rate schedule "
        "replayed with the new settings; summary.json records the changes), add trainer.resume_changes=apply."
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
