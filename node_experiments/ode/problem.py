"""The arguments of a solve, checked: vector field, state, times, tolerances, method and options, and an event
function, before anything is solved, gathered in one ``Problem``.

Everything a user can get wrong is reported as an ``InvalidArgumentError`` naming the value, the problem and the
fix. The calls torchdiffeq accepts are accepted here with the same meaning, or refused with a message that says
how this solver differs (``docs/solver.md`` has the table). The state's layout is ``state.py``'s, the method's
options ``options.py``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .controllers import resolve_norm
from .errors import InvalidArgumentError
from .options import check_options, lookup_method, method_tableau
from .state import StateSpec, as_state
from .tableaus import ButcherTableau


def check_func(func) -> None:
    if not callable(func):
        raise InvalidArgumentError(
            f"func={func!r} is not callable. Pass the vector field: a function or nn.Module called as func(t, y) "
            f"that returns dy/dt shaped like y."
        )


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
