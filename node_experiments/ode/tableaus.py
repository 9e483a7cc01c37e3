"""Butcher tableaus as data: every solver method is one of these driving the one stepper.

A tableau holds the coefficients of an explicit Runge-Kutta method (Butcher 2016, "Numerical Methods for
Ordinary Differential Equations", ch. 2), the weights of its embedded error estimate when it is adaptive, and
the weights of its dense output (continuous extension), so that ``runge_kutta.py`` never needs to know which
method it runs.

Dense output convention (shared by every method): after a step of size ``h`` from ``(t, y)`` with stage
derivatives ``k_0 .. k_{S-1}``, the solution at ``t + theta * h`` (``0 <= theta <= 1``) is

    y(t + theta h) = y + h * sum_j k_j * sum_p interpolation[j][p] * theta ** (p + 1)

``interpolation`` has ``S`` rows, or ``S + 1`` rows where the last row multiplies ``f(t + h, y_new)`` (the
derivative at the end of the step, which is the first stage of the next step). At ``theta = 1`` the weights
sum to ``b`` (with zero for the extra row), so dense output is continuous with the step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of one explicit Runge-Kutta method.

    Attributes:
        name: the method's name in ``odeint(..., method=name)``.
        c: stage times, length S.
        a: the strictly lower-triangular stage matrix as rows; row i has i entries (row 0 is empty).
        b: weights of the propagated solution, length S.
        order: order of the propagated solution.
        b_error: ``b - b_hat`` (the embedded solution's weights subtracted), length S; ``None`` for fixed-step
            methods. The local error estimate is ``h * sum_j b_error[j] * k_j``.
        error_order: order of the embedded solution ``b_hat`` (``None`` for fixed-step methods).
        fsal: first-same-as-last: the last stage is evaluated at ``(t + h, y_new)``, so it is the next
            step's first stage and costs nothing.
        interpolation: dense output weights, see the module docstring.
        source: where the coefficients come from.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_error: tuple[float, ...] | None
    error_order: int | None
    fsal: bool
    interpolation: tuple[tuple[float, ...], ...]
    source: str

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None
