"""Events: ``odeint(..., event_fn=...)``, ``odeint_adjoint(..., event_fn=...)`` and ``odeint_event``, torchdiffeq's
interface, checked against exact event times and their exact (and finite-difference) gradients.

The main problem is a ball thrown up at ``v0`` from height ``h0`` under gravity ``g``: its first impact, where the
height reaches 0, is at ``t* = (v0 + sqrt(v0^2 + 2 g h0)) / g``, with velocity ``-sqrt(v0^2 + 2 g h0)`` there.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from node_experiments.ode import (
    InvalidArgumentError,
    MaxStepsExceededError,
    odeint,
    odeint_adjoint,
    odeint_checkpoint,
    odeint_event,
    record_stats,
)

INTERFACES = {"backprop": odeint, "adjoint": odeint_adjoint, "checkpoint": odeint_checkpoint}
F64 = torch.float64


class Ball(torch.nn.Module):
    """Height and velocity under gravity ``g`` (a parameter)."""

    def __init__(self, g: float = 9.81):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(g, dtype=F64))

    def forward(self, t, state):
        height, velocity = state
        return velocity, -self.g * torch.ones_like(height)


def ground(t, state):
    return state[0]


def impact(h0: float, v0: float, g: float) -> tuple[float, float]:
    """The exact first impact time and velocity."""
    speed = math.sqrt(v0 * v0 + 2 * g * h0)
    return (v0 + speed) / g, -speed


def throw(h0=10.0, v0=2.0):
    return torch.tensor(h0, dtype=F64, requires_grad=True), torch.tensor(v0, dtype=F64, requires_grad=True)


@pytest.mark.parametrize("atol", [1e-5, 1e-10])
@pytest.mark.parametrize(
    "method, options", [("dopri5", None), ("tsit5", None), ("bosh3", None), ("rk4", {"step_size": 0.1})]
)
@pytest.mark.parametrize("gradient", list(INTERFACES))
def test_first_impact_time_is_exact_to_the_tolerance(gradient, method, options, atol):
    """Every method here integrates the ball's quadratic motion exactly, so the event's error is the location's
    alone: the bisection on the dense output stops within ``atol`` of the zero."""
    h0, v0 = throw()
    event_t, solution = odeint_event(Ball(), (h0, v0), torch.tensor(0.0, dtype=F64), event_fn=ground,
                                     odeint_interface=INTERFACES[gradient], method=method, options=options,
                                     rtol=1e-10, atol=atol)  # fmt: skip
    t_exact, v_exact = impact(10.0, 2.0, 9.81)
    assert abs(event_t.item() - t_exact) <= atol
    height, velocity = (part.detach() for part in solution)
    assert height.shape == (2,) and float(height[0]) == 10.0
    assert abs(float(height[-1])) <= 10 * atol * abs(v_exact)
    assert float(velocity[-1]) == pytest.approx(v_exact, abs=10 * atol * 9.81)


def test_a_scalar_event_on_a_nonlinear_solution():
    """y' = -y from 1 until y = 1/2: t* = ln 2, with the error of the solution (rtol) and of the location (atol)."""
    event_t, solution = odeint(lambda t, y: -y, torch.tensor(1.0, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                               event_fn=lambda t, y: y - 0.5, rtol=1e-10, atol=1e-10)  # fmt: skip
    assert abs(event_t.item() - math.log(2.0)) < 1e-8
    assert solution.shape == (2,) and float(solution[-1]) == pytest.approx(0.5, abs=1e-9)
    assert not event_t.requires_grad  # odeint's event time carries no gradient (as in torchdiffeq)


def _impact_and_velocity(gradient, h0, v0, ball, t0, **kwargs):
    event_t, solution = odeint_event(ball, (h0, v0), t0, event_fn=ground, odeint_interface=INTERFACES[gradient],
                                     rtol=1e-11, atol=1e-12, **kwargs)  # fmt: skip
    return event_t, solution[1][-1]


@pytest.mark.parametrize("gradient", list(INTERFACES))
def test_event_gradients_match_the_exact_ones_and_finite_differences(gradient):
    """d t*/d(h0, v0, g) and d v*/d(h0, v0, g), through the event time, against the closed form's derivatives
    and against central finite differences of the solve itself."""
    ball = Ball()
    h0, v0 = throw()
    event_t, velocity = _impact_and_velocity(gradient, h0, v0, ball, torch.tensor(0.0, dtype=F64))
    grads_t = torch.autograd.grad(event_t, (h0, v0, ball.g), retain_graph=True)
    grads_v = torch.autograd.grad(velocity, (h0, v0, ball.g))

    values = {"h0": 10.0, "v0": 2.0, "g": 9.81}
    step = 1e-5
    for i, name in enumerate(values):
        plus, minus = dict(values), dict(values)
        plus[name] += step
        minus[name] -= step
        exact_t = (impact(**_args(plus))[0] - impact(**_args(minus))[0]) / (2 * step)
        exact_v = (impact(**_args(plus))[1] - impact(**_args(minus))[1]) / (2 * step)
        with torch.no_grad():
            solved = [_impact_and_velocity("backprop", torch.tensor(p["h0"], dtype=F64), torch.tensor(p["v0"], dtype=F64),
                                           Ball(p["g"]), torch.tensor(0.0, dtype=F64)) for p in (plus, minus)]  # fmt: skip
        fd_t = (float(solved[0][0]) - float(solved[1][0])) / (2 * step)
        fd_v = (float(solved[0][1]) - float(solved[1][1])) / (2 * step)
        assert float(grads_t[i]) == pytest.approx(exact_t, rel=1e-6), name
        assert float(grads_t[i]) == pytest.approx(fd_t, rel=1e-5), name
        assert float(grads_v[i]) == pytest.approx(exact_v, rel=1e-6), name
        assert float(grads_v[i]) == pytest.approx(fd_v, rel=1e-5), name


def _args(values: dict) -> dict:
    return {"h0": values["h0"], "v0": values["v0"], "g": values["g"]}


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_the_event_time_moves_with_t0(gradient):
    """The ball's motion does not depend on t: starting later moves the impact by as much (d t*/d t0 = 1)."""
    t0 = torch.tensor(0.5, dtype=F64, requires_grad=True)
    h0, v0 = throw()
    event_t, _ = _impact_and_velocity(gradient, h0, v0, Ball(), t0)
    assert event_t.item() == pytest.approx(0.5 + impact(10.0, 2.0, 9.81)[0], abs=1e-10)
    (grad,) = torch.autograd.grad(event_t, t0)
    assert float(grad) == pytest.approx(1.0, abs=1e-8)


def test_gradients_reach_the_event_functions_own_parameters():
    """A floor at a learnable height c: d t*/dc = 1 / v(t*) (the ball reaches a higher floor earlier)."""
    floor = torch.tensor(1.0, dtype=F64, requires_grad=True)
    h0, v0 = throw()
    event_t, solution = odeint_event(Ball(), (h0, v0), torch.tensor(0.0, dtype=F64),
                                     event_fn=lambda t, s: s[0] - floor, rtol=1e-11, atol=1e-12)  # fmt: skip
    (grad,) = torch.autograd.grad(event_t, floor)
    assert float(grad) == pytest.approx(1.0 / solution[1][-1].item(), rel=1e-7)


def test_the_first_of_several_event_functions_ends_the_solve():
    """event_fn may return several entries: the solve stops where the first reaches zero, whatever their signs."""
    events = lambda t, s: torch.stack([s[0] - 5.0, 3.0 - t])  # noqa: E731 - falling past 5 m, or t = 3
    event_t, solution = odeint(Ball(), (torch.tensor(10.0, dtype=F64), torch.tensor(0.0, dtype=F64)),
                               torch.tensor([0.0, 1.0], dtype=F64), event_fn=events, rtol=1e-10, atol=1e-12)  # fmt: skip
    assert event_t.item() == pytest.approx(math.sqrt(2 * 5.0 / 9.81), abs=1e-10)
    assert solution[0][-1].item() == pytest.approx(5.0, abs=1e-9)


@pytest.mark.parametrize("gradient", list(INTERFACES))
def test_an_event_in_reverse_time(gradient):
    """y' = y backwards from y(0) = 1 until y = 1/2: t* = -ln 2 (torchdiffeq's reverse_time)."""
    scale = torch.tensor(1.0, dtype=F64, requires_grad=True)
    func = lambda t, y: scale * y  # noqa: E731
    kwargs = {} if gradient == "backprop" else {"adjoint_params": (scale,)}
    event_t, solution = odeint_event(func, torch.tensor([1.0], dtype=F64), torch.tensor(0.0, dtype=F64),
                                     event_fn=lambda t, y: y - 0.5, reverse_time=True,
                                     odeint_interface=INTERFACES[gradient], rtol=1e-10, atol=1e-12, **kwargs)  # fmt: skip
    assert event_t.item() == pytest.approx(-math.log(2.0), abs=1e-9)
    (grad,) = torch.autograd.grad(event_t, scale)  # y = exp(scale t): t* = -ln 2 / scale
    assert float(grad) == pytest.approx(math.log(2.0), rel=1e-6)


def test_an_event_function_zero_at_the_start_is_an_event_there():
    field_calls = []
    event_t, solution = odeint(lambda t, y: field_calls.append(t) or -y, torch.tensor([0.0, 1.0]),
                               torch.tensor([2.0, 3.0]), event_fn=lambda t, y: y)  # fmt: skip
    assert event_t.item() == 2.0 and torch.equal(solution[-1], torch.tensor([0.0, 1.0])) and field_calls == []


def test_an_event_that_never_happens_is_a_clear_error():
    with pytest.raises(MaxStepsExceededError, match=r"event_fn did not reach zero.*100 steps"):
        odeint(lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 1.0]), event_fn=lambda t, y: y + 1.0,
               options={"max_num_steps": 100})  # fmt: skip


