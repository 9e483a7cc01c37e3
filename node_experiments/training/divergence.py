"""Divergence as an outcome: a NaN or infinite loss, gradient or weight, or a finite loss that explodes, stops
training with a message.

A run whose loss becomes NaN would otherwise train on, write NaN weights over its last good checkpoint and end
with exit status 0. Here the trainer hands every step's loss and gradient norm to a ``FiniteCheck`` before the
optimizer applies the step, and checks the weights (``check_weights``) before each checkpoint is written, so a
checkpoint never holds non-finite weights. Both raise ``DivergedError``, whose message names the epoch, the
batch, the learning rate and what to try; the trainer adds where the last good checkpoint is.

A loss can also explode and stay finite (a planar NF at learning rate 1e4 reaches an NLL of 5e11; a ResNet resumed
at 1e4, a test loss of 3e11): ``LossScale`` (``trainer.divergence_factor``) stops such a run the same way, before
the step reaches the weights on the CPU and before any checkpoint is written, so ``last.pt`` and ``best.pt`` stay
those of the last good epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from ..errors import DivergedError


class Step(NamedTuple):
    """Where a training step stands, for messages."""

    epoch: int  # counted from 1
    batch: int  # counted from 1
    batches: int  # in the epoch
    lr: float

    def describe(self) -> str:
        return f"epoch {self.epoch}, batch {self.batch} of {self.batches}, learning rate {self.lr:.3g}"


def gradient_norm(parameters: Iterable[torch.Tensor], clip_norm: float | None) -> torch.Tensor:
    """The global norm of the gradients (a 0-dim tensor), after clipping them to ``clip_norm`` when it is set."""
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return torch.zeros(())
    if clip_norm:
        return nn.utils.clip_grad_norm_(parameters, clip_norm)
    return nn.utils.get_total_norm([p.grad for p in parameters])


class LossScale:
    """``trainer.divergence_factor``: a loss above ``factor`` times the run's loss scale is a divergence.

    The scale is S = max(|the run's first training loss|, |the best (lowest) epoch mean of the training loss|). The
    rule "above a factor of the best epoch mean" alone cannot serve this project's losses: the latent ODE's negative
    ELBO, a flow's NLL and the density-matching loss go below zero as they train, and a classifier's cross-entropy
    falls to 1e-3, where a hard batch is many times the mean. The first loss (the untrained model's, before any
    step; kept in checkpoints) sets the loss's order of magnitude, and healthy training stays at or below it, so a
    loss ``factor`` times above it is an explosion, whatever its sign or how far the run has trained. The rule is
    one-sided (only losses above the limit count) and is off when ``factor`` is None or S is 0.
    """

    def __init__(self, factor: float | None, first: float | None = None, best_mean: float | None = None) -> None:
        self.factor, self.first, self.best_mean = factor, first, best_mean

    def limit(self) -> float | None:
        """The largest loss that is not a divergence; None when the rule is off."""
        scale = max(abs(self.first or 0.0), abs(self.best_mean or 0.0))
        return self.factor * scale if self.factor and scale > 0 else None

    def epoch_done(self, mean_loss: float | None) -> None:
        """Take an epoch's mean training loss into the best epoch mean."""
        if mean_loss is not None and math.isfinite(mean_loss):
            self.best_mean = mean_loss if self.best_mean is None else min(self.best_mean, mean_loss)

    def check(self, loss: float, what: str, where: str, lr: float) -> None:
        """Raise ``DivergedError`` when ``loss`` (``what``: "the loss", "the test loss"; ``where``: when, in words) is
        above the limit. The run's first loss, when not known yet, is this one."""
        if self.first is None:
            self.first = loss
        limit = self.limit()
        if limit is not None and loss > limit:
            raise DivergedError(
                f"training diverged at {where}: {what} is {loss:.4g}, more than trainer.divergence_factor="
                f"{self.factor:g} times the run's loss scale {limit / self.factor:.4g} (the larger of its first loss "
                f"and its best epoch mean): a finite explosion.{advice(lr)} If the run is healthy and its loss rises "
                "this far for another reason, raise trainer.divergence_factor (null switches the rule off)."
            )


class FiniteCheck:
    """Raises ``DivergedError`` at the first training step whose loss or gradient norm is NaN or infinite, or whose
    loss is above the limit of ``scale`` (``LossScale``), when it is given.

    On the CPU each step is read at once (a CPU tensor costs nothing to read), before the optimizer applies it, so
    the weights stay those of the last good step. On a GPU reading is a host sync that stalls the queue: the
    values wait on the device and are read together every ``every`` steps and by ``flush`` (the trainer calls it
    at the end of each epoch and before a checkpoint). A bad step may then have been applied, but
    ``check_weights`` runs before every checkpoint, so none holds non-finite weights.
    """

    def __init__(self, device: torch.device, every: int, scale: LossScale | None = None) -> None:
        self.every = 1 if device.type == "cpu" else max(int(every), 1)
        self.scale = scale
        self.pending: list[tuple[torch.Tensor, Step]] = []

    def step(self, loss: torch.Tensor, grad_norm: torch.Tensor, where: Step) -> None:
        """Record one step's loss and gradient norm; raise when a read finds a NaN or infinity."""
        values = torch.stack([loss.detach().float().reshape(()), grad_norm.detach().float().to(loss.device)])
        self.pending.append((values, where))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Read the steps not read yet (one host sync); raise ``DivergedError`` naming the first bad one."""
        if not self.pending:
            return
        values = torch.stack([pair[0] for pair in self.pending]).tolist()
        steps = [pair[1] for pair in self.pending]
        self.pending = []
        for (loss, norm), where in zip(values, steps):
            if not (math.isfinite(loss) and math.isfinite(norm)):
                what = f"the loss is {loss:.4g}" if not math.isfinite(loss) else f"the gradient norm is {norm:.4g}"
                raise DivergedError(f"training diverged at {where.describe()}: {what}.{advice(where.lr)}")
            if self.scale is not None:
                self.scale.check(loss, "the loss", where.describe(), where.lr)


def check_weights(model: nn.Module, when: str, lr: float) -> None:
    """Raise ``DivergedError`` when a weight of ``model`` is NaN or infinite (``when`` says when, for the message)."""
    finite = [torch.isfinite(p).all() for p in model.parameters()]
    if finite and not bool(torch.stack(finite).all()):
        raise DivergedError(f"training diverged: the weights hold NaN or infinity {when}.{advice(lr)}")


def advice(lr: float) -> str:
    """What to try after a divergence."""
    return (
        f" Try a lower learning rate (e.g. optimizer.lr={lr / 10:.3g}) or gradient clipping "
        "(trainer.grad_clip_norm=1.0, or a smaller value than the one set)."
    )
