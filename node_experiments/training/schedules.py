"""Learning-rate schedules whose milestones follow the length of training.

The authors' MNIST recipe (torchdiffeq's ``examples/odenet_mnist.py``) multiplies the learning rate by 0.1 after
epochs 60, 100 and 140 of 160. ``FractionalMultiStepLR`` keeps those drops at the same fractions of training
(60/160, 100/160, 140/160) for any number of epochs, so the recipe compressed to ``E`` epochs is one override:
``scheduler=multistep_scaled trainer.max_epochs=E`` (docs/results/table1.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import MultiStepLR

PAPER_FRACTIONS = (60 / 160, 100 / 160, 140 / 160)


def milestones_at(fractions: Sequence[float], epochs: int) -> list[int]:
    """The epochs after which the rate drops: each fraction of ``epochs`` rounded to the nearest epoch, at least 1
    and at most ``epochs - 1``, so that every drop lands inside training (fractions that round to the same epoch
    drop there together)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: the number of epochs of training must be a whole number >= 1")
    if not fractions or any(not 0 < f < 1 for f in fractions) or list(fractions) != sorted(fractions):
        raise ValueError(f"fractions={list(fractions)!r}: must be an increasing list of numbers in (0, 1)")
    last = max(epochs - 1, 1)
    return [min(max(round(f * epochs), 1), last) for f in fractions]


class FractionalMultiStepLR(MultiStepLR):
    """``MultiStepLR`` with its milestones given as fractions of ``epochs`` (see ``milestones_at``); stepped once
    per epoch like every scheduler of the project. With ``epochs=160`` it is the authors' schedule exactly:
    milestones 60, 100 and 140."""

    def __init__(
        self,
        optimizer: Optimizer,
        epochs: int,
        fractions: Sequence[float] = PAPER_FRACTIONS,
        gamma: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.fractions = tuple(fractions)
        super().__init__(optimizer, milestones=milestones_at(self.fractions, epochs), gamma=gamma,
                         last_epoch=last_epoch)  # fmt: skip
