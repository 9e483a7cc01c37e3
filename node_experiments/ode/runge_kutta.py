"""One generic explicit Runge-Kutta integrator: fixed-step and adaptive, driven by a Butcher tableau.

The integrator works on a flat 1-D state in an increasing integration variable ``s`` (``solve.py`` flattens
tuples and maps decreasing output times to increasing ``s``). Times and step sizes live on the host as Python
floats; a ``Clock`` (``clock.py``) turns them into the time tensors the vector field receives.

Two storage strategies for the stage derivatives ``k_j``:

- **buffered** (no gradient can flow through the solve: inference, or the adjoint's own solves): the ``k_j`` are
  copied into one preallocated ``(stages, N)`` buffer, and each stage input ``y + h * sum_j a_ij k_j`` is a single
  ``addmv`` kernel; the new solution, the error estimate and the dense output are one kernel each as well (the
  dense output of a small state on several threads: one ``addmv`` per output, see ``interpolate``).
- **graph** (autograd records the solve, e.g. the RK-Net of the paper): stage inputs are chains of
  ``add(..., alpha=h * a_ij)``, which autograd differentiates without saving any tensor, so backprop through the
  solver keeps only what the vector field itself saves.

The adaptive loop synchronises with the host once per step, to read the error norm that decides acceptance
(marked ``HOST SYNC`` below; the stiffness test's numbers, ``stiffness.py``, are read in the same transfer); nothing
inside a step's stages does. NaN or infinity ends a solve where it appears (``nonfinite.py``).

Two hooks serve the gradient strategies (``checkpoint.py``, ``adjoint.py``) without changing how a solve steps:

- ``trace``: a ``StepTrace`` that records every accepted step (its start state and what decided how it was
  taken); ``replay`` recomputes one recorded step, with its dense outputs, exactly as a graph-mode solve takes it.
- ``state_jump``: a function ``(j, y) -> y`` applied where the solve reaches output ``j`` (every interior output
  time becomes a point the solve lands on). The adjoint adds each output's incoming gradient there and carries on
  with its step size and controller history, instead of starting a new solve.

And two serve torchdiffeq's interface (``solve.py``): ``callbacks`` (``callbacks.py``), called before every step
attempt and after its acceptance or rejection, and ``event`` (``events.py``): the solve runs until the event
function changes sign over an accepted step, then locates the event on that step's dense output. A step that must
see a discontinuity at one of its ends (``jump_t``, the fixed-step ``perturb``) evaluates its stages there just
beside it, at the resolution of ``t``'s dtype (``Clock.nudge``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .callbacks import StepCallbacks
from .clock import Clock
from .controllers import Norm, StepSizeController, initial_step, scaled_error_norm
from .errors import MaxStepsExceededError, NonFiniteDerivativeError, StepSizeTooSmallError
from .nonfinite import FiniteSteps, NonFiniteWatch
from .stiffness import StiffnessDetector, stiffness_quantities
from .tableaus import ButcherTableau

if TYPE_CHECKING:
    from .events import EventLocator

# The vector field as the integrator sees it: (time tensor from the Clock, flat state) -> flat derivative.
FlatFunc = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AdaptiveConfig:
    """Validated settings of an adaptive solve (see ``solve.py`` for the option names users pass)."""

    rtol: float
    atol: float
    norm: Norm
    first_step: float | None
    safety: float
    ifactor: float
    dfactor: float
    pcoeff: float
    icoeff: float
    dcoeff: float
    max_num_steps: int
    min_step: float
    max_step: float
    step_s: tuple[float, ...]  # times to step on, in s, strictly inside the span, sorted
    jump_s: tuple[float, ...]  # discontinuities, in s, strictly inside the span, sorted
    stiffness_check: bool = True  # Hairer's stiffness test (stiffness.py), for the methods that have one


@dataclass(frozen=True)
class AcceptedStep:
    """How one accepted step was taken: enough to recompute it, given its start state, exactly as it was.

    ``h`` is the step as the stages saw it (``s_new - s`` up to rounding); ``landing``/``left_of_end`` are the
    flags the step was taken with (it ends on a point the solve must hit / on a discontinuity, approached from
    the left); ``restart_right``: its first stage was evaluated just right of ``s``, after a discontinuity;
    ``first_output``: the index of the first output time after ``s`` (the step emits outputs from there on).
    """

    s: float
    h: float
    s_new: float
    landing: bool
    left_of_end: bool
    restart_right: bool
    first_output: int


@dataclass
class StepTrace:
    """The accepted steps of one solve and the state each started from: one state per step."""

    steps: list[AcceptedStep] = field(default_factory=list)
    states: list[torch.Tensor] = field(default_factory=list)


# States of at most this many numbers take the dense output's matrix-vector path when torch runs several threads
# (``RungeKutta.interpolate``); above it the GEMM's threads pay off (measured: docs/benchmarks.md).
SMALL_STATE = 16_384


class _DeviceCoefficients:
    """A tableau's coefficients as tensors on one device and dtype, made once and cached."""

    def __init__(self, tableau: ButcherTableau, dtype: torch.dtype, device: torch.device):
        def as_tensor(values):
            return torch.tensor(values, dtype=dtype, device=device)

        self.a = [as_tensor(row) if row else None for row in tableau.a]
        self.b = as_tensor(tableau.b)
        self.b_error = as_tensor(tableau.b_error) if tableau.b_error is not None else None
        # Dense output: weights W = [theta, theta^2, ...] @ interpolation^T, one row per output time.
        self.interpolation_t = as_tensor(tableau.interpolation).t().contiguous()
        self.powers = torch.arange(1, len(tableau.interpolation[0]) + 1, dtype=dtype, device=device)


