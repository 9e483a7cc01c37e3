"""Precision and bad values: every dtype solves correctly or is refused up front, never a silently wrong answer.

- float16 and bfloat16 states are integrated in float32 (the vector field still sees its own dtype): y' = -y
  against exp(-t) for every method and every floating dtype. Integrated in bfloat16 itself, dopri5 stalled at
  [0.992, 1.984] for y(1) from [1, 2] after 4,670 evaluations, with no error.
- ``rtol = atol = 0`` is refused before solving (it asked for an exact solution and failed only after minutes);
  an empty state, a missing ``func`` and a field returning another dtype than the state's get clear errors.
- The small-state dense output (matrix-vector kernels instead of one tiny GEMM) computes what the GEMM does.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from ode_problems import ADAPTIVE, ALL_METHODS, C_ADAPTIVE, C_FEHLBERG2, CountingField, MLPField, ORDER

from node_experiments.ode import (
    InvalidArgumentError,
    NonFiniteDerivativeError,
    odeint,
    odeint_adjoint,
    odeint_checkpoint,
    record_stats,
    runge_kutta,
)

ALL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SOLVERS = {"backprop": odeint, "adjoint": odeint_adjoint, "checkpoint": odeint_checkpoint}
RTOL, ATOL, STEP = 1e-6, 1e-8, 0.01


def decay(t, y):
    return -y


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("method", ALL_METHODS)
def test_exponential_decay_in_every_dtype(method, dtype):
    """y' = -y from [1, 2] on [0, 1]: within the method's error at the tolerance (or step) asked, plus two units
    of the dtype's resolution (the rounding of the field's inputs and of the result) and the rounding accumulated
    over a hundred steps in the integrator's dtype (float32 for the 2-byte dtypes)."""
    y0 = torch.tensor([1.0, 2.0], dtype=dtype)
    t = torch.linspace(0.0, 1.0, 5, dtype=dtype)
    adaptive = method in ADAPTIVE
    ys = odeint(decay, y0, t, method=method, rtol=RTOL, atol=ATOL, options=None if adaptive else {"step_size": STEP})
    assert ys.dtype == dtype
    exact = y0.double() * torch.exp(-t.double()).unsqueeze(1)
    if adaptive:
        bound = (C_FEHLBERG2 if method == "fehlberg2" else C_ADAPTIVE) * (RTOL * exact.abs() + ATOL)
    else:
        bound = 10 * STEP ** ORDER[method] * exact.abs()
    working = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    bound = bound + (2 * torch.finfo(dtype).eps + 100 * torch.finfo(working).eps) * exact.abs()
    error = (ys.double() - exact).abs()
    assert bool((error <= bound).all()), f"errors {error.tolist()} exceed {bound.tolist()}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_reduced_precision_at_the_default_tolerances(dtype):
    """The issue's case: dopri5 at rtol 1e-7 / atol 1e-9 returns exp(-1) [1, 2] to the dtype's resolution, in a few
    thousand evaluations (the field's rounding sets a floor under the error estimate)."""
    y0 = torch.tensor([1.0, 2.0], dtype=dtype)
    with record_stats() as stats:
        ys = odeint(decay, y0, torch.tensor([0.0, 1.0], dtype=dtype))
    expected = torch.tensor([1.0, 2.0], dtype=torch.float64) * math.exp(-1.0)
    assert bool(((ys[-1].double() - expected).abs() <= torch.finfo(dtype).eps * expected).all()), ys[-1]
    assert stats.nfe_forward < 5_000


@pytest.mark.parametrize("gradient", list(SOLVERS))
def test_gradients_of_a_bfloat16_network(gradient):
    """A bfloat16 network: its solve and gradients agree with the float64 network's to bfloat16's resolution."""

    def solve(dtype):
        field = MLPField(dim=2, hidden=8, seed=3).to(dtype)
        y0 = torch.tensor([[0.5, -0.25]], dtype=dtype, requires_grad=True)
        ys = SOLVERS[gradient](field, y0, torch.tensor([0.0, 1.0], dtype=dtype), rtol=1e-3, atol=1e-4)
        ys[-1].sum().backward()
        return ys[-1].double(), y0.grad.double(), [p.grad.double() for p in field.parameters()]

    low, high = solve(torch.bfloat16), solve(torch.float64)
    torch.testing.assert_close(low[0], high[0], rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(low[1], high[1], rtol=3e-2, atol=3e-2)
    for got, want in zip(low[2], high[2]):
        torch.testing.assert_close(got, want, rtol=5e-2, atol=5e-2)


# ------------------------------------------------------------------------------------------------- refused
@pytest.mark.parametrize(
    "tolerances",
    [dict(rtol=0.0, atol=0.0), dict(rtol=torch.tensor([1e-6, 0.0]), atol=torch.tensor([0.0, 0.0])),
     dict(rtol=0, atol=0.0, method="bosh3")],
    ids=["both_zero", "one_element", "bosh3"],
)  # fmt: skip
def test_zero_rtol_and_atol_are_refused_before_solving(tolerances):
    field = CountingField(decay)
    with pytest.raises(InvalidArgumentError, match=r"rtol and atol are both 0.*exactly zero"):
        odeint(field, torch.ones(2), torch.tensor([0.0, 1.0]), **tolerances)
    assert field.calls == 0


def test_zero_tolerances_of_the_backward_solve_are_refused():
    with pytest.raises(InvalidArgumentError, match=r"adjoint_rtol and adjoint_atol are both 0"):
        odeint_adjoint(decay, torch.ones(2, requires_grad=True), torch.tensor([0.0, 1.0]), adjoint_params=(),
                       adjoint_rtol=0.0, adjoint_atol=0.0)  # fmt: skip


def test_zero_tolerances_are_fine_for_a_fixed_step_method():
    """A fixed-step method controls no error, so its tolerances mean nothing (torchdiffeq ignores them too)."""
    ys = odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), rtol=0.0, atol=0.0, method="rk4",
                options={"step_size": 0.1})  # fmt: skip
    assert abs(float(ys[-1]) - math.exp(-1.0)) < 1e-5


