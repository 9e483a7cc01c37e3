"""Every method against closed-form solutions, in float32 and float64, forward and reversed in time; dense output.

Problems (``ode_problems.EXACT_PROBLEMS``): exponential decay, the harmonic oscillator, a non-normal 3x3 linear
system on a batch of states (against ``torch.linalg.matrix_exp``) and the nonlinear, non-autonomous Riccati
equation ``y' = -2 t y**2``.

Error bounds:

- adaptive methods control the local error per step to ``rtol * |y| + atol``; over these short intervals
  (a few time units, perturbations amplified by at most e**2) the global error stays within a modest
  multiple of it. We require ``|y - y_exact| <= C * (rtol * |y_exact| + atol)`` elementwise at every
  output time (interpolated ones included), with ``C = C_ADAPTIVE = 20`` for every method but ``fehlberg2``.
  ``fehlberg2`` propagates the 2nd-order solution of Fehlberg's RKF1(2) pair but estimates the error of its
  1st-order partner, whose leading error coefficient is tiny (``sum b_hat c = 255/512`` instead of ``1/2``, off
  by ``1/512``): the estimate understates the propagated solution's error by a factor of order 512, so its
  global error is still proportional to the tolerance but with ``C = C_FEHLBERG2 = 4 * 512`` (torchdiffeq's
  ``fehlberg2`` shows the same ratio, ~100-1300 on these problems).
- fixed-step methods of order ``p`` with step ``h`` have global error ``<= K h**p`` with ``K`` depending on the
  problem's derivatives and Lipschitz constant over the interval; for these problems (all of size O(1)) we
  require ``|y - y_exact| <= C_FIXED * h**p * max|y_exact| + rounding``, ``C_FIXED = 10``, where ``rounding``
  ``= 10 * n_steps * eps(dtype) * max|y_exact|`` bounds the accumulated round-off (which dominates rk4 in float32).

The tolerances per method are chosen so each solve takes at most a few thousand steps (the low-order methods
run at looser tolerances than the high-order ones) and, in float32, stay well above round-off.
"""

from __future__ import annotations

import math

import pytest
import torch
from ode_problems import (
    ADAPTIVE,
    DTYPES,
    EXACT_PROBLEMS,
    FIXED,
    HARMONIC,
    LINEAR3,
    ORDER,
    RICCATI,
    CountingField,
    accurate_output_options,
    dtype_id,
    error_factor,
    max_scaled_error,
)

from node_experiments.ode import odeint, record_stats
from node_experiments.ode.tableaus import TABLEAUS

C_FIXED = 10.0
FIXED_H = 0.02  # divides every problem's interval (1, 2 and 3 time units)

# rtol = atol per method and dtype.
ADAPTIVE_TOL = {
    torch.float64: {
        "dopri5": 1e-9,
        "tsit5": 1e-9,
        "dopri8": 1e-10,
        "bosh3": 1e-7,
        "fehlberg2": 1e-6,
        "adaptive_heun": 1e-5,
    },
    torch.float32: {
        "dopri5": 1e-5,
        "tsit5": 1e-5,
        "dopri8": 1e-5,
        "bosh3": 1e-5,
        "fehlberg2": 1e-4,
        "adaptive_heun": 1e-4,
    },
}

N_OUT = 9  # output times per solve: most of them reached by dense output


