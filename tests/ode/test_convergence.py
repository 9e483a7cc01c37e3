"""Orders of convergence, measured through the public API on the nonlinear, non-autonomous Riccati problem.

Linear constant-coefficient problems only test a method's stability polynomial, which can have a higher order
than the method itself; ``y' = -2 t y**2`` (solution ``1 / (c + t**2)``) exercises the full order conditions,
the stage times ``c`` included.

- Fixed-step methods: global error at the final time for step sizes ``h, h/2, h/4, h/8``; the least-squares
  slope of ``log(error)`` against ``log(h)`` must be within 0.3 of the method's order.
- Adaptive methods: one step of size ``h`` from the exact state ``y(t0)``, obtained through the public API by
  solving over ``[t0, t0 + h]`` with ``options={"first_step": h}``. With ``rtol = 0`` and ``atol = 1`` the scaled
  error the solver hands to the ``norm`` option is the embedded error estimate itself,
  ``est = y_new - y_hat = h * sum_j b_error[j] k_j``; a norm callable records it and returns a small number so
  the step is accepted (``accepted_steps == 1``, ``rejected_steps == 0`` are checked). Then
  ``y_hat = y_new - est`` is the embedded solution after one step and ``y_new`` (the solve's result) the
  propagated one; their local errors against the exact solution must scale as ``h**(q + 1)`` and
  ``h**(p + 1)``, with ``q`` the embedded order and ``p`` the method's order (slopes within 0.3 again). The step
  sizes are chosen per method so the errors stay well above float64 round-off.
"""

from __future__ import annotations

import math

import pytest
import torch
from ode_problems import EMBEDDED_ORDER, FIXED, ORDER, RICCATI, ADAPTIVE

from node_experiments.ode import odeint, record_stats

SLOPE_TOLERANCE = 0.3


def fitted_slope(hs, errors) -> float:
    """Least-squares slope of ``log(error)`` against ``log(h)``."""
    x = torch.log(torch.tensor(hs, dtype=torch.float64))
    y = torch.log(torch.tensor(errors, dtype=torch.float64))
    x_c, y_c = x - x.mean(), y - y.mean()
    return float((x_c * y_c).sum() / (x_c * x_c).sum())


# Coarsest step per fixed-step method (then halved three times) over the Riccati interval of length 1.
FIXED_H0 = {"euler": 0.05, "midpoint": 0.05, "heun": 0.05, "heun3": 0.1, "rk4": 0.1}


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_global_order(method):
    problem = RICCATI
    t = problem.times(2)
    exact_end = problem.exact(t)[-1]
    hs = [FIXED_H0[method] / 2**k for k in range(4)]
    errors = []
    for h in hs:
        ys = odeint(problem.func, problem.y0(), t, method=method, options={"step_size": h})
        errors.append(float((ys[-1] - exact_end).abs().max()))
    assert all(e > 1e-13 for e in errors), f"errors {errors} reach round-off: the fit would be meaningless"
    slope = fitted_slope(hs, errors)
    assert abs(slope - ORDER[method]) <= SLOPE_TOLERANCE, (
        f"{method}: fitted order {slope:.2f}, expected {ORDER[method]} (errors {errors})"
    )


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_grid_on_output_times_has_same_order(method):
    """Stepping on the output times (no step_size) is the same scheme: the same order on nested grids."""
    problem = RICCATI
    hs, errors = [], []
    for n in (10, 20, 40, 80):
        t = problem.times(n + 1)
        ys = odeint(problem.func, problem.y0(), t, method=method)
        hs.append((problem.t1 - problem.t0) / n)
        errors.append(float((ys - problem.exact(t)).abs().max()))
    slope = fitted_slope(hs, errors)
    assert abs(slope - ORDER[method]) <= SLOPE_TOLERANCE, f"{method}: fitted order {slope:.2f} ({errors})"


