"""The arguments of a solve, checked: state, times, tolerances, method and options, before anything is solved.

Everything a user can get wrong is checked here and reported as an ``InvalidArgumentError`` naming the value, the
problem and the fix. The calls torchdiffeq accepts are accepted here with the same meaning, or refused with a
message that says how this solver differs (``docs/solver.md`` has the table).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .controllers import CONTROLLER_PRESETS, resolve_norm
from .errors import InvalidArgumentError, MaxStepsExceededError
from .runge_kutta import AdaptiveConfig
from .tableaus import TABLEAUS, ButcherTableau, linear_interpolation

METHODS: tuple[str, ...] = tuple(TABLEAUS)
ADAPTIVE_METHODS: tuple[str, ...] = tuple(name for name, tab in TABLEAUS.items() if tab.adaptive)
FIXED_STEP_METHODS: tuple[str, ...] = tuple(name for name, tab in TABLEAUS.items() if not tab.adaptive)

# torchdiffeq's names for methods that are the same here.
METHOD_ALIASES = {"heun2": "heun"}
# torchdiffeq's methods that are not explicit Runge-Kutta methods, and what to use instead.
_NOT_RUNGE_KUTTA = {
    "explicit_adams": "torchdiffeq's fixed-step Adams-Bashforth",
    "implicit_adams": "torchdiffeq's fixed-step Adams-Bashforth-Moulton predictor-corrector",
    "fixed_adams": "torchdiffeq's older name of implicit_adams",
    "scipy_solver": "torchdiffeq's wrapper of scipy.integrate.solve_ivp",
}

ADAPTIVE_OPTIONS = (
    "first_step", "safety", "ifactor", "dfactor", "max_num_steps", "min_step", "max_step",
    "step_t", "jump_t", "norm", "controller", "pcoeff", "icoeff", "dcoeff", "dtype", "stiffness_check",
)  # fmt: skip
FIXED_STEP_OPTIONS = ("step_size", "grid_constructor", "perturb", "interp", "max_num_steps", "norm")
DEFAULT_MAX_NUM_STEPS = 1_000_000
# States of these dtypes are integrated in float32 (see ``as_state``).
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------------- the state
@dataclass(frozen=True)
class StateSpec:
    """How a tensor or tuple of tensors maps to the integrator's flat state and back.

    ``dtype`` is the state's; ``working_dtype`` the integrator's: the same, except that a float16 or bfloat16 state
    is integrated in float32 (its steps, stage combinations, error estimates and dense output), while the vector
    field still receives and returns the state's own dtype. A 2-byte state cannot accumulate steps smaller than
    its resolution (a bfloat16 ``y`` plus ``h * dy`` rounds back to ``y`` once ``h * dy < y / 256``): integrated in
    its own dtype it stalls and returns a wrong answer with no error.
    """

    shapes: tuple[torch.Size, ...]
    is_tuple: bool
    dtype: torch.dtype
    working_dtype: torch.dtype

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.shapes]

    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        flat = tensors[0].reshape(-1) if len(tensors) == 1 else torch.cat([x.reshape(-1) for x in tensors])
        return flat if self.dtype == self.working_dtype else flat.to(self.working_dtype)

    def unflatten(self, flat: torch.Tensor):
        """Views of a flat state (or of the rows of a ``(T, N)`` solution, with ``leading`` dims kept)."""
        if flat.dtype != self.dtype:
            flat = flat.to(self.dtype)
        if not self.is_tuple:  # view(*ints) is the fastest form (a torch.Size argument takes twice as long)
            shape = (*flat.shape[:-1], *self.shapes[0])
            return flat.view(*shape) if shape else flat.view(())
        lead = tuple(flat.shape[:-1])
        parts = torch.split(flat, self.sizes, dim=-1)
        return tuple(p.reshape((*lead, *shape)) for p, shape in zip(parts, self.shapes))

    def check_derivative(self, out, t: torch.Tensor):
        """The vector field's output as a list of tensors in the state's dtype, or a clear error if its structure is
        wrong or it is not floating point.

        A floating-point result of another dtype is cast to the state's, as torchdiffeq stores it: a field that
        computes in float64 (float64 parameters, or float64 times promoting what they touch) for a float32 state.
        """
        if not self.is_tuple and isinstance(out, torch.Tensor) and out.shape == self.shapes[0] and out.dtype == self.dtype:
            return (out,)  # the common case, checked in one line: this runs at every evaluation
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
        if not all(torch.is_floating_point(o) for o in outs):
            got = sorted({str(o.dtype) for o in outs if not torch.is_floating_point(o)})
            raise InvalidArgumentError(
                f"func(t, y) at t={float(t):.6g} returned dtype {', '.join(got)} for a state of dtype {self.dtype}. "
                f"dy/dt must be floating point (a result of another floating dtype is cast to the state's): check "
                f"the function's arithmetic, e.g. `return dydt.to(y.dtype)`."
            )
        return tuple(o if o.dtype == self.dtype else o.to(self.dtype) for o in outs)


def check_func(func) -> None:
    if not callable(func):
        raise InvalidArgumentError(
            f"func={func!r} is not callable. Pass the vector field: a function or nn.Module called as func(t, y) "
            f"that returns dy/dt shaped like y."
        )


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
    if sum(y.numel() for y in tensors) == 0:
        raise InvalidArgumentError(
            f"{name} has no elements (shape {[tuple(y.shape) for y in tensors] if is_tuple else tuple(y0.shape)}): "
            f"there is nothing to integrate. Pass a state with at least one number (a 0-dim tensor is fine)."
        )
    dtype = tensors[0].dtype
    working = torch.float32 if dtype in REDUCED_PRECISION else dtype
    return tensors, StateSpec(tuple(y.shape for y in tensors), is_tuple, dtype, working)


# --------------------------------------------------------------------------------------------------- arguments
def check_times(t, device: torch.device) -> tuple[list[float], float]:
    """Validate the output times; return them as floats and the direction (+1 increasing, -1 decreasing)."""
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentError(f"t must be a 1-D tensor of output times, got {type(t).__name__}. Use torch.tensor([...]).")
    if t.dim() != 1 or t.numel() < 1:
        raise InvalidArgumentError(
            f"t has shape {tuple(t.shape)}; it must be 1-D with at least one output time (the first is the initial "
            f"time), e.g. torch.tensor([0., 1.])."
        )
    if not torch.is_floating_point(t):
        raise InvalidArgumentError(f"t has dtype {t.dtype}; output times must be floating point, e.g. t.float().")
    if t.device != device:
        raise InvalidArgumentError(
            f"y0 is on {device} but t is on {t.device}. Put both on the same device, e.g. t.to(y0.device). "
            f"(torchdiffeq moves t to y0's device with a warning; here the mismatch is an error.)"
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


def _tolerance_number(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(
            f"{name}={value!r} is not a number. Pass a non-negative float such as 1e-6 (or, for a tuple state, a "
            f"tuple of them, one per tensor)."
        ) from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name}={value!r} must be a finite, non-negative number. Use e.g. {name}=1e-6.")
    return value


def check_tolerance(name: str, value, spec: StateSpec | None = None, device: torch.device | None = None):
    """A tolerance as a float, or as a flat tensor with one value per element of the state.

    Accepted, as torchdiffeq accepts them: a number (or a one-element tensor); for a tuple state, a sequence with
    one entry per tensor of the state (each a number, or a tensor broadcastable to that tensor's shape); for a
    tensor state, a tensor or sequence broadcastable to its shape. A per-element tolerance whose values are all
    equal is returned as that one float.
    """
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise InvalidArgumentError(f"{name} requires grad; tolerances are not differentiated. Pass {name}.detach().")
    if not isinstance(value, (tuple, list, torch.Tensor)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return _tolerance_number(name, value)
    if spec is None:
        raise InvalidArgumentError(f"{name}={value!r} must be a single non-negative number here, e.g. {name}=1e-6.")
    if spec.is_tuple:
        entries = list(value)
        if len(entries) != len(spec.shapes):
            raise InvalidArgumentError(
                f"{name} has {len(entries)} entries but y0 is a tuple of {len(spec.shapes)} tensors. Give one "
                f"tolerance per tensor of the state, or a single number for all."
            )
        targets = list(zip(entries, spec.shapes))
    else:
        targets = [(value, spec.shapes[0])]
    parts = []
    for i, (entry, shape) in enumerate(targets):
        where = f"{name}[{i}]" if spec.is_tuple else name
        try:
            tensor = torch.as_tensor(entry, dtype=torch.float64).detach()
            parts.append(tensor.expand(shape).reshape(-1))
        except (TypeError, ValueError, RuntimeError):
            raise InvalidArgumentError(
                f"{where}={entry!r} cannot be broadcast to the state's shape {tuple(shape)}. Give a number, or a "
                f"tensor broadcastable to that shape."
            ) from None
    flat = torch.cat(parts).cpu()
    if not bool(torch.isfinite(flat).all()) or bool((flat < 0).any()):
        raise InvalidArgumentError(f"{name} holds negative or non-finite values ({value!r}); each must be a finite "
                                   f"number >= 0.")  # fmt: skip
    if bool((flat == flat[0]).all()):
        return float(flat[0])
    return flat.to(device=device, dtype=spec.working_dtype)


def refuse_zero_tolerances(rtol, atol, prefix: str = "") -> None:
    """Adaptive methods: a zero ``rtol`` and ``atol`` on the same element asks for an exact solution. No step is
    ever accepted, and the step size shrinks until the solve fails after minutes: refuse it up front."""
    if bool(((torch.as_tensor(rtol) == 0) & (torch.as_tensor(atol) == 0)).any()):
        raise InvalidArgumentError(
            f"{prefix}rtol and {prefix}atol are both 0 (for at least one element of the state): that asks for an "
            f"error of exactly zero, which no step of an adaptive method achieves (its step size would shrink until "
            f"the solve fails). Make at least one positive, e.g. {prefix}atol=1e-9, or use a fixed-step method."
        )


def lookup_method(method: str | None, name: str = "method") -> ButcherTableau:
    """The tableau of ``method``: one of ``METHODS``, torchdiffeq's alias ``heun2``, or None for ``dopri5``."""
    if method is None:
        return TABLEAUS["dopri5"]
    if method in _NOT_RUNGE_KUTTA:
        raise InvalidArgumentError(
            f"{name}={method!r} ({_NOT_RUNGE_KUTTA[method]}) is not supported: this solver integrates with one-step "
            f"explicit Runge-Kutta methods only (every method is a Butcher tableau driving one stepper), and a "
            f"multistep or wrapped method fits neither its step-by-step adjoint, checkpointing and dense output nor "
            f"that design. Use method='rk4' with options={{'step_size': ...}} for a fixed-step 4th-order method, or "
            f"an adaptive one such as 'dopri5' (the default), which controls its error as well."
        )
    method = METHOD_ALIASES.get(method, method)
    if method not in TABLEAUS:
        raise InvalidArgumentError(
            f"{name}={method!r} is not a known method. Choose one of: adaptive {list(ADAPTIVE_METHODS)}, fixed-step "
            f"{list(FIXED_STEP_METHODS)} (torchdiffeq's 'heun2' is 'heun')."
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
    """The options as a new dict; unknown keys are an error, options with no effect here a warning."""
    options = dict(options or {})
    accepted = ADAPTIVE_OPTIONS if tableau.adaptive else FIXED_STEP_OPTIONS
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgumentError(
            f"{name} {unknown} not accepted by method {tableau.name!r} ({'adaptive' if tableau.adaptive else 'fixed-step'}). "
            f"It accepts: {list(accepted)}. (torchdiffeq warns about unknown options and ignores them; here a "
            f"misspelt option is an error rather than silently without effect.)"
        )
    if not tableau.adaptive and "norm" in options:
        warnings.warn(f"{name}['norm'] has no effect on the fixed-step method {tableau.name!r}, which controls no "
                      f"error: ignored.", stacklevel=3)  # fmt: skip
        del options["norm"]
    if "dtype" in options:
        if options["dtype"] not in (None, torch.float64):
            warnings.warn(f"{name}['dtype']={options['dtype']} has no effect: this solver keeps times and step sizes "
                          f"as 64-bit floats whatever the dtypes (torchdiffeq's default, float64).", stacklevel=3)  # fmt: skip
        del options["dtype"]
    if options.get("step_size") is not None and options.get("grid_constructor") is not None:
        raise InvalidArgumentError(
            f"{name} has both 'step_size' and 'grid_constructor': they are two ways to give the fixed-step grid. "
            f"Pass one of them."
        )
    if options.get("grid_constructor") is not None and not callable(options["grid_constructor"]):
        raise InvalidArgumentError(f"{name}['grid_constructor']={options['grid_constructor']!r} is not callable: "
                                   f"pass a function (func, y0, t) -> 1-D tensor of grid times.")  # fmt: skip
    if options.get("interp", "cubic") not in ("linear", "cubic"):
        raise InvalidArgumentError(f"{name}['interp']={options['interp']!r} is unknown: use 'cubic' (the default, cubic "
                                   f"Hermite) or 'linear' (torchdiffeq's default).")  # fmt: skip
    for flag in ("perturb", "stiffness_check"):
        if not isinstance(options.get(flag, False), bool):
            raise InvalidArgumentError(f"{name}['{flag}']={options[flag]!r} must be True or False.")
    return options


def method_tableau(tableau: ButcherTableau, options: dict) -> ButcherTableau:
    """The tableau a solve runs: ``tableau``, with linear dense output where a fixed-step solve asks for it."""
    return linear_interpolation(tableau) if options.get("interp") == "linear" else tableau


def adaptive_config(
    options: dict, rtol, atol, sign: float, s_first: float, s_last: float, norm
) -> AdaptiveConfig:
    controller = options.get("controller", "integral")
    if controller not in CONTROLLER_PRESETS:
        raise InvalidArgumentError(
            f"options['controller']={controller!r} is unknown. Use one of {list(CONTROLLER_PRESETS)}, and tune it "
            f"with options pcoeff, icoeff, dcoeff."
        )
    p, i, d = CONTROLLER_PRESETS[controller]
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
        max_num_steps=max_num_steps(options),
        min_step=_positive(options, "min_step", 0.0, allow_zero=True),
        max_step=_positive(options, "max_step", math.inf, allow_inf=True),
        step_s=_times_inside(options, "step_t", sign, s_first, s_last),
        jump_s=_times_inside(options, "jump_t", sign, s_first, s_last),
        stiffness_check=options.get("stiffness_check", True),
    )


def max_num_steps(options: dict) -> int:
    value = options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"options['max_num_steps']={value!r} must be a positive integer.")
    return value


