"""Every error of the spec ("Bad input gets a clear error"), raised with a message that states the facts.

Messages are checked for the key facts only (the offending value, the option's name, the time reached), never
for their wording: numbers are parsed out of the message (``ode_problems.floats_in``) and compared as numbers.
Argument errors must be raised before any solving: the vector field is never called.
"""

from __future__ import annotations

import math
import time
import tracemalloc

import pytest
import torch
from ode_problems import ALL_METHODS, CountingField, floats_in, mentions_number, mentions_number_in

from node_experiments.ode import (
    InvalidArgumentError,
    MaxStepsExceededError,
    NonFiniteDerivativeError,
    SolverError,
    StepSizeTooSmallError,
    odeint,
    odeint_adjoint,
)

ADAPTIVE_OPTION_NAMES = (
    "first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step", "max_step", "step_t", "jump_t",
    "norm", "controller", "pcoeff", "icoeff", "dcoeff",
)  # fmt: skip
FIXED_OPTION_NAMES = ("step_size", "max_num_steps")

T = torch.tensor([0.0, 1.0], dtype=torch.float64)
Y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)


def decay(t, y):
    return -y


@pytest.mark.parametrize(
    "solve",
    [
        lambda: odeint(decay, Y0, T, method="dopri6"),
        lambda: odeint(lambda t, y: y * math.nan, Y0, T),
        lambda: odeint(decay, Y0, T, method="rk4", options={"step_size": 0.01, "max_num_steps": 10}),
    ],
    ids=["bad argument", "non-finite field", "step budget"],
)
def test_one_except_clause_catches_every_solver_failure(solve):
    """A caller (node-run, a training loop) catches each failure as a SolverError, and bad arguments also as the
    ValueError that they are, without listing the classes."""
    try:
        solve()
    except SolverError as error:
        assert isinstance(error, ValueError) == isinstance(error, InvalidArgumentError)
    else:
        pytest.fail("the solve should have failed")


def raises_before_solving(match=None, **kwargs):
    """Call odeint with a counting field and the given overrides; return the InvalidArgumentError's message."""
    field = CountingField(decay)
    args = dict(y0=Y0, t=T)
    args.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=match) as info:
        odeint(field, args.pop("y0"), args.pop("t"), **args)
    assert field.calls == 0, "argument errors must be raised before the vector field is called"
    return str(info.value)


# -------------------------------------------------------------------------------------------------------- t
def test_t_not_one_dimensional():
    msg = raises_before_solving(t=torch.zeros(2, 2, dtype=torch.float64), match=r"\bt\b")
    assert "(2, 2)" in msg or "2-D" in msg or "2 dim" in msg, msg


def test_t_zero_dimensional():
    raises_before_solving(t=torch.tensor(1.0, dtype=torch.float64), match=r"\bt\b")


def test_t_without_points():
    msg = raises_before_solving(t=torch.tensor([], dtype=torch.float64), match=r"(?i)at least one")
    assert "(0,)" in msg, msg


@pytest.mark.parametrize(
    "values, culprits",
    [([0.0, 1.0, 0.5, 2.0], (1.0, 0.5)), ([0.0, 1.0, 1.0, 2.0], (1.0,)), ([2.0, 1.0, 1.5, 0.0], (1.0, 1.5))],
    ids=["not_monotone", "repeated", "decreasing_then_not"],
)
def test_t_not_strictly_monotone(values, culprits):
    msg = raises_before_solving(t=torch.tensor(values, dtype=torch.float64), match=r"(?i)increasing|decreasing|monoton")
    for value in culprits:
        assert mentions_number(msg, value), f"the message should name the offending time {value}: {msg}"


# ------------------------------------------------------------------------------------------------------- y0
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_y0_not_floating_point(dtype):
    msg = raises_before_solving(y0=torch.tensor([1, 0], dtype=dtype), match=r"(?i)float")
    assert str(dtype).removeprefix("torch.") in msg, msg


def test_tuple_y0_with_an_integer_part():
    raises_before_solving(y0=(Y0, torch.tensor([1, 2])), match=r"(?i)float")