@lru_cache(maxsize=64)
def _coefficients(tableau: ButcherTableau, dtype: torch.dtype, device: torch.device) -> _DeviceCoefficients:
    return _DeviceCoefficients(tableau, dtype, device)


def _graph_combination(y: torch.Tensor, h, weights: Sequence[float], ks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``y + h * sum_j weights[j] * ks[j]`` as a chain of scaled adds that autograd saves nothing for."""
    scaled = isinstance(h, float)
    total = None
    for w, k in zip(weights, ks):
        if w == 0.0:
            continue
        alpha = h * w if scaled else w
        total = k * alpha if total is None else total.add(k, alpha=alpha)
    if total is None:
        return y
    return y + total if scaled else y + h * total


class RungeKutta:
    """Integrates ``dy/ds = func(clock.time(s), y)`` for a flat state with one tableau.

    ``differentiable`` selects the graph storage (autograd records the solve) over the buffered one.
    Counters ``nfe``, ``accepted``, ``rejected`` are read by the caller after (or during) the solve.
    ``trace`` and ``state_jump``: see the module docstring.
    """

    def __init__(
        self,
        func: FlatFunc,
        tableau: ButcherTableau,
        clock: Clock,
        *,
        differentiable: bool,
        trace: StepTrace | None = None,
        state_jump: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
        callbacks: StepCallbacks | None = None,
        event: EventLocator | None = None,
    ):
        self.func = func
        self.tableau = tableau
        self.clock = clock
        self.differentiable = differentiable
        self.trace = trace
        self.state_jump = state_jump
        self.callbacks = callbacks
        self.event = event
        self.nfe = 0
        self.accepted = 0
        self.rejected = 0
        stages = tableau.stages
        self.stages = stages
        self.dense_rows = len(tableau.interpolation)  # stages, or stages + 1 with f(s + h, y_new) last
        self.fsal = tableau.fsal
        self.buffer: torch.Tensor | None = None

    # ---------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, s: float, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.func(self.clock.time(s), y)

    # --------------------------------------------------------------------------------------------------- steps
    def _stage_times(self, s: float, h: float, left_of_end: bool) -> list[float]:
        times = [s + c * h for c in self.tableau.c]
        if left_of_end:  # the step ends on a discontinuity: evaluate its end from the left
            end = self.clock.nudge(s + h, -1.0)
            times = [min(ti, end) for ti in times]
        return times

    def step(self, s: float, h: float, y: torch.Tensor, k0: torch.Tensor, left_of_end: bool = False):
        """One RK step from ``(s, y)`` with ``k0 = f(s, y)``; returns ``(y_new, stages)``.

        ``stages`` is the buffer (buffered mode) or the list of ``k_j`` (graph mode). The inputs of the last two
        stages are kept in ``last_inputs`` (the stiffness test compares them).
        """
        times = self._stage_times(s, h, left_of_end)
        a = self.tableau.a
        if self.differentiable:
            span = self.clock.span(h)
            ks = [k0]
            yi = y
            for i in range(1, self.stages):
                before, yi = yi, _graph_combination(y, span, a[i], ks)
                ks.append(self.evaluate(times[i], yi))
            self.last_inputs = (before, yi) if self.stages > 1 else (y, y)
            y_new = yi if self.fsal else _graph_combination(y, span, self.tableau.b, ks)
            return y_new, ks
        coef = self.coef
        K = self.buffer
        if K[0].data_ptr() != k0.data_ptr():
            K[0].copy_(k0)
        yi = y
        for i in range(1, self.stages):
            before, yi = yi, torch.addmv(y, K[:i].t(), coef.a[i], alpha=h)
            K[i].copy_(self.evaluate(times[i], yi))
        self.last_inputs = (before, yi) if self.stages > 1 else (y, y)
        y_new = yi if self.fsal else torch.addmv(y, K[: self.stages].t(), coef.b, alpha=h)
        return y_new, K

    def error_estimate(self, h: float, y: torch.Tensor, stages) -> torch.Tensor:
        """The embedded local error estimate ``h * sum_j b_error[j] k_j`` (no autograd)."""
        with torch.no_grad():
            K = torch.stack([k.detach() for k in stages[: self.stages]]) if self.differentiable else stages
            return torch.addmv(y.detach(), K[: self.stages].t(), self.coef.b_error, beta=0, alpha=h)

    # ------------------------------------------------------------------------------------------- dense output
    def dense_output(
        self, s: float, h: float, y: torch.Tensor, y_new: torch.Tensor, stages, j0: int, j1: int, left_of_end: bool
    ) -> torch.Tensor:
        """The solution at outputs ``j0..j1-1`` inside the step ``[s, s + h]``, by the tableau's dense output."""
        return self.interpolate(s, h, y, y_new, stages, self.clock.thetas(j0, j1, s, h), left_of_end)

    def _ensure_end_derivative(self, s: float, h: float, y_new: torch.Tensor, stages, left_of_end: bool) -> None:
        """Hermite-type dense output needs ``f(s + h, y_new)``: evaluated once per step (it is the next step's first
        stage, so it is kept) and placed after the stages."""
        if self.dense_rows > self.stages and self._f_end is None:
            s_end = self.clock.nudge(s + h, -1.0) if left_of_end else s + h
            self._f_end = self.evaluate(s_end, y_new)
            if self.differentiable:
                stages.append(self._f_end)
            else:
                stages[self.stages].copy_(self._f_end)

    def interpolate(
        self, s: float, h: float, y: torch.Tensor, y_new: torch.Tensor, stages, theta: torch.Tensor, left_of_end: bool
    ) -> torch.Tensor:
        """The solution at the fractions ``theta`` (1-D) of the step ``[s, s + h]``: ``y + h * W(theta) @ K``.

        A small state solved with several intra-op threads combines the stages row by row with ``addmv``/``mv``
        (matrix-vector kernels that stay on one thread at these sizes): a multithreaded GEMM over a few thousand
        numbers costs microseconds on a quiet machine but milliseconds when another process holds a core, as its
        threads wait for each other.
        """
        self._ensure_end_derivative(s, h, y_new, stages, left_of_end)
        coef = self.coef
        theta = theta.to(coef.powers.dtype)  # t may be float64 beside a float32 state
        weights = theta.unsqueeze(1).pow(coef.powers) @ coef.interpolation_t
        K = torch.stack(list(stages[: self.dense_rows])) if self.differentiable else stages[: self.dense_rows]
        span = self.clock.span(h)
        if self.small_state and not self.differentiable:
            if len(weights) == 1:
                return torch.addmv(y, K.t(), weights[0], alpha=span).unsqueeze(0)
            out = y.new_empty(len(weights), y.numel())
            for row, w in zip(out, weights):
                torch.addmv(y, K.t(), w, alpha=span, out=row)
            return out
        if self.small_state:
            return y.unsqueeze(0) + span * torch.stack([torch.mv(K.t(), w) for w in weights])
        if isinstance(span, float):
            return torch.addmm(y.unsqueeze(0), weights, K, alpha=span)
        return y.unsqueeze(0) + span * (weights @ K)  # the step size carries t's gradient

    # ------------------------------------------------------------------------------------------------- driving
    def _prepare(self, y0: torch.Tensor) -> None:
        self.coef = _coefficients(self.tableau, y0.dtype, y0.device)
        # Only a multithreaded GEMM can stall on a busy machine: on one thread the GEMM is the faster kernel.
        self.small_state = y0.numel() <= SMALL_STATE and torch.get_num_threads() > 1
        if not self.differentiable:
            self.buffer = y0.new_empty(self.dense_rows, y0.numel())
        self._f_end: torch.Tensor | None = None  # f(s_new, y_new) when dense output evaluated it

    def _emit(self, s_out, s, h, s_new, y, y_new, stages, next_out, landing, left_of_end, chunks) -> int:
        """Append the outputs in ``(s, s_new]`` to ``chunks``; return the index of the next output."""
        end = next_out
        while end < len(s_out) and s_out[end] <= s_new:
            end += 1
        if end == next_out:
            return next_out
        # An output on the step's end is y_new itself, unless t's gradient must flow through its position.
        exact_last = s_out[end - 1] == s_new and (landing or not self.clock.differentiable)
        interp_end = end - 1 if exact_last else end
        if interp_end > next_out:
            chunks.append(self.dense_output(s, h, y, y_new, stages, next_out, interp_end, left_of_end))
        if exact_last:
            chunks.append(y_new.unsqueeze(0))
        return end

    def _raise_step_too_small(self, s: float, h: float, nonfinite: bool) -> None:
        t = self.clock.sign * s
        if nonfinite:  # the step was being cut to stay clear of non-finite derivatives ahead
            raise NonFiniteDerivativeError(
                f"the vector field returns NaN or infinity for t just past t={t:.17g}: the solver cut the step to "
                f"dt={h:.3e} trying to step around it. Check the function for divisions by zero, logs of "
                f"non-positive values or overflow near this time, or end the integration before it."
            )
        raise StepSizeTooSmallError(
            f"the step size dt={h:.3e} underflows (t + dt rounds to t in the 64-bit floats that hold times, whatever "
            f"the state's dtype) at t={t:.17g}. The problem is likely stiff or singular here: loosen rtol/atol, end "
            f"the integration before this time, or check the vector field near this time."
        )

    def _raise_nonfinite_ahead(self, s: float, s_bad: float, y: torch.Tensor, why: str) -> None:
        """Every attempt past ``s`` met NaN or infinity by ``s_bad``, and ``why`` no smaller step is tried."""
        largest = float(y.detach().abs().max())
        limit = torch.finfo(y.dtype).max
        raise NonFiniteDerivativeError(
            f"the vector field returned NaN or infinity in every step the solver tried beyond t="
            f"{self.clock.sign * s:.17g}, by t={self.clock.sign * s_bad:.17g} at the latest; {why}. The state there "
            f"is finite, its largest magnitude "
            f"{largest:.3g} ({y.dtype}'s largest number: {limit:.3g}). Check the function for overflow (a derivative "
            f"beyond the dtype's range), divisions by zero or logs of non-positive values near this time, or end "
            f"the integration before it."
        )

    def _stiffness_quantities(self, stages) -> torch.Tensor:
        """The stiffness test's ``(||k_last - k_prev||, ||y_last - y_prev||)`` of the step just taken, on the device."""
        y_prev, y_last = self.last_inputs
        return stiffness_quantities(stages[self.stages - 1], stages[self.stages - 2], y_last, y_prev)

    def _raise_nonfinite_start(self, s: float, y: torch.Tensor) -> None:
        """The derivative at the start of a step (the solve's first point, or after a rejection) is not finite."""
        raise NonFiniteDerivativeError(
            f"the vector field returned NaN or infinity at t={self.clock.sign * s:.17g} (from a finite state: "
            f"{bool(torch.isfinite(y).all())}). Check the function for divisions by zero, logs of non-positive values "
            f"or overflow near this time, or normalise its inputs."
        )

    def _record(self, s, h, s_new, y, landing, left_of_end, restart_right, next_out) -> None:
        """Keep an accepted step in the trace (when there is one): its start state and how it was taken."""
        if self.trace is not None:
            self.trace.steps.append(AcceptedStep(s, h, s_new, landing, left_of_end, restart_right, next_out))
            self.trace.states.append(y)

    def _next_start(self, s_out, s_new: float, y_new: torch.Tensor, stages, next_out: int, left_of_end: bool):
        """The state and first stage of the step after an accepted one that ends at ``s_new`` (with the outputs
        before ``next_out`` emitted), and whether that stage is evaluated just right of ``s_new``.

        The first stage is reused from the step just taken (FSAL, or evaluated for dense output) unless the state
        jumps here (``state_jump``) or the field does (a ``jump_t`` discontinuity, approached from the left).
        """
        j = next_out - 1
        jumps = self.state_jump is not None and 0 < j < len(s_out) - 1 and s_out[j] == s_new
        if jumps:
            y_new = self.state_jump(j, y_new)
        if jumps or left_of_end:
            self._f_end = None
            s_first = self.clock.nudge(s_new, 1.0) if left_of_end else s_new
            return y_new, self.evaluate(s_first, y_new), left_of_end
        return y_new, self._carry_derivative(s_new, y_new, stages), False

    def _carry_derivative(self, s_new: float, y_new: torch.Tensor, stages) -> torch.Tensor:
        """The next step's first stage ``f(s_new, y_new)``, reused from this step when it has it (FSAL, or
        evaluated for dense output); in buffered mode it is placed in the buffer's first row."""
        known = stages[self.stages - 1] if self.fsal else self._f_end
        self._f_end = None
        if known is None:
            return self.evaluate(s_new, y_new)
        if not self.differentiable:
            self.buffer[0].copy_(known)
            return self.buffer[0]
        return known

    def solve_fixed(self, y0: torch.Tensor, s_out: Sequence[float], grid: Sequence[float], perturb: bool = False):
        """Steps on ``grid`` (which starts and ends with the output span, and passes through every output time
        when there is a ``state_jump``; its length was checked against ``max_num_steps`` where it was built);
        returns the ``(len(s_out), N)`` solution.

        ``perturb``: every step is taken as if the field jumped at its ends (torchdiffeq's ``perturb``): its first
        stage is evaluated just right of its start and any stage at its end just left of it. An event solve steps
        until the event (``grid`` is then as long as ``max_num_steps`` allows) and returns ``[y0, y(event)]``.
        Without error control nothing else notices a blow-up: ``FiniteSteps`` checks the states as they come.
        """
        self._prepare(y0)
        steps = len(grid) - 1
        chunks = [y0.unsqueeze(0)]
        next_out = 1
        y = y0
        finite = FiniteSteps(self.clock.sign)
        k0 = self.evaluate(self.clock.nudge(grid[0], 1.0) if perturb else grid[0], y)
        for i in range(steps):
            s, s_new = grid[i], grid[i + 1]
            h = s_new - s
            if self.callbacks is not None:
                self.callbacks.step(s, h, y)
            y_new, stages = self.step(s, h, y, k0, perturb)
            self.accepted += 1
            last = i + 1 == steps
            finite.add(s, s_new, y_new, read=last)
            self._record(s, h, s_new, y, last, perturb, perturb, next_out)
            next_out = self._emit(s_out, s, h, s_new, y, y_new, stages, next_out, last, perturb, chunks)
            if self.event is not None and self._event_in_step(s, h, s_new, y, y_new, stages, perturb, chunks):
                return torch.cat(chunks)
            if not last:
                y_new, k0, _ = self._next_start(s_out, s_new, y_new, stages, next_out, perturb)
            y = y_new
        if self.event is not None:
            self.event.never_found(self.clock.sign * grid[0], self.clock.sign * grid[steps], steps)
        return torch.cat(chunks)

    def _event_in_step(self, s, h, s_new, y, y_new, stages, left_of_end: bool, chunks) -> bool:
        """Event solves: whether the event function changed sign over the accepted step ``[s, s_new]``; if so, the
        event is located on the step's dense output (``EventLocator.locate``, which keeps its time) and the state
        there appended to ``chunks``. HOST SYNC."""
        if not self.event.crossed(self.clock.time(s_new).detach(), y_new):
            return False
        self._ensure_end_derivative(s, h, y_new, stages, left_of_end)  # recorded by autograd, where it records

        def state_at(s_query: float) -> torch.Tensor:
            theta = self.clock.theta_at(s_query, s, h, y.device)
            return self.interpolate(s, h, y, y_new, stages, theta, left_of_end)[0]

        s_event = self.event.locate(state_at, s, s_new, self.clock)
        chunks.append(state_at(s_event).unsqueeze(0))
        return True

    def solve_adaptive(self, y0: torch.Tensor, s_out: Sequence[float], config: AdaptiveConfig):
        """Error-controlled integration over ``s_out[0] .. s_out[-1]``; returns the ``(len(s_out), N)`` solution.

        An event solve (``event``) has ``s_out = [s0]``, runs until the event and returns ``[y0, y(event)]``.
        """
        tab = self.tableau
        self._prepare(y0)
        s, s_end = s_out[0], (math.inf if self.event is not None else s_out[-1])
        y = y0
        k0 = self.evaluate(s, y)
        if config.first_step is not None:
            h = config.first_step
        else:
            h = initial_step(
                self.evaluate, s, y, k0, 1.0, tab.error_order, config.rtol, config.atol, config.norm
            )
            if math.isnan(h):  # f(t0, y0) or y0 is not finite
                self._raise_nonfinite_start(s, y)
        h = max(h, config.min_step)
        controller = StepSizeController(
            tab.error_order,
            safety=config.safety,
            ifactor=config.ifactor,
            dfactor=config.dfactor,
            pcoeff=config.pcoeff,
            icoeff=config.icoeff,
            dcoeff=config.dcoeff,
        )
        jumps = set(config.jump_s)
        stops = set(config.step_s) | jumps | {s_end}
        if self.state_jump is not None:  # the state changes at every interior output: the solve must land there
            stops |= set(s_out[1:-1])
        landings = sorted(stops)
        next_landing = 0
        chunks = [y0.unsqueeze(0)]
        next_out = 1
        with torch.no_grad():
            y_abs = y.detach().abs()
        steps = 0
        nonfinite = False  # whether the last attempt met a NaN or infinity
        watch = NonFiniteWatch()
        stiffness = None
        if config.stiffness_check and tab.stiffness_boundary is not None:
            stiffness = StiffnessDetector(tab, self.clock.sign, s_end)
        restart_right = False  # whether k0 was evaluated just right of s (after a discontinuity)
        while True:
            h = min(h, config.max_step)
            land = landings[next_landing]
            # Hairer's rule: never leave a sliver before a point we must hit, unless stretching breaks max_step.
            landing = s + 1.01 * h >= land and land - s <= config.max_step
            s_new = land if landing else s + h
            # The step as the controller sees it: clipped to the landing point, else as requested (not as rounded
            # by the time's resolution, which could hold the step size at one ulp forever).
            h_try = land - s if landing else h
            if s_new <= s:  # h is below the resolution of the time at s
                self._raise_step_too_small(s, h, nonfinite)
            left_of_end = landing and land in jumps
            if self.callbacks is not None:
                self.callbacks.step(s, h_try, y)
            y_new, stages = self.step(s, h_try, y, k0, left_of_end)
            error = self.error_estimate(h_try, y, stages)
            # The stiffness test's two numbers travel with the error norm: no host sync of their own.
            extra = self._stiffness_quantities(stages) if stiffness is not None and stiffness.wants_check() else None
            with torch.no_grad():
                y_new_abs = y_new.detach().abs()
            ratio, quantities = scaled_error_norm(
                error, y_abs, y_new_abs, config.rtol, config.atol, config.norm, extra
            )  # HOST SYNC
            steps += 1
            nonfinite = not math.isfinite(ratio)
            # A step of min_step is taken whatever its error estimate (as in torchdiffeq): min_step bounds the steps.
            accepted = ratio <= 1.0 or (h_try <= config.min_step and not nonfinite)  # False for NaN
            if accepted:
                self.accepted += 1
                if self.callbacks is not None:
                    self.callbacks.accept(s, h_try, y)
                self._record(s, h_try, s_new, y, landing, left_of_end, restart_right, next_out)
                next_out = self._emit(s_out, s, h_try, s_new, y, y_new, stages, next_out, landing, left_of_end, chunks)
                if landing and s_new == s_end:
                    break
                if self.event is not None and self._event_in_step(s, h_try, s_new, y, y_new, stages, left_of_end, chunks):
                    break
                watch.accepted(s_new)
                if stiffness is not None:
                    stiffness.observe(s, h_try, quantities)
                y_next, k0, restart_right = self._next_start(s_out, s_new, y_new, stages, next_out, left_of_end)
                if y_next is not y_new:  # the state jumped
                    with torch.no_grad():
                        y_new_abs = y_next.detach().abs()
                if landing:
                    next_landing += 1
                s, y, y_abs = s_new, y_next, y_new_abs
            else:
                self.rejected += 1
                if self.callbacks is not None:
                    self.callbacks.reject(s, h_try, y)
                if nonfinite:
                    if not bool(torch.isfinite(k0).all()):
                        self._raise_nonfinite_start(s, y)
                    if watch.rejected(s_new):
                        why = f"it retried with smaller steps {watch.retries} times without getting past"
                        self._raise_nonfinite_ahead(s, watch.bad, y, why)
                    if h_try <= config.min_step:
                        why = f"the step is at min_step={config.min_step:.3g}, so no smaller one is tried"
                        self._raise_nonfinite_ahead(s, watch.bad, y, why)
            if steps >= config.max_num_steps:
                if self.event is not None:
                    self.event.never_found(self.clock.sign * s_out[0], self.clock.sign * s, steps)
                raise MaxStepsExceededError(
                    f"the solver took max_num_steps={config.max_num_steps} steps and reached only "
                    f"t={self.clock.sign * s:.17g} of t={self.clock.sign * s_end:.17g}. Raise "
                    f"options['max_num_steps'], loosen rtol/atol, or use a method suited to stiff problems."
                )
            h = max(controller.next_step(h_try, ratio, accepted), config.min_step)
        return torch.cat(chunks)

    # --------------------------------------------------------------------------------------------- recomputing
    def replay(self, step: AcceptedStep, y: torch.Tensor, s_out: Sequence[float]):
        """Recompute a traced step from its start state ``y`` as a solve in this storage mode takes it.

        Returns the step's end state and the outputs it emits (rows ``step.first_output ...`` of the solution), or
        None when it emits none. The first stage is evaluated anew: the traced solve reused it from the step
        before, which computed the same ``f(s, y)``.
        """
        self._prepare(y)
        k0 = self.evaluate(self.clock.nudge(step.s, 1.0) if step.restart_right else step.s, y)
        y_new, stages = self.step(step.s, step.h, y, k0, step.left_of_end)
        chunks: list[torch.Tensor] = []
        self._emit(s_out, step.s, step.h, step.s_new, y, y_new, stages, step.first_output, step.landing,
                   step.left_of_end, chunks)  # fmt: skip
        return y_new, (torch.cat(chunks) if chunks else None)