@dataclass(frozen=True)
class EventGrid:
    """``s0, s0 + h, s0 + 2h, ...``: the fixed-step grid of a solve that runs until an event, as long as
    ``max_num_steps`` allows (a sequence computed on demand, not stored)."""

    start: float
    step: float
    points: int

    def __len__(self) -> int:
        return self.points

    def __getitem__(self, k: int) -> float:
        return self.start + k * self.step


def fixed_grid(
    options: dict, s_out: Sequence[float], sign: float, grid_arguments: Callable[[], tuple], *,
    through_outputs: bool = False,
) -> list[float]:  # fmt: skip
    """The fixed-step grid, in ``s``: ``options['step_size']`` from the first output time, the times
    ``options['grid_constructor'](func, y0, t)`` returns (``grid_arguments()`` gives those three), or the output
    times themselves. Its steps are counted, and checked against ``options['max_num_steps']``, before it is built:
    a tiny ``step_size`` fails at once instead of filling the memory with grid points.

    ``through_outputs``: the grid passes through every output time (a solve whose state jumps there must land on it).
    """
    limit = max_num_steps(options)
    step_size = _positive(options, "step_size", None)
    constructor = options.get("grid_constructor")
    if constructor is not None:
        grid = _constructed_grid(constructor, grid_arguments(), s_out, sign, limit)
        return sorted(set(grid) | set(s_out)) if through_outputs else grid
    if step_size is None:
        return list(s_out)
    intervals = zip(s_out, s_out[1:]) if through_outputs else [(s_out[0], s_out[-1])]
    counts = [max(1, math.ceil((b - a) / step_size * (1 - 1e-12))) for a, b in intervals]
    _check_grid_steps(sum(counts), limit, "use a larger options['step_size']")
    if through_outputs:
        pieces = [[a + k * step_size for k in range(n)] for a, n in zip(s_out, counts)]
        return [s for piece in pieces for s in piece] + [s_out[-1]]
    return [s_out[0] + k * step_size for k in range(counts[0])] + [s_out[-1]]


