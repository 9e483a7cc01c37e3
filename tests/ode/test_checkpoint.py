"""Checkpointed gradients (``odeint_checkpoint``): backprop's gradients, one state kept per step.

The checkpointed backward pass recomputes every accepted step from its saved start with the same arithmetic as
``odeint`` records, so its gradients equal direct backprop's to rounding: 1e-9 relative in float64 (measured:
1e-15), for every method, adaptive and fixed, for ``y0``, ``t`` and the parameters, tuple states, decreasing
times, many output times (most of them inside steps, by dense output), discontinuities (``jump_t``) and a
closure with ``adjoint_params``. What it keeps for backward is exactly one state per accepted step (and ``t``);
its recomputation is counted as backward NFE.
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import (
    ALL_METHODS,
    FIXED,
    CountingField,
    DampedOscillator,
    MLPField,
    cheap_tol,
    gradients_of,
    rel_error,
)

from node_experiments.ode import SolverError, odeint, odeint_checkpoint, record_stats

SAME = 1e-9  # relative: the gradients of the same computation, up to rounding


def _assert_same(backprop, checkpoint, names):
    for name, g_backprop, g_checkpoint in zip(names, backprop, checkpoint):
        err = rel_error(g_checkpoint, g_backprop)
        assert err <= SAME, f"gradient for {name}: checkpoint vs backprop differ by {err:.3g} (relative)"


def _mlp_problem(n_times: int, reverse: bool = False):
    func = MLPField(dim=2, hidden=16, seed=1)
    gen = torch.Generator().manual_seed(2)
    y0 = torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    t = torch.linspace(0.0, 1.5, n_times, dtype=torch.float64)
    if reverse:
        t = t.flip(0)
    t.requires_grad_(True)
    weights = torch.randn(n_times, 3, 2, generator=gen, dtype=torch.float64)
    return func, y0, t, weights


def _settings(method: str) -> dict:
    """A tolerance with a few steps per output interval for the adaptive methods; a step size that puts outputs
    between grid points for the fixed-step ones."""
    if method in FIXED:
        return dict(method=method, options={"step_size": 0.07})
    return dict(method=method, rtol=cheap_tol(method), atol=cheap_tol(method))


@pytest.mark.parametrize("reverse", [False, True], ids=["increasing", "decreasing"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_checkpoint_equals_backprop(method, reverse):
    func, y0, t, weights = _mlp_problem(n_times=4, reverse=reverse)
    params = tuple(func.parameters())
    backprop = gradients_of(odeint, func, y0, t, weights, params, **_settings(method))
    checkpoint = gradients_of(odeint_checkpoint, func, y0, t, weights, params, **_settings(method))
    _assert_same(backprop, checkpoint, ["y0", "t"] + [name for name, _ in func.named_parameters()])


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8", "rk4"])
def test_checkpoint_equals_backprop_at_many_output_times(method):
    """60 outputs: several inside each step, each with its own gradient through the dense output."""
    func, y0, t, weights = _mlp_problem(n_times=60)
    params = tuple(func.parameters())
    backprop = gradients_of(odeint, func, y0, t, weights, params, **_settings(method))
    checkpoint = gradients_of(odeint_checkpoint, func, y0, t, weights, params, **_settings(method))
    _assert_same(backprop, checkpoint, ["y0", "t"] + [name for name, _ in func.named_parameters()])


@pytest.mark.parametrize("method", ["dopri5", "fehlberg2", "rk4"])
def test_checkpoint_equals_backprop_for_a_tuple_state(method):
    func = DampedOscillator()
    x0 = torch.tensor([[1.0, 0.0], [0.2, -0.5]], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([[0.0, 0.5], [1.0, 0.1]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.2, 1.5], dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    weights = tuple(torch.randn(4, 2, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    params = tuple(func.parameters())
    backprop = gradients_of(odeint, func, (x0, v0), t, weights, params, **_settings(method))
    checkpoint = gradients_of(odeint_checkpoint, func, (x0, v0), t, weights, params, **_settings(method))
    _assert_same(backprop, checkpoint, ["x0", "v0", "t", "k", "c", "W"])


@pytest.mark.parametrize("reverse", [False, True], ids=["increasing", "decreasing"])
def test_checkpoint_equals_backprop_across_a_discontinuity(reverse):
    """``jump_t``: the step ending on the discontinuity evaluates its end from the left, the next restarts from the
    right; ``step_t``: a point stepped on. The recomputation must take both steps the same way."""
    func, y0, t, weights = _mlp_problem(n_times=5, reverse=reverse)
    params = tuple(func.parameters())
    kwargs = dict(rtol=1e-6, atol=1e-6, options={"jump_t": [0.55], "step_t": [1.05]})
    backprop = gradients_of(odeint, func, y0, t, weights, params, **kwargs)
    checkpoint = gradients_of(odeint_checkpoint, func, y0, t, weights, params, **kwargs)
    _assert_same(backprop, checkpoint, ["y0", "t"] + [name for name, _ in func.named_parameters()])


def test_checkpoint_with_adjoint_params_for_a_closure():
    A = torch.tensor([[-0.2, 1.0], [-1.0, -0.3]], dtype=torch.float64, requires_grad=True)

    def func(t, y):
        return y @ A.T + torch.sin(3 * t) * torch.tanh(y)

    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    backprop = gradients_of(odeint, func, y0, t, weights, (A,), rtol=1e-8, atol=1e-8)
    checkpoint = gradients_of(odeint_checkpoint, func, y0, t, weights, (A,), rtol=1e-8, atol=1e-8, adjoint_params=(A,))
    _assert_same(backprop, checkpoint, ["y0", "t", "A"])


def test_checkpoint_forward_values_equal_odeint():
    func, y0, t, _ = _mlp_problem(n_times=9)
    expected = odeint(func, y0, t, rtol=1e-6, atol=1e-6)
    got = odeint_checkpoint(func, y0, t, rtol=1e-6, atol=1e-6)
    assert torch.equal(got.detach(), expected.detach())


@pytest.mark.parametrize("method", ["dopri5", "dopri8", "adaptive_heun", "rk4"])
def test_checkpoint_backward_nfe_is_exact(method):
    """The calls of ``func`` during ``backward()`` are counted as backward NFE; one recomputed step per accepted
    step, and no more evaluations than the forward's plus one first stage per step."""
    func, y0, t, weights = _mlp_problem(n_times=9)
    counted = CountingField(func)
    with record_stats() as stats:
        ys = odeint_checkpoint(counted, y0, t, **_settings(method))
        forward_calls = counted.calls
        (ys * weights).sum().backward()
    assert stats.nfe_forward == forward_calls
    assert stats.nfe_backward == counted.calls - forward_calls > 0
    assert stats.backward_accepted_steps == stats.accepted_steps
    assert stats.backward_solves == 1 and stats.backward_rejected_steps == 0
    assert stats.nfe_backward <= stats.nfe_forward + stats.accepted_steps