def _other_devices():
    devices = ["meta"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.mark.parametrize("device", _other_devices())
def test_y0_and_t_on_different_devices(device):
    """``meta`` tensors stand in for a second device on a CPU-only machine (and CUDA is used where present)."""
    msg = raises_before_solving(y0=Y0.to(device), match=r"(?i)device")
    assert device in msg and "cpu" in msg, msg
    msg = raises_before_solving(t=T.to(device), match=r"(?i)device")
    assert device in msg and "cpu" in msg, msg


# ------------------------------------------------------------------------------------------------- method
def test_unknown_method_lists_the_valid_ones():
    msg = raises_before_solving(method="dopri6", match="dopri6")
    missing = [name for name in ALL_METHODS if name not in msg]
    assert not missing, f"the message should list every valid method, missing {missing}: {msg}"


def test_unknown_adjoint_method():
    func = CountingField(decay)
    with pytest.raises(InvalidArgumentError, match="adjoint_method") as info:
        odeint_adjoint(func, Y0.clone().requires_grad_(True), T, adjoint_method="rk5")
    assert "rk5" in str(info.value) and "dopri5" in str(info.value)
    assert func.calls == 0


# --------------------------------------------------------------------------------------------- tolerances
@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [-1e-6, math.nan, math.inf, -math.inf], ids=["negative", "nan", "inf", "-inf"])
def test_bad_tolerance(name, value):
    msg = raises_before_solving(**{name: value}, match=name)
    if math.isnan(value):
        assert "nan" in msg.lower(), msg
    elif math.isinf(value):
        assert "inf" in msg.lower(), msg
    else:
        assert mentions_number(msg, value), f"the message should give the value {value}: {msg}"


@pytest.mark.parametrize("name", ["adjoint_rtol", "adjoint_atol"])
def test_bad_adjoint_tolerance(name):
    func = CountingField(decay)
    with pytest.raises(InvalidArgumentError, match=name) as info:
        odeint_adjoint(func, Y0.clone().requires_grad_(True), T, **{name: -0.5})
    assert mentions_number(str(info.value), -0.5)
    assert func.calls == 0


def test_zero_tolerances_are_allowed():
    """Only negative or non-finite tolerances are errors: rtol = 0 (pure absolute control) is legitimate."""
    ys = odeint(decay, Y0, T, rtol=0.0, atol=1e-8)
    torch.testing.assert_close(ys[-1], Y0 * math.exp(-1.0), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ options
def test_unknown_adaptive_option_is_named_and_accepted_ones_listed():
    msg = raises_before_solving(options={"step_size": 0.1}, match="step_size")
    missing = [name for name in ADAPTIVE_OPTION_NAMES if name not in msg]
    assert not missing, f"the message should list the accepted options, missing {missing}: {msg}"


def test_misspelt_option():
    raises_before_solving(options={"max_steps": 10}, match="max_steps")


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_unknown_fixed_step_option_is_named_and_accepted_ones_listed(method):
    msg = raises_before_solving(method=method, options={"first_step": 0.1}, match="first_step")
    missing = [name for name in FIXED_OPTION_NAMES if name not in msg]
    assert not missing, f"the message should list the accepted options, missing {missing}: {msg}"


def test_unknown_adjoint_option():
    func = CountingField(decay)
    with pytest.raises(InvalidArgumentError, match="frist_step"):
        odeint_adjoint(func, Y0.clone().requires_grad_(True), T, adjoint_options={"frist_step": 0.1})
    assert func.calls == 0


@pytest.mark.parametrize("option, value", [("norm", "l1"), ("controller", "pidd")])
def test_unknown_norm_or_controller_name(option, value):
    raises_before_solving(options={option: value}, match=value)


def test_adjoint_needs_a_module_or_adjoint_params():
    with pytest.raises(InvalidArgumentError, match="adjoint_params"):
        odeint_adjoint(decay, Y0.clone().requires_grad_(True), T)


# ------------------------------------------------------------------------------------- errors while solving
def test_non_finite_derivative_at_the_start():
    def bad(t, y):
        return y * math.nan

    t = torch.tensor([0.25, 1.0], dtype=torch.float64)
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(bad, Y0, t)
    assert mentions_number(str(info.value), 0.25), f"the message should say at which t: {info.value}"


def nan_after(t_bad: float):
    """``-y`` until ``t_bad``, NaN from there on (as a field that overflows or divides by zero would)."""

    def field(t, y):
        return torch.where(t > t_bad, torch.full_like(y, math.nan), -y)

    return field


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "adaptive_heun"])
def test_non_finite_derivative_while_solving_adaptive(method):
    """The field turns NaN for t > 0.5: the solver must say so (and near which t), not report a tiny step."""
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(nan_after(0.5), Y0, T, rtol=1e-6, atol=1e-6, method=method)
    assert mentions_number_in(str(info.value), 0.45, 0.55), f"the message should say at which t: {info.value}"


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"])
def test_a_field_that_overflows_stops_where_it_overflows(method):
    """y' = 1e38 y in float32: the derivative overflows once y > 3.4, at t = ln(3.4) / 1e38 = 1.22e-38. The solver
    used to retry ever smaller steps short of that point for minutes (20,000 steps in 9 s reached t = 1.2247e-38
    and counting); now the retries are bounded and the error names the time and the overflow. (Getting there takes
    dopri5 about 80 attempts, adaptive_heun, of order 2 at rtol 1e-7, about 3,100.)"""
    field = CountingField(lambda t, y: y * 1e38)
    start = time.perf_counter()
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(field, torch.ones(2), T, method=method)
    assert field.calls < 10_000 and time.perf_counter() - start < 10.0
    msg = str(info.value)
    assert mentions_number_in(msg, 1.0e-38, 1.3e-38), f"the message should say at which t: {msg}"
    assert "overflow" in msg and mentions_number(msg, 3.4028234663852886e38), msg


