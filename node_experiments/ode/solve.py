"""``odeint``: argument checking, tuple states, time direction, and dispatch to the one Runge-Kutta integrator.

Everything a user can get wrong is checked here, before any solving, and reported as an
``InvalidArgumentError`` naming the value, the problem and the fix. The integrator (``runge_kutta.py``) then sees
a flat 1-D state integrated over an increasing variable ``s = sign * t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .controllers import CONTROLLER_PRESETS, resolve_norm
from .errors import InvalidArgumentError, NonFiniteDerivativeError
from .runge_kutta import AdaptiveConfig, Clock, RungeKutta, StepTrace
from .stats import report_solve
from .tableaus import TABLEAUS, ButcherTableau

METHODS: tuple[str, ...] = tuple(TABLEAUS)
ADAPTIVE_METHODS: tuple[str, ...] = tuple(name for name, tab in TABLEAUS.items() if tab.adaptive)
FIXED_STEP_METHODS: tuple[str, ...] = tuple(name for name, tab in TABLEAUS.items() if not tab.adaptive)

ADAPTIVE_OPTIONS = (
    "first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step", "max_step",
    "step_t", "jump_t", "norm", "controller", "pcoeff", "icoeff", "dcoeff",
)  # fmt: skip
FIXED_STEP_OPTIONS = ("step_size", "max_num_steps")
DEFAULT_MAX_NUM_STEPS = 1_000_000


# --------------------------------------------------------------------------------------------------- the state
@dataclass(frozen=True)
class StateSpec:
    """How a tensor or tuple of tensors maps to the integrator's flat state and back."""

    shapes: tuple[torch.Size, ...]
    is_tuple: bool

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(tensors) == 1:
            return tensors[0].reshape(-1)
        return torch.cat([x.reshape(-1) for x in tensors])

    def unflatten(self, flat: torch.Tensor):
        """Views of a flat state (or of the rows of a ``(T, N)`` solution, with ``leading`` dims kept)."""
        lead = flat.shape[:-1]
        if not self.is_tuple:
            return flat.view(*lead, *self.shapes[0])
        parts = torch.split(flat, self.sizes, dim=-1)
        return tuple(p.reshape(*lead, *shape) for p, shape in zip(parts, self.shapes))

    def check_derivative(self, out, t: torch.Tensor):
        """The vector field's output as a list of tensors, or a clear error if its structure is wrong."""
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if (isinstance(out, (tuple, list)) != self.is_tuple) or len(outs) != len(self.shapes) or any(
            not isinstance(o, torch.Tensor) or o.shape != shape for o, shape in zip(outs, self.shapes)
        ):
            got = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
            want = [tuple(s) for s in self.shapes]
            raise InvalidArgumentError(
                f"func(t, y) at t={float(t):.6g} returned shapes {got}, but y0 has shapes {want}. The vector field "
                f"must return dy/dt with exactly the structure and shapes of y0."
            )
        return outs


class FlatField:
    """The user's ``func(t, y)`` seen from the integrator: flat state in, flat derivative of ``s = sign*t`` out."""

    def __init__(self, func: Callable, spec: StateSpec, sign: float):
        self.func, self.spec, self.sign = func, spec, sign

    def __call__(self, t: torch.Tensor, y_flat: torch.Tensor) -> torch.Tensor:
        out = self.spec.check_derivative(self.func(t, self.spec.unflatten(y_flat)), t)
        flat = self.spec.flatten(out)
        return flat if self.sign > 0 else -flat


def as_state(y0, name: str = "y0") -> tuple[list[torch.Tensor], StateSpec]:
    is_tuple = isinstance(y0, (tuple, list))
    tensors = list(y0) if is_tuple else [y0]
    if not tensors or not all(isinstance(y, torch.Tensor) for y in tensors):
        raise InvalidArgumentError(
            f"{name} must be a tensor or a non-empty tuple of tensors, got {type(y0).__name__}. Pass the initial "
            f"state as torch tensor(s)."
        )
    for y in tensors:
        if not torch.is_floating_point(y):
            raise InvalidArgumentError(
                f"{name} has dtype {y.dtype}, which is not floating point. Convert it, e.g. {name}.float() or "
                f"{name}.double()."
            )
    if len({y.dtype for y in tensors}) > 1 or len({y.device for y in tensors}) > 1:
        raise InvalidArgumentError(
            f"the tensors of {name} mix dtypes/devices {[(str(y.dtype), str(y.device)) for y in tensors]}. Give "
            f"every part of a tuple state the same dtype and device."
        )
    return tensors, StateSpec(tuple(y.shape for y in tensors), is_tuple)


