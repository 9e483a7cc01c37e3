"""A float32 state with float64 times (as torchdiffeq allows): the solve runs in the state's dtype, times stay
64-bit, and gradients with respect to ``t`` come back in ``t``'s dtype, for every gradient strategy.

Dense output (every adaptive method, and fixed-step methods given ``step_size``) used to multiply float64 output
fractions into float32 stages and fail with a dtype mismatch.
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import MLPField, rel_error

from node_experiments.ode import odeint, odeint_adjoint, odeint_checkpoint

SETTINGS = {
    "dopri5": dict(method="dopri5", rtol=1e-5, atol=1e-5),
    "rk4 with step_size": dict(method="rk4", options={"step_size": 0.05}),
    "rk4 on t": dict(method="rk4"),
}


def _problem(dtype):
    func = MLPField(dim=2, hidden=8, seed=1).to(dtype)
    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=dtype, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 7, dtype=torch.float64, requires_grad=True)
    return func, y0, t


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint, odeint_checkpoint], ids=["backprop", "adjoint", "checkpoint"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_float32_state_with_float64_times(setting, solver):
    func32, y32, t = _problem(torch.float32)
    ys = solver(func32, y32, t, **SETTINGS[setting])
    assert ys.dtype == torch.float32
    ys.square().sum().backward()
    assert t.grad.dtype == torch.float64 and y32.grad.dtype == torch.float32

    func64, y64, t64 = _problem(torch.float64)
    expected = odeint(func64, y64, t64, **SETTINGS[setting])
    expected.square().sum().backward()
    # The float32 solve rounds differently, so its adaptive steps differ from the float64 one's: the two agree to
    # the tolerance (1e-5), their gradients to a little more.
    assert rel_error(ys, expected) < 1e-4
    assert rel_error(y32.grad, y64.grad) < 1e-3
    assert rel_error(t.grad, t64.grad) < 1e-3