def test_a_field_undefined_beyond_a_time_stops_within_a_few_retries():
    """NaN for t > 0.5: the steps close in on 0.5 and the solve ends within a few dozen attempts of getting there,
    naming the interval."""
    field = CountingField(nan_after(0.5))
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(field, Y0, T, rtol=1e-6, atol=1e-6, options={"max_num_steps": 10_000})
    assert field.calls < 400
    assert mentions_number_in(str(info.value), 0.45, 0.5) and mentions_number_in(str(info.value), 0.5, 0.55)


def test_a_field_undefined_after_an_overshoot_is_stepped_around():
    """sqrt(y) with y' = -sqrt(y) + 1, y0 = 4: a long first step overshoots to y < 0 where sqrt is NaN; shorter
    steps never leave y > 0 (the solution tends to 1), so the solve must retry smaller and go on."""
    ys = odeint(lambda t, y: -torch.sqrt(y) + 1.0, torch.tensor([4.0], dtype=torch.float64),
                torch.tensor([0.0, 20.0], dtype=torch.float64), options={"first_step": 30.0})  # fmt: skip
    assert abs(float(ys[-1]) - 1.0) < 1e-2


def test_a_fixed_step_solve_stops_at_the_step_that_blows_up():
    """100,000 Euler steps, NaN from t = 0.5 on: the solve stops within a few steps of it, naming the step, rather
    than running the other 50,000 on NaN and reporting the whole output interval [0, 1]."""
    field = CountingField(nan_after(0.5))
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(field, Y0, T, method="euler", options={"step_size": 1e-5})
    assert field.calls < 50_100
    assert mentions_number_in(str(info.value), 0.5, 0.50003), info.value


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_non_finite_derivative_while_solving_fixed_step(method):
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    with pytest.raises(NonFiniteDerivativeError) as info:
        odeint(nan_after(0.55), Y0, t, method=method, options={"step_size": 0.05})
    assert mentions_number_in(str(info.value), 0.5, 0.6), f"the message should say at which t: {info.value}"


def step_at(t_jump: float):
    """0 before ``t_jump``, 1 after: a discontinuity the error control can only meet by shrinking the step."""

    def field(t, y):
        return torch.ones_like(y) if t >= t_jump else torch.zeros_like(y)

    return field