def _check_grid_steps(steps: int, limit: int, fix: str) -> None:
    if steps > limit:
        raise MaxStepsExceededError(
            f"the fixed-step grid has {steps} steps, more than max_num_steps={limit}. Raise options['max_num_steps'] "
            f"or {fix}."
        )


def _constructed_grid(
    constructor: Callable, arguments: tuple, s_out: Sequence[float], sign: float, limit: int
) -> list[float]:
    grid = constructor(*arguments)
    t = arguments[2]
    first, last = sign * s_out[0], sign * s_out[-1]
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.numel() < 2:
        raise InvalidArgumentError(
            f"options['grid_constructor'] returned {type(grid).__name__}"
            f"{tuple(grid.shape) if isinstance(grid, torch.Tensor) else ''}; it must return a 1-D tensor of at least "
            f"two times, from t[0] to t[-1]."
        )
    _check_grid_steps(grid.numel() - 1, limit, "return a coarser grid from options['grid_constructor']")
    values = grid.detach().tolist()
    s_grid = [sign * v for v in values]
    if values[0] != first or values[-1] != last or any(b <= a for a, b in zip(s_grid, s_grid[1:])):
        raise InvalidArgumentError(
            f"options['grid_constructor'] returned a grid from {values[0]!r} to {values[-1]!r}: it must start at "
            f"t[0]={first!r}, end at t[-1]={last!r} and run strictly in t's direction (t has dtype {t.dtype}; "
            f"build the grid in it, e.g. torch.linspace(t[0], t[-1], n))."
        )
    return s_grid


