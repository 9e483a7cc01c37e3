"""Checks the Butcher tableaus of ``node_experiments/ode/tableaus.py`` against the mathematics they must satisfy.

Algebraic checks use the rooted-tree order conditions (Butcher 2016, Ch. 3; Hairer, Norsett & Wanner, Solving
ODEs I, Sec. II.2): a method with weights ``b`` has order ``p`` iff ``b . g(t) = 1 / gamma(t)`` for every rooted tree
``t`` with at most ``p`` vertices, where ``g(t)`` is the vector of stage weights of the tree. A dense output
``w(theta)`` has order ``q`` iff ``w(theta) . g(t) = theta ** |t| / gamma(t)`` for every tree with at most ``q``
vertices. Numerical checks take one step of each method (implemented here with numpy, independently of the stepper)
on the non-autonomous problem y' = y cos t, whose solution exp(sin t) is known, and fit the decay of the local error
of the step, of the error estimate and of the dense output.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from node_experiments.ode import tableaus

TABLEAUS = tableaus.TABLEAUS

ADAPTIVE = ["dopri5", "tsit5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8"]
FIXED_STEP = ["euler", "midpoint", "heun", "heun3", "rk4"]
EXPECTED_ORDERS = {
    "dopri5": (5, 4), "tsit5": (5, 4), "bosh3": (3, 2), "fehlberg2": (2, 1), "adaptive_heun": (2, 1),
    "dopri8": (8, 7), "euler": (1, None), "midpoint": (2, None), "heun": (2, None), "heun3": (3, None),
    "rk4": (4, None),
}
EXPECTED_STAGES = {
    "dopri5": 7, "tsit5": 7, "bosh3": 4, "fehlberg2": 3, "adaptive_heun": 2, "dopri8": 13,
    "euler": 1, "midpoint": 2, "heun": 2, "heun3": 3, "rk4": 4,
}
FSAL = {"dopri5", "tsit5", "bosh3"}
# Order (in theta) of the dense output: own continuous extensions of order 4 (dopri5, tsit5) and 5 (dopri8's
# degree-6 extension), cubic Hermite 3 (but never more than the step itself). The dopri8 midpoint weights
# (the extension at theta = 1/2) are 5th order.
CONTINUOUS_EXTENSION_ORDER = {"dopri5": 4, "tsit5": 4, "dopri8": 5}
MIDPOINT_ORDER = {"dopri8": 5}
NAMES = list(TABLEAUS)


def dense_order(tab, theta: float = 0.3) -> int:
    if theta == 0.5 and tab.name in MIDPOINT_ORDER:
        return MIDPOINT_ORDER[tab.name]
    return min(tab.order, CONTINUOUS_EXTENSION_ORDER.get(tab.name, 3))


# ---------------------------------------------------------------------------------------------------------------
# Rooted trees and elementary weights.
# ---------------------------------------------------------------------------------------------------------------


def _canonical(children) -> tuple:
    return tuple(sorted(children))


def _graft(tree: tuple):
    """Every tree obtained from ``tree`` by attaching one new leaf to one of its vertices."""
    yield _canonical(tree + ((),))
    for i, child in enumerate(tree):
        for grown in _graft(child):
            yield _canonical(tree[:i] + (grown,) + tree[i + 1:])


@lru_cache(maxsize=None)
def rooted_trees(order: int) -> tuple[tuple, ...]:
    """All rooted trees with ``order`` vertices; a tree is the sorted tuple of its root's subtrees."""
    if order == 1:
        return ((),)
    return tuple(sorted({g for tree in rooted_trees(order - 1) for g in _graft(tree)}))


def tree_order(tree: tuple) -> int:
    return 1 + sum(tree_order(child) for child in tree)


def density(tree: tuple) -> int:
    return tree_order(tree) * math.prod(density(child) for child in tree)


def stage_matrix(tab, with_f1: bool = False) -> np.ndarray:
    """The full ``S x S`` matrix A; with ``with_f1``, one more stage ``f(t + h, y_new)`` whose row is ``b``."""
    s = tab.stages
    n = s + 1 if with_f1 else s
    a = np.zeros((n, n))
    for i, row in enumerate(tab.a):
        a[i, : len(row)] = row
    if with_f1:
        a[s, :s] = tab.b
    return a


