"""The clock of a solve: the integrator steps in a 64-bit float ``s``, the vector field receives times as tensors.

``Clock`` maps ``s`` to the time tensor ``t = sign * s`` passed to the vector field, in ``t``'s dtype on ``t``'s
device, and places stages next to a discontinuity at the resolution of that dtype. With ``t`` requiring grad, the
times (and the step sizes and dense-output fractions built from them) carry the gradient with respect to the output
times, so that backpropagating through a solve (``odeint``, ``odeint_checkpoint``) differentiates with respect to
``t`` as well.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


class Clock:
    """Maps the integration variable ``s`` (a float) to the time passed to the vector field, ``t = sign * s``.

    Without time gradients the time is a fresh 0-dim tensor (``torch.full`` is a fill kernel on CUDA, not a
    host-to-device copy). With ``t_out`` requiring grad, times are affine in the output times' first and last
    entries, ``t = t_first + sign * (s - s_first) * scale`` with ``scale = 1`` in value but carrying the gradient,
    so direct backprop differentiates the numerical solution with respect to ``t`` as well.
    """

    def __init__(self, t_out: torch.Tensor, s_out: Sequence[float], sign: float, *, differentiable: bool):
        self.sign = sign
        self.dtype, self.device = t_out.dtype, t_out.device
        self.s_first = s_out[0]
        self.differentiable = differentiable
        if self.differentiable:
            self.t_out = t_out
            self.t_first = t_out[0]
            self.scale = (t_out[-1] - t_out[0]) / (sign * (s_out[-1] - s_out[0]))
        else:
            self.s_out = torch.as_tensor(s_out, dtype=t_out.dtype, device=t_out.device)

    def time(self, s: float) -> torch.Tensor:
        if self.differentiable:
            return self.t_first + (self.sign * (s - self.s_first)) * self.scale
        return torch.full((), self.sign * s, dtype=self.dtype, device=self.device)

    def nudge(self, s: float, direction: float) -> float:
        """The value of ``s`` next to ``s`` on the side ``direction`` (+1: right, -1: left), at the resolution of the
        times the vector field receives (``t``'s dtype): where a stage must be evaluated just left or right of a
        discontinuity. A float64 nudge would vanish when the time is rounded to a float32 ``t``."""
        if self.dtype == torch.float64:
            return math.nextafter(s, direction * math.inf)
        toward = torch.tensor(self.sign * direction * math.inf, dtype=self.dtype)
        return self.sign * torch.nextafter(torch.tensor(self.sign * s, dtype=self.dtype), toward).item()

    def span(self, h: float):
        """The step size as it enters the solution: a float, or a tensor carrying ``t``'s gradient."""
        return h * self.scale if self.differentiable else h

    def theta_at(self, s_query: float, s: float, h: float, device: torch.device) -> torch.Tensor:
        """The fraction of the step ``[s, s + h]`` at which ``s_query`` lies, as a 1-element tensor. With time
        gradients, the time ``sign * s_query`` is held fixed while the step moves with ``t``, as an output time
        that does not require grad is (64-bit, so the value is the float's)."""
        if not self.differentiable:
            return torch.full((1,), (s_query - s) / h, dtype=torch.float64, device=device)
        fixed = torch.full((1,), self.sign * s_query, dtype=torch.float64, device=device)
        return self.sign * (fixed - self.time(s)) / self.span(h)

    def thetas(self, j0: int, j1: int, s: float, h: float) -> torch.Tensor:
        """Fractions ``(s_out[j] - s) / h`` of the step ``[s, s + h]`` at which outputs ``j0..j1-1`` lie."""
        if self.differentiable:
            return self.sign * (self.t_out[j0:j1] - self.time(s)) / self.span(h)
        return (self.s_out[j0:j1] - s) / h
