"""The same calls through torchdiffeq and through this solver, compared value by value (where torchdiffeq is
installed: the ``bench`` extra).

Adaptive solves agree to the tolerance asked (the two libraries' step sequences differ a little: dopri5's embedded
estimator and the dense output differ, docs/solver.md); fixed-step solves of the same method on the same grid agree
to rounding; event times to ``atol``; gradients to the tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from ode_problems import MLPField, cheap_tol, error_factor

import node_experiments.ode as ours

torchdiffeq = pytest.importorskip("torchdiffeq")

F64 = torch.float64
LIBRARIES = {"node-experiments": ours, "torchdiffeq": torchdiffeq}


def both(call):
    """``call(library)`` for both libraries."""
    return call(ours), call(torchdiffeq)


def harmonic(t, y):
    return torch.stack([y[..., 1], -4.0 * y[..., 0]], dim=-1)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_adaptive_methods_agree_to_the_tolerance(method, reverse):
    y0 = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=F64)
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    if reverse:
        t = t.flip(0)
    """Both step on the output times (``step_t``): the two libraries' dense outputs differ (torchdiffeq's quartic
    fit through a midpoint is ~10x less accurate than the steps for bosh3, this solver's dopri8 extension is of lower
    order than its steps), and the steps are what the tolerance controls."""
    rtol = atol = cheap_tol(method)
    options = {"step_t": t}
    a, b = both(lambda lib: lib.odeint(harmonic, y0, t, rtol=rtol, atol=atol, method=method, options=options))
    bound = 2 * error_factor(method) * (rtol * b.abs() + atol)  # each within its global error bound of the exact
    assert bool(((a - b).abs() <= bound).all()), float((a - b).abs().max())


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun2", "heun3"])
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_fixed_step_methods_agree_to_rounding(method, interp):
    """The same method on the same grid, outputs between grid points interpolated the same way: equal to rounding.
    (``rk4`` is not here: torchdiffeq's is Kutta's 3/8 rule, this solver's the classical RK4.)"""
    y0 = torch.tensor([[1.0, 0.0], [0.5, 1.0]], dtype=F64)
    t = torch.tensor([0.0, 0.13, 0.5, 0.77, 1.0], dtype=F64)
    options = {"step_size": 0.1, "interp": interp}
    a, b = both(lambda lib: lib.odeint(harmonic, y0, t, method=method, options=options))
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_rk4_is_a_different_fourth_order_method():
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    a, b = both(lambda lib: lib.odeint(harmonic, y0, t, method="rk4", options={"step_size": 0.1}))
    exact = torch.tensor([math.cos(2.0), -2.0 * math.sin(2.0)], dtype=F64)
    assert not torch.equal(a, b)
    assert float((a[-1] - exact).abs().max()) < 1e-4 and float((b[-1] - exact).abs().max()) < 1e-4


@pytest.mark.parametrize("method", ["euler", "heun2", "rk4"])
def test_perturb_gives_the_same_jumps(method):
    field = lambda t, y: torch.where(t < 0.5, torch.ones_like(y), -torch.ones_like(y))  # noqa: E731
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    a, b = both(lambda lib: lib.odeint(field, torch.zeros(2), t, method=method,
                                       options={"step_size": 0.25, "perturb": True, "interp": "linear"}))  # fmt: skip
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert float(a[-1, 0]) == pytest.approx(0.0, abs=1e-6)


def test_grid_constructor_gives_the_same_grid():
    grid = lambda func, y0, t: torch.tensor([0.0, 0.3, 0.35, 1.0], dtype=t.dtype)  # noqa: E731
    t = torch.tensor([0.0, 0.2, 1.0], dtype=F64)
    a, b = both(lambda lib: lib.odeint(harmonic, torch.tensor([1.0, 0.0], dtype=F64), t, method="midpoint",
                                       options={"grid_constructor": grid, "interp": "linear"}))  # fmt: skip
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_scalar_state_and_single_time():
    y0 = torch.tensor(2.0, dtype=F64)
    a, b = both(lambda lib: lib.odeint(lambda t, y: -y, y0, torch.linspace(0, 1, 3, dtype=F64)))
    assert a.shape == b.shape == (3,)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    a, b = both(lambda lib: lib.odeint(lambda t, y: -y, y0, torch.tensor([0.5], dtype=F64)))
    assert torch.equal(a, b)


def test_tuple_state_with_tuple_tolerances():
    y0 = (torch.tensor([1.0, 0.0], dtype=F64), torch.tensor(3.0, dtype=F64))
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    func = lambda t, y: (harmonic(t, y[0]), -y[1])  # noqa: E731
    a, b = both(lambda lib: lib.odeint(func, y0, t, rtol=(1e-9, 1e-6), atol=(1e-11, 1e-8)))
    torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(a[1], b[1], rtol=1e-4, atol=1e-6)


def test_float32_state_with_float64_times():
    y0 = torch.tensor([1.0, 0.0])
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    a, b = both(lambda lib: lib.odeint(harmonic, y0, t, rtol=1e-5, atol=1e-6))
    assert a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_adjoint_gradients_agree():
    def gradients(lib):
        field = MLPField(dim=2, hidden=8, seed=5).double()
        y0 = torch.tensor([[0.3, -0.2]], dtype=F64, requires_grad=True)
        t = torch.linspace(0.0, 1.0, 4, dtype=F64, requires_grad=True)
        ys = lib.odeint_adjoint(field, y0, t, rtol=1e-9, atol=1e-10)
        (ys**2).sum().backward()
        return [y0.grad, t.grad, *(p.grad for p in field.parameters())]

    for a, b in zip(*both(gradients)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


class Ball(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(9.81, dtype=F64))

    def forward(self, t, state):
        return state[1], -self.g * torch.ones_like(state[0])


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
def test_events_agree(interface):
    """odeint_event on a bouncing ball: the event time, the state there and the gradients through the event time."""

    def solve(lib):
        ball = Ball()
        h0 = torch.tensor(10.0, dtype=F64, requires_grad=True)
        event_t, solution = lib.odeint_event(ball, (h0, torch.tensor(1.0, dtype=F64)), torch.tensor(0.0, dtype=F64),
                                             event_fn=lambda t, s: s[0], odeint_interface=getattr(lib, interface),
                                             rtol=1e-10, atol=1e-12)  # fmt: skip
        (event_t + solution[1][-1]).backward()
        return event_t.detach(), solution[1][-1].detach(), h0.grad, ball.g.grad

    for a, b in zip(*both(solve)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_odeint_with_event_fn_returns_the_same_pair():
    def solve(lib):
        return lib.odeint(lambda t, y: -y, torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                          event_fn=lambda t, y: y - 0.5, rtol=1e-10, atol=1e-10)  # fmt: skip

    (t_a, y_a), (t_b, y_b) = both(solve)
    assert y_a.shape == y_b.shape == (2, 2) and not t_a.requires_grad and not t_b.requires_grad
    torch.testing.assert_close(t_a, t_b, rtol=0, atol=1e-9)
    torch.testing.assert_close(y_a, y_b, rtol=1e-8, atol=1e-9)


def test_fixed_step_callbacks_are_called_at_the_same_times():
    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.times = []

        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y0, dt):
            self.times += [float(t0), float(dt)]

    def times(lib):
        field = Field()
        lib.odeint(field, torch.ones(2, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64), method="euler",
                   options={"step_size": 0.25})  # fmt: skip
        return field.times

    a, b = both(times)
    assert a == pytest.approx(b, abs=1e-15) and len(a) == 2 * 4
