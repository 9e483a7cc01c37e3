"""``odeint_adjoint``: gradients by solving the adjoint system backwards in time (Chen et al. 2018, section 2).

The forward solve runs without autograd and keeps only the solution at the output times. The backward pass
integrates the augmented state ``[y, a, a_theta]`` from the last output time to the first, where
``a = dL/dy(t)``:

    dy/dt = f(t, y),    da/dt = -a^T df/dy,    da_theta/dt = -a^T df/dtheta,

in one solve that lands on every output time, where it adds that output's incoming gradient to ``a`` and
restarts ``y`` from the saved forward value (Chen et al. 2018, Algorithm 1). The solve carries on across these
jumps with the step size and the controller history it has (only the first stage is evaluated anew, as the state
changed): restarting a solve at every output time, with a fresh initial-step guess each time, costs two extra
evaluations per output time and forgets a step size that was already right. The memory kept for backward is the
solution at the output times and nothing per step: O(1) in the number of steps (Pontryagin et al. 1962).

Time gradients are exact expressions of the ODE, not integrals: for output times after the first,
``dL/dt_i = <dL/dy(t_i), f(t_i, y(t_i))>``; for the first, ``dL/dt_0 = -<a(t_0), f(t_0, y_0)>``.

The gradients are those of the continuous problem, computed to the backward solve's tolerance: they cannot be
differentiated again (``create_graph=True`` raises an error naming the strategies that can).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch

from .callbacks import step_callbacks
from .controllers import resolve_norm
from .errors import refuse_double_backward
from .options import check_options, lookup_method, method_tableau
from .parameters import differentiated_params, wants_gradients
from .problem import Problem, check_tolerance, refuse_zero_tolerances
from .solve import FlatField, integrate, odeint, solve_problem
from .state import StateSpec
from .stats import report_solve


class AugmentedDynamics:
    """The adjoint system as a flat vector field in ``s = sign * t`` (``sign`` is the backward solve's direction)."""

    def __init__(self, func: Callable, spec: StateSpec, params: Sequence[torch.Tensor], sign: float):
        self.func, self.spec, self.params, self.sign = func, spec, tuple(params), sign
        self.n = sum(spec.sizes)
        self.param_sizes = [p.numel() for p in self.params]

    def __call__(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n = self.n
        y, a = state[:n], state[n : 2 * n]
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            f = self.spec.flatten(self.spec.check_derivative(self.func(t, self.spec.unflatten(y)), t))
            if f.requires_grad:
                # -sign * a as grad_outputs gives d(a, a_theta)/ds = -sign * a^T (df/dy, df/dtheta) in one vjp.
                grads = torch.autograd.grad(
                    f, (y, *self.params), grad_outputs=a if self.sign == -1 else -a, allow_unused=True,
                    materialize_grads=True,
                )  # fmt: skip
            else:  # f depends on neither y nor the parameters (f(t) alone, or constant): its vjp is zero
                grads = (torch.zeros_like(y), *(p.new_zeros(p.shape) for p in self.params))
        return torch.cat([f * self.sign if self.sign != 1 else f, *(g.reshape(-1) for g in grads)])

    def grid_arguments(self, state0: torch.Tensor, t: torch.Tensor) -> tuple:
        """What a fixed-step ``grid_constructor`` of the backward solve is called with: this field, its flat state
        and the backward solve's times (as torchdiffeq calls it with its augmented system)."""
        return self, state0, t


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, settings: dict, y0_flat: torch.Tensor, t: torch.Tensor, *params: torch.Tensor):
        problem = settings["problem"]
        result = solve_problem(problem, settings["func"], t, y0_flat, differentiable=False)
        ctx.settings = settings
        if problem.event_fn is None:
            ctx.times = problem.times
            ctx.save_for_backward(result, t, *params)
            return result
        event_time, solution = result
        event_t = torch.tensor(event_time, dtype=t.dtype, device=t.device)
        ctx.mark_non_differentiable(event_t)
        # The backward solve runs from the event back to t[0], as if the event time had been an output time.
        ctx.times = [problem.times[0], event_time]
        ctx.save_for_backward(solution, torch.stack([t[0].detach(), event_t]), *params)
        return event_t, solution

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        refuse_double_backward("odeint_adjoint")
        s = ctx.settings
        problem = s["problem"]
        grad_solution = grads[-1]
        solution, times_t, *params = ctx.saved_tensors
        func, spec, times = s["func"], problem.spec, ctx.times
        n = solution.shape[1]
        last = len(times) - 1
        back_sign = -problem.sign
        dynamics = AugmentedDynamics(func, spec, params, back_sign)

        def at_output(j: int, state: torch.Tensor) -> torch.Tensor:
            """Reaching output time ``i`` (the backward solve's ``j``-th): ``y`` restarts from the forward solution
            there and that output's gradient joins ``a``."""
            i = last - j
            return torch.cat([solution[i], state[n : 2 * n] + grad_solution[i], state[2 * n :]])

        tableau = s["adjoint_tableau"]
        callbacks = step_callbacks(
            func, adjoint=True, fixed_step=not tableau.adaptive, method=tableau.name,
            state_view=_backward_structure(spec, params), sign=back_sign, t=times_t,
        )  # fmt: skip
        start = torch.cat([solution[-1], grad_solution[-1], *(p.new_zeros(p.numel()) for p in params)])
        end = integrate(
            dynamics, start, times_t.detach().flip(0), times[::-1], back_sign, tableau,
            _backward_tolerance(s["adjoint_rtol"], params), _backward_tolerance(s["adjoint_atol"], params),
            s["adjoint_options"], s["adjoint_norm"], differentiable=False, backward=True, state_jump=at_output,
            callbacks=callbacks,
        )[-1]  # fmt: skip
        a = end[n : 2 * n]
        param_grads = [g.view_as(p) for g, p in zip(torch.split(end[2 * n :], dynamics.param_sizes), params)]
        t_grad = None
        if ctx.needs_input_grad[2]:
            t_grad = _time_gradients(FlatField(func, spec, 1.0), times_t, solution, grad_solution, a)
            if problem.event_fn is not None:  # t[1] only gave the direction: the event time is not an input
                t_grad[1:] = 0
        return (None, a + grad_solution[0], t_grad, *param_grads)


def inherited_adjoint_options(options: dict) -> dict:
    """The backward solve's options when ``adjoint_options`` is not given and the method is the same: the forward
    ``options``, less a callable ``norm`` (written for the forward state, not for the backward solve's
    ``(state, adjoint, parameter gradients)``)."""
    return {key: value for key, value in options.items() if not (key == "norm" and callable(value))}


def _backward_tolerance(tolerance, params: Sequence[torch.Tensor]):
    """A per-element tolerance of the forward state, extended to the backward state ``(y, a, parameter
    gradients)``: ``y`` and ``a`` take the state's values, the parameter gradients the smallest of them."""
    if not isinstance(tolerance, torch.Tensor):
        return tolerance
    rest = sum(p.numel() for p in params)
    return torch.cat([tolerance, tolerance, tolerance.min().expand(rest)])


def _time_gradients(field: FlatField, t: torch.Tensor, solution: torch.Tensor, grad_solution: torch.Tensor, a0):
    """``dL/dt``: ``<dL/dy(t_i), f(t_i, y_i)>`` for ``i >= 1``, ``-<a(t_0), f(t_0, y_0)>`` for the first time.

    One evaluation per output time, counted as backward NFE.
    """
    times = t.detach()
    t_grad = torch.zeros_like(times)
    for i in range(len(times)):
        weight = grad_solution[i] if i > 0 else -a0
        t_grad[i] = torch.dot(field(times[i], solution[i]), weight)
    report_solve(len(times), 0, 0, backward=True, solves=0)
    return t_grad


def _backward_structure(spec: StateSpec, params: Sequence[torch.Tensor]) -> Callable[[torch.Tensor], tuple]:
    """How a user's norm callable sees the backward state: a tuple (state parts, adjoint parts, parameter parts)."""
    sizes = [*spec.sizes, *spec.sizes, *(p.numel() for p in params)]
    shapes = [*spec.shapes, *spec.shapes, *(p.shape for p in params)]
    return lambda flat: tuple(part.view(shape) for part, shape in zip(torch.split(flat, sizes), shapes))


def odeint_adjoint(
    func: Callable,
    y0,
    t: torch.Tensor,
    *,
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    method: str | None = "dopri5",
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: Any = None,
    adjoint_atol: Any = None,
    adjoint_method: str | None = None,
    adjoint_options: dict[str, Any] | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
):
    """``odeint`` with gradients from the adjoint method: memory for backward does not grow with the steps.

    Gradients flow to ``y0``, ``t`` and the parameters: ``func.parameters()`` when ``func`` is an ``nn.Module``,
    else ``adjoint_params`` (required then). The backward solve uses ``adjoint_rtol``/``adjoint_atol``/
    ``adjoint_method`` (default: the forward ones) and ``adjoint_options`` (default: ``options`` when the method is
    the same, less a callable ``norm``, which is written for the forward state and not for the backward solve's
    ``(state, adjoint, parameter gradients)``); ``adjoint_options={"norm": "seminorm"}`` leaves the parameter-gradient channels out of its error
    control (Kidger, Chen & Lyons 2021). Backward NFE is counted as ``nfe_backward`` by ``record_stats``. With
    ``event_fn``, returns ``(event_t, solution)`` as ``odeint`` does, the backward solve running from the event
    back to ``t[0]`` (``odeint_event`` adds the gradients through the event time).
    """
    params = differentiated_params(func, adjoint_params, "odeint_adjoint")
    problem = Problem.check(func, y0, t, rtol, atol, method, options, event_fn)
    tensors, spec, tableau, options = problem.tensors, problem.spec, problem.tableau, problem.options
    adjoint_tableau = lookup_method(adjoint_method or method, "adjoint_method")
    if adjoint_options is None:
        adjoint_options = inherited_adjoint_options(options) if adjoint_tableau.name == tableau.name else {}
    adjoint_options = check_options(adjoint_tableau, adjoint_options, "adjoint_options")
    adjoint_tableau = method_tableau(adjoint_tableau, adjoint_options)
    device = tensors[0].device
    adjoint_rtol = problem.rtol if adjoint_rtol is None else check_tolerance("adjoint_rtol", adjoint_rtol, spec, device)
    adjoint_atol = problem.atol if adjoint_atol is None else check_tolerance("adjoint_atol", adjoint_atol, spec, device)
    if adjoint_tableau.adaptive:
        refuse_zero_tolerances(adjoint_rtol, adjoint_atol, "adjoint_")
    if adjoint_params is not None and callable(adjoint_options.get("norm")) and len(params) < len(tuple(adjoint_params)):
        warnings.warn("adjoint_params holds tensors that do not require grad: they are left out of the backward "
                      "solve and of the tuple its adjoint norm receives (as in torchdiffeq).", stacklevel=2)  # fmt: skip

    if problem.trivial:
        return spec.unflatten(spec.flatten(tensors).unsqueeze(0))
    if not wants_gradients(tensors, t, params):
        return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options, event_fn=event_fn)

    adjoint_norm = None
    if adjoint_tableau.adaptive:
        # The backward state's parts: the state's, their adjoints', then one per parameter tensor.
        adjoint_sizes = (*spec.sizes, *spec.sizes, *(p.numel() for p in params))
        adjoint_norm = resolve_norm(
            adjoint_options.get("norm", "rms"), sizes=adjoint_sizes, structured=_backward_structure(spec, params),
            state_parts=2 * len(spec.sizes),
        )  # fmt: skip
    settings = dict(
        func=func, problem=problem, adjoint_tableau=adjoint_tableau, adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol, adjoint_options=adjoint_options, adjoint_norm=adjoint_norm,
    )  # fmt: skip
    result = _AdjointSolve.apply(settings, spec.flatten(tensors), t, *params)
    if event_fn is None:
        return spec.unflatten(result)
    event_t, solution = result
    return event_t, spec.unflatten(solution)