def one_adaptive_step(method: str, h: float):
    """One step of ``method`` of size ``h`` from the exact Riccati state: (propagated y_new, embedded y_hat)."""
    problem = RICCATI
    t = torch.tensor([problem.t0, problem.t0 + h], dtype=torch.float64)
    estimates = []

    def record_estimate(scaled_error):
        estimates.append(scaled_error.detach().clone())
        return torch.tensor(1e-3, dtype=torch.float64)

    with record_stats() as stats:
        ys = odeint(
            problem.func, problem.y0(), t, rtol=0.0, atol=1.0, method=method,
            options={"first_step": h, "norm": record_estimate},
        )  # fmt: skip
    assert stats.accepted_steps == 1 and stats.rejected_steps == 0, stats
    assert len(estimates) == 1, f"the norm was called {len(estimates)} times for one step"
    y_new = ys[-1]
    return y_new, y_new - estimates[0], problem.exact(t)[-1]


# (largest step, ratio between successive steps) per adaptive method: 4 steps in the asymptotic range, errors far
# above round-off. fehlberg2's embedded formula has a leading coefficient of only 1/512 (see test_exact_solutions),
# so its h**2 term dominates the h**3 ones only for h below ~1e-3. dopri8's errors fall so fast that it uses a
# ratio of sqrt(2).
ADAPTIVE_STEPS = {
    "dopri5": (0.2, 2.0),
    "tsit5": (0.2, 2.0),
    "bosh3": (0.1, 2.0),
    "fehlberg2": (2e-4, 2.0),
    "adaptive_heun": (0.1, 2.0),
    "dopri8": (0.5, math.sqrt(2.0)),
}


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_local_error_orders(method):
    """The embedded solution's local error has order ``q + 1`` (slope within 0.3); the propagated solution's is at
    least ``p + 1 - 0.3`` (one-sided: methods tuned for small leading coefficients, like tsit5, show a steeper
    slope at these step sizes as the next terms still matter) and smaller than the embedded one."""
    h0, ratio = ADAPTIVE_STEPS[method]
    hs = [h0 / ratio**k for k in range(4)]
    propagated, embedded = [], []
    for h in hs:
        y_new, y_hat, exact = one_adaptive_step(method, h)
        propagated.append(float((y_new - exact).abs().max()))
        embedded.append(float((y_hat - exact).abs().max()))
    assert min(embedded) > 1e-13, f"embedded errors {embedded} reach round-off"
    q, p = EMBEDDED_ORDER[method], ORDER[method]
    slope_hat = fitted_slope(hs, embedded)
    assert abs(slope_hat - (q + 1)) <= SLOPE_TOLERANCE, (
        f"{method}: the embedded solution's local error scales as h^{slope_hat:.2f}, expected h^{q + 1} "
        f"(errors {embedded})"
    )
    usable = [(h, e) for h, e in zip(hs, propagated) if e > 1e-14]  # drop points near round-off (y ~ 1)
    assert len(usable) >= 3, f"{method}: propagated errors {propagated} reach round-off"
    slope = fitted_slope(*zip(*usable))
    assert slope >= p + 1 - SLOPE_TOLERANCE, (
        f"{method}: the propagated solution's local error scales as h^{slope:.2f}, expected h^{p + 1} "
        f"(errors {propagated})"
    )
    assert all(a < b for a, b in zip(propagated, embedded)), "the propagated solution must be the more accurate"


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_global_error_is_tolerance_proportional(method):
    """Tightening rtol = atol by 100x reduces the global error by roughly 100x (between 10x and 1000x)."""
    problem = RICCATI
    t = problem.times(2)
    exact_end = problem.exact(t)[-1]
    loose = {"dopri5": 1e-6, "tsit5": 1e-6, "dopri8": 1e-6, "bosh3": 1e-5, "fehlberg2": 1e-5, "adaptive_heun": 1e-5}
    errors = []
    for tol in (loose[method], loose[method] / 100):
        ys = odeint(problem.func, problem.y0(), t, rtol=tol, atol=tol, method=method)
        errors.append(float((ys[-1] - exact_end).abs().max()))
    ratio = errors[0] / max(errors[1], 1e-300)
    assert 10 <= ratio <= 1000 or errors[0] < 1e-13, f"{method}: error ratio {ratio:.3g} for 100x tighter tol"
    assert math.isfinite(ratio)
