"""The solver options do what they say: step_t, jump_t, min_step, max_step, max_num_steps, first_step, norm,
the step-size controllers and their coefficients.

Where an option is about the steps themselves, the steps are observed through a ``CountingField`` recording the
times ``func`` is called at. For FSAL methods given ``first_step`` every attempt evaluates exactly the stages
``1 .. S-1`` at ``start + c_i h``, so the attempts can be reconstructed exactly
(``ode_problems.fsal_attempts``). For any explicit RK method, every step's start is an evaluation time
(stage 0 has ``c = 0``), so "the solver steps on s" shows as "``func`` is evaluated at s".
"""

from __future__ import annotations

import math

import pytest
import torch
from ode_problems import (
    ADAPTIVE,
    HARMONIC,
    LINEAR3,
    VAN_DER_POL,
    CountingField,
    cheap_tol,
    error_factor,
    fsal_attempts,
    max_scaled_error,
    scipy_reference,
)

from node_experiments.ode import (
    InvalidArgumentError,
    MaxStepsExceededError,
    NonFiniteDerivativeError,
    odeint,
    record_stats,
)
from node_experiments.ode.tableaus import TABLEAUS

FSAL_METHODS = ("dopri5", "tsit5", "bosh3")
F64 = torch.float64


def solve_counting(problem, t, **kwargs):
    field = CountingField(problem.func)
    with record_stats() as stats:
        ys = odeint(field, problem.y0(), t, **kwargs)
    return ys, field, stats


# ------------------------------------------------------------------------------------------------------ step_t
STEP_T = (0.3141592653589793, 1.2345678901234567, 2.718281828459045)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_step_t_times_are_stepped_on(method):
    t = HARMONIC.times(2)
    tol = cheap_tol(method)
    _, plain, _ = solve_counting(HARMONIC, t, rtol=tol, atol=tol, method=method)
    ys, field, _ = solve_counting(HARMONIC, t, rtol=tol, atol=tol, method=method, options={"step_t": list(STEP_T)})
    for s in STEP_T:
        assert any(abs(x - s) <= 1e-14 for x in field.times), f"no step starts at step_t={s}"
        assert not any(abs(x - s) <= 1e-9 for x in plain.times), "test is void: plain solve hits step_t already"
    assert max_scaled_error(ys, HARMONIC.exact(t), tol, tol) <= error_factor(method)