# -------------------------------------------------------------------------------------------------- gradients
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
                f"adjoint_params=(tensors to differentiate), or adjoint_params=() when there are none, or make func "
                f"an nn.Module."
            )
        adjoint_params = tuple(func.parameters())
    return tuple(p for p in adjoint_params if p.requires_grad)


def wants_gradients(tensors: Sequence[torch.Tensor], t: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    """Whether a strategy with explicit parameters has any gradient to compute (else a plain solve will do)."""
    return torch.is_grad_enabled() and (t.requires_grad or any(y.requires_grad for y in tensors) or len(params) > 0)


# ------------------------------------------------------------------------------------------------ the problem
@dataclass(frozen=True)
class Problem:
    """The checked arguments of one solve: ``odeint``'s and ``odeint_adjoint``'s forward solve alike.

    With an ``event_fn`` (``event``), ``times`` holds ``t``'s two entries, of which only the first is a time the
    solve visits: it runs from there in the direction of the second until the event.
    """

    tensors: list[torch.Tensor]
    spec: StateSpec
    times: list[float]
    sign: float
    rtol: Any  # float, or a flat tensor (one value per element of the state)
    atol: Any
    tableau: ButcherTableau
    options: dict
    norm: object
    event_fn: Callable | None = None

    @classmethod
    def check(cls, func, y0, t, rtol, atol, method, options: dict | None, event_fn=None) -> "Problem":
        """Validate everything before solving; raises ``InvalidArgumentError`` naming the bad value."""
        check_func(func)
        tensors, spec = as_state(y0)
        times, sign = check_times(t, tensors[0].device)
        rtol = check_tolerance("rtol", rtol, spec, tensors[0].device)
        atol = check_tolerance("atol", atol, spec, tensors[0].device)
        tableau = lookup_method(method)
        options = check_options(tableau, options)
        tableau = method_tableau(tableau, options)
        norm = None
        if tableau.adaptive:
            refuse_zero_tolerances(rtol, atol)
            norm = resolve_norm(options.get("norm", "rms"), sizes=spec.sizes, structured=spec.unflatten)
        if event_fn is not None:
            check_event_arguments(event_fn, times, tableau, options)
        return cls(tensors, spec, times, sign, rtol, atol, tableau, options, norm, event_fn)

    @property
    def trivial(self) -> bool:
        """A single output time and no event: the solution is ``y0`` itself, nothing to solve."""
        return len(self.times) == 1 and self.event_fn is None


def check_event_arguments(event_fn, times: Sequence[float], tableau: ButcherTableau, options: dict) -> None:
    if not callable(event_fn):
        raise InvalidArgumentError(f"event_fn={event_fn!r} is not callable: pass a function (t, y) -> tensor whose zero "
                                   f"is the event.")  # fmt: skip
    if len(times) != 2:
        raise InvalidArgumentError(
            f"with event_fn, t must hold two times [t0, t1] (got {len(times)}): the solve starts at t0 and runs in "
            f"the direction of t1 until the event (t1 itself is not an end, as in torchdiffeq). odeint_event(func, "
            f"y0, t0, event_fn=...) builds that t."
        )
    if not tableau.adaptive and options.get("step_size") is None:
        raise InvalidArgumentError(
            f"an event solve with the fixed-step method {tableau.name!r} needs options['step_size'] (it steps until "
            f"the event, so the grid cannot come from t or a grid_constructor), e.g. options={{'step_size': 0.01}}."
        )
