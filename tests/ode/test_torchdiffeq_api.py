"""torchdiffeq-style code run against this solver: the calls torchdiffeq's README and source document, with the
import swapped, checked against exact solutions where there are some.

Each test is written as a torchdiffeq user would write it (``from node_experiments.ode import odeint`` where they
had ``from torchdiffeq import odeint``); ``test_against_torchdiffeq.py`` runs the same calls through both libraries.
Events have their own file (``test_events.py``).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from ode_problems import CountingField

from node_experiments.ode import (
    InvalidArgumentError,
    odeint,
    odeint_adjoint,
    odeint_checkpoint,
    odeint_dense,
    record_stats,
)

SOLVERS = {"backprop": odeint, "adjoint": odeint_adjoint, "checkpoint": odeint_checkpoint}


def decay(t, y):
    return -y


class Decay(torch.nn.Module):
    def __init__(self, rate: float = 1.0, dtype=torch.float64):
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(rate, dtype=dtype))

    def forward(self, t, y):
        return -self.rate * y


# ---------------------------------------------------------------------------------------- shapes of the inputs
@pytest.mark.parametrize("gradient", list(SOLVERS))
def test_a_scalar_ode_with_a_0_dim_state(gradient):
    """y' = -k y from y0 = 3 (a 0-dim tensor): y(t) = 3 exp(-k t); the result has shape (len(t),)."""
    func = Decay(0.5)
    y0 = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    ys = SOLVERS[gradient](func, y0, t, rtol=1e-10, atol=1e-12)
    assert ys.shape == (5,)
    torch.testing.assert_close(ys, 3.0 * torch.exp(-0.5 * t), rtol=1e-8, atol=0)
    ys[-1].backward()
    torch.testing.assert_close(y0.grad, torch.exp(torch.tensor(-1.0, dtype=torch.float64)), rtol=1e-7, atol=0)
    torch.testing.assert_close(func.rate.grad, torch.tensor(-2.0 * 3.0 * math.exp(-1.0), dtype=torch.float64),
                               rtol=1e-7, atol=0)  # fmt: skip


def test_0_dim_parts_of_a_tuple_state():
    ys = odeint(lambda t, y: (y[1], -y[0]), (torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)),
                torch.tensor([0.0, math.pi / 2], dtype=torch.float64), rtol=1e-10, atol=1e-12)  # fmt: skip
    assert ys[0].shape == (2,) and ys[1].shape == (2,)
    assert abs(float(ys[0][-1])) < 1e-8 and abs(float(ys[1][-1]) + 1.0) < 1e-8


@pytest.mark.parametrize("gradient", list(SOLVERS))
def test_a_single_output_time_returns_y0(gradient):
    field = CountingField(decay)
    y0 = torch.tensor([1.0, 2.0], requires_grad=True)
    ys = SOLVERS[gradient](field, y0, torch.tensor([0.5]), adjoint_params=()) if gradient != "backprop" else odeint(
        field, y0, torch.tensor([0.5]))  # fmt: skip
    assert ys.shape == (1, 2) and torch.equal(ys[0], y0.detach()) and field.calls == 0
    ys.sum().backward()
    assert torch.equal(y0.grad, torch.ones(2))


# ---------------------------------------------------------------------------------------------------- methods
def test_method_none_is_dopri5():
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    y0 = torch.ones(2, dtype=torch.float64)
    assert torch.equal(odeint(decay, y0, t, method=None), odeint(decay, y0, t, method="dopri5"))


def test_heun2_is_heun():
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    y0 = torch.ones(2, dtype=torch.float64)
    assert torch.equal(odeint(decay, y0, t, method="heun2"), odeint(decay, y0, t, method="heun"))


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver"])
def test_torchdiffeq_methods_that_are_not_runge_kutta_say_what_to_use(method):
    with pytest.raises(InvalidArgumentError, match=rf"{method}.*not supported.*Runge-Kutta.*'rk4'.*'dopri5'"):
        odeint(decay, torch.ones(2), torch.tensor([0.0, 1.0]), method=method)


def test_odeint_dense_says_what_to_use_instead():
    with pytest.raises(InvalidArgumentError, match=r"odeint_dense.*not supported.*in t to odeint"):
        odeint_dense(decay, torch.ones(1), torch.tensor(0.0), torch.tensor(1.0), method="dopri5")


