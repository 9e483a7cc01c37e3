"""The gradient strategies by name: how ``backward()`` gets through a solve. A choice is a value, not a flag.

- ``backprop``: ``odeint``, autograd records the solver's operations (the paper's RK-Net). The derivative of the
  computed solution; memory grows with every step.
- ``adjoint``: ``odeint_adjoint``, the adjoint ODE solved backwards (Chen et al. 2018). Memory independent of the
  steps; gradients of the continuous problem, to the backward solve's tolerance; a backward solve that stops at
  every output time.
- ``checkpoint``: ``odeint_checkpoint``, one state kept per step, each step recomputed under autograd in the
  backward pass. Backprop's gradients to rounding, for one state per step of memory.
"""

from __future__ import annotations

from typing import Callable

from .adjoint import odeint_adjoint
from .checkpoint import odeint_checkpoint
from .errors import InvalidArgumentError
from .solve import odeint

GRADIENTS: dict[str, Callable] = {"adjoint": odeint_adjoint, "backprop": odeint, "checkpoint": odeint_checkpoint}


def gradient_strategy(name: str) -> Callable:
    """The solve function of the strategy ``name`` (a key of ``GRADIENTS``)."""
    if name not in GRADIENTS:
        raise InvalidArgumentError(
            f"gradient={name!r} is not a gradient strategy. Choose one of {list(GRADIENTS)}: 'adjoint' (memory "
            f"independent of the steps), 'backprop' (through the solver's operations), 'checkpoint' (backprop's "
            f"gradients, one state kept per step)."
        )
    return GRADIENTS[name]
