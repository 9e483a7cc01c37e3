"""``adjoint_options={"norm": "seminorm"}`` (Kidger, Chen & Lyons 2021): the adjoint's backward solve leaves the
parameter-gradient channels out of its error control.

Those channels are integrals that nothing else in the backward system depends on, so dropping them from the
norm loses no accuracy where it matters (the state and its adjoint) and lets the steps grow: the backward NFE
with the seminorm is no higher than without it. Checked on neural vector fields (a 2-layer tanh MLP on a batch
of states, where parameters outnumber the state), with tensor and tuple states; the gradients stay close to the
full-norm ones and to direct backprop.
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import MLPField, rel_error
from torch import nn

from node_experiments.ode import InvalidArgumentError, odeint, odeint_adjoint, record_stats

F64 = torch.float64


def _backward(func, y0, t, weights, tol, adjoint_options=None, params=None):
    """Gradients of ``sum(weights * solution)`` via the adjoint, and the backward NFE."""
    y0 = y0.detach().requires_grad_(True)
    params = tuple(func.parameters()) if params is None else params
    with record_stats() as stats:
        ys = odeint_adjoint(func, y0, t, rtol=tol, atol=tol, adjoint_options=adjoint_options)
        grads = torch.autograd.grad((ys * weights).sum(), (y0, *params))
    return grads, stats


def _mlp_problem(seed=0, t=(0.0, 1.0)):
    """A 4 -> 64 -> 4 tanh MLP (644 parameters) on a batch of 32 states (128 numbers)."""
    gen = torch.Generator().manual_seed(seed)
    func = MLPField(dim=4, hidden=64, seed=seed)
    y0 = torch.randn(32, 4, generator=gen, dtype=F64)
    t = torch.tensor(t, dtype=F64)
    weights = torch.randn(len(t), 32, 4, generator=gen, dtype=F64)
    return func, y0, t, weights


SEEDS = (0, 1, 2)
TOLS = (1e-5, 1e-7)


def _compare(seed, tol):
    func, y0, t, weights = _mlp_problem(seed)
    full_grads, full = _backward(func, y0, t, weights, tol)
    semi_grads, semi = _backward(func, y0, t, weights, tol, adjoint_options={"norm": "seminorm"})
    return full_grads, full, semi_grads, semi


@pytest.mark.parametrize("tol", TOLS)
@pytest.mark.parametrize("seed", SEEDS)
def test_seminorm_backward_nfe_is_no_higher(seed, tol):
    full_grads, full, semi_grads, semi = _compare(seed, tol)
    assert semi.nfe_backward <= full.nfe_backward, (semi.nfe_backward, full.nfe_backward)
    assert semi.nfe_forward == full.nfe_forward  # the forward solve is unchanged
    # Both are gradients at this tolerance: they agree to within its order of magnitude times the steps.
    for g_semi, g_full in zip(semi_grads, full_grads):
        assert rel_error(g_semi, g_full) <= 1000 * tol


def test_seminorm_saves_backward_work_overall():
    """Over all the cases above the seminorm takes strictly fewer backward evaluations, not merely as many."""
    full_total = semi_total = 0
    for seed in SEEDS:
        for tol in TOLS:
            _, full, _, semi = _compare(seed, tol)
            full_total += full.nfe_backward
            semi_total += semi.nfe_backward
    assert semi_total < full_total, (semi_total, full_total)


def test_seminorm_gradients_match_direct_backprop_at_tight_tolerance():
    func, y0, t, weights = _mlp_problem(2)
    semi_grads, _ = _backward(func, y0, t, weights, 1e-10, adjoint_options={"norm": "seminorm"})
    y0_ = y0.clone().requires_grad_(True)
    ys = odeint(func, y0_, t, rtol=1e-10, atol=1e-10)
    direct = torch.autograd.grad((ys * weights).sum(), (y0_, *func.parameters()))
    for g_semi, g_direct in zip(semi_grads, direct):
        assert rel_error(g_semi, g_direct) <= 1e-6


class TupleMLP(nn.Module):
    """A tuple state ``(x, z)``: ``x' = tanh(x W1 + z W2)``, ``z' = -z + x W3``."""

    def __init__(self, seed=3):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(torch.randn(3, 3, generator=gen, dtype=F64))
        self.W2 = nn.Parameter(torch.randn(2, 3, generator=gen, dtype=F64))
        self.W3 = nn.Parameter(torch.randn(3, 2, generator=gen, dtype=F64))

    def forward(self, t, state):
        x, z = state
        return torch.tanh(x @ self.W1 + z @ self.W2), -z + x @ self.W3


def test_seminorm_with_a_tuple_state():
    func = TupleMLP()
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(8, 3, generator=gen, dtype=F64, requires_grad=True)
    z0 = torch.randn(8, 2, generator=gen, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    results = {}
    for norm in ("rms", "seminorm"):
        with record_stats() as stats:
            x, z = odeint_adjoint(func, (x0, z0), t, rtol=1e-6, atol=1e-6, adjoint_options={"norm": norm})
            grads = torch.autograd.grad(x.sum() + z.pow(2).sum(), (x0, z0, *func.parameters()))
        results[norm] = (grads, stats.nfe_backward)
    assert results["seminorm"][1] <= results["rms"][1]
    for g_semi, g_full in zip(results["seminorm"][0], results["rms"][0]):
        assert rel_error(g_semi, g_full) <= 1e-3


def test_seminorm_without_parameters():
    """With no parameters to leave out the seminorm is the full norm on (state, adjoint): same work, same result."""
    func = MLPField(dim=2, hidden=8, seed=5).requires_grad_(False)
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    weights = torch.ones(2, 4, 2, dtype=F64)
    full_grads, full = _backward(func, y0, t, weights, 1e-6, params=())
    semi_grads, semi = _backward(func, y0, t, weights, 1e-6, adjoint_options={"norm": "seminorm"}, params=())
    assert semi.nfe_backward <= full.nfe_backward
    torch.testing.assert_close(semi_grads[0], full_grads[0], rtol=1e-4, atol=1e-8)


def test_seminorm_is_an_adjoint_option_only():
    """The forward solve has no parameter-gradient channels: ``options={"norm": "seminorm"}`` is an error."""
    func = MLPField(seed=6)
    with pytest.raises(InvalidArgumentError, match="seminorm"):
        odeint(func, torch.zeros(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), options={"norm": "seminorm"})
