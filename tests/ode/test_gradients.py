"""Gradients: ``torch.autograd.gradcheck`` through ``odeint``, and ``odeint_adjoint`` against direct backprop.

- gradcheck (float64) differentiates the *numerical* map ``(y0, params, t) -> solution`` by finite differences
  and compares with autograd through the solver. Fixed-step rk4 has no step decisions, so its map is smooth in
  every input. For an adaptive method the step sizes depend on ``y0`` and the parameters (through the error
  norm) but are not differentiated; their effect on the solution is of the order of the local error, so at
  rtol = 1e-6 it stays far inside gradcheck's tolerances, and no accept/reject decision sits close enough to its
  threshold to flip under the 1e-6 perturbations (checked: the test would fail with a jump otherwise).
- The adjoint solves a different problem (the continuous adjoint ODE) than backprop through the discrete solver;
  both converge to the exact gradient as the tolerance tightens. At rtol = atol = 1e-10 (dopri5) or 1e-11
  (dopri8) they agree to 1e-6 relative (norm of the difference over the norm of the direct gradient, per input),
  for ``y0``, ``t`` and the parameters, for tensor and tuple states, forward and reversed time.
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import DampedOscillator, MLPField, gradients_of, rel_error

from node_experiments.ode import SolverError, odeint, odeint_adjoint, odeint_checkpoint, record_stats

GRAD_RTOL = 1e-6  # adjoint vs direct, relative


# ----------------------------------------------------------------------------------------------------- gradcheck
_A0 = torch.tensor([[-0.2, 1.0], [-1.0, -0.3]], dtype=torch.float64)


def _nonautonomous_linear(A):
    return lambda t, y: y @ A.T + torch.sin(3 * t) * torch.tanh(y)


def test_gradcheck_fixed_step_y0_and_params():
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)

    def solve(y0, A):
        return odeint(_nonautonomous_linear(A), y0, t, method="rk4", options={"step_size": 0.1})

    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=torch.float64, requires_grad=True)
    A = _A0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(solve, (y0, A))


def test_gradcheck_fixed_grid_wrt_t():
    """Stepping on the output times, the solution depends smoothly on them: gradcheck w.r.t. ``t`` (and ``y0``).

    Direct backprop differentiates the output times as positions on the numerical solution, while the grid's
    step sizes enter as plain numbers; the finite differences see the grid move too. The two differ by the
    O(h**4) dependence of rk4's solution on its grid, so a fine grid (h = 0.02) is used.
    """
    A = _A0.clone()

    def solve(y0, t):
        return odeint(_nonautonomous_linear(A), y0, t, method="rk4")

    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 0.2, 11, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(solve, (y0, t), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_gradcheck_adaptive_y0_and_params(method):
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)

    def solve(y0, A):
        return odeint(_nonautonomous_linear(A), y0, t, rtol=1e-6, atol=1e-6, method=method)

    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    A = _A0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(solve, (y0, A))


def test_gradcheck_tuple_state():
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)

    def solve(x0, v0, k):
        x, v = odeint(lambda t, s: (s[1], -k * s[0] - 0.1 * s[1]), (x0, v0), t, method="rk4",
                      options={"step_size": 0.1})  # fmt: skip
        return x, v

    x0 = torch.tensor([1.0, 0.2], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([0.0, -0.4], dtype=torch.float64, requires_grad=True)
    k = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (x0, v0, k))


# ------------------------------------------------------------------------------------------ adjoint vs direct
def _assert_agree(direct, adjoint, names):
    for name, g_direct, g_adjoint in zip(names, direct, adjoint):
        err = rel_error(g_adjoint, g_direct)
        assert err <= GRAD_RTOL, f"gradient for {name}: adjoint vs direct differ by {err:.3g} (relative)"


def _mlp_problem(reverse=False):
    func = MLPField(dim=2, hidden=16, seed=1)
    gen = torch.Generator().manual_seed(2)
    y0 = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    if reverse:
        t = t.flip(0)
    t.requires_grad_(True)
    weights = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)
    return func, y0, t, weights


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("method, tol", [("dopri5", 1e-10), ("dopri8", 1e-11)])
def test_adjoint_matches_direct_backprop(method, tol, reverse):
    func, y0, t, weights = _mlp_problem(reverse)
    params = tuple(func.parameters())
    kwargs = dict(rtol=tol, atol=tol, method=method)
    direct = gradients_of(odeint, func, y0, t, weights, params, **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, y0, t, weights, params, **kwargs)
    names = ["y0", "t"] + [name for name, _ in func.named_parameters()]
    _assert_agree(direct, adjoint, names)


def test_adjoint_loss_on_some_outputs_only():
    """Outputs that the loss ignores get zero incoming gradient; the adjoint still integrates across them."""
    func, y0, t, weights = _mlp_problem()
    weights = weights.clone()
    weights[1] = 0.0
    weights[-1] = 0.0
    params = tuple(func.parameters())
    kwargs = dict(rtol=1e-10, atol=1e-10)
    direct = gradients_of(odeint, func, y0, t, weights, params, **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, y0, t, weights, params, **kwargs)
    _assert_agree(direct, adjoint, ["y0", "t"] + [n for n, _ in func.named_parameters()])


def test_adjoint_matches_direct_backprop_tuple_state():
    func = DampedOscillator()
    x0 = torch.tensor([[1.0, 0.0], [0.2, -0.5]], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([[0.0, 0.5], [1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    weights = (torch.randn(3, 2, 2, generator=gen, dtype=torch.float64),
               torch.randn(3, 2, 2, generator=gen, dtype=torch.float64))  # fmt: skip
    params = tuple(func.parameters())
    kwargs = dict(rtol=1e-10, atol=1e-10)
    direct = gradients_of(odeint, func, (x0, v0), t, weights, params, **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, (x0, v0), t, weights, params, **kwargs)
    _assert_agree(direct, adjoint, ["x0", "v0", "t", "k", "c", "W"])


def test_adjoint_with_explicit_adjoint_params_for_a_plain_function():
    """A closure is not an nn.Module: ``adjoint_params`` names the tensors to differentiate."""
    A = _A0.clone().requires_grad_(True)
    func = _nonautonomous_linear(A)
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    kwargs = dict(rtol=1e-10, atol=1e-10)
    direct = gradients_of(odeint, func, y0, t, weights, (A,), **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, y0, t, weights, (A,), adjoint_params=(A,), **kwargs)
    _assert_agree(direct, adjoint, ["y0", "t", "A"])


def test_adjoint_with_different_adjoint_method_and_tolerances():
    func, y0, t, weights = _mlp_problem()
    params = tuple(func.parameters())
    direct = gradients_of(odeint, func, y0, t, weights, params, rtol=1e-10, atol=1e-10)
    adjoint = gradients_of(
        odeint_adjoint, func, y0, t, weights, params, rtol=1e-10, atol=1e-10,
        adjoint_method="dopri8", adjoint_rtol=1e-11, adjoint_atol=1e-11,
    )  # fmt: skip
    _assert_agree(direct, adjoint, ["y0", "t"] + [n for n, _ in func.named_parameters()])


def test_adjoint_forward_values_equal_odeint():
    func, y0, t, _ = _mlp_problem()
    with torch.no_grad():
        expected = odeint(func, y0, t, rtol=1e-8, atol=1e-8)
    got = odeint_adjoint(func, y0, t, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(got.detach(), expected, rtol=1e-13, atol=1e-13)


def test_adjoint_fixed_step_method():
    """rk4 forward and backward with a small step: the adjoint's gradient converges like h**4 to backprop's."""
    func, y0, t, weights = _mlp_problem()
    params = tuple(func.parameters())
    kwargs = dict(method="rk4", options={"step_size": 0.005})
    direct = gradients_of(odeint, func, y0, t, weights, params, **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, y0, t, weights, params, **kwargs)
    for g_direct, g_adjoint in zip(direct, adjoint):
        assert rel_error(g_adjoint, g_direct) <= 1e-6


def _saved_bytes(solver, rtol) -> int:
    """Bytes autograd keeps for backward (counted with saved_tensors_hooks) for one solve."""
    func, y0, t, _ = _mlp_problem()
    total = 0

    def pack(x):
        nonlocal total
        total += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        solver(func, y0, t.detach(), rtol=rtol, atol=rtol)
    return total


def test_adjoint_memory_does_not_grow_with_steps():
    """The adjoint saves the same bytes at rtol 1e-3 and 1e-8; direct backprop saves more with more steps."""
    adjoint = [_saved_bytes(odeint_adjoint, tol) for tol in (1e-3, 1e-8)]
    direct = [_saved_bytes(odeint, tol) for tol in (1e-3, 1e-8)]
    assert adjoint[0] == adjoint[1], adjoint
    assert direct[1] > 2 * direct[0], direct


# --------------------------------------------------------------------------------- the adjoint's backward solve
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_adjoint_backward_solve_carries_on_across_output_times(reverse):
    """One backward solve across 40 output times, closer together than the steps want to be: it lands on each
    (to add that output's gradient) and carries its step size on, so each interval costs one step of dopri5 (six
    new stages, plus the first stage anew after the jump), not a new solve with an initial-step guess (eight)."""
    func = MLPField(dim=2, hidden=16, seed=1)
    gen = torch.Generator().manual_seed(2)
    y0 = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    t = torch.linspace(0.0, 0.8, 41, dtype=torch.float64)
    t = t.flip(0) if reverse else t
    weights = torch.randn(41, 3, 2, generator=gen, dtype=torch.float64)
    with record_stats() as stats:
        (odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6) * weights).sum().backward()
    assert stats.backward_solves == 1
    assert stats.backward_accepted_steps == 40, "one step per output interval"
    assert stats.nfe_backward <= 7 * 40 + 2, stats


@pytest.mark.parametrize("method, tol", [("dopri5", 1e-10), ("rk4", None)])
def test_adjoint_matches_direct_backprop_at_many_output_times(method, tol):
    """Thirty output times, each with its own incoming gradient; rk4 steps on a grid that restarts at every output."""
    func = MLPField(dim=2, hidden=16, seed=1)
    gen = torch.Generator().manual_seed(2)
    y0 = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    t = (torch.linspace(0.0, 1.0, 30, dtype=torch.float64) ** 1.5).requires_grad_(True)
    weights = torch.randn(30, 3, 2, generator=gen, dtype=torch.float64)
    kwargs = dict(rtol=tol, atol=tol) if tol else dict(method=method, options={"step_size": 0.005})
    params = tuple(func.parameters())
    direct = gradients_of(odeint, func, y0, t, weights, params, **kwargs)
    adjoint = gradients_of(odeint_adjoint, func, y0, t, weights, params, **kwargs)
    _assert_agree(direct, adjoint, ["y0", "t"] + [n for n, _ in func.named_parameters()])


def test_adjoint_with_a_callable_forward_norm():
    """A norm written for the forward state is not handed to the backward solve, whose state is a (state, adjoint,
    parameter gradients) tuple; the backward solve uses its default norm."""
    func, y0, t, weights = _mlp_problem()
    calls = 0

    def max_norm(scaled_error: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return scaled_error.abs().max()

    params = tuple(func.parameters())
    kwargs = dict(rtol=1e-10, atol=1e-10)
    direct = gradients_of(odeint, func, y0, t, weights, params, options={"norm": max_norm}, **kwargs)
    ys = odeint_adjoint(func, y0, t, options={"norm": max_norm}, **kwargs)
    forward_calls = calls
    adjoint = torch.autograd.grad((ys * weights).sum(), (y0, t, *params))
    assert calls == forward_calls > 0, "the forward norm is not called by the backward solve"
    _assert_agree(direct, adjoint, ["y0", "t"] + [n for n, _ in func.named_parameters()])


STATE_FREE_FIELDS = {
    "f(t) only": lambda w: lambda t, y: -0.1 * torch.exp(-0.1 * t) * torch.ones_like(y),
    "zeros": lambda w: lambda t, y: torch.zeros_like(y),
    "parameters only": lambda w: lambda t, y: w * torch.cos(t) * torch.ones_like(y),
}


@pytest.mark.parametrize("field", list(STATE_FREE_FIELDS))
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_adjoint_of_a_field_independent_of_the_state(field, method):
    """A field that depends on neither the state nor the parameters (or on the parameters only): its vector-Jacobian
    products are zero. The adjoint used to crash ("element 0 of tensors does not require grad"); it now gives
    odeint_checkpoint's gradients (backprop's), for y0, t and the parameters: y0's exactly, the others to the
    solution's accuracy (the adjoint's are the ODE's, the checkpointed ones the numerical solution's: measured
    differences 2e-8 for dopri5 at 1e-10, 2e-6 for rk4 with step 0.05)."""
    options = {"step_size": 0.05} if method == "rk4" else None
    grads = {}
    for solver in (odeint_adjoint, odeint_checkpoint):
        w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        y0 = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
        t = torch.linspace(0.0, 2.0, 4, dtype=torch.float64, requires_grad=True)
        ys = solver(STATE_FREE_FIELDS[field](w), y0, t, method=method, options=options, rtol=1e-10, atol=1e-10,
                    adjoint_params=(w,))  # fmt: skip
        (ys * torch.arange(1.0, 5.0, dtype=torch.float64)[:, None]).sum().backward()
        grads[solver] = [y0.grad, t.grad, w.grad if w.grad is not None else torch.zeros_like(w)]
    torch.testing.assert_close(grads[odeint_adjoint][0], grads[odeint_checkpoint][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[odeint_adjoint][0], torch.full((2,), 10.0, dtype=torch.float64))  # dy(t)/dy0 = 1
    for adjoint, checkpoint in zip(grads[odeint_adjoint][1:], grads[odeint_checkpoint][1:]):
        torch.testing.assert_close(adjoint, checkpoint, rtol=1e-5, atol=1e-8)


def test_adjoint_refuses_a_double_backward():
    func, y0, t, weights = _mlp_problem()
    ys = odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6)
    with pytest.raises(SolverError, match="create_graph=True") as info:
        torch.autograd.grad((ys * weights).sum(), y0, create_graph=True)
    assert "odeint_adjoint" in str(info.value) and "'backprop'" in str(info.value)