def stage_weights(a: np.ndarray, tree: tuple, cache: dict) -> np.ndarray:
    """``g(t)``: the i-th entry is the elementary weight of ``tree`` at stage i (``g(leaf) = 1``)."""
    if tree not in cache:
        g = np.ones(a.shape[0])
        for child in tree:
            g = g * (a @ stage_weights(a, child, cache))
        cache[tree] = g
    return cache[tree]


def order_residuals(a: np.ndarray, weights: np.ndarray, max_order: int, theta: float = 1.0) -> dict[int, float]:
    """Largest ``|weights . g(t) - theta^|t| / gamma(t)|`` over the trees of each order 1..max_order."""
    cache: dict = {}
    return {
        n: max(abs(weights @ stage_weights(a, t, cache) - theta**n / density(t)) for t in rooted_trees(n))
        for n in range(1, max_order + 1)
    }


def satisfied_order(a: np.ndarray, weights: np.ndarray, max_order: int, tol: float, theta: float = 1.0) -> int:
    """The largest n <= max_order such that all tree conditions of orders 1..n hold to ``tol``."""
    achieved = 0
    for n, residual in order_residuals(a, weights, max_order, theta).items():
        if residual > tol:
            break
        achieved = n
    return achieved


def interpolation_weights(tab, theta: float, derivative: bool = False) -> np.ndarray:
    """``w(theta)`` with ``y(t + theta h) = y + h w(theta) . k`` (or ``d/dtheta``, divided by ``h``)."""
    w = np.asarray(tab.interpolation, dtype=np.float64)
    powers = np.arange(1, w.shape[1] + 1)
    if derivative:
        return w @ (powers * theta ** (powers - 1.0))
    return w @ theta ** powers.astype(np.float64)


def interp_has_f1_row(tab) -> bool:
    return len(tab.interpolation) == tab.stages + 1


# Residual tolerance for order conditions: coefficients are rounded to float64 (and tsit5/dopri8 are decimal or
# rational approximations themselves); a violated condition is off by far more (checked in the "not" tests).
TOL = 1e-12
VIOLATION = 1e-6


