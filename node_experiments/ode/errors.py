"""The solver's exceptions: one family, so callers can catch ``SolverError`` and show the message as it is.

Every message names the offending value, says what is wrong with it and how to fix it.
"""

from __future__ import annotations


class SolverError(RuntimeError):
    """Base class of everything the solver raises on purpose."""


class InvalidArgumentError(SolverError, ValueError):
    """An argument of ``odeint``/``odeint_adjoint`` is unusable; raised before any solving starts."""


class NonFiniteDerivativeError(SolverError):
    """The vector field returned NaN or infinity at an accepted point of the solution."""


class StepSizeTooSmallError(SolverError):
    """The adaptive step size fell below ``min_step`` or below what the time's precision can represent."""


class MaxStepsExceededError(SolverError):
    """The solve took more than ``max_num_steps`` steps."""