@pytest.mark.parametrize("method", FSAL_METHODS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_no_step_attempt_straddles_step_t(method, reverse):
    """Every attempt, accepted or rejected, lies on one side of each step_t time (and a step ends on it)."""
    t = HARMONIC.times(2, reverse=reverse)
    y0 = HARMONIC.start(reverse=reverse)
    field = CountingField(HARMONIC.func)
    odeint(field, y0, t, rtol=1e-6, atol=1e-6, method=method, options={"step_t": list(STEP_T), "first_step": 0.01})
    attempts = fsal_attempts(field.times, TABLEAUS[method].c)
    for s in STEP_T:
        for a, b in attempts:
            lo, hi = min(a, b), max(a, b)
            assert not (lo + 1e-12 < s < hi - 1e-12), f"attempt [{a}, {b}] straddles step_t={s}"
        assert any(abs(b - s) <= 1e-14 for _, b in attempts), f"no attempt ends on step_t={s}"


def test_step_t_outside_the_span_is_ignored():
    t = HARMONIC.times(2)
    ys, _, plain = solve_counting(HARMONIC, t, rtol=1e-6, atol=1e-6)
    ys2, _, stats = solve_counting(HARMONIC, t, rtol=1e-6, atol=1e-6, options={"step_t": [-1.0, 5.0, 3.0]})
    assert stats.nfe_forward == plain.nfe_forward
    torch.testing.assert_close(ys2, ys, rtol=0, atol=0)


def test_step_t_as_tensor():
    t = HARMONIC.times(2)
    _, field, _ = solve_counting(HARMONIC, t, rtol=1e-6, atol=1e-6, options={"step_t": torch.tensor(STEP_T, dtype=F64)})
    assert all(any(abs(x - s) <= 1e-14 for x in field.times) for s in STEP_T)


# ------------------------------------------------------------------------------------------------------ jump_t
def sign_switch(strict: bool):
    """dy/dt = 1 before 0.5 and -1 after: y = t, then 1 - t. ``strict`` decides which side owns t = 0.5 itself."""

    def field(t, y):
        before = bool(t < 0.5) if strict else bool(t <= 0.5)
        return torch.ones_like(y) if before else -torch.ones_like(y)

    return field


@pytest.mark.parametrize("strict", [True, False], ids=["t<0.5", "t<=0.5"])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_jump_t_steps_over_a_discontinuity_exactly(method, strict):
    """Piecewise constant derivatives are integrated exactly by every RK method, if no step crosses the jump
    and f is never evaluated on the wrong side of it (whichever side owns t = 0.5): no rejected step, the
    solution exact to round-off. Without jump_t the solver has to feel its way across with rejections."""
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    exact = torch.tensor([0.0, 0.25, 0.5, 0.25, 0.0], dtype=F64)
    y0 = torch.zeros(1, dtype=F64)
    with record_stats() as with_jump:
        ys = odeint(sign_switch(strict), y0, t, rtol=1e-8, atol=1e-8, method=method, options={"jump_t": [0.5]})
    with record_stats() as without:
        odeint(sign_switch(strict), y0, t, rtol=1e-8, atol=1e-8, method=method)
    assert float((ys[:, 0] - exact).abs().max()) <= 1e-13
    assert with_jump.rejected_steps == 0
    assert without.rejected_steps > 0
    assert with_jump.nfe_forward < without.nfe_forward


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_jump_t_with_a_state_dependent_field(method, reverse):
    """dy/dt = -y before t = 1 and -3y after (solution exp(-t), then exp(-1 - 3(t - 1))): accurate to the
    tolerance with jump_t, and cheaper than without. (Relative error control, atol = rtol / 100: backwards in
    time the solution grows by e**4 from 0.018, where an absolute tolerance would dominate and its errors be
    amplified 55x.)"""

    def field(t, y):
        return -y if t < 1.0 else -3.0 * y

    def exact(ts):
        return torch.where(ts < 1.0, torch.exp(-ts), torch.exp(-1.0 - 3.0 * (ts - 1.0)))[:, None] * torch.ones(2, dtype=F64)

    t = torch.linspace(0.0, 2.0, 9, dtype=F64)
    if reverse:
        t = t.flip(0)
    y0 = exact(t[:1])[0]
    rtol, atol = 1e-8, 1e-10
    with record_stats() as with_jump:
        ys = odeint(field, y0, t, rtol=rtol, atol=atol, method=method, options={"jump_t": torch.tensor([1.0])})
    with record_stats() as without:
        odeint(field, y0, t, rtol=rtol, atol=atol, method=method)
    assert max_scaled_error(ys, exact(t), rtol, atol) <= error_factor(method)
    assert with_jump.nfe_forward < without.nfe_forward


# ---------------------------------------------------------------------------------------------------- min_step
def test_min_step_that_is_never_needed_changes_nothing():
    t = HARMONIC.times(5)
    ys, _, plain = solve_counting(HARMONIC, t, rtol=1e-6, atol=1e-6)
    ys2, _, stats = solve_counting(HARMONIC, t, rtol=1e-6, atol=1e-6, options={"min_step": 1e-4})
    assert stats.nfe_forward == plain.nfe_forward
    torch.testing.assert_close(ys2, ys, rtol=0, atol=0)


def test_a_step_of_min_step_is_taken_whatever_its_error():
    """As in torchdiffeq (and scipy's LSODA): min_step bounds the steps, and a step at the bound is accepted even
    where the error control would want a smaller one. Here the jump at 0.5 is crossed by steps of min_step (it used
    to raise StepSizeTooSmallError), and the solution is off by about one such step."""
    class Jump(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attempts = []

        def forward(self, t, y):
            return torch.ones_like(y) if t >= 0.5 else torch.zeros_like(y)

        def callback_step(self, t0, y0, dt):
            self.attempts.append((float(t0), float(dt)))

    field = Jump()
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint(field, torch.zeros(1, dtype=F64), t, rtol=1e-10, atol=1e-10, options={"min_step": 1e-3, "first_step": 0.1})
    assert abs(float(ys[-1, 0]) - 0.5) <= 2e-3
    assert all(dt >= 1e-3 for t0, dt in field.attempts if t0 + dt < 1.0)  # all but the step that lands on t = 1
    assert len(field.attempts) < 100


def test_min_step_as_torchdiffeq_tests_it():
    """torchdiffeq's test: its linear problem (10 x 10) on [1, 8] with min_step = 2 takes far fewer evaluations
    (fewer than 50) than without (more than 100)."""
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(10, 10, generator=generator, dtype=F64) * 0.1
    a = 2 * u - (u + u.T)
    t = torch.linspace(1.0, 8.0, 10, dtype=F64)
    for min_step, fewer in ((0.0, False), (2.0, True)):
        field = CountingField(lambda t, y: a @ y)
        odeint(field, torch.ones(10, dtype=F64), t, options={"min_step": min_step})
        assert (field.calls < 50) if fewer else (field.calls > 100), (min_step, field.calls)


def test_a_non_finite_step_at_min_step_ends_the_solve():
    """A step of min_step that meets NaN cannot be retried smaller: NonFiniteDerivativeError, at once."""
    field = CountingField(lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y))
    with pytest.raises(NonFiniteDerivativeError):
        odeint(field, torch.ones(1, dtype=F64), HARMONIC.times(2), options={"min_step": 0.05})
    assert field.calls < 200


def test_min_step_does_not_fire_while_the_step_grows_from_a_small_initial_step():
    """From y0 = 0 the automatic initial step (Hairer-Norsett-Wanner) is tiny (~1e-4 here); the steps then grow
    by ifactor per step. None of that is the error control *needing* a step below min_step: the solve must go
    through (the initial step should start at least at min_step, or growth must not be mistaken for need)."""
    def field(t, y):
        return torch.cos(t) * torch.ones_like(y)

    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint(field, torch.zeros(1, dtype=F64), t, options={"min_step": 1e-2})
    assert abs(float(ys[-1, 0]) - math.sin(1.0)) <= 1e-6


# ---------------------------------------------------------------------------------------------------- max_step
@pytest.mark.parametrize("method", FSAL_METHODS)
def test_max_step_bounds_every_attempt(method):
    t = HARMONIC.times(2)
    max_step = 0.07
    field = CountingField(HARMONIC.func)
    with record_stats() as stats:
        ys = odeint(field, HARMONIC.y0(), t, rtol=1e-5, atol=1e-5, method=method,
                    options={"max_step": max_step, "first_step": 0.01})  # fmt: skip
    attempts = fsal_attempts(field.times, TABLEAUS[method].c)
    longest = max(b - a for a, b in attempts)
    assert longest <= max_step * (1 + 1e-12), f"a step of {longest} > max_step={max_step}"
    assert stats.accepted_steps >= math.ceil((t[-1] - t[0]).item() / max_step)
    assert max_scaled_error(ys, HARMONIC.exact(t), 1e-5, 1e-5) <= error_factor(method)


def test_max_step_is_not_exceeded_by_the_stretch_onto_the_last_point():
    """Step-size control commonly stretches a step by up to ~1% to land on an output/end point instead of leaving
    a sliver (Hairer). With max_step that stretch must not exceed it: here 9 steps of max_step leave 1.005 x
    max_step to the end, so the solver must take two more steps (or shorter ones), not one of 1.005 x max_step."""
    max_step = 1.0 / 10.005
    field = CountingField(lambda t, y: torch.ones_like(y))  # exact for any step: only max_step limits the steps
    odeint(field, torch.zeros(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
           options={"max_step": max_step, "first_step": max_step})  # fmt: skip
    attempts = fsal_attempts(field.times, TABLEAUS["dopri5"].c)
    longest = max(b - a for a, b in attempts)
    assert longest <= max_step * (1 + 1e-12), f"a step of {longest / max_step:.4f} x max_step"


def test_max_step_applies_to_the_first_step():
    field = CountingField(HARMONIC.func)
    odeint(field, HARMONIC.y0(), HARMONIC.times(2), options={"max_step": 0.01, "first_step": 0.5})
    attempts = fsal_attempts(field.times, TABLEAUS["dopri5"].c)
    assert attempts[0][1] - attempts[0][0] <= 0.01 * (1 + 1e-12)


# ----------------------------------------------------------------------------------------------- max_num_steps
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_max_num_steps_is_a_limit_not_a_target(method):
    """A solve that takes N steps succeeds with max_num_steps = N and raises with N - 1."""
    t = LINEAR3.times(3)
    options = {"step_size": 0.1} if method == "rk4" else {}
    with record_stats() as stats:
        expected = odeint(LINEAR3.func, LINEAR3.y0(), t, rtol=1e-6, atol=1e-6, method=method, options=options)
    n = stats.accepted_steps + stats.rejected_steps
    ys = odeint(LINEAR3.func, LINEAR3.y0(), t, rtol=1e-6, atol=1e-6, method=method,
                options={**options, "max_num_steps": n})  # fmt: skip
    torch.testing.assert_close(ys, expected, rtol=0, atol=0)
    with pytest.raises(MaxStepsExceededError, match="max_num_steps"):
        odeint(LINEAR3.func, LINEAR3.y0(), t, rtol=1e-6, atol=1e-6, method=method,
               options={**options, "max_num_steps": n - 1})  # fmt: skip


# -------------------------------------------------------------------------------------------------- first_step
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_first_step_is_the_first_attempt(method, reverse):
    """With first_step = h0 no evaluation is spent on choosing the initial step: after f(t0, y0) the next calls
    are the first attempt's stages, at t0 + c_i h0 (t0 - c_i h0 backwards in time)."""
    h0 = 0.0123
    tab = TABLEAUS[method]
    t = torch.tensor([0.0, 0.1], dtype=F64)  # only the first attempt matters
    if reverse:
        t = -t
    field = CountingField(HARMONIC.func)
    odeint(field, HARMONIC.y0(), t, rtol=1e-6, atol=1e-6, method=method, options={"first_step": h0})
    t0 = float(t[0])
    sign = -1.0 if reverse else 1.0
    assert field.times[0] == t0
    expected = [t0 + sign * c * h0 for c in tab.c[1:]]
    got = field.times[1 : len(tab.c)]
    assert got == pytest.approx(expected, abs=1e-15), f"first attempt's stage times {got}, expected {expected}"


# -------------------------------------------------------------------------------------------------------- norm
def test_default_norm_is_rms():
    t = LINEAR3.times(3)
    ys, _, a = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6)
    ys2, _, b = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6, options={"norm": "rms"})
    assert a.nfe_forward == b.nfe_forward
    torch.testing.assert_close(ys, ys2, rtol=0, atol=0)


