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

from typing import Any, Callable, Sequence

import torch

from .controllers import resolve_norm
from .errors import InvalidArgumentError, refuse_double_backward
from .solve import (
    FlatField,
    Problem,
    StateSpec,
    check_options,
    check_tolerance,
    differentiated_params,
    integrate,
    lookup_method,
    odeint,
    wants_gradients,
)
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
            # -sign * a as grad_outputs gives d(a, a_theta)/ds = -sign * a^T (df/dy, df/dtheta) in one vjp.
            grads = torch.autograd.grad(
                f, (y, *self.params), grad_outputs=a if self.sign == -1 else -a, allow_unused=True, materialize_grads=True
            )
        return torch.cat([f * self.sign if self.sign != 1 else f, *(g.reshape(-1) for g in grads)])


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, settings: dict, y0_flat: torch.Tensor, t: torch.Tensor, *params: torch.Tensor):
        s = settings
        solution = integrate(
            FlatField(s["func"], s["spec"], s["sign"]), y0_flat, t, s["times"], s["sign"], s["tableau"],
            s["rtol"], s["atol"], s["options"], s["norm"], differentiable=False,
        )  # fmt: skip
        ctx.settings = settings
        ctx.save_for_backward(solution, t, *params)
        return solution

    @staticmethod
    def backward(ctx, grad_solution: torch.Tensor):
        refuse_double_backward("odeint_adjoint")
        s = ctx.settings
        solution, t, *params = ctx.saved_tensors
        func, spec, times = s["func"], s["spec"], s["times"]
        n = solution.shape[1]
        last = len(times) - 1
        back_sign = -s["sign"]
        dynamics = AugmentedDynamics(func, spec, params, back_sign)

        def at_output(j: int, state: torch.Tensor) -> torch.Tensor:
            """Reaching output time ``i`` (the backward solve's ``j``-th): ``y`` restarts from the forward solution
            there and that output's gradient joins ``a``."""
            i = last - j
            return torch.cat([solution[i], state[n : 2 * n] + grad_solution[i], state[2 * n :]])

        start = torch.cat([solution[-1], grad_solution[-1], *(p.new_zeros(p.numel()) for p in params)])
        end = integrate(
            dynamics, start, t.detach().flip(0), times[::-1], back_sign, s["adjoint_tableau"], s["adjoint_rtol"],
            s["adjoint_atol"], s["adjoint_options"], s["adjoint_norm"], differentiable=False, backward=True,
            state_jump=at_output,
        )[-1]  # fmt: skip
        a = end[n : 2 * n]
        param_grads = [g.view_as(p) for g, p in zip(torch.split(end[2 * n :], dynamics.param_sizes), params)]
        t_grad = None
        if ctx.needs_input_grad[2]:
            t_grad = _time_gradients(FlatField(func, spec, 1.0), t, solution, grad_solution, a)
        return (None, a + grad_solution[0], t_grad, *param_grads)


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
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str = "dopri5",
    options: dict[str, Any] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
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
    control (Kidger, Chen & Lyons 2021). Backward NFE is counted as ``nfe_backward`` by ``record_stats``.
    """
    params = differentiated_params(func, adjoint_params, "odeint_adjoint")
    problem = Problem.check(y0, t, rtol, atol, method, options)
    tensors, spec, tableau, options = problem.tensors, problem.spec, problem.tableau, problem.options
    rtol, atol = problem.rtol, problem.atol
    adjoint_tableau = lookup_method(adjoint_method or method, "adjoint_method")
    if adjoint_options is None:  # the forward options, less a callable norm: it was written for the forward state
        inherited = options if adjoint_tableau is tableau else {}
        adjoint_options = {key: value for key, value in inherited.items() if not (key == "norm" and callable(value))}
    adjoint_options = check_options(adjoint_tableau, adjoint_options, "adjoint_options")
    adjoint_rtol = check_tolerance("adjoint_rtol", rtol if adjoint_rtol is None else adjoint_rtol)
    adjoint_atol = check_tolerance("adjoint_atol", atol if adjoint_atol is None else adjoint_atol)

    if not wants_gradients(tensors, t, params):
        return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)

    adjoint_norm = None
    if adjoint_tableau.adaptive:
        # The backward state's parts: the state's, their adjoints', then one per parameter tensor.
        adjoint_sizes = (*spec.sizes, *spec.sizes, *(p.numel() for p in params))
        adjoint_norm = resolve_norm(
            adjoint_options.get("norm", "rms"), sizes=adjoint_sizes, structured=_backward_structure(spec, params),
            state_parts=2 * len(spec.sizes),
        )  # fmt: skip
    settings = dict(
        func=func, spec=spec, sign=problem.sign, times=problem.times, tableau=tableau, rtol=rtol, atol=atol,
        options=options, norm=problem.norm, adjoint_tableau=adjoint_tableau, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
        adjoint_options=adjoint_options, adjoint_norm=adjoint_norm,
    )  # fmt: skip
    solution = _AdjointSolve.apply(settings, spec.flatten(tensors), t, *params)
    return spec.unflatten(solution)