def test_fixed_step_event_solves_need_a_step_size():
    with pytest.raises(InvalidArgumentError, match=r"event solve.*'rk4'.*step_size"):
        odeint(lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 1.0]), event_fn=lambda t, y: y - 0.5,
               method="rk4")  # fmt: skip


def test_event_solves_need_two_times():
    with pytest.raises(InvalidArgumentError, match=r"with event_fn, t must hold two times"):
        odeint(lambda t, y: -y, torch.tensor([1.0]), torch.tensor([0.0, 1.0, 2.0]), event_fn=lambda t, y: y - 0.5)


def test_checkpointed_event_solves_do_not_differentiate_t():
    func = Ball()
    with pytest.raises(InvalidArgumentError, match=r"odeint_checkpoint with event_fn does not differentiate t"):
        odeint_checkpoint(func, throw(), torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True), event_fn=ground)


def test_the_step_of_the_event_is_counted():
    """The solve stops at the first step that crosses the event: no step is taken past it."""
    with record_stats() as stats:
        event_t, _ = odeint(Ball(), throw(), torch.tensor([0.0, 1.0], dtype=F64), event_fn=ground, method="rk4",
                            options={"step_size": 0.25})  # fmt: skip
    assert stats.accepted_steps == math.ceil(event_t.item() / 0.25)


@pytest.mark.slow
def test_the_bouncing_ball_script_learns_the_coefficient_of_restitution():
    script = Path(__file__).resolve().parents[2] / "scripts" / "bouncing_ball.py"
    result = subprocess.run([sys.executable, str(script), "--bounces", "3", "--gradient", "adjoint"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "learned e = 0.80000" in result.stdout, result.stdout
    assert "relative difference" in result.stdout
