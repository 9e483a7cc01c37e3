"""The solver's exceptions: one family, so callers can catch ``SolverError`` and show the message as it is.

Every message names the offending value, says what is wrong with it and how to fix it.
"""

from __future__ import annotations

import torch


class SolverError(RuntimeError):
    """Base class of everything the solver raises on purpose."""


class InvalidArgumentError(SolverError, ValueError):
    """An argument of ``odeint``/``odeint_adjoint`` is unusable; raised before any solving starts."""


class NonFiniteDerivativeError(SolverError):
    """The vector field returned NaN or infinity (or the state became non-finite) where the solve had to go on."""


class StepSizeTooSmallError(SolverError):
    """The adaptive step size fell below what the time's precision can represent."""


class MaxStepsExceededError(SolverError):
    """The solve took more than ``max_num_steps`` steps."""


class StiffnessError(SolverError):
    """An explicit method's step size stayed bounded by its stability, not its accuracy: the problem is stiff."""


def refuse_double_backward(strategy: str) -> None:
    """Called first in a gradient strategy's backward pass: a clear error instead of a silently wrong derivative.

    Autograd runs a backward pass with gradient recording on exactly when it was asked to (``create_graph=True``),
    that is, when the gradients are to be differentiated again.
    """
    if torch.is_grad_enabled():
        raise SolverError(
            f"the gradients of {strategy} cannot be differentiated again, but backward ran with create_graph=True "
            f"(a double backward: a gradient penalty, a Hessian-vector product). Its backward pass computes them "
            f"without recording a graph. For higher derivatives solve with odeint (gradients by backpropagation "
            f"through the solver's operations, gradient strategy 'backprop')."
        )
