"""The project's ODE solver library: adaptive Runge-Kutta with error control, dense output, three ways to gradients.

Depends on torch alone, and takes torchdiffeq's calls, so that code written for one runs on the other by swapping
the import (``docs/solver.md`` has the table of what is the same, what differs and how)::

    from node_experiments.ode import odeint, odeint_adjoint, odeint_checkpoint, odeint_event, record_stats

    ys = odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None)
    ys = odeint_adjoint(func, y0, t, rtol=1e-3, atol=1e-3, adjoint_options={"norm": "seminorm"})
    ys = odeint_checkpoint(func, y0, t, rtol=1e-3, atol=1e-3)
    event_t, ys = odeint_event(func, y0, t0, event_fn=lambda t, y: y[0], odeint_interface=odeint_adjoint)

The three solve functions solve the same problem the same way and differ only in how ``backward()`` gets through
the solve (``gradients.py``; ``GRADIENTS`` maps each strategy's name to its function, ``gradient_strategy(name)``
looks one up):

- ``backprop`` (``odeint``): autograd records the solver's operations: the derivative of the computed solution,
  memory growing with every step (the paper's RK-Net);
- ``adjoint`` (``odeint_adjoint``): the adjoint ODE solved backwards, memory independent of the steps, gradients
  of the continuous problem to the backward solve's tolerance (Chen et al. 2018);
- ``checkpoint`` (``odeint_checkpoint``: ``odeint``'s arguments plus ``adjoint_params``): one state kept per
  accepted step, each step recomputed under autograd in the backward pass: backprop's gradients to rounding, for
  one state per step plus one step's graph (Zhuang et al. 2020).

Arguments, for all three:

- ``func(t, y)`` returns dy/dt (a floating result of another dtype is cast to ``y``'s); ``t`` is passed as a 0-dim tensor of ``t``'s dtype on ``y0``'s
  device. torchdiffeq's step callbacks (``callback_step``, ``callback_accept_step``, ``callback_reject_step`` and
  their ``_adjoint`` forms), defined on ``func``, are called around every step (``callbacks.py``).
- ``y0`` is a floating-point tensor of any shape (0-dim included), or a tuple of them (then the result is a
  tuple). A float16 or bfloat16 state is integrated in float32 (the field still sees its own dtype; ``state.py``
  says why). ``t`` may have another floating dtype (e.g. float64 times beside a float32 state, as in torchdiffeq):
  the solver keeps times as 64-bit host floats whatever the dtypes, and gradients with respect to ``t`` come back
  in ``t``'s dtype.
- ``t`` is a 1-D, strictly increasing or strictly decreasing tensor of output times; the result has shape
  ``(len(t), *y0.shape)`` and its first entry is ``y0`` (a single time returns ``y0`` without solving).
- ``rtol``, ``atol``: numbers, or per element: a tensor broadcastable to ``y0`` or, for a tuple state, one entry
  per tensor. A zero ``rtol`` and ``atol`` on the same element is refused for an adaptive method.
- ``method``: adaptive ``dopri5`` (default, also for None), ``tsit5``, ``bosh3``, ``fehlberg2``,
  ``adaptive_heun``, ``dopri8``; fixed-step ``euler``, ``midpoint``, ``heun`` (torchdiffeq's ``heun2``),
  ``heun3``, ``rk4``. Each is a Butcher tableau (``tableaus.py``) driving the one stepper (``runge_kutta.py``).
- ``options`` (adaptive): ``first_step``, ``safety``, ``ifactor``, ``dfactor``, ``max_num_steps``, ``min_step``,
  ``max_step``, ``step_t``, ``jump_t``, ``norm`` (``"rms"``, ``"max"`` or a callable taking the scaled error,
  shaped like ``y0``, and returning a scalar tensor), ``controller`` (``"integral"``, ``"pi"``, ``"pid"``) with
  ``pcoeff``, ``icoeff``, ``dcoeff``, ``stiffness_check`` (default True), and torchdiffeq's ``dtype`` (times are
  always 64-bit here). Options
  (fixed-step): ``step_size`` or ``grid_constructor`` (else the solver steps on ``t``), ``perturb``, ``interp``
  (``"cubic"``, the default, or ``"linear"``), ``max_num_steps``.
- ``event_fn(t, y)``: with ``t = [t0, t1]``, the solve runs from ``t0`` in ``t1``'s direction until an entry of
  ``event_fn`` reaches zero and returns ``(event_t, solution)``, ``solution = [y0, y(event_t)]``
  (``events.py``); ``odeint_event`` adds the gradients through the event time (``event_solve.py``).
- ``odeint_adjoint`` also takes ``adjoint_rtol``, ``adjoint_atol``, ``adjoint_method``, ``adjoint_options`` (the
  same keys, plus ``norm="seminorm"``, which leaves the parameter-gradient channels out of error control, Kidger
  et al. 2021; by default the forward options less a callable norm) and ``adjoint_params`` (default:
  ``tuple(func.parameters())``). Its backward solve lands on every output time and carries its step size on.

Counting: every solve started inside ``with record_stats() as stats:`` adds to ``stats`` (a ``SolverStats``):
``nfe_forward``, ``accepted_steps``, ``rejected_steps``, ``solves``, and, for the work of ``backward()`` (the
adjoint's backward solve, the checkpointed recomputation; counted in whichever recorder is active when
``backward()`` runs), ``nfe_backward``, ``backward_accepted_steps``, ``backward_rejected_steps``,
``backward_solves``. Recorders nest; every active recorder counts.

Errors: bad arguments raise ``InvalidArgumentError`` (a ``SolverError`` and a ``ValueError``); failures while
solving raise ``NonFiniteDerivativeError``, ``StepSizeTooSmallError``, ``MaxStepsExceededError`` or, when dopri5 or
tsit5 find the problem stiff (Hairer's test, ``stiffness.py``; ``options={"stiffness_check": False}`` turns it
off), ``StiffnessError`` (all ``SolverError``). Each message names the value, what is wrong and the fix. The adjoint's and the checkpointed
gradients are computed once: a double backward (``create_graph=True``) raises a ``SolverError``; ``odeint``'s
gradients can be differentiated again.
"""

from .adjoint import odeint_adjoint
from .checkpoint import odeint_checkpoint
from .errors import (
    InvalidArgumentError,
    MaxStepsExceededError,
    NonFiniteDerivativeError,
    SolverError,
    StepSizeTooSmallError,
    StiffnessError,
)
from .event_solve import odeint_event
from .gradients import GRADIENTS, gradient_strategy
from .options import ADAPTIVE_METHODS, FIXED_STEP_METHODS, METHODS
from .solve import odeint, odeint_dense
from .stats import SolverStats, record_stats

__all__ = [
    "odeint",
    "odeint_adjoint",
    "odeint_checkpoint",
    "odeint_event",
    "odeint_dense",
    "GRADIENTS",
    "gradient_strategy",
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
    "StiffnessError",
]