def test_max_norm_is_stricter_than_rms():
    t = LINEAR3.times(3)
    _, _, rms = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6, options={"norm": "rms"})
    ys, _, mx = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6, options={"norm": "max"})
    assert mx.nfe_forward > rms.nfe_forward
    assert max_scaled_error(ys, LINEAR3.exact(t), 1e-6, 1e-6) <= error_factor("dopri5")


def test_callable_norm_matches_the_named_one():
    t = LINEAR3.times(3)
    shapes = []

    def max_norm(scaled_error):
        shapes.append(tuple(scaled_error.shape))
        return scaled_error.abs().max()

    ys, _, named = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6, options={"norm": "max"})
    ys2, _, custom = solve_counting(LINEAR3, t, rtol=1e-6, atol=1e-6, options={"norm": max_norm})
    assert named.nfe_forward == custom.nfe_forward
    torch.testing.assert_close(ys2, ys, rtol=0, atol=0)
    assert shapes and all(s == tuple(LINEAR3.y0().shape) for s in shapes), "the norm gets the error shaped like y0"


def test_callable_norm_gets_a_tuple_for_a_tuple_state():
    received = []

    def norm(scaled_error):
        received.append(scaled_error)
        return max(e.abs().max() for e in scaled_error)

    y0 = (torch.tensor([1.0], dtype=F64), torch.tensor([[0.5, 0.2]], dtype=F64))
    odeint(lambda t, s: (-s[0], -2 * s[1]), y0, HARMONIC.times(2), options={"norm": norm})
    assert received
    assert all(isinstance(r, tuple) and [x.shape for x in r] == [y.shape for y in y0] for r in received)


