"""``odeint_event``: solve until an event, with gradients through the event's time (torchdiffeq's signature).

The event time ``t*`` is defined implicitly by ``g(t*, y(t*)) = 0`` (``g`` the event function, its entries
combined as in ``events.py``). Differentiating that identity with respect to anything ``theta`` the solution or
``g`` depends on (the implicit function theorem; Chen, Amos & Nickel, "Learning Neural Event Functions for Ordinary
Differential Equations", ICLR 2021) gives

    dt*/dtheta = -(dg/dy . dy/dtheta + dg/dtheta) / (dg/dt + dg/dy . f(t*, y*)),

and the state returned, ``y(t*)``, moves with the event time as ``dy*/dtheta = dy/dtheta + f(t*, y*) dt*/dtheta``
(``dy/dtheta`` is the solve's derivative at the event time held fixed, which every gradient strategy computes).
Both are built here from autograd operations whose values are zero and whose derivatives are these: the event
time and state keep the solve's values exactly, and any gradient strategy (``odeint_interface``) carries them.
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import SolverError
from .solve import odeint
from .stats import report_solve


def odeint_event(
    func: Callable,
    y0,
    t0,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs,
):
    """Solve ``dy/dt = func(t, y)`` from ``y(t0) = y0`` until ``event_fn(t, y)`` reaches zero.

    Returns ``(event_t, solution)``: the event's time and ``solution = [y0, y(event_t)]``, both differentiable with
    respect to ``y0``, ``t0``, the parameters of ``func`` and the tensors ``event_fn`` uses. ``reverse_time``
    integrates towards decreasing ``t``. ``odeint_interface`` is the solve (``odeint``, ``odeint_adjoint`` or
    ``odeint_checkpoint``: the gradient strategy); ``kwargs`` go to it (``rtol``, ``atol``, ``method``,
    ``options``, ...). The event is located to a time resolution of ``atol``.
    """
    if not isinstance(t0, torch.Tensor):
        first = y0[0] if isinstance(y0, (tuple, list)) else y0
        t0 = torch.tensor(float(t0), dtype=first.dtype, device=first.device)
    direction = -1.0 if reverse_time else 1.0
    t = torch.cat([t0.reshape(-1), t0.reshape(-1).detach() + direction])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    if not torch.is_grad_enabled():
        return event_t, solution
    return _through_event_time(func, event_fn, t[0].detach(), y0, event_t, solution)


def _through_event_time(func: Callable, event_fn: Callable, t0: torch.Tensor, y0, event_t: torch.Tensor, solution):
    """The event time and the solution with the implicit-function gradients of the module docstring added."""
    is_tuple = isinstance(solution, tuple)
    state = tuple(part[-1] for part in solution) if is_tuple else (solution[-1],)

    def view(parts):
        return tuple(parts) if is_tuple else parts[0]

    with torch.no_grad():
        y0_parts = tuple(y.detach() for y in y0) if is_tuple else (y0.detach(),)
        signs = torch.sign(torch.as_tensor(event_fn(t0, view(y0_parts))))

    def combined(t: torch.Tensor, parts) -> torch.Tensor:  # the smallest entry, each made positive at the start
        return torch.min(torch.as_tensor(event_fn(t, view(parts))) * signs)

    t_star = event_t.detach()
    fixed = tuple(part.detach() for part in state)
    with torch.no_grad():
        f = func(t_star, view(fixed))
    f = tuple(f) if is_tuple else (f,)
    report_solve(1, 0, 0, backward=False, solves=0)
    with torch.enable_grad():
        t_leaf = t_star.clone().requires_grad_(True)
        leaves = tuple(part.clone().requires_grad_(True) for part in fixed)
        g = combined(t_leaf, leaves)
        dg = torch.autograd.grad(g, (t_leaf, *leaves), allow_unused=True, materialize_grads=True)
    slope = dg[0].to(g.dtype) + sum((d * fi).sum() for d, fi in zip(dg[1:], f))  # dg/dt along the solution
    g_graph = combined(t_star, state)  # differentiable through the state at the fixed event time, and event_fn
    if not g_graph.requires_grad:
        return event_t, solution
    if float(slope) == 0.0:
        raise SolverError(
            f"the event function meets zero tangentially at t={float(t_star):.17g} (its rate of change along the "
            f"solution is 0 there), so the event time has no derivative. Use an event function that crosses zero."
        )
    shift = -(g_graph - g_graph.detach()) / slope  # value 0; derivative: that of the event time
    event_t = t_star + shift.to(t_star.dtype)
    moved = tuple(part + fi * shift.to(part.dtype) for part, fi in zip(state, f))
    parts = solution if is_tuple else (solution,)
    solution = tuple(torch.cat([whole[:-1], end.unsqueeze(0)]) for whole, end in zip(parts, moved))
    return event_t, view(solution)