def _saved_bytes(solver, func, y0, t, **kwargs) -> int:
    """Bytes autograd keeps for backward (each storage once, parameters excluded), counted with saved_tensors_hooks."""
    excluded = {p.untyped_storage().data_ptr() for p in func.parameters()}
    seen: dict[int, int] = {}

    def pack(x):
        storage = x.untyped_storage()
        if storage.data_ptr() not in excluded:
            seen[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        solver(func, y0, t, **kwargs)
    return sum(seen.values())


@pytest.mark.parametrize("n_times", [2, 40])
def test_checkpoint_keeps_one_state_per_step(n_times):
    """Saved for backward: each accepted step's start state and ``t``, whatever the number of outputs; direct
    backprop keeps far more."""
    func, y0, t, _ = _mlp_problem(n_times)
    t = t.detach()
    with record_stats() as stats:
        saved = _saved_bytes(odeint_checkpoint, func, y0, t, rtol=1e-6, atol=1e-6)
    state_bytes = y0.numel() * y0.element_size()
    assert saved == stats.accepted_steps * state_bytes + t.numel() * t.element_size()
    assert _saved_bytes(odeint, func, y0, t, rtol=1e-6, atol=1e-6) > 5 * saved


def test_checkpoint_without_gradients_is_a_plain_solve():
    func, y0, t, _ = _mlp_problem(n_times=3)
    with torch.no_grad(), record_stats() as stats:
        ys = odeint_checkpoint(func, y0, t, rtol=1e-6, atol=1e-6)
    assert not ys.requires_grad and stats.solves == 1


def test_checkpoint_refuses_a_double_backward():
    func, y0, t, weights = _mlp_problem(n_times=3)
    ys = odeint_checkpoint(func, y0, t, rtol=1e-6, atol=1e-6)
    with pytest.raises(SolverError, match="create_graph=True") as info:
        torch.autograd.grad((ys * weights).sum(), y0, create_graph=True)
    assert "odeint_checkpoint" in str(info.value) and "odeint" in str(info.value)
