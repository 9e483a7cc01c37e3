"""Statistics are exact: ``record_stats`` reports what the solver did, no more and no less.

A ``CountingField`` counts the calls of the vector field; its count must equal ``nfe_forward`` (and, for the
adjoint, the calls made during ``backward()`` must equal ``nfe_backward``: the adjoint's backward evaluates
``func`` inside a vector-Jacobian product, one ``forward`` call per evaluation). Step counts are checked
against a norm callable (called once per attempted step when ``first_step`` is given) and against the stage
structure of the methods (FSAL reuse; fixed-step ``stages x steps``).
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import ADAPTIVE, ALL_METHODS, FIXED, HARMONIC, LINEAR3, CountingField, MLPField, cheap_tol

from node_experiments.ode import MaxStepsExceededError, SolverStats, odeint, odeint_adjoint, record_stats
from node_experiments.ode.tableaus import TABLEAUS

F64 = torch.float64
STAT_FIELDS = (
    "nfe_forward", "accepted_steps", "rejected_steps", "solves",
    "nfe_backward", "backward_accepted_steps", "backward_rejected_steps",
)  # fmt: skip


def options_for(method, **extra):
    return {"step_size": 0.05, **extra} if method in FIXED else dict(extra)


def test_recorder_starts_at_zero():
    with record_stats() as stats:
        pass
    assert isinstance(stats, SolverStats)
    assert all(getattr(stats, name) == 0 for name in STAT_FIELDS)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_nfe_equals_the_calls_of_the_vector_field(method, dtype):
    field = CountingField(LINEAR3.func)
    t = LINEAR3.times(7, dtype)  # most outputs by dense output
    with record_stats() as stats:
        tol = cheap_tol(method)
        odeint(field, LINEAR3.y0(dtype), t, rtol=tol, atol=tol, method=method, options=options_for(method))
    assert stats.nfe_forward == field.calls > 0
    assert stats.solves == 1
    assert stats.accepted_steps > 0
    if method in FIXED:
        assert stats.rejected_steps == 0
    assert stats.nfe_backward == stats.backward_accepted_steps == stats.backward_rejected_steps == 0


@pytest.mark.parametrize("method", ALL_METHODS)
def test_nfe_exact_for_a_tuple_state_and_reversed_time(method):
    field = CountingField(lambda t, s: (s[1], -4.0 * s[0]))
    y0 = (torch.tensor([1.0], dtype=F64), torch.tensor([0.5], dtype=F64))
    with record_stats() as stats:
        odeint(field, y0, HARMONIC.times(5, reverse=True), rtol=cheap_tol(method), atol=cheap_tol(method),
               method=method, options=options_for(method))  # fmt: skip
    assert stats.nfe_forward == field.calls


@pytest.mark.parametrize("method", ADAPTIVE)
def test_step_counts_are_exact(method):
    """With first_step given, the error norm is evaluated once per attempted step: the norm callable's calls equal
    accepted + rejected. A first step of 1.0 at a tight tolerance forces rejections."""
    norm_calls = 0

    def rms(scaled_error):
        nonlocal norm_calls
        norm_calls += 1
        return scaled_error.pow(2).mean().sqrt()

    field = CountingField(HARMONIC.func)
    tol = cheap_tol(method)
    with record_stats() as stats:
        odeint(field, HARMONIC.y0(), HARMONIC.times(2), rtol=tol, atol=tol, method=method,
               options={"first_step": 1.0, "norm": rms})  # fmt: skip
    assert stats.rejected_steps >= 1
    assert norm_calls == stats.accepted_steps + stats.rejected_steps
    assert stats.nfe_forward == field.calls
    tab = TABLEAUS[method]
    if tab.fsal:
        # f(t0, y0), then stages 1..S-1 per attempt: stage 0 is the previous step's last stage (FSAL) or, after a
        # rejection, the same f(t, y) again.
        assert stats.nfe_forward == 1 + (tab.stages - 1) * norm_calls
    else:
        # Not FSAL (adaptive_heun, fehlberg2, dopri8): the last stage is not evaluated at the propagated solution, so
        # each accepted step but the last pays one evaluation f(t, y_new) for the next step's first stage.
        # (torchdiffeq reuses the last stage there anyway: half adaptive_heun's evaluations, docs/benchmarks.md.)
        assert stats.nfe_forward == 1 + (tab.stages - 1) * norm_calls + stats.accepted_steps - 1


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_nfe_is_stages_times_steps(method):
    field = CountingField(HARMONIC.func)
    with record_stats() as stats:
        odeint(field, HARMONIC.y0(), HARMONIC.times(4), method=method, options={"step_size": 0.01})
    assert stats.accepted_steps == 300
    assert stats.nfe_forward == field.calls == TABLEAUS[method].stages * 300


def test_recorders_nest_and_every_active_one_counts():
    outer_field, inner_field = CountingField(HARMONIC.func), CountingField(LINEAR3.func)
    with record_stats() as outer:
        odeint(outer_field, HARMONIC.y0(), HARMONIC.times(2))
        with record_stats() as inner:
            odeint(inner_field, LINEAR3.y0(), LINEAR3.times(2), method="bosh3")
        after_inner = CountingField(HARMONIC.func)
        odeint(after_inner, HARMONIC.y0(), HARMONIC.times(2), method="rk4", options={"step_size": 0.1})
    assert inner.solves == 1 and inner.nfe_forward == inner_field.calls
    assert outer.solves == 3
    assert outer.nfe_forward == outer_field.calls + inner_field.calls + after_inner.calls


def test_closed_recorder_counts_nothing_more():
    with record_stats() as stats:
        odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(2))
    snapshot = {name: getattr(stats, name) for name in STAT_FIELDS}
    odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(2))
    assert {name: getattr(stats, name) for name in STAT_FIELDS} == snapshot


def test_solves_add_up():
    fields = [CountingField(HARMONIC.func) for _ in range(3)]
    with record_stats() as stats:
        for field in fields:
            odeint(field, HARMONIC.y0(), HARMONIC.times(2), rtol=1e-5, atol=1e-5)
    assert stats.solves == 3
    assert stats.nfe_forward == sum(f.calls for f in fields)


def test_a_failed_solve_still_reports_its_work():
    field = CountingField(HARMONIC.func)
    with record_stats() as stats:
        with pytest.raises(MaxStepsExceededError):
            odeint(field, HARMONIC.y0(), HARMONIC.times(2), rtol=1e-10, atol=1e-10, options={"max_num_steps": 5})
    assert stats.nfe_forward == field.calls > 0


def test_direct_backprop_is_not_a_backward_solve():
    func = CountingField(MLPField(seed=4))
    y0 = torch.randn(3, 2, dtype=F64, requires_grad=True)
    with record_stats() as stats:
        ys = odeint(func, y0, HARMONIC.times(2), rtol=1e-6, atol=1e-6)
        ys.sum().backward()
    assert stats.nfe_forward == func.calls
    assert stats.nfe_backward == 0 and stats.backward_accepted_steps == 0


# ---------------------------------------------------------------------------------------------------- adjoint
def _adjoint_setup(t_requires_grad):
    func = CountingField(MLPField(dim=2, hidden=16, seed=5))
    y0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64, requires_grad=t_requires_grad)
    return func, y0, t


@pytest.mark.parametrize("t_requires_grad", [False, True], ids=["no_t_grad", "t_grad"])
@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_adjoint_backward_nfe_is_exact_and_separate(method, t_requires_grad):
    func, y0, t = _adjoint_setup(t_requires_grad)
    options = options_for(method)
    with record_stats() as stats:
        ys = odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6, method=method, options=options)
        forward_calls = func.calls
        assert stats.nfe_forward == forward_calls and stats.solves == 1
        assert stats.nfe_backward == 0
        ys.pow(2).sum().backward()
        backward_calls = func.calls - forward_calls
    assert stats.nfe_forward == forward_calls, "backward() must not add to the forward NFE"
    assert stats.nfe_backward == backward_calls > 0
    assert stats.backward_accepted_steps > 0
    if method in FIXED:
        assert stats.backward_rejected_steps == 0


def test_adjoint_backward_is_counted_by_the_recorder_active_during_backward():
    func, y0, t = _adjoint_setup(False)
    with record_stats() as forward_stats:
        ys = odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6)
    forward_calls = func.calls
    with record_stats() as backward_stats:
        ys.sum().backward()
    assert forward_stats.nfe_forward == forward_calls and forward_stats.nfe_backward == 0
    assert backward_stats.nfe_forward == 0 and backward_stats.solves == 0
    assert backward_stats.nfe_backward == func.calls - forward_calls > 0


def test_adjoint_backward_counts_in_every_active_recorder():
    func, y0, t = _adjoint_setup(False)
    with record_stats() as outer:
        ys = odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6)
        forward_calls = func.calls
        with record_stats() as inner:
            ys.sum().backward()
    backward_calls = func.calls - forward_calls
    assert inner.nfe_backward == outer.nfe_backward == backward_calls
    assert inner.backward_accepted_steps == outer.backward_accepted_steps > 0
    assert outer.nfe_forward == forward_calls and inner.nfe_forward == 0


def test_adjoint_backward_without_a_recorder():
    func, y0, t = _adjoint_setup(True)
    ys = odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-6)
    ys.sum().backward()
    assert y0.grad is not None and t.grad is not None


def test_recorders_with_equal_counts_close_in_order():
    """Recorders are told apart by identity: an inner one opened while the outer still has equal (zero) counts
    closes itself, not the outer one, and counts nothing after it closes."""
    with record_stats() as outer:
        with record_stats() as inner:
            odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(2))
        odeint(HARMONIC.func, HARMONIC.y0(), HARMONIC.times(2))
    assert (outer.solves, inner.solves) == (2, 1)
