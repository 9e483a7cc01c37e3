"""Bounded work when a solve meets NaN or infinity: it stops where they appear instead of spinning on them.

An adaptive solve rejects a step whose error estimate is not finite and retries a shorter one (``NonFiniteWatch``
bounds those retries); a fixed-step solve has no error estimate to notice with, so ``FiniteSteps`` checks its states.
Both raise ``NonFiniteDerivativeError`` (the adaptive one through the integrator, which words the message).
"""

from __future__ import annotations

import math

import torch

from .errors import NonFiniteDerivativeError


class FiniteSteps:
    """Whether the states of a fixed-step solve stay finite, found out without a host sync per step: each step's
    ``isfinite(y_new).all()`` is kept on the device and read ``EVERY`` steps at a time (and at the end), so a solve
    that blows up stops within ``EVERY`` steps of it and names the step where the state first became non-finite."""

    EVERY = 16

    def __init__(self, sign: float):
        self.sign = sign  # t = sign * s
        self.flags: list[torch.Tensor] = []
        self.spans: list[tuple[float, float]] = []

    def add(self, s: float, s_new: float, y_new: torch.Tensor, read: bool = False) -> None:
        self.flags.append(torch.isfinite(y_new.detach()).all())
        self.spans.append((s, s_new))
        if read or len(self.flags) == self.EVERY:
            flags = torch.stack(self.flags).tolist()  # HOST SYNC, once every EVERY steps
            if not all(flags):
                a, b = self.spans[flags.index(False)]
                raise NonFiniteDerivativeError(
                    f"the fixed-step solution became NaN or infinite in the step from t={self.sign * a:.9g} "
                    f"to t={self.sign * b:.9g}. Either the vector field returned a non-finite value there or "
                    f"the step is too large for this problem (fixed-step methods have no error control): use a "
                    f"smaller options['step_size'] or an adaptive method."
                )
            self.flags.clear()
            self.spans.clear()


class NonFiniteWatch:
    """Bounds the retries of an adaptive solve that meets NaN or infinity ahead of it.

    A step attempt whose stages come out non-finite is rejected and retried with a smaller step: that steps around
    an overshoot into a region where the field is undefined (``sqrt`` of a state driven negative by too long a
    step). A solve converging on such a region instead (a field that overflows where the solution goes, ``y * 1e38``
    in float32; a field undefined past some time) would retry forever, each accepted step followed by non-finite
    attempts ever closer to it. So once the solve has met non-finite values, every accepted step that does not get
    past the earliest end of an attempt that met them, followed by another non-finite attempt, is a retry, and
    ``RETRIES`` of them end the solve. The consecutive rejections of a first step guess that was far too long (the
    step shrinks by ``dfactor`` each) are not retries.
    """

    RETRIES = 5

    def __init__(self):
        self.bad = math.inf  # the earliest end of an attempt that met non-finite values, in s
        self.retries = 0
        self.accepted_since = False

    def accepted(self, s_new: float) -> None:
        if s_new >= self.bad:  # got past it
            self.bad, self.retries, self.accepted_since = math.inf, 0, False
        elif self.bad < math.inf:
            self.accepted_since = True

    def rejected(self, s_end: float) -> bool:
        """A non-finite attempt ending at ``s_end``; whether the solve should give up."""
        self.bad = min(self.bad, s_end)
        if self.accepted_since:
            self.retries += 1
            self.accepted_since = False
        return self.retries >= self.RETRIES