# --------------------------------------------------------------------------------------------------- arguments
def check_times(t, device: torch.device) -> tuple[list[float], float]:
    """Validate the output times; return them as floats and the direction (+1 increasing, -1 decreasing)."""
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentError(f"t must be a 1-D tensor of output times, got {type(t).__name__}. Use torch.tensor([...]).")
    if t.dim() != 1 or t.numel() < 2:
        raise InvalidArgumentError(
            f"t has shape {tuple(t.shape)}; it must be 1-D with at least two output times (the first is the initial "
            f"time), e.g. torch.tensor([0., 1.])."
        )
    if not torch.is_floating_point(t):
        raise InvalidArgumentError(f"t has dtype {t.dtype}; output times must be floating point, e.g. t.float().")
    if t.device != device:
        raise InvalidArgumentError(
            f"y0 is on {device} but t is on {t.device}. Put both on the same device, e.g. t.to(y0.device)."
        )
    times = t.detach().tolist()
    if not all(math.isfinite(v) for v in times):
        raise InvalidArgumentError(f"t contains non-finite values {times}. Output times must be finite numbers.")
    steps = [b - a for a, b in zip(times, times[1:])]
    if all(d > 0 for d in steps):
        return times, 1.0
    if all(d < 0 for d in steps):
        return times, -1.0
    bad = next(i for i, d in enumerate(steps) if (d <= 0) != (steps[0] <= 0) or d == 0)
    raise InvalidArgumentError(
        f"t must be strictly increasing or strictly decreasing, but t[{bad}]={times[bad]!r} and "
        f"t[{bad + 1}]={times[bad + 1]!r} break that. Sort the output times and remove duplicates."
    )


def check_tolerance(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(f"{name}={value!r} is not a number. Pass a non-negative float such as 1e-6.") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name}={value!r} must be a finite, non-negative number. Use e.g. {name}=1e-6.")
    return value


def lookup_method(method: str, name: str = "method") -> ButcherTableau:
    if method not in TABLEAUS:
        raise InvalidArgumentError(
            f"{name}={method!r} is not a known method. Choose one of: adaptive {list(ADAPTIVE_METHODS)}, fixed-step "
            f"{list(FIXED_STEP_METHODS)}."
        )
    return TABLEAUS[method]


def _positive(options: dict, key: str, default, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    value = options.get(key, default)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(f"options['{key}']={value!r} is not a number.") from None
    ok = (value >= 0 if allow_zero else value > 0) and (allow_inf or math.isfinite(value)) and not math.isnan(value)
    if not ok:
        raise InvalidArgumentError(
            f"options['{key}']={value!r} must be a {'non-negative' if allow_zero else 'positive'}"
            f"{'' if allow_inf else ', finite'} number."
        )
    return value


def _times_inside(options: dict, key: str, sign: float, s_first: float, s_last: float) -> tuple[float, ...]:
    values = options.get(key)
    if values is None:
        return ()
    if isinstance(values, torch.Tensor):
        values = values.detach().reshape(-1).tolist()
    try:
        values = [sign * float(v) for v in values]
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"options['{key}']={values!r} must be a sequence or 1-D tensor of times.") from None
    return tuple(sorted(v for v in values if s_first < v < s_last))


def check_options(tableau: ButcherTableau, options: dict | None, name: str = "options") -> dict:
    options = dict(options or {})
    accepted = ADAPTIVE_OPTIONS if tableau.adaptive else FIXED_STEP_OPTIONS
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgumentError(
            f"{name} {unknown} not accepted by method {tableau.name!r} ({'adaptive' if tableau.adaptive else 'fixed-step'}). "
            f"It accepts: {list(accepted)}."
        )
    return options