def test_tree_enumeration():
    # Number of rooted trees with n vertices (OEIS A000081) and the classic densities.
    assert [len(rooted_trees(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]
    # gamma: bushy trees [tau^m] have gamma = m + 1, the tall tree of 3 vertices (b.A.c) has gamma 6.
    assert density(((), ())) == 3 and density(((), (), ())) == 4 and density((((),),)) == 6


# ---------------------------------------------------------------------------------------------------------------
# Structure.
# ---------------------------------------------------------------------------------------------------------------


def test_every_method_is_present():
    assert sorted(TABLEAUS) == sorted(ADAPTIVE + FIXED_STEP)
    for name, tab in TABLEAUS.items():
        assert tab.name == name
        assert tab.source
        assert tab.adaptive == (name in ADAPTIVE)


@pytest.mark.parametrize("name", NAMES)
def test_shapes(name):
    tab = TABLEAUS[name]
    s = tab.stages
    assert s == EXPECTED_STAGES[name]
    assert len(tab.c) == len(tab.b) == len(tab.a) == s
    assert [len(row) for row in tab.a] == list(range(s))
    assert len(tab.interpolation) == (s if tab.fsal else s + 1)
    assert len({len(row) for row in tab.interpolation}) == 1
    assert (tab.order, tab.error_order) == EXPECTED_ORDERS[name]
    if tab.adaptive:
        assert len(tab.b_error) == s
    else:
        assert tab.b_error is None and tab.error_order is None
    for value in (*tab.c, *tab.b, *(x for row in tab.a for x in row), *(x for row in tab.interpolation for x in row)):
        assert isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize("name", NAMES)
def test_nodes_are_row_sums(name):
    tab = TABLEAUS[name]
    for ci, row in zip(tab.c, tab.a):
        assert ci == pytest.approx(sum(row), abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_fsal(name):
    tab = TABLEAUS[name]
    assert tab.fsal == (name in FSAL)
    if tab.fsal:
        assert tab.c[-1] == 1.0
        assert tab.b[-1] == 0.0
        np.testing.assert_array_equal(tab.a[-1], tab.b[:-1])


# ---------------------------------------------------------------------------------------------------------------
# Order conditions.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_propagated_solution_has_its_order(name):
    tab = TABLEAUS[name]
    a, b = stage_matrix(tab), np.asarray(tab.b)
    residuals = order_residuals(a, b, tab.order)
    assert max(residuals.values()) < TOL, residuals
    # The quadrature conditions and the "bushy-child" ones explicitly (dopri8's headline conditions).
    c = np.asarray(tab.c)
    for k in range(1, tab.order + 1):
        assert b @ c ** (k - 1) == pytest.approx(1 / k, abs=TOL)
        if k >= 2:
            assert b @ (a @ c ** (k - 2)) == pytest.approx(1 / (k * (k - 1)), abs=TOL)


@pytest.mark.parametrize("name", NAMES)
def test_propagated_solution_has_no_higher_order(name):
    # Guards against mislabelled orders (and shows the tree checks can fail).
    tab = TABLEAUS[name]
    residuals = order_residuals(stage_matrix(tab), np.asarray(tab.b), tab.order + 1)
    assert residuals[tab.order + 1] > VIOLATION


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_solution_has_exactly_error_order(name):
    tab = TABLEAUS[name]
    a = stage_matrix(tab)
    b_hat = np.asarray(tab.b) - np.asarray(tab.b_error)
    residuals = order_residuals(a, b_hat, tab.error_order + 1)
    assert max(residuals[n] for n in range(1, tab.error_order + 1)) < TOL, residuals
    assert residuals[tab.error_order + 1] > VIOLATION, residuals
    # The estimate is b_error . k = (b - b_hat) . k: it annihilates exactly the conditions of orders <= error_order.
    assert abs(sum(tab.b_error)) < TOL


# ---------------------------------------------------------------------------------------------------------------
# Dense output.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_interpolation_endpoints(name):
    tab = TABLEAUS[name]
    b_padded = np.append(tab.b, 0.0) if interp_has_f1_row(tab) else np.asarray(tab.b)
    np.testing.assert_allclose(interpolation_weights(tab, 1.0), b_padded, rtol=0, atol=1e-13)
    np.testing.assert_allclose(interpolation_weights(tab, 0.0), 0.0, rtol=0, atol=0)
    start_slope = interpolation_weights(tab, 0.0, derivative=True)
    expected = np.zeros_like(start_slope)
    expected[0] = 1.0
    np.testing.assert_allclose(start_slope, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("dopri5", "tsit5")])
def test_derived_interpolation_matches_f1_at_the_end(name):
    # Hermite and dopri8's extension also interpolate the end slope: dy/dtheta(1) = h f1.
    tab = TABLEAUS[name]
    end_slope = interpolation_weights(tab, 1.0, derivative=True)
    expected = np.zeros_like(end_slope)
    expected[-1] = 1.0
    np.testing.assert_allclose(end_slope, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_interpolation_order_conditions(name):
    """The dense output satisfies the continuous order conditions of its order at interior theta, not one more."""
    tab = TABLEAUS[name]
    a = stage_matrix(tab, with_f1=interp_has_f1_row(tab))
    for theta in (0.1, 0.3, 0.5, 0.7, 0.9):
        q = dense_order(tab, theta)
        w = interpolation_weights(tab, theta)
        residuals = order_residuals(a, w, q + 1, theta)
        assert max(residuals[n] for n in range(1, q + 1)) < 1e-11, (theta, residuals)
        assert residuals[q + 1] > VIOLATION, (theta, residuals)


def test_dopri8_midpoint_weights_are_accurate():
    # dopri8's continuous extension at theta = 1/2 (the weights torchdiffeq evaluates) is 5th order.
    tab = TABLEAUS["dopri8"]
    a = stage_matrix(tab, with_f1=True)
    assert len(tableaus.DOPRI8_MID) == tab.stages + 1
    assert satisfied_order(a, np.asarray(tableaus.DOPRI8_MID), 8, 1e-11, theta=0.5) == MIDPOINT_ORDER["dopri8"]


def test_hermite_helper_is_shared():
    # One helper builds every Hermite matrix: recomputing from b and fsal reproduces the stored tableaus.
    for name in ("bosh3", "fehlberg2", "adaptive_heun", *FIXED_STEP):
        tab = TABLEAUS[name]
        derived = tableaus.hermite_interpolation(tab.b, tab.fsal)
        np.testing.assert_allclose(np.asarray(derived, dtype=np.float64), tab.interpolation, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# Numerical convergence of one step.
#
# Problem: y' = y cos t, y(T0) = 1, exact solution exp(sin t - sin T0). One step of size h from (T0, 1); the error
# is measured on the increment y1 - y0 = h * (b . k) against the exact increment, computed without cancellation,
# so that rounding stays at the level eps * h rather than eps and smaller errors can be resolved. Step sizes run
# over 2^(-j/4); the slope is fitted over the four smallest h whose error is still 1e3 times the rounding level
# (1e-13 h), i.e. as deep in the asymptotic regime as float64 allows. That matters for dopri8 and tsit5, whose
# principal error coefficients are minimised by design, so that the next term dominates down to errors near 1e-13.
# A caveat of any single problem: at some starting points the leading error term of one method happens to vanish
# (e.g. bosh3 near T0 = 1.3, the bosh3 estimate at T0 = 0 where sin T0 = 0, or dopri5's estimate near T0 = 0.4),
# which shifts the slope by one. At T0 = 0.3 every slope below is within 0.13 of its target (0.18 at T0 = 0.25 and
# 0.35), well inside the 0.3 tolerance.
# ---------------------------------------------------------------------------------------------------------------

T0 = 0.3
STEP_SIZES = 2.0 ** (-np.arange(0, 64) / 4)
ROUNDING_SAFE = 1e-13
SLOPE_TOL = 0.3


def rhs(t: float, y: float) -> float:
    return y * math.cos(t)


def exact_increment(dt: float) -> float:
    """``y(T0 + dt) - y(T0)`` for ``y(T0) = 1``, with ``sin(T0 + dt) - sin(T0)`` in a cancellation-free form."""
    return math.expm1(2.0 * math.cos(T0 + dt / 2) * math.sin(dt / 2))


def rk_stages(tab, t0: float, y0: float, h: float) -> np.ndarray:
    """Stage derivatives of one explicit RK step, followed by ``f(t0 + h, y1)``."""
    k = np.zeros(tab.stages + 1)
    for i in range(tab.stages):
        k[i] = rhs(t0 + tab.c[i] * h, y0 + h * float(np.dot(tab.a[i], k[:i])))
    y1 = y0 + h * float(np.dot(tab.b, k[: tab.stages]))
    k[tab.stages] = rhs(t0 + h, y1)
    return k


def increment(weights, h: float, k: np.ndarray) -> float:
    return h * float(np.dot(weights, k[: len(weights)]))


def fitted_slope(tab, error_of_h) -> float:
    """Log-log slope of ``error_of_h`` over the four smallest step sizes that are safely above rounding."""
    points = [(h, e) for h in STEP_SIZES for e in [error_of_h(tab, h)] if e > ROUNDING_SAFE * h][-4:]
    assert len(points) == 4, points
    hs, errors = map(np.asarray, zip(*points))
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


def step_error(tab, h: float) -> float:
    k = rk_stages(tab, T0, 1.0, h)
    return abs(increment(tab.b, h, k) - exact_increment(h))


@pytest.mark.parametrize("name", NAMES)
def test_local_error_of_step_converges_at_order(name):
    tab = TABLEAUS[name]
    assert fitted_slope(tab, step_error) == pytest.approx(tab.order + 1, abs=SLOPE_TOL)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_error_estimate_converges_at_error_order(name):
    tab = TABLEAUS[name]

    def estimate(tab, h):
        return abs(increment(tab.b_error, h, rk_stages(tab, T0, 1.0, h)))

    assert fitted_slope(tab, estimate) == pytest.approx(tab.error_order + 1, abs=SLOPE_TOL)


@pytest.mark.parametrize("theta", [0.3, 0.5])
@pytest.mark.parametrize("name", NAMES)
def test_dense_output_converges_at_interpolation_order(name, theta):
    tab = TABLEAUS[name]

    def dense_error(tab, h):
        k = rk_stages(tab, T0, 1.0, h)
        # Continuity with the step: the dense output at theta = 1 is y1.
        end = increment(interpolation_weights(tab, 1.0), h, k)
        assert end == pytest.approx(increment(tab.b, h, k), rel=1e-13, abs=0.0)
        return abs(increment(interpolation_weights(tab, theta), h, k) - exact_increment(theta * h))

    assert fitted_slope(tab, dense_error) == pytest.approx(dense_order(tab, theta) + 1, abs=SLOPE_TOL)