def _ids(values):
    return [dtype_id(v) if isinstance(v, torch.dtype) else str(v) for v in values]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("problem", EXACT_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_matches_exact_solution(method, problem, dtype, reverse):
    tol = ADAPTIVE_TOL[dtype][method]
    t = problem.times(N_OUT, dtype, reverse)
    y0 = problem.start(dtype, reverse)
    ys = odeint(problem.func, y0, t, rtol=tol, atol=tol, method=method, options=accurate_output_options(method, t))

    assert ys.shape == (N_OUT, *y0.shape)
    assert ys.dtype == dtype
    assert torch.equal(ys[0], y0), "the first output must be y0 itself"
    exact = problem.exact(t.to(torch.float64))
    err = max_scaled_error(ys, exact, tol, tol)
    allowed = error_factor(method)
    assert err <= allowed, f"global error is {err:.3g} x (rtol*|y| + atol), allowed {allowed}"


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("problem", EXACT_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_end_point_matches_exact_solution(method, problem, dtype):
    """Only ``[t0, t1]`` as output times: the stepped solution itself, no dense output involved (so that a failure
    of the test above with this one passing points at the dense output)."""
    tol = ADAPTIVE_TOL[dtype][method]
    t = problem.times(2, dtype)
    ys = odeint(problem.func, problem.y0(dtype), t, rtol=tol, atol=tol, method=method)
    err = max_scaled_error(ys[-1], problem.exact(t.to(torch.float64))[-1], tol, tol)
    assert err <= error_factor(method), f"error at t1 is {err:.3g} x tolerance"


def _fixed_bound(method: str, dtype: torch.dtype, exact: torch.Tensor, h: float, n_steps: int) -> float:
    scale = float(exact.abs().max())
    rounding = 10 * n_steps * torch.finfo(dtype).eps * scale
    return C_FIXED * h ** ORDER[method] * scale + rounding


@pytest.mark.parametrize("grid", ["step_size", "on_t"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("problem", EXACT_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_matches_exact_solution(method, problem, dtype, reverse, grid):
    span = problem.t1 - problem.t0
    n_steps = round(span / FIXED_H)
    if grid == "step_size":
        # Output times on every 5th grid point (so the solution there is the stepped one, not interpolated).
        t = problem.times(n_steps // 5 + 1, dtype, reverse)
        options = {"step_size": FIXED_H}
    else:
        t = problem.times(n_steps + 1, dtype, reverse)
        options = None
    y0 = problem.start(dtype, reverse)
    ys = odeint(problem.func, y0, t, method=method, options=options)

    assert ys.shape == (len(t), *y0.shape)
    assert torch.equal(ys[0], y0)
    exact = problem.exact(t.to(torch.float64))
    err = float((ys.to(torch.float64) - exact).abs().max())
    bound = _fixed_bound(method, dtype, exact, FIXED_H, n_steps)
    assert err <= bound, f"global error {err:.3g} exceeds {C_FIXED} h^{ORDER[method]} (+ rounding) = {bound:.3g}"


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
def test_tuple_state_matches_exact_solution(method):
    """A tuple state ``(x, v)`` of the harmonic oscillator: tuple result, same accuracy as the tensor state.

    Fixed-step methods do the same arithmetic as on the concatenated tensor state (results agree to round-off).
    Adaptive ones may measure the error per part of the tuple (as torchdiffeq's mixed norm does), so their steps
    can differ from the tensor state's: only the accuracy is compared.
    """
    omega2 = 4.0

    def tuple_field(t, state):
        x, v = state
        return v, -omega2 * x

    t = HARMONIC.times(5)
    y0 = HARMONIC.y0()
    options = {"step_size": 0.01} if method in FIXED else accurate_output_options(method, t)
    tol = ADAPTIVE_TOL[torch.float64].get(method, 1e-7)
    x, v = odeint(tuple_field, (y0[0:1], y0[1:2]), t, rtol=tol, atol=tol, method=method, options=options)
    assert x.shape == v.shape == (5, 1)
    ys = torch.cat([x, v], dim=1)
    if method in FIXED:
        expected = odeint(HARMONIC.func, y0, t, method=method, options=options)
        torch.testing.assert_close(ys, expected, rtol=1e-12, atol=1e-12)
    else:
        err = max_scaled_error(ys, HARMONIC.exact(t), tol, tol)
        assert err <= error_factor(method), f"error {err:.3g} x tolerance"


# ----------------------------------------------------------------------------------------------- dense output


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
def test_fine_output_grid_costs_no_extra_evaluations(method):
    """1000 output times cost the same function evaluations (and steps) as 2, and are accurate.

    Output times are reached by dense output, never by shortening steps: the step sequence, and hence the end
    value, is the same whichever outputs are asked for. One exception is allowed for methods that are not FSAL:
    their Hermite interpolant needs ``f(t_end, y_end)``, which for every step but the last is the next step's first
    stage anyway, but which a solve that only outputs at ``t_end`` never evaluates. So the fine grid may cost
    exactly one evaluation more for those.
    """
    problem = HARMONIC
    tol = ADAPTIVE_TOL[torch.float64].get(method)
    options = {"step_size": 0.01} if method in FIXED else None
    kwargs = dict(rtol=tol, atol=tol) if tol else {}

    coarse_field = CountingField(problem.func)
    with record_stats() as coarse:
        y_coarse = odeint(coarse_field, problem.y0(), problem.times(2), method=method, options=options, **kwargs)
    fine_field = CountingField(problem.func)
    t_fine = problem.times(1000)
    with record_stats() as fine:
        y_fine = odeint(fine_field, problem.y0(), t_fine, method=method, options=options, **kwargs)

    extra = 0 if TABLEAUS[method].fsal else 1
    assert coarse.nfe_forward <= fine.nfe_forward <= coarse.nfe_forward + extra, (
        f"a fine output grid must not cost extra evaluations: {fine.nfe_forward} vs {coarse.nfe_forward}"
    )
    assert fine_field.calls == fine.nfe_forward and coarse_field.calls == coarse.nfe_forward
    assert fine.accepted_steps == coarse.accepted_steps
    assert fine.rejected_steps == coarse.rejected_steps
    torch.testing.assert_close(y_fine[-1], y_coarse[-1], rtol=1e-13, atol=1e-13)

    exact = problem.exact(t_fine)
    if method == "dopri8":
        return  # 5th-order dense output beside 8th-order steps (see accurate_output_options); order in test_tableaus
    if tol:
        err = max_scaled_error(y_fine, exact, tol, tol)
        allowed = error_factor(method)
        assert err <= allowed, f"dense output error is {err:.3g} x tolerance, allowed {allowed}"
    else:
        err = float((y_fine - exact).abs().max())
        bound = _fixed_bound(method, torch.float64, exact, 0.01, 300)
        assert err <= bound, f"dense output error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("method", ADAPTIVE)
def test_output_times_inside_one_step_are_interpolated(method):
    """Output times much closer together than the steps: dense output between them tracks the exact solution."""
    problem = LINEAR3
    tol = ADAPTIVE_TOL[torch.float64][method]
    t = torch.tensor([0.0, 1e-3, 2e-3, 0.5, 0.5 + 1e-9, 1.0, 1.7, 2.0], dtype=torch.float64)
    ys = odeint(problem.func, problem.y0(), t, rtol=tol, atol=tol, method=method, options=accurate_output_options(method, t))
    err = max_scaled_error(ys, problem.exact(t), tol, tol)
    assert err <= error_factor(method), f"error {err:.3g} x tolerance"


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids(DTYPES))
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_func_receives_0dim_time_of_t_dtype(method, dtype):
    """``func`` is called with ``t`` as a 0-dim tensor of ``t``'s dtype on ``y0``'s device."""
    seen = []

    def field(t, y):
        seen.append((t.dtype, t.shape, t.device))
        return -y

    options = {"step_size": 0.1} if method == "rk4" else None
    odeint(field, torch.ones(2, dtype=dtype), torch.tensor([0.0, 1.0], dtype=dtype), method=method, options=options)
    assert seen and all(s == (dtype, torch.Size([]), torch.device("cpu")) for s in seen)


def test_riccati_reversed_long_output_grid_float32():
    """float32 over a decreasing grid of 50 times: shapes, dtype and accuracy at rtol = atol = 1e-5."""
    t = RICCATI.times(50, torch.float32, reverse=True)
    y0 = RICCATI.start(torch.float32, reverse=True)
    ys = odeint(RICCATI.func, y0, t, rtol=1e-5, atol=1e-5)
    assert ys.dtype == torch.float32 and ys.shape == (50, 2)
    assert max_scaled_error(ys, RICCATI.exact(t.double()), 1e-5, 1e-5) <= error_factor("dopri5")
    assert math.isfinite(float(ys.sum()))


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
def test_inputs_untouched_and_results_independent(method):
    """The solver writes into its own buffers only: y0 and t are unchanged, and a result is not overwritten by
    the next solve (no aliasing of internal storage)."""
    y0 = LINEAR3.y0()
    t = LINEAR3.times(5)
    y0_copy, t_copy = y0.clone(), t.clone()
    options = {"step_size": 0.05} if method in FIXED else None
    first = odeint(LINEAR3.func, y0, t, rtol=1e-5, atol=1e-5, method=method, options=options)
    first_copy = first.clone()
    odeint(LINEAR3.func, 2 * y0, t, rtol=1e-5, atol=1e-5, method=method, options=options)
    assert torch.equal(y0, y0_copy) and torch.equal(t, t_copy)
    assert torch.equal(first, first_copy)
