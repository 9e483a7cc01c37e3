"""``odeint``: the vector field seen from the integrator, and the dispatch of a checked problem to the one
Runge-Kutta integrator.

The arguments are checked first (``problem.py``); the integrator (``runge_kutta.py``) then sees a flat 1-D state
integrated over an increasing variable ``s = sign * t``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from .callbacks import StepCallbacks, step_callbacks
from .clock import Clock
from .errors import InvalidArgumentError, NonFiniteDerivativeError
from .events import EventLocator
from .grids import EventGrid, fixed_grid
from .options import adaptive_config, max_num_steps
from .parameters import needs_graph
from .problem import Problem
from .runge_kutta import RungeKutta, StepTrace
from .state import StateSpec
from .stats import report_solve
from .tableaus import ButcherTableau


class FlatField:
    """The user's ``func(t, y)`` seen from the integrator: flat state in, flat derivative of ``s = sign*t`` out.

    The integrator's flat state is in the spec's working dtype; ``func`` receives and returns the state's own.
    """

    def __init__(self, func: Callable, spec: StateSpec, sign: float):
        self.func, self.spec, self.sign = func, spec, sign

    def __call__(self, t: torch.Tensor, y_flat: torch.Tensor) -> torch.Tensor:
        out = self.spec.check_derivative(self.func(t, self.spec.unflatten(y_flat)), t)
        flat = self.spec.flatten(out)
        return flat if self.sign > 0 else -flat

    def grid_arguments(self, y0_flat: torch.Tensor, t: torch.Tensor) -> tuple:
        """What a fixed-step ``grid_constructor`` is called with: ``(func, y0, t)`` as the user passed them."""
        return self.func, self.spec.unflatten(y0_flat), t


def forward_callbacks(problem: Problem, func, t: torch.Tensor) -> StepCallbacks | None:
    """The step callbacks ``func`` defines, for the forward solve of ``problem``."""
    return step_callbacks(
        func, adjoint=False, fixed_step=not problem.tableau.adaptive, method=problem.tableau.name,
        state_view=problem.spec.unflatten, sign=problem.sign, t=t,
    )  # fmt: skip


def event_locator(problem: Problem, t: torch.Tensor, y0_flat: torch.Tensor) -> EventLocator:
    """The watcher of ``problem.event_fn`` from the solve's start; its resolution in time is ``atol``."""
    atol = problem.atol
    resolution = float(atol.min()) if isinstance(atol, torch.Tensor) else atol
    view = problem.spec.unflatten
    return EventLocator(problem.event_fn, t[0].detach(), view(y0_flat.detach()), view, resolution)


def integrate(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0_flat: torch.Tensor,
    t: torch.Tensor,
    times: Sequence[float],
    sign: float,
    tableau: ButcherTableau,
    rtol,
    atol,
    options: dict,
    norm,
    *,
    differentiable: bool,
    backward: bool = False,
    trace: StepTrace | None = None,
    state_jump: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    callbacks: StepCallbacks | None = None,
    event: EventLocator | None = None,
) -> torch.Tensor:
    """Solve the flat problem; returns the ``(len(t), N)`` solution and reports the statistics.

    ``trace`` and ``state_jump`` are the integrator's hooks for the gradient strategies (``runge_kutta.py``).
    With an ``event``, the solve runs from ``times[0]`` in the direction ``sign`` until the event, returns the
    ``(2, N)`` solution ``[y0, y(event)]`` and leaves the event's time in ``event.time_found``.
    """
    s_out = [sign * v for v in times]
    if event is None:
        clock = Clock(t, s_out, sign, differentiable=differentiable and t.requires_grad)
    else:  # the solve visits t[0] only; times after it are t[0] + sign * (s - s0), differentiable in t[0]
        s_out = s_out[:1]
        clock = Clock(torch.stack([t[0], t[0] + sign]), [s_out[0], s_out[0] + 1.0], sign,
                      differentiable=differentiable and t.requires_grad)  # fmt: skip
    solver = RungeKutta(field, tableau, clock, differentiable=differentiable, trace=trace, state_jump=state_jump,
                        callbacks=callbacks, event=event)  # fmt: skip
    try:
        if tableau.adaptive:
            s_last = s_out[-1] if event is None else math.inf
            config = adaptive_config(options, rtol, atol, sign, s_out[0], s_last, norm)
            solution = solver.solve_adaptive(y0_flat, s_out, config)
        else:
            if event is None:
                grid = fixed_grid(options, s_out, sign, lambda: field.grid_arguments(y0_flat, t),
                                  through_outputs=state_jump is not None)  # fmt: skip
            else:
                grid = EventGrid(s_out[0], float(options["step_size"]), max_num_steps(options) + 1)
            solution = solver.solve_fixed(y0_flat, s_out, grid, perturb=options.get("perturb", False))
            check_fixed_step_solution(solution, times)
    finally:
        report_solve(solver.nfe, solver.accepted, solver.rejected, backward=backward)
    return solution