def adaptive_config(
    options: dict, rtol: float, atol: float, sign: float, s_out: Sequence[float], norm
) -> AdaptiveConfig:
    controller = options.get("controller", "integral")
    if controller not in CONTROLLER_PRESETS:
        raise InvalidArgumentError(
            f"options['controller']={controller!r} is unknown. Use one of {list(CONTROLLER_PRESETS)}, and tune it "
            f"with options pcoeff, icoeff, dcoeff."
        )
    p, i, d = CONTROLLER_PRESETS[controller]
    max_num_steps = options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if not isinstance(max_num_steps, int) or max_num_steps < 1:
        raise InvalidArgumentError(f"options['max_num_steps']={max_num_steps!r} must be a positive integer.")
    dfactor = _positive(options, "dfactor", 0.2)
    ifactor = _positive(options, "ifactor", 10.0)
    if not dfactor < 1.0 < ifactor:
        raise InvalidArgumentError(
            f"options dfactor={dfactor} and ifactor={ifactor} must satisfy dfactor < 1 < ifactor (they bound how "
            f"much one step may shrink or grow the step size)."
        )
    return AdaptiveConfig(
        rtol=rtol,
        atol=atol,
        norm=norm,
        first_step=_positive(options, "first_step", None),
        safety=_positive(options, "safety", 0.9),
        ifactor=ifactor,
        dfactor=dfactor,
        pcoeff=float(options.get("pcoeff", p)),
        icoeff=float(options.get("icoeff", i)),
        dcoeff=float(options.get("dcoeff", d)),
        max_num_steps=max_num_steps,
        min_step=_positive(options, "min_step", 0.0, allow_zero=True),
        max_step=_positive(options, "max_step", math.inf, allow_inf=True),
        step_s=_times_inside(options, "step_t", sign, s_out[0], s_out[-1]),
        jump_s=_times_inside(options, "jump_t", sign, s_out[0], s_out[-1]),
    )


def fixed_grid(options: dict, s_out: Sequence[float], *, through_outputs: bool = False) -> list[float]:
    """The fixed-step grid: ``options['step_size']`` from the first output time, or the output times themselves.

    ``through_outputs``: the grid restarts at every output time (a solve whose state jumps there must land on it).
    """
    step_size = _positive(options, "step_size", None)
    if step_size is None:
        return list(s_out)
    if through_outputs:
        pieces = [fixed_grid(options, s_out[i : i + 2])[:-1] for i in range(len(s_out) - 1)]
        return [s for piece in pieces for s in piece] + [s_out[-1]]
    s_first, s_last = s_out[0], s_out[-1]
    n = max(1, math.ceil((s_last - s_first) / step_size * (1 - 1e-12)))
    return [s_first + k * step_size for k in range(n)] + [s_last]


def needs_graph(func, tensors: Sequence[torch.Tensor], t: torch.Tensor, params: Sequence[torch.Tensor] = ()) -> bool:
    """Whether autograd must record the solve (else the faster buffered storage is safe).

    Closures that are not ``nn.Module``s may capture tensors that require grad, so they are recorded whenever
    gradients are enabled.
    """
    if not torch.is_grad_enabled():
        return False
    if t.requires_grad or any(y.requires_grad for y in tensors) or any(p.requires_grad for p in params):
        return True
    if isinstance(func, nn.Module):
        return any(p.requires_grad for p in func.parameters())
    return True


def differentiated_params(func, adjoint_params: Sequence[torch.Tensor] | None, name: str) -> tuple[torch.Tensor, ...]:
    """The tensors besides ``y0`` and ``t`` whose gradients ``odeint_adjoint``/``odeint_checkpoint`` compute:
    ``adjoint_params``, else ``func.parameters()``; those that require grad."""
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise InvalidArgumentError(
                f"func is a {type(func).__name__}, not an nn.Module, so {name} cannot find its parameters. Pass "
                f"adjoint_params=(tensors to differentiate), or make func an nn.Module."
            )
        adjoint_params = tuple(func.parameters())
    return tuple(p for p in adjoint_params if p.requires_grad)


