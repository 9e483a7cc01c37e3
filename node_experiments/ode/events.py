"""Finding an event: where a function of the solution first crosses zero (torchdiffeq's ``event_fn``).

``event_fn(t, y)`` returns a tensor of any shape; the event is the first time at which any of its entries reaches
zero. Each entry is multiplied by its sign at the start, so that all are positive there, and the smallest is
watched (as torchdiffeq does): the event is in the first accepted step at whose end that minimum is no longer
positive. It is located on that step's dense output by bisection, to a time resolution of ``atol`` (torchdiffeq's
convention; the smallest entry of a per-element ``atol``), or to the resolution of 64-bit floats when ``atol`` is
0. An entry that is already zero at the start is an event at the start.

The event time found here carries no gradient, and the state at the event is differentiated at that time held
fixed: ``odeint_event`` (``event_solve.py``) adds the gradients through the event time.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import MaxStepsExceededError


class EventLocator:
    """Watches ``event_fn`` along a solve and locates its first zero. Built at the solve's start ``(t0, y0)``."""

    def __init__(self, event_fn: Callable, t0: torch.Tensor, y0_view, state_view: Callable, resolution: float):
        self.event_fn = event_fn
        self.state_view = state_view  # the integrator's flat state -> what event_fn receives
        self.resolution = resolution
        self.time_found: float | None = None  # the event's time, once located
        with torch.no_grad():
            start = torch.as_tensor(event_fn(t0, y0_view))
            self.signs = torch.sign(start)
            self.at_start = bool((start == 0).any())  # HOST SYNC, once

    def value(self, t: torch.Tensor, y_flat: torch.Tensor) -> torch.Tensor:
        """The smallest entry of ``event_fn`` times its sign at the start: positive until the event."""
        return torch.min(torch.as_tensor(self.event_fn(t, self.state_view(y_flat))) * self.signs)

    def crossed(self, t: torch.Tensor, y_flat: torch.Tensor) -> bool:
        """Whether the event happened at or before ``(t, y)``. HOST SYNC."""
        with torch.no_grad():
            return bool(self.value(t, y_flat) <= 0)

    def locate(self, state_at: Callable[[float], torch.Tensor], s_lo: float, s_hi: float, clock) -> float:
        """The event inside the step ``[s_lo, s_hi]`` (in the integrator's variable ``s``) by bisection on the dense
        output ``state_at(s)``: positive at ``s_lo``, not at ``s_hi``. Returns the middle of the last bracket, and keeps
        its time in ``time_found``."""
        width = s_hi - s_lo
        iterations = 64 if self.resolution <= 0 else max(0, math.ceil(math.log2(width / self.resolution)))
        with torch.no_grad():
            for _ in range(min(iterations, 64)):
                s_mid = 0.5 * (s_lo + s_hi)
                if not s_lo < s_mid < s_hi:  # the bracket is as narrow as 64-bit floats allow
                    break
                if bool(self.value(clock.time(s_mid).detach(), state_at(s_mid)) > 0):  # HOST SYNC
                    s_lo = s_mid
                else:
                    s_hi = s_mid
        s_event = 0.5 * (s_lo + s_hi)
        self.time_found = clock.sign * s_event
        return s_event

    @staticmethod
    def never_found(t_start: float, t_reached: float, steps: int) -> None:
        raise MaxStepsExceededError(
            f"event_fn did not reach zero: the solve from t={t_start:.17g} took {steps} steps (max_num_steps) and "
            f"reached t={t_reached:.17g} with every entry of event_fn keeping its sign. Check that the event can "
            f"happen in this direction of time (the sign of t[1] - t[0]; reverse_time for odeint_event), or raise "
            f"options['max_num_steps']."
        )