def test_step_size_underflow():
    """With rtol = 0 and atol = 1e-20 the discontinuity at 0.5 demands steps below float64's resolution there.

    Reaching 0.5 takes a few hundred steps (the gap to 0.5 shrinks geometrically); max_num_steps = 5000 only keeps
    a solver that fails to notice the underflow from looping for its default million steps.
    """
    with pytest.raises(StepSizeTooSmallError) as info:
        odeint(step_at(0.5), torch.zeros(1, dtype=torch.float64), T, rtol=0.0, atol=1e-20,
               options={"max_num_steps": 5000})  # fmt: skip
    msg = str(info.value)
    assert mentions_number_in(msg, 0.4999, 0.5), f"the message should give the t reached: {msg}"
    assert any(0 < x < 1e-15 for x in floats_in(msg)), f"the message should give the step size dt: {msg}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_step_size_underflow_message_does_not_ask_for_float64(dtype):
    """Times are 64-bit host floats whatever the state's dtype: switching the state to float64 cannot help, so the
    message must not suggest it, and says that times are already 64-bit."""
    with pytest.raises(StepSizeTooSmallError) as info:
        odeint(step_at(0.5), torch.zeros(1, dtype=dtype), T, rtol=0.0, atol=1e-20, options={"max_num_steps": 5000})
    msg = str(info.value)
    assert "use float64" not in msg and "64-bit" in msg, msg


def test_max_num_steps_exceeded_adaptive():
    """Steps of exactly 0.01 (max_step) from t = 0: after 10 steps the solver stands at t = 0.1."""
    with pytest.raises(MaxStepsExceededError) as info:
        odeint(lambda t, y: torch.ones_like(y), Y0, T, options={"first_step": 0.01, "max_step": 0.01,
                                                                 "max_num_steps": 10})  # fmt: skip
    msg = str(info.value)
    assert "max_num_steps" in msg, msg
    assert mentions_number_in(msg, 0.09, 0.11), f"the message should give the t reached (0.1): {msg}"


@pytest.mark.parametrize("solver", [odeint, odeint_adjoint], ids=["odeint", "adjoint"])
def test_a_tiny_fixed_step_is_refused_before_its_grid_is_built(solver):
    """euler with step 1e-9 on [0, 1e6] is 1e15 steps: the grid used to be built as a Python list first (32 GB and a
    MemoryError in a run with step 1e-9 on [0, 1]); it is counted and refused at once, without growing the memory."""
    field = CountingField(decay)
    t = torch.tensor([0.0, 1e6], dtype=torch.float64)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(MaxStepsExceededError) as info:
            solver(field, Y0.clone().requires_grad_(True), t, method="euler", options={"step_size": 1e-9},
                   **({"adjoint_params": ()} if solver is odeint_adjoint else {}))  # fmt: skip
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 1_000_000, (elapsed, peak)
    assert field.calls == 0
    msg = str(info.value)
    assert mentions_number(msg, 1e15) and "max_num_steps" in msg and "step_size" in msg, msg


def test_a_constructed_grid_is_counted_before_it_is_read():
    with pytest.raises(MaxStepsExceededError, match="grid_constructor"):
        odeint(decay, Y0, T, method="euler",
               options={"grid_constructor": lambda f, y0, t: torch.linspace(0, 1, 2001, dtype=t.dtype),
                        "max_num_steps": 1000})  # fmt: skip


def test_the_adjoint_s_fixed_step_backward_grid_is_counted_too():
    """The backward solve lands on every output time: its grid, built per output interval, is counted as a whole."""
    y0 = Y0.clone().requires_grad_(True)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    ys = odeint_adjoint(decay, y0, t, method="euler", options={"step_size": 0.01}, adjoint_params=(),
                        adjoint_options={"step_size": 0.001, "max_num_steps": 999})  # fmt: skip
    with pytest.raises(MaxStepsExceededError, match="1000 steps"):
        ys.sum().backward()


def test_max_num_steps_exceeded_fixed_step():
    """A fixed-step solve may refuse up front (its grid is known): it must name the option and the step count."""
    with pytest.raises(MaxStepsExceededError) as info:
        odeint(decay, Y0, T, method="rk4", options={"step_size": 0.01, "max_num_steps": 10})
    msg = str(info.value)
    assert "max_num_steps" in msg and mentions_number(msg, 10), msg