def check_fixed_step_solution(solution: torch.Tensor, times: Sequence[float]) -> None:
    """A fixed-step solve has no error control to notice a blow-up; check its outputs once at the end."""
    finite = torch.isfinite(solution.detach()).all(dim=1)
    if bool(finite.all()):
        return
    first = int((~finite).nonzero()[0])
    raise NonFiniteDerivativeError(
        f"the fixed-step solution became NaN or infinite between t={times[first - 1]:.6g} and t={times[first]:.6g}. "
        f"Either the vector field returned a non-finite value there or the step is too large for this problem "
        f"(fixed-step methods have no error control): use a smaller options['step_size'] or an adaptive method."
    )


def solve_problem(p: Problem, func, t: torch.Tensor, y0_flat: torch.Tensor, *, differentiable: bool, **hooks):
    """Solve a checked problem (``integrate`` with its settings); with an event, returns ``(event_time, solution)``
    where ``event_time`` is a float (64-bit, whatever ``t``'s dtype)."""
    field = FlatField(func, p.spec, p.sign)
    callbacks = forward_callbacks(p, func, t)
    settings = (field, y0_flat, t, p.times, p.sign, p.tableau, p.rtol, p.atol, p.options, p.norm)
    if p.event_fn is None:
        return integrate(*settings, differentiable=differentiable, callbacks=callbacks, **hooks)
    locator = event_locator(p, t, y0_flat)
    if locator.at_start:  # an entry of event_fn is zero at t[0]: the event is there (as in torchdiffeq)
        report_solve(0, 0, 0, backward=False)
        return p.times[0], torch.stack([y0_flat, y0_flat])
    solution = integrate(*settings, differentiable=differentiable, callbacks=callbacks, event=locator, **hooks)
    return locator.time_found, solution


def odeint(
    func: Callable,
    y0,
    t: torch.Tensor,
    *,
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    method: str | None = "dopri5",
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and return the solution at every time of ``t``.

    Gradients flow by ordinary backpropagation through the solver's operations (the paper's "RK-Net"); use
    ``odeint_adjoint`` for memory that does not grow with the number of steps. With ``event_fn`` and
    ``t = [t0, t1]``, the solve runs from ``t0`` in ``t1``'s direction until ``event_fn(t, y)`` reaches zero and
    returns ``(event_t, solution)``, ``solution = [y0, y(event_t)]``; ``odeint_event`` adds gradients through the
    event time. See the package docstring for the arguments, methods and options.
    """
    p = Problem.check(func, y0, t, rtol, atol, method, options, event_fn)
    if p.trivial:
        return p.spec.unflatten(p.spec.flatten(p.tensors).unsqueeze(0))
    result = solve_problem(p, func, t, p.spec.flatten(p.tensors), differentiable=needs_graph(func, p.tensors, t))
    if p.event_fn is None:
        return p.spec.unflatten(result)
    event_time, solution = result
    return torch.tensor(event_time, dtype=t.dtype, device=t.device), p.spec.unflatten(solution)


def odeint_dense(func: Callable, y0, t0, t1, **kwargs):
    """torchdiffeq's ``odeint_dense`` (an interpolant of the whole solve) is not supported: this raises saying so."""
    raise InvalidArgumentError(
        "odeint_dense (torchdiffeq's interpolant of a dopri5 solve over [t0, t1]) is not supported. Pass every time "
        "you need in t to odeint instead: output times are read off the steps' dense output and cost no extra "
        "evaluations, and the result is differentiable."
    )