def test_norm_controls_the_steps():
    """A norm that always reports a tiny error lets the steps grow to max_step: nothing else limits them."""
    field = CountingField(HARMONIC.func)
    with record_stats() as stats:
        odeint(field, HARMONIC.y0(), HARMONIC.times(2),
               options={"norm": lambda e: torch.tensor(1e-12), "first_step": 0.5, "max_step": 0.5})  # fmt: skip
    assert stats.accepted_steps == 6 and stats.rejected_steps == 0  # 3 time units in steps of 0.5


# -------------------------------------------------------------------------------------------------- controllers
@pytest.mark.parametrize("controller", ["integral", "pi", "pid"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "dopri8"])
def test_controllers_are_accurate(method, controller):
    t = VAN_DER_POL.times(11)
    ys = odeint(VAN_DER_POL.func, VAN_DER_POL.y0(), t, rtol=1e-7, atol=1e-7, method=method,
                options={"controller": controller})  # fmt: skip
    err = max_scaled_error(ys, scipy_reference(VAN_DER_POL, t), 1e-7, 1e-7)
    assert err <= error_factor(method), f"{controller}: error {err:.3g} x tolerance"


def test_integral_controller_is_the_default():
    t = VAN_DER_POL.times(2)
    ys, _, default = solve_counting(VAN_DER_POL, t, rtol=1e-6, atol=1e-6)
    ys2, _, explicit = solve_counting(VAN_DER_POL, t, rtol=1e-6, atol=1e-6, options={"controller": "integral"})
    ys3, _, coeffs = solve_counting(VAN_DER_POL, t, rtol=1e-6, atol=1e-6,
                                    options={"controller": "pid", "pcoeff": 0.0, "icoeff": 1.0, "dcoeff": 0.0})
    assert default.nfe_forward == explicit.nfe_forward == coeffs.nfe_forward
    torch.testing.assert_close(ys2, ys, rtol=0, atol=0)
    torch.testing.assert_close(ys3, ys, rtol=0, atol=0)


