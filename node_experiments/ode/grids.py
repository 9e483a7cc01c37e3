"""The fixed-step grid of a solve: from ``options['step_size']``, a user's ``grid_constructor`` or the output times,
counted against ``max_num_steps`` before it is built; and ``EventGrid``, the open-ended grid of a fixed-step solve
that runs until an event.

Grids are in the integration variable ``s = sign * t`` (increasing), as the integrator (``runge_kutta.py``) steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import InvalidArgumentError, MaxStepsExceededError
from .options import max_num_steps, positive_option

@dataclass(frozen=True)
class EventGrid:
    """``s0, s0 + h, s0 + 2h, ...``: the fixed-step grid of a solve that runs until an event, as long as
    ``max_num_steps`` allows (a sequence computed on demand, not stored)."""

    start: float
    step: float
    points: int

    def __len__(self) -> int:
        return self.points

    def __getitem__(self, k: int) -> float:
        return self.start + k * self.step


def fixed_grid(
    options: dict, s_out: Sequence[float], sign: float, grid_arguments: Callable[[], tuple], *,
    through_outputs: bool = False,
) -> list[float]:  # fmt: skip
    """The fixed-step grid, in ``s``: ``options['step_size']`` from the first output time, the times
    ``options['grid_constructor'](func, y0, t)`` returns (``grid_arguments()`` gives those three), or the output
    times themselves. Its steps are counted, and checked against ``options['max_num_steps']``, before it is built:
    a tiny ``step_size`` fails at once instead of filling the memory with grid points.

    ``through_outputs``: the grid passes through every output time (a solve whose state jumps there must land on it).
    """
    limit = max_num_steps(options)
    step_size = positive_option(options, "step_size", None)
    constructor = options.get("grid_constructor")
    if constructor is not None:
        grid = _constructed_grid(constructor, grid_arguments(), s_out, sign, limit)
        return sorted(set(grid) | set(s_out)) if through_outputs else grid
    if step_size is None:
        return list(s_out)
    intervals = zip(s_out, s_out[1:]) if through_outputs else [(s_out[0], s_out[-1])]
    counts = [max(1, math.ceil((b - a) / step_size * (1 - 1e-12))) for a, b in intervals]
    _check_grid_steps(sum(counts), limit, "use a larger options['step_size']")
    if through_outputs:
        pieces = [[a + k * step_size for k in range(n)] for a, n in zip(s_out, counts)]
        return [s for piece in pieces for s in piece] + [s_out[-1]]
    return [s_out[0] + k * step_size for k in range(counts[0])] + [s_out[-1]]


def _check_grid_steps(steps: int, limit: int, fix: str) -> None:
    if steps > limit:
        raise MaxStepsExceededError(
            f"the fixed-step grid has {steps} steps, more than max_num_steps={limit}. Raise options['max_num_steps'] "
            f"or {fix}."
        )


def _constructed_grid(
    constructor: Callable, arguments: tuple, s_out: Sequence[float], sign: float, limit: int
) -> list[float]:
    grid = constructor(*arguments)
    t = arguments[2]
    first, last = sign * s_out[0], sign * s_out[-1]
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() < 2:
        raise InvalidArgumentError(
            f"options['grid_constructor'] returned {type(grid).__name__}"
            f"{tuple(grid.shape) if isinstance(grid, torch.Tensor) else ''}; it must return a 1-D tensor of at least "
            f"two times, from t[0] to t[-1]."
        )
    _check_grid_steps(grid.numel() - 1, limit, "return a coarser grid from options['grid_constructor']")
    values = grid.detach().tolist()
    s_grid = [sign * v for v in values]
    if values[0] != first or values[-1] != last or any(b <= a for a, b in zip(s_grid, s_grid[1:])):
        raise InvalidArgumentError(
            f"options['grid_constructor'] returned a grid from {values[0]!r} to {values[-1]!r}: it must start at "
            f"t[0]={first!r}, end at t[-1]={last!r} and run strictly in t's direction (t has dtype {t.dtype}; "
            f"build the grid in it, e.g. torch.linspace(t[0], t[-1], n))."
        )
    return s_grid