def wants_gradients(tensors: Sequence[torch.Tensor], t: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    """Whether a strategy with explicit parameters has any gradient to compute (else a plain solve will do)."""
    return torch.is_grad_enabled() and (t.requires_grad or any(y.requires_grad for y in tensors) or len(params) > 0)


@dataclass(frozen=True)
class Problem:
    """The checked arguments of one solve: ``odeint``'s and ``odeint_adjoint``'s forward solve alike."""

    tensors: list[torch.Tensor]
    spec: StateSpec
    times: list[float]
    sign: float
    rtol: float
    atol: float
    tableau: ButcherTableau
    options: dict
    norm: object

    @classmethod
    def check(cls, y0, t, rtol, atol, method: str, options: dict | None) -> "Problem":
        """Validate everything before solving; raises ``InvalidArgumentError`` naming the bad value."""
        tensors, spec = as_state(y0)
        times, sign = check_times(t, tensors[0].device)
        rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
        tableau = lookup_method(method)
        options = check_options(tableau, options)
        norm = None
        if tableau.adaptive:
            norm = resolve_norm(options.get("norm", "rms"), sizes=spec.sizes, structured=spec.unflatten)
        return cls(tensors, spec, times, sign, rtol, atol, tableau, options, norm)


# ------------------------------------------------------------------------------------------------------ solving
def integrate(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0_flat: torch.Tensor,
    t: torch.Tensor,
    times: Sequence[float],
    sign: float,
    tableau: ButcherTableau,
    rtol: float,
    atol: float,
    options: dict,
    norm,
    *,
    differentiable: bool,
    backward: bool = False,
    trace: StepTrace | None = None,
    state_jump: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Solve the flat problem; returns the ``(len(t), N)`` solution and reports the statistics.

    ``trace`` and ``state_jump`` are the integrator's hooks for the gradient strategies (``runge_kutta.py``).
    """
    s_out = [sign * v for v in times]
    clock = Clock(t, s_out, sign, differentiable=differentiable and t.requires_grad)
    solver = RungeKutta(field, tableau, clock, differentiable=differentiable, trace=trace, state_jump=state_jump)
    try:
        if tableau.adaptive:
            solution = solver.solve_adaptive(y0_flat, s_out, adaptive_config(options, rtol, atol, sign, s_out, norm))
        else:
            max_num_steps = options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS)
            grid = fixed_grid(options, s_out, through_outputs=state_jump is not None)
            solution = solver.solve_fixed(y0_flat, s_out, grid, max_num_steps)
            check_fixed_step_solution(solution, times)
    finally:
        report_solve(solver.nfe, solver.accepted, solver.rejected, backward=backward)
    return solution


def check_fixed_step_solution(solution: torch.Tensor, times: Sequence[float]) -> None:
    """A fixed-step solve has no error control to notice a blow-up; check its outputs once at the end."""
    finite = torch.isfinite(solution.detach()).all(dim=1)
    if bool(finite.all()):
        return
    first = int((~finite).nonzero()[0])
    raise NonFiniteDerivativeError(
        f"the fixed-step solution became NaN or infinite between t={times[first - 1]:.6g} and t={times[first]:.6g}. "
        f"Either the vector field returned a non-finite value there or the step is too large for this problem "
        f"(fixed-step methods have no error control): use a smaller options['step_size'] or an adaptive method."
    )


def odeint(
    func: Callable,
    y0,
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str = "dopri5",
    options: dict[str, Any] | None = None,
):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``, and return the solution at every time of ``t``.

    Gradients flow by ordinary backpropagation through the solver's operations (the paper's "RK-Net"); use
    ``odeint_adjoint`` for memory that does not grow with the number of steps. See the package docstring for the
    arguments, methods and options.
    """
    p = Problem.check(y0, t, rtol, atol, method, options)
    solution = integrate(
        FlatField(func, p.spec, p.sign), p.spec.flatten(p.tensors), t, p.times, p.sign, p.tableau, p.rtol, p.atol,
        p.options, p.norm, differentiable=needs_graph(func, p.tensors, t),
    )  # fmt: skip
    return p.spec.unflatten(solution)
