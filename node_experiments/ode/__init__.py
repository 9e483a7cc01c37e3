"""The project's ODE solver library: adaptive Runge-Kutta with error control, dense output and the adjoint.

Depends on torch alone, and is signature-compatible with torchdiffeq so that one can be swapped for the other::

    from node_experiments.ode import odeint, odeint_adjoint, record_stats

    ys = odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None)
    ys = odeint_adjoint(func, y0, t, rtol=1e-3, atol=1e-3, adjoint_options={"norm": "seminorm"})

- ``func(t, y)`` returns dy/dt; ``t`` is passed as a 0-dim tensor of ``t``'s dtype on ``y0``'s device.
- ``y0`` is a floating-point tensor, or a tuple of them (then the result is a tuple).
- ``t`` is a 1-D, strictly increasing or strictly decreasing tensor of at least two output times; the result has
  shape ``(len(t), *y0.shape)`` and its first entry is ``y0``.
- ``method``: adaptive ``dopri5`` (default), ``tsit5``, ``bosh3``, ``fehlberg2``, ``adaptive_heun``, ``dopri8``;
  fixed-step ``euler``, ``midpoint``, ``heun``, ``rk4``. Each is a Butcher tableau (``tableaus.py``) driving the
  one stepper (``runge_kutta.py``).
- ``options`` (adaptive): ``first_step``, ``safety``, ``ifactor``, ``dfactor``, ``max_num_steps``, ``min_step``,
  ``max_step``, ``step_t``, ``jump_t``, ``norm`` (``"rms"``, ``"max"`` or a callable taking the scaled error,
  shaped like ``y0``, and returning a scalar tensor), ``controller`` (``"integral"``, ``"pi"``, ``"pid"``) with
  ``pcoeff``, ``icoeff``, ``dcoeff``. Options (fixed-step): ``step_size`` (else the solver steps on ``t``),
  ``max_num_steps``.
- ``odeint_adjoint`` also takes ``adjoint_rtol``, ``adjoint_atol``, ``adjoint_method``, ``adjoint_options`` (the
  same keys, plus ``norm="seminorm"``, which leaves the parameter-gradient channels out of error control, Kidger
  et al. 2021) and ``adjoint_params`` (default: ``tuple(func.parameters())``).

Counting: every solve started inside ``with record_stats() as stats:`` adds to ``stats`` (a ``SolverStats``):
``nfe_forward``, ``accepted_steps``, ``rejected_steps``, ``solves``, and, for adjoint backward solves (counted in
whichever recorder is active when ``backward()`` runs), ``nfe_backward``, ``backward_accepted_steps``,
``backward_rejected_steps``. Recorders nest; every active recorder counts.

Errors: bad arguments raise ``InvalidArgumentError`` (a ``SolverError`` and a ``ValueError``); failures while
solving raise ``NonFiniteDerivativeError``, ``StepSizeTooSmallError`` or ``MaxStepsExceededError`` (all
``SolverError``). Each message names the value, what is wrong and the fix.
"""

from .adjoint import odeint_adjoint
from .errors import (
    InvalidArgumentError,
    MaxStepsExceededError,
    NonFiniteDerivativeError,
    SolverError,
    StepSizeTooSmallError,
)
from .solve import ADAPTIVE_METHODS, FIXED_STEP_METHODS, METHODS, odeint
from .stats import SolverStats, record_stats

__all__ = [
    "odeint",
    "odeint_adjoint",
    "record_stats",
    "SolverStats",
    "METHODS",
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "SolverError",
    "InvalidArgumentError",
    "NonFiniteDerivativeError",
    "StepSizeTooSmallError",
    "MaxStepsExceededError",
]
