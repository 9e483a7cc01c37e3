"""``odeint_adjoint``: gradients by solving the adjoint system backwards in time (Chen et al. 2018, section 2).

The forward solve runs without autograd and keeps only the solution at the output times. The backward pass
integrates the augmented state ``[y, a, a_theta]`` from the last output time to the first, where
``a = dL/dy(t)``:

    dy/dt = f(t, y),    da/dt = -a^T df/dy,    da_theta/dt = -a^T df/dtheta,

adding each output's incoming gradient to ``a`` as it passes that output time and restarting ``y`` there from
the saved forward value. The memory kept for backward is the solution at the output times and nothing per step:
O(1) in the number of steps (Pontryagin et al. 1962; Chen et al. 2018, Algorithm 1).

Time gradients are exact expressions of the ODE, not integrals: for output times after the first,
``dL/dt_i = <dL/dy(t_i), f(t_i, y(t_i))>``; for the first, ``dL/dt_0 = -<a(t_0), f(t_0, y_0)>``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from .controllers import resolve_norm
from .errors import InvalidArgumentError
from .solve import FlatField, Problem, StateSpec, check_options, check_tolerance, integrate, lookup_method, odeint
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
        s = ctx.settings
        solution, t, *params = ctx.saved_tensors
        func, spec, times = s["func"], s["spec"], s["times"]
        n = solution.shape[1]
        back_sign = -s["sign"]
        dynamics = AugmentedDynamics(func, spec, params, back_sign)
        field = FlatField(func, spec, 1.0)
        want_t = ctx.needs_input_grad[2]
        t_grad = torch.zeros_like(t) if want_t else None
        extra_nfe = 0

        def f_dot(i: int, a: torch.Tensor) -> torch.Tensor:
            nonlocal extra_nfe
            extra_nfe += 1
            return torch.dot(field(t[i].detach(), solution[i]), a)

        a = grad_solution[-1]
        a_params = [torch.zeros_like(p).reshape(-1) for p in params]
        for i in range(len(times) - 1, 0, -1):
            if want_t:
                t_grad[i] = f_dot(i, grad_solution[i])
            state = torch.cat([solution[i], a, *a_params])
            end = integrate(
                dynamics, state, t[i - 1 : i + 1].flip(0).detach(), [times[i], times[i - 1]], back_sign,
                s["adjoint_tableau"], s["adjoint_rtol"], s["adjoint_atol"], s["adjoint_options"],
                s["adjoint_norm"], differentiable=False, backward=True,
            )[-1]  # fmt: skip
            a = end[n : 2 * n]
            a_params = list(torch.split(end[2 * n :], dynamics.param_sizes))
            if want_t and i == 1:
                t_grad[0] = -f_dot(0, a)
            a = a + grad_solution[i - 1]
        report_solve(extra_nfe, 0, 0, backward=True, solves=0)
        param_grads = [g.view_as(p) for g, p in zip(a_params, params)]
        return (None, a, t_grad, *param_grads)


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
    the same); ``adjoint_options={"norm": "seminorm"}`` leaves the parameter-gradient channels out of its error
    control (Kidger, Chen & Lyons 2021). Backward NFE is counted as ``nfe_backward`` by ``record_stats``.
    """
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise InvalidArgumentError(
                f"func is a {type(func).__name__}, not an nn.Module, so odeint_adjoint cannot find its parameters. "
                f"Pass adjoint_params=(tensors to differentiate), or make func an nn.Module."
            )
        adjoint_params = tuple(func.parameters())
    params = tuple(p for p in adjoint_params if p.requires_grad)
    problem = Problem.check(y0, t, rtol, atol, method, options)
    tensors, spec, tableau, options = problem.tensors, problem.spec, problem.tableau, problem.options
    rtol, atol = problem.rtol, problem.atol
    adjoint_tableau = lookup_method(adjoint_method or method, "adjoint_method")
    if adjoint_options is None:
        adjoint_options = options if adjoint_tableau is tableau else {}
    adjoint_options = check_options(adjoint_tableau, adjoint_options, "adjoint_options")
    adjoint_rtol = check_tolerance("adjoint_rtol", rtol if adjoint_rtol is None else adjoint_rtol)
    adjoint_atol = check_tolerance("adjoint_atol", atol if adjoint_atol is None else adjoint_atol)

    grad_wanted = torch.is_grad_enabled() and (
        t.requires_grad or any(y.requires_grad for y in tensors) or len(params) > 0
    )
    if not grad_wanted:
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