def test_an_empty_state_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"y0 has no elements \(shape \(0, 3\)\)"):
        odeint(decay, torch.ones(0, 3), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("solver", list(SOLVERS.values()), ids=list(SOLVERS))
def test_func_none_is_refused(solver):
    with pytest.raises(InvalidArgumentError, match=r"func=None is not callable"):
        solver(None, torch.ones(2), torch.tensor([0.0, 1.0]), **({} if solver is odeint else {"adjoint_params": ()}))


@pytest.mark.parametrize("solver", list(SOLVERS.values()), ids=list(SOLVERS))
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_a_field_returning_another_floating_dtype_is_cast_to_the_state_s(solver, method):
    """float64 derivatives for a float32 state (a float64 parameter, and float64 times promoting what they touch:
    torchdiffeq's own test problems do this) are cast to float32, as torchdiffeq stores them; the solution is the
    float32 field's, to float32 rounding, and gradients flow through the cast."""
    rate = torch.tensor(-0.7, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    y0 = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    options = {"step_size": 0.05} if method == "rk4" else None
    params = {} if solver is odeint else {"adjoint_params": (rate,)}
    ys = solver(lambda t, y: rate * y.double() + 0.1 * t, y0, t, method=method, options=options, rtol=1e-6,
                atol=1e-7, **params)  # fmt: skip
    assert ys.dtype == torch.float32
    ys[-1].sum().backward()
    y64 = y0.detach().double().requires_grad_(True)
    rate64 = rate.detach().clone().requires_grad_(True)
    expected = odeint(lambda t, y: rate64 * y + 0.1 * t, y64, t, method=method, options=options, rtol=1e-6, atol=1e-7)
    expected[-1].sum().backward()
    torch.testing.assert_close(ys.double(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y0.grad.double(), y64.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rate.grad, rate64.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("result", ["integer", "complex", "bool"])
def test_a_field_returning_a_non_floating_result_is_refused(result):
    convert = {"integer": lambda y: y.long(), "complex": lambda y: y.to(torch.complex64), "bool": lambda y: y > 0}
    with pytest.raises(InvalidArgumentError, match=r"returned dtype torch\.\w+ for a state of dtype torch.float32"):
        odeint(lambda t, y: convert[result](y), torch.ones(3), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("shape", [(2,), (3, 1), ()])
def test_a_field_returning_another_shape_is_refused(shape):
    with pytest.raises(InvalidArgumentError, match=r"returned shapes \[" + re.escape(str(shape))):
        odeint(lambda t, y: torch.zeros(shape), torch.ones(3), torch.tensor([0.0, 1.0]))


def test_a_field_infinite_at_the_start_is_a_non_finite_derivative():
    """The initial-step rule divided by a zero step (a ZeroDivisionError) when f(t0, y0) was infinite."""
    with pytest.raises(NonFiniteDerivativeError, match=r"NaN or infinity at t=0.5"):
        odeint(lambda t, y: y * math.inf, torch.ones(2), torch.tensor([0.5, 1.0]))


def test_a_zero_scale_at_the_start_is_not_mistaken_for_a_non_finite_derivative():
    """atol = 0 with y0 = 0 in one entry: the initial-step rule's scale is zero there, the field is fine."""
    ys = odeint(lambda t, y: torch.ones_like(y), torch.tensor([0.0, 1.0], dtype=torch.float64),
                torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-8, atol=0.0)  # fmt: skip
    torch.testing.assert_close(ys[-1], torch.tensor([1.0, 2.0], dtype=torch.float64))


# ------------------------------------------------------------------------------------------- small states
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8", "rk4"])
@pytest.mark.parametrize("needs_grad", [False, True], ids=["buffered", "graph"])
def test_the_small_state_dense_output_is_the_gemms(method, needs_grad, monkeypatch):
    field = MLPField(dim=3, hidden=8, seed=2).double()
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 2.0, 41, dtype=torch.float64)
    options = {"step_size": 0.3} if method == "rk4" else None

    def solve():
        with torch.set_grad_enabled(needs_grad):
            return odeint(field, y0.clone().requires_grad_(needs_grad), t, method=method, rtol=1e-6, atol=1e-8,
                          options=options).detach()  # fmt: skip

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the matrix-vector path is taken with several threads only
    try:
        small = solve()
        monkeypatch.setattr(runge_kutta, "SMALL_STATE", 0)
        gemm = solve()
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(small, gemm, rtol=1e-13, atol=1e-13)
