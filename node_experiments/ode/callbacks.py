"""torchdiffeq's step callbacks: methods of the vector field that the solver calls around every step.

A vector field (usually an ``nn.Module``) may define any of

- ``callback_step(t0, y0, dt)``: before every step attempt,
- ``callback_accept_step(t0, y0, dt)``: after an attempt is accepted,
- ``callback_reject_step(t0, y0, dt)``: after an attempt is rejected,

and the same names with ``_adjoint`` appended, called by ``odeint_adjoint``'s backward solve. ``t0`` is the step's
start (a 0-dim tensor of ``t``'s dtype), ``y0`` the state there, shaped as the solve's state (for the adjoint's
backward solve: the tuple of its parts, as an adjoint ``norm`` callable receives it), and ``dt`` the step's size, a
positive 0-dim tensor (also for decreasing times), as torchdiffeq passes them. Fixed-step methods have no
accepted or rejected attempts: they call ``callback_step`` only and warn about the other two, as torchdiffeq does.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")


@dataclass(frozen=True)
class StepCallbacks:
    """The callbacks of one solve, called by the integrator with its own ``(s, h, flat state)``."""

    on_step: Callable | None
    on_accept: Callable | None
    on_reject: Callable | None
    state_view: Callable[[torch.Tensor], object]  # the flat state as the callbacks see it
    sign: float  # t = sign * s
    dtype: torch.dtype  # t's
    device: torch.device

    def _call(self, callback: Callable | None, s: float, h: float, y: torch.Tensor) -> None:
        if callback is not None:
            t0 = torch.tensor(self.sign * s, dtype=self.dtype, device=self.device)
            callback(t0, self.state_view(y), torch.tensor(h, dtype=self.dtype, device=self.device))

    def step(self, s: float, h: float, y: torch.Tensor) -> None:
        self._call(self.on_step, s, h, y)

    def accept(self, s: float, h: float, y: torch.Tensor) -> None:
        self._call(self.on_accept, s, h, y)

    def reject(self, s: float, h: float, y: torch.Tensor) -> None:
        self._call(self.on_reject, s, h, y)


def step_callbacks(
    func,
    *,
    adjoint: bool,
    fixed_step: bool,
    method: str,
    state_view: Callable[[torch.Tensor], object],
    sign: float,
    t: torch.Tensor,
) -> StepCallbacks | None:
    """The callbacks ``func`` defines for this solve (the ``_adjoint`` ones for the adjoint's backward solve), or
    None when it defines none (the integrator then spends nothing on them)."""
    suffix = "_adjoint" if adjoint else ""
    found = {name: getattr(func, name + suffix, None) for name in NAMES}
    found = {name: callback for name, callback in found.items() if callable(callback)}
    if not found:
        return None
    if fixed_step:
        unsupported = sorted(name + suffix for name in found if name != "callback_step")
        if unsupported:
            warnings.warn(
                f"method {method!r} is fixed-step: it takes no step it could reject, so it calls only "
                f"callback_step{suffix}, not {unsupported} (as torchdiffeq).",
                stacklevel=4,
            )
        found = {name: callback for name, callback in found.items() if name == "callback_step"}
        if not found:
            return None
    return StepCallbacks(
        on_step=found.get("callback_step"),
        on_accept=found.get("callback_accept_step"),
        on_reject=found.get("callback_reject_step"),
        state_view=state_view,
        sign=sign,
        dtype=t.dtype,
        device=t.device,
    )