# ----------------------------------------------------------------------------------------------- tolerances
def test_tuple_tolerances_hold_each_part_to_its_own():
    """A fast decay beside a slow one in a tuple state: the tolerance of the fast part decides the steps, so
    tightening it costs evaluations and buys accuracy there, while tightening the slow part's costs little."""
    y0 = (torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    func = lambda t, y: (-5.0 * y[0], -0.1 * y[1])  # noqa: E731

    def solve(rtol, atol):
        with record_stats() as stats:
            ys = odeint(func, y0, t, rtol=rtol, atol=atol)
        return stats.nfe_forward, float((ys[0][-1] - math.exp(-10.0)).abs().max())

    fast_tight, fast_tight_error = solve((1e-8, 1e-3), (1e-10, 1e-5))
    slow_tight, slow_tight_error = solve((1e-3, 1e-8), (1e-5, 1e-10))
    assert fast_tight > 2 * slow_tight
    assert fast_tight_error < slow_tight_error / 100


def test_per_element_tolerance_tensor():
    """The same with a tensor state and a tensor of tolerances, one per element (broadcast to the state)."""
    rates = torch.tensor([[5.0, 0.1]], dtype=torch.float64)
    y0 = torch.ones(4, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)

    def solve(rtol):
        with record_stats() as stats:
            ys = odeint(lambda t, y: -rates * y, y0, t, rtol=torch.tensor(rtol, dtype=torch.float64), atol=1e-12)
        return stats.nfe_forward, float((ys[-1, :, 0] - math.exp(-10.0)).abs().max())

    fast_tight, fast_tight_error = solve([1e-8, 1e-3])
    slow_tight, slow_tight_error = solve([1e-3, 1e-8])
    assert fast_tight > 2 * slow_tight
    assert fast_tight_error < slow_tight_error / 100


def test_tuple_tolerance_of_the_wrong_length():
    with pytest.raises(InvalidArgumentError, match=r"rtol has 3 entries but y0 is a tuple of 2 tensors"):
        odeint(lambda t, y: y, (torch.ones(1), torch.ones(2)), torch.tensor([0.0, 1.0]), rtol=(1e-3, 1e-3, 1e-3))


def test_adjoint_with_tuple_tolerances():
    func = Decay(1.0)
    y0 = (torch.ones(2, dtype=torch.float64, requires_grad=True), torch.ones(2, dtype=torch.float64, requires_grad=True))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys = odeint_adjoint(lambda t, y: (func(t, y[0]), func(t, y[1])), y0, t, rtol=(1e-6, 1e-9), atol=(1e-8, 1e-11),
                        adjoint_params=tuple(func.parameters()))  # fmt: skip
    (ys[0][-1].sum() + ys[1][-1].sum()).backward()
    torch.testing.assert_close(y0[1].grad, torch.full((2,), math.exp(-1.0), dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(func.rate.grad, torch.tensor(-4 * math.exp(-1.0), dtype=torch.float64), rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------------- fixed-step options
def step_function(t, y):
    """dy/dt = 1 before t = 0.5 and 0 from there on: y(1) = y0 + 0.5 exactly, if no stage straddles the jump."""
    return torch.where(t < 0.5, torch.ones_like(y), torch.zeros_like(y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "heun3", "rk4"])
def test_perturb_steps_onto_a_jump_from_both_sides(method, dtype):
    """Steps of 0.25 land on the jump at 0.5: with perturb every stage at a step's end is evaluated just left of it
    and every step's first stage just right of its start, so each step sees one side of the jump only and the
    integral is exact. Without perturb, rk4's last stage of the step ending at 0.5 reads the field's value after
    the jump (0) and the result is off by 0.25/6. float32 times: the nudge is a float32 one."""
    y0 = torch.zeros(1, dtype=dtype)
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    ys = odeint(step_function, y0, t, method=method, options={"step_size": 0.25, "perturb": True})
    assert float(ys[-1]) == pytest.approx(0.5, abs=1e-6)
    if method == "rk4":
        plain = odeint(step_function, y0, t, method=method, options={"step_size": 0.25})
        assert float(plain[-1]) == pytest.approx(0.5 - 0.25 / 6, abs=1e-6)


def test_grid_constructor_is_the_grid():
    """A grid from a constructor, uneven on purpose: euler on y' = 1 - 2t (exact y = t - t^2) takes exactly these
    steps, whose result can be written down."""
    grid = torch.tensor([0.0, 0.1, 0.4, 1.0], dtype=torch.float64)
    seen = []

    def constructor(func, y0, t):
        seen.append((func, y0.shape, t.tolist()))
        return grid

    field = lambda t, y: (1 - 2 * t) * torch.ones_like(y)  # noqa: E731
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys = odeint(field, torch.zeros(2, dtype=torch.float64), t, method="euler",
                options={"grid_constructor": constructor})  # fmt: skip
    expected = sum((1 - 2 * a) * (b - a) for a, b in zip(grid.tolist(), grid.tolist()[1:]))
    assert float(ys[-1, 0]) == pytest.approx(expected, abs=1e-14)
    assert seen == [(field, torch.Size([2]), [0.0, 1.0])]


def test_grid_constructor_for_decreasing_times():
    grid = lambda func, y0, t: torch.linspace(float(t[0]), float(t[-1]), 11, dtype=t.dtype)  # noqa: E731
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ys = odeint(decay, torch.ones(1, dtype=torch.float64), t, method="rk4", options={"grid_constructor": grid})
    assert float(ys[-1]) == pytest.approx(math.exp(1.0), rel=1e-5)


def test_a_grid_that_misses_the_end_is_refused():
    grid = lambda func, y0, t: torch.tensor([0.0, 0.5], dtype=t.dtype)  # noqa: E731
    with pytest.raises(InvalidArgumentError, match=r"grid_constructor.*end at t\[-1\]=1.0"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler", options={"grid_constructor": grid})


def test_step_size_and_grid_constructor_together_are_refused():
    with pytest.raises(InvalidArgumentError, match="both 'step_size' and 'grid_constructor'"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler",
               options={"step_size": 0.1, "grid_constructor": lambda f, y0, t: t})  # fmt: skip


def test_linear_interpolation_between_grid_points():
    """interp='linear' (torchdiffeq's default): between grid points the output lies on the chord of the step."""
    t = torch.tensor([0.0, 0.05, 0.1], dtype=torch.float64)
    options = {"step_size": 0.1, "interp": "linear"}
    ys = odeint(decay, torch.ones(1, dtype=torch.float64), t, method="rk4", options=options)
    assert float(ys[1]) == pytest.approx(0.5 * (float(ys[0]) + float(ys[2])), abs=1e-15)
    cubic = odeint(decay, torch.ones(1, dtype=torch.float64), t, method="rk4", options={"step_size": 0.1})
    assert abs(float(cubic[1]) - math.exp(-0.05)) < abs(float(ys[1]) - math.exp(-0.05)) / 100


# ----------------------------------------------------------------------------------------------- callbacks
class Recording(torch.nn.Module):
    """A field with torchdiffeq's step callbacks, recording every call."""

    def __init__(self):
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.calls: list[tuple[str, float, float]] = []

    def forward(self, t, y):
        return -self.rate * y

    def _record(self, name, t0, y0, dt):
        assert t0.dim() == 0 and dt.dim() == 0 and float(dt) > 0
        self.calls.append((name, float(t0), float(dt)))

    def callback_step(self, t0, y0, dt):
        assert y0.shape == (3,)
        self._record("step", t0, y0, dt)

    def callback_accept_step(self, t0, y0, dt):
        self._record("accept", t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt):
        self._record("reject", t0, y0, dt)

    def callback_step_adjoint(self, t0, y0, dt):
        assert isinstance(y0, tuple) and len(y0) == 3  # (state, adjoint, rate's gradient)
        self._record("step_adjoint", t0, y0, dt)

    def callback_accept_step_adjoint(self, t0, y0, dt):
        self._record("accept_adjoint", t0, y0, dt)


def test_step_callbacks_match_the_solver_counts():
    field = Recording()
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 4.0], dtype=torch.float64)
    with record_stats() as stats:
        odeint_adjoint(field, y0, t, rtol=1e-8, atol=1e-8, options={"first_step": 1.0}).sum().backward()
    names = [name for name, _, _ in field.calls]
    forward = names[: names.index("step_adjoint")]
    assert forward.count("step") == stats.accepted_steps + stats.rejected_steps
    assert forward.count("accept") == stats.accepted_steps and forward.count("reject") == stats.rejected_steps > 0
    assert names.count("step_adjoint") == stats.backward_accepted_steps + stats.backward_rejected_steps
    assert names.count("accept_adjoint") == stats.backward_accepted_steps
    # Each step is announced before its outcome, at the time where it starts.
    for (name, t0, dt), (after, t1, dt1) in zip(field.calls, field.calls[1:]):
        if after in ("accept", "reject"):
            assert name == "step" and (t0, dt) == (t1, dt1)
    backward_times = [t0 for name, t0, _ in field.calls if name == "step_adjoint"]
    assert backward_times[0] == 4.0 and backward_times == sorted(backward_times, reverse=True)


def test_fixed_step_methods_call_callback_step_and_warn_about_the_others():
    field = Recording()
    with pytest.warns(UserWarning, match=r"fixed-step.*callback_step.*callback_accept_step"):
        odeint(field, torch.ones(3, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
               method="rk4", options={"step_size": 0.25})  # fmt: skip
    assert [(name, t0) for name, t0, _ in field.calls] == [("step", 0.0), ("step", 0.25), ("step", 0.5), ("step", 0.75)]


def test_a_field_without_callbacks_is_not_asked_for_them():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.5})


# ---------------------------------------------------------------------------------- options torchdiffeq has
def test_the_dtype_option_is_accepted():
    """torchdiffeq's ``dtype`` (the dtype of its times): float64, its default, is what this solver always uses."""
    y0, t = torch.ones(1), torch.tensor([0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = odeint(decay, y0, t, options={"dtype": torch.float64})
    assert torch.equal(same, odeint(decay, y0, t))
    with pytest.warns(UserWarning, match=r"dtype.*64-bit"):
        odeint(decay, y0, t, options={"dtype": torch.float32})


def test_norm_given_to_a_fixed_step_method_warns():
    with pytest.warns(UserWarning, match=r"norm.*no effect.*fixed-step"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler", options={"norm": "max"})


def test_an_unknown_option_is_an_error_that_says_torchdiffeq_would_ignore_it():
    with pytest.raises(InvalidArgumentError, match=r"first_stepp.*torchdiffeq warns about unknown options"):
        odeint(decay, torch.ones(1), torch.tensor([0.0, 1.0]), options={"first_stepp": 0.1})
