"""Every adaptive method against scipy's DOP853 (rtol = atol = 1e-12) on nonlinear problems, float64.

Problems (``ode_problems.NONLINEAR_PROBLEMS``): Van der Pol with mu = 1 from (2, 0), Lotka-Volterra on a batch of
two states, and the cubic spiral ``y' = (y**3) @ A`` of the benchmark, each on ``[0, 5]`` with 21 output times
(most reached by dense output). The reference's own error (~1e-12) is negligible next to the tolerances.

Bound: ``|y - y_ref| <= C * K * (rtol * |y_ref| + atol)`` elementwise, with ``C`` the method's factor documented
in ``ode_problems`` (20; ``fehlberg2``: ``4 * 512``, its embedded estimate understating the error by a factor of
order 512) and ``K`` the problem's conditioning (``CONDITIONING``). Error control is per step, so the global error
is the local errors of all steps, amplified by the problem: the cubic spiral shears (its angular speed
``~ 2 |y|**2`` depends on the amplitude, so amplitude errors turn into phase errors that grow with time). scipy's
own implementations of two of the same pairs measure that amplification: at rtol = atol = 1e-6..1e-8, RK45
(Dormand-Prince, our dopri5) reaches 2-5x the tolerance on Van der Pol, 5-16x on Lotka-Volterra and 12-15x on the
cubic spiral; RK23 (Bogacki-Shampine, our bosh3) 2.4x, 9.6x and 270-320x. ``test_same_pairs_as_scipy`` checks
dopri5 and bosh3 against exactly those.

The high-order methods run at ``rtol = atol = 1e-8``; bosh3 too (1000-2300 steps per problem). The two
second-order methods need up to ~1e5 steps per problem at 1e-8, so the fast suite runs them looser (fehlberg2 at
1e-6, adaptive_heun at 1e-5) and the ``slow``-marked variant at 1e-8.
"""

from __future__ import annotations

import pytest
import torch
from ode_problems import (
    ADAPTIVE,
    LOTKA_VOLTERRA,
    NONLINEAR_PROBLEMS,
    error_factor,
    max_scaled_error,
    scipy_reference,
)

from node_experiments.ode import odeint

LOW_ORDER = ("fehlberg2", "adaptive_heun")
FAST_LOW_ORDER_TOL = {"fehlberg2": 1e-6, "adaptive_heun": 1e-5}  # fehlberg2's large steps make 1e-6 cheap
N_OUT = 21
CONDITIONING = {"van_der_pol": 1.0, "lotka_volterra": 2.0, "cubic_spiral": 20.0}


def allowed_factor(method, problem) -> float:
    return error_factor(method) * CONDITIONING[problem.name]


def _check(method, problem, tol):
    t = problem.times(N_OUT)
    ys = odeint(problem.func, problem.y0(), t, rtol=tol, atol=tol, method=method)
    ref = scipy_reference(problem, t)
    assert ys.shape == ref.shape
    err = max_scaled_error(ys, ref, tol, tol)
    allowed = allowed_factor(method, problem)
    assert err <= allowed, f"{method} on {problem.name}: error {err:.3g} x (rtol*|y| + atol), allowed {allowed}"


@pytest.mark.parametrize("problem", NONLINEAR_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method", ADAPTIVE)
def test_matches_scipy_dop853(method, problem):
    _check(method, problem, FAST_LOW_ORDER_TOL[method] if method in LOW_ORDER else 1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("problem", NONLINEAR_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method", LOW_ORDER)
def test_low_order_methods_match_scipy_at_1e_8(method, problem):
    _check(method, problem, 1e-8)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
def test_reversed_time_matches_scipy(method):
    """Integrate Lotka-Volterra backwards from the reference's value at t = 5 to t = 0 and recover y0.

    (Lotka-Volterra's orbits are neutrally stable either way; Van der Pol's limit cycle repels backwards in time.)
    """
    problem = LOTKA_VOLTERRA
    t = problem.times(N_OUT)
    ref = scipy_reference(problem, t)
    ys = odeint(problem.func, ref[-1], t.flip(0), rtol=1e-8, atol=1e-8, method=method)
    # The reference's own error at t = 5 (~1e-11) is propagated back too, far below the bound.
    err = max_scaled_error(ys, ref.flip(0), 1e-8, 1e-8)
    assert err <= allowed_factor(method, problem), f"error {err:.3g} x tolerance"


@pytest.mark.parametrize("problem", NONLINEAR_PROBLEMS, ids=lambda p: p.name)
def test_float32_matches_scipy(problem):
    """float32 at rtol = atol = 1e-5 (round-off ~1e-7 per step stays far below it): same bounds, default method."""
    t = problem.times(N_OUT, torch.float32)
    ys = odeint(problem.func, problem.y0(torch.float32), t, rtol=1e-5, atol=1e-5)
    assert ys.dtype == torch.float32
    err = max_scaled_error(ys, scipy_reference(problem, t.double()), 1e-5, 1e-5)
    assert err <= allowed_factor("dopri5", problem), f"{problem.name}: error {err:.3g} x tolerance"


@pytest.mark.parametrize("problem", NONLINEAR_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("method, scipy_method", [("dopri5", "RK45"), ("bosh3", "RK23")])
def test_same_pairs_as_scipy(method, scipy_method, problem):
    """dopri5 and bosh3 are the pairs of scipy's RK45 and RK23: at the same tolerance (1e-6) their errors against
    the DOP853 reference are of the same size, ours at most 3x scipy's (plus one tolerance unit of slack for
    where scipy happens to be nearly exact). Both use per-step control, dense output and an integral-type
    controller, so a factor of 3 leaves room for the different initial step and controller details only."""
    from scipy.integrate import solve_ivp

    tol = 1e-6
    t = problem.times(N_OUT)
    ref = scipy_reference(problem, t)
    shape = ref.shape[1:]

    def rhs(time, y):
        return problem.func(torch.tensor(time, dtype=torch.float64), torch.from_numpy(y.reshape(shape))).numpy().ravel()

    sol = solve_ivp(rhs, (problem.t0, problem.t1), ref[0].numpy().ravel(), method=scipy_method, rtol=tol, atol=tol,
                    t_eval=t.numpy())  # fmt: skip
    theirs = max_scaled_error(torch.from_numpy(sol.y.T.reshape(ref.shape)), ref, tol, tol)
    ours = max_scaled_error(odeint(problem.func, problem.y0(), t, rtol=tol, atol=tol, method=method), ref, tol, tol)
    assert ours <= 3 * theirs + 1, f"{method}: {ours:.3g} x tolerance, scipy's {scipy_method}: {theirs:.3g} x"
