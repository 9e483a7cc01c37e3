"""``odeint_checkpoint``: the gradients of the computed solution, by recomputing one step at a time.

"Discretise-then-optimise" with checkpoints at every accepted step (the ACA method of Zhuang et al., ICML 2020;
diffrax's ``RecursiveCheckpointAdjoint`` keeps checkpoints the same way, Kidger 2021): the forward solve runs
without autograd and keeps, for each accepted step, its start state and how it was taken (time, step size, the
flags that decide its stages and its outputs). The backward pass walks the steps from the last to the first; it
recomputes each one under autograd from its saved start (its first stage, its stages, the dense output at the
output times inside it) and backpropagates through that one step's graph the gradient arriving at the step's
end and the gradients of its outputs, which gives the gradient at the step's start. The step's graph is then
freed.

What it computes is exactly what backpropagating through the solver (``odeint``) computes, the derivative of the
numerical solution, to rounding: the same steps, the same arithmetic, including the time gradients through the
dense output's positions. What it keeps is one state per accepted step plus, during the backward pass, one
step's graph; what it costs is about one recomputation per forward evaluation (rejected steps are not
recomputed; the first stage of each step is evaluated anew), whatever the number of output times, where the
adjoint's backward solve must stop at every one of them.

Backward NFE (the recomputation) are counted as ``nfe_backward`` and the recomputed steps as
``backward_accepted_steps`` by ``record_stats``. The gradients cannot be differentiated again.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch

from .clock import Clock
from .errors import InvalidArgumentError, refuse_double_backward
from .parameters import differentiated_params, wants_gradients
from .problem import Problem
from .runge_kutta import RungeKutta, StepTrace
from .solve import FlatField, odeint, solve_problem
from .stats import report_solve


class _CheckpointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, func: Callable, y0_flat: torch.Tensor, t: torch.Tensor, *params: torch.Tensor):
        p = problem
        trace = StepTrace()
        # The graph storage's arithmetic, not recorded (autograd is off in a Function's forward): the recomputation
        # then repeats the forward's operations exactly, and both are odeint's (the buffered storage rounds
        # differently, which dopri8's large coefficients amplify to ~1e-12).
        result = solve_problem(p, func, t, y0_flat, differentiable=True, trace=trace)
        ctx.problem, ctx.func, ctx.steps = problem, func, trace.steps
        ctx.save_for_backward(t, *params, *trace.states)
        if p.event_fn is None:
            ctx.s_out = [p.sign * v for v in p.times]
            return result
        event_time, solution = result
        ctx.s_out = [p.sign * p.times[0], p.sign * event_time]  # the event's state is the last step's dense output
        event_t = torch.tensor(event_time, dtype=t.dtype, device=t.device)
        ctx.mark_non_differentiable(event_t)
        return event_t, solution

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        refuse_double_backward("odeint_checkpoint")
        grad_solution = grads[-1]
        p, steps, s_out = ctx.problem, ctx.steps, ctx.s_out
        t, *rest = ctx.saved_tensors
        params, states = rest[: len(rest) - len(steps)], rest[len(rest) - len(steps) :]
        want_t = ctx.needs_input_grad[3]
        field = FlatField(ctx.func, p.spec, p.sign)
        a = torch.zeros_like(grad_solution[0])  # dL/dy at the end of the step being recomputed
        t_grad = torch.zeros_like(t) if want_t else None
        param_grads = [torch.zeros_like(q) for q in params]
        nfe = 0
        with torch.enable_grad():
            for step, state in zip(reversed(steps), reversed(states)):
                y = state.detach().requires_grad_(True)
                t_leaf = t.detach().requires_grad_(want_t)
                solver = RungeKutta(field, p.tableau, Clock(t_leaf, s_out, p.sign, differentiable=want_t),
                                    differentiable=True)  # fmt: skip
                y_new, outputs = solver.replay(step, y, s_out)
                nfe += solver.nfe
                results, weights = [y_new], [a]
                if outputs is not None:
                    first = step.first_output
                    results.append(outputs)
                    weights.append(grad_solution[first : first + len(outputs)])
                inputs = (y, t_leaf, *params) if want_t else (y, *params)
                grads = torch.autograd.grad(results, inputs, weights, allow_unused=True, materialize_grads=True)
                a = grads[0]
                if want_t:
                    t_grad += grads[1]
                for total, g in zip(param_grads, grads[len(inputs) - len(params) :]):
                    total += g
        report_solve(nfe, len(steps), 0, backward=True)
        return (None, None, a + grad_solution[0], t_grad, *param_grads)


def odeint_checkpoint(
    func: Callable,
    y0,
    t: torch.Tensor,
    *,
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    method: str | None = "dopri5",
    options: dict[str, Any] | None = None,
    event_fn: Callable | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
):
    """``odeint`` with checkpointed gradients: backprop's gradients, for one state per step of memory.

    Same arguments and solution as ``odeint``; gradients flow to ``y0``, ``t`` and the parameters:
    ``func.parameters()`` when ``func`` is an ``nn.Module``, else ``adjoint_params`` (required then), as for
    ``odeint_adjoint``. See the module docstring for what is kept and recomputed. The vector field must be
    deterministic (the backward pass calls it again at the same points; draw random numbers outside it). With
    ``event_fn``, returns ``(event_t, solution)`` as ``odeint`` does; ``t`` is then not differentiated (its first
    entry's gradient is one through ``odeint`` or ``odeint_adjoint``).
    """
    params = differentiated_params(func, adjoint_params, "odeint_checkpoint")
    problem = Problem.check(func, y0, t, rtol, atol, method, options, event_fn)
    if problem.trivial:
        return problem.spec.unflatten(problem.spec.flatten(problem.tensors).unsqueeze(0))
    if not wants_gradients(problem.tensors, t, params):
        return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options, event_fn=event_fn)
    if event_fn is not None and t.requires_grad and torch.is_grad_enabled():
        raise InvalidArgumentError(
            "odeint_checkpoint with event_fn does not differentiate t (the event solve's steps are recomputed at "
            "their recorded times). Pass t.detach(), or use odeint or odeint_adjoint, which give t[0] its gradient."
        )
    settings = dataclasses.replace(problem, tensors=[])  # what the backward pass needs, without the inputs
    result = _CheckpointSolve.apply(settings, func, problem.spec.flatten(problem.tensors), t, *params)
    if event_fn is None:
        return problem.spec.unflatten(result)
    event_t, solution = result
    return event_t, problem.spec.unflatten(solution)