def test_pi_and_pid_change_the_step_sequence():
    t = VAN_DER_POL.times(2)
    steps = {}
    for controller in ("integral", "pi", "pid"):
        field = CountingField(VAN_DER_POL.func)
        odeint(field, VAN_DER_POL.y0(), t, rtol=1e-6, atol=1e-6, options={"controller": controller})
        steps[controller] = field.times
    assert steps["pi"] != steps["integral"] and steps["pid"] != steps["integral"] and steps["pi"] != steps["pid"]


def test_controller_coefficients_are_used():
    t = VAN_DER_POL.times(2)
    a = CountingField(VAN_DER_POL.func)
    b = CountingField(VAN_DER_POL.func)
    odeint(a, VAN_DER_POL.y0(), t, rtol=1e-6, atol=1e-6, options={"controller": "pi"})
    odeint(b, VAN_DER_POL.y0(), t, rtol=1e-6, atol=1e-6, options={"controller": "pi", "pcoeff": 0.3})
    assert a.times != b.times


@pytest.mark.parametrize("name, value", [("safety", 0.5), ("ifactor", 2.0), ("dfactor", 0.5)])
def test_step_factor_options(name, value):
    """A smaller safety factor, a smaller maximal growth or a milder shrink are accepted, stay accurate and
    change the steps (safety 0.5 and ifactor 2 both mean more steps than the defaults 0.9 and 10)."""
    t = VAN_DER_POL.times(11)
    _, _, default = solve_counting(VAN_DER_POL, t, rtol=1e-6, atol=1e-6)
    ys, _, stats = solve_counting(VAN_DER_POL, t, rtol=1e-6, atol=1e-6, options={name: value})
    assert max_scaled_error(ys, scipy_reference(VAN_DER_POL, t), 1e-6, 1e-6) <= error_factor("dopri5")
    if name in ("safety", "ifactor"):
        assert stats.accepted_steps > default.accepted_steps


@pytest.mark.parametrize("options", [{"safety": 0.0}, {"safety": -1.0}, {"ifactor": 0.5}, {"dfactor": 1.5},
                                     {"max_num_steps": 0}, {"max_step": -1.0}, {"first_step": -0.1}])  # fmt: skip
def test_invalid_option_values(options):
    name = next(iter(options))
    with pytest.raises(InvalidArgumentError, match=name):
        odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(2), options=options)


# -------------------------------------------------------------------------------------------- fixed-step grid
@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4"])
def test_fixed_step_size_sets_the_number_of_steps(method):
    with record_stats() as stats:
        odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(7), method=method, options={"step_size": 0.03})
    assert stats.accepted_steps == 100 and stats.rejected_steps == 0


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_step_without_step_size_steps_on_t(method):
    t = torch.tensor([0.0, 0.1, 0.15, 0.4, 1.0], dtype=F64)
    field = CountingField(HARMONIC.func)
    with record_stats() as stats:
        odeint(field, HARMONIC.y0(), t, method=method)
    assert stats.accepted_steps == len(t) - 1
    for s in t.tolist():
        assert s in field.times or s == t[-1].item()
