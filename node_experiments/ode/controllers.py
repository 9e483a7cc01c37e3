"""Step-size control: error norms, the initial step, and the I/PI/PID controllers.

Everything here works on Python floats except the norms, which reduce a tensor to one number. Reading that number
is the solver's single host synchronisation per step: the accept/reject decision needs it on the host, and doing
the controller arithmetic there (rather than in tiny device kernels) costs no kernel launches at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import InvalidArgumentError

class Norm:
    """A norm of the flat (1-D) tensor of scaled errors, ``error / (atol + rtol * |y|)``, as a non-negative float.

    It is computed in two halves so that the integrator can read it in one transfer together with other numbers it
    needs from the device (the stiffness test's): ``reduce`` computes one or a few numbers on the device, ``finish``
    turns what ``reduce`` returned, read back with ``tolist()``, into the norm. Calling the norm does both (a host
    synchronisation).
    """

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, values) -> float:
        return float(values)

    def __call__(self, x: torch.Tensor) -> float:
        return self.finish(self.reduce(x).tolist())  # HOST SYNC


@dataclass(frozen=True)
class RMSNorm(Norm):
    """Root mean square over ``size`` numbers: Hairer, Norsett & Wanner I, eq. (4.11)."""

    size: int

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x)

    def finish(self, values) -> float:
        return values / math.sqrt(max(self.size, 1))


class MaxNorm(Norm):
    """Largest absolute scaled error."""

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, ord=math.inf)


@dataclass(frozen=True)
class MixedRMSNorm(Norm):
    """The largest RMS over the parts of a tuple state, counting only the first ``keep`` parts.

    Each tensor of a tuple state is held to the tolerance on its own, so a small part (a log-density beside a
    state, a bias beside a weight) is not drowned by a large one; torchdiffeq's default for tuples likewise.
    With ``keep`` smaller than the number of parts it is the adjoint's *seminorm* (Kidger, Chen & Lyons 2021):
    the adjoint state is (state, adjoint of the state, parameter gradients), and the last parts are integrals that
    nothing else depends on, so leaving them out of error control keeps the accuracy of what matters and lets the
    backward solve take larger steps.
    """

    sizes: tuple[int, ...]
    keep: int

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        kept = self.sizes[: self.keep]
        return torch.stack(torch._foreach_norm(torch.split(x[: sum(kept)], kept)))  # one kernel for all parts

    def finish(self, values) -> float:
        return max(n / math.sqrt(size) for n, size in zip(values, self.sizes[: self.keep]))


@dataclass(frozen=True)
class StructuredNorm(Norm):
    """A user's norm callable, given the scaled error shaped like ``y0`` (a tensor or a tuple of tensors)."""

    user_norm: Callable
    unflatten: Callable[[torch.Tensor], object]

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        value = self.user_norm(self.unflatten(x))
        return torch.as_tensor(value).to(dtype=x.dtype, device=x.device).reshape(())


def scaled_error_norm(
    error: torch.Tensor, y_old_abs: torch.Tensor, y_new_abs: torch.Tensor, rtol: float, atol: float, norm: Norm,
    extra: torch.Tensor | None = None,
) -> tuple[float, list[float] | None]:
    """``norm(error / (atol + rtol * max(|y_old|, |y_new|)))``, reusing the caller's ``|y|``; overwrites ``error``.

    ``extra``: a 1-D tensor of other numbers the caller needs on the host, read in the same transfer as the norm
    (returned as a list, else None). Runs without autograd: the error estimate steers the step size and is never
    differentiated. HOST SYNC: the solver's one per step.
    """
    with torch.no_grad():
        scale = torch.maximum(y_old_abs, y_new_abs).mul_(rtol).add_(atol)
        value = norm.reduce(error.div_(scale))
        if extra is None:
            return norm.finish(value.tolist()), None
        values = torch.cat([value.reshape(-1), extra.to(value.dtype)]).tolist()  # one transfer for both
        own = value.numel()
        return norm.finish(values[0] if value.dim() == 0 else values[:own]), values[own:]


def initial_step(
    func: Callable[[float, torch.Tensor], torch.Tensor],
    t0: float,
    y0: torch.Tensor,
    f0: torch.Tensor,
    direction: float,
    error_order: int,
    rtol: float,
    atol: float,
    norm: Norm,
) -> float:
    """Hairer, Norsett & Wanner, Solving ODEs I (2nd ed.), section II.4, "Automatic step size control".

    Returns a positive step size, or NaN when ``y0`` or ``f0`` is not finite (no step size can be chosen from them:
    the caller reports the non-finite derivative); costs one evaluation of ``func`` otherwise.
    """
    with torch.no_grad():
        scale = y0.abs().mul_(rtol).add_(atol)
        d0 = norm(y0 / scale)
        d1 = norm(f0 / scale)
        if not (math.isfinite(d0) and math.isfinite(d1)):
            if not bool(torch.isfinite(f0).all() and torch.isfinite(y0).all()):
                return math.nan
            return 1e-6  # a zero scale (atol = 0 where y0 = 0): the controller grows this guess
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        y1 = y0 + (direction * h0) * f0
        f1 = func(t0 + direction * h0, y1)
        d2 = norm((f1 - f0).div_(scale)) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return min(100.0 * h0, h1)


CONTROLLER_PRESETS: dict[str, tuple[float, float, float]] = {
    # (pcoeff, icoeff, dcoeff), in the convention of Soderlind (2003) as used by diffrax's PIDController.
    "integral": (0.0, 1.0, 0.0),
    "pi": (1.0 / 6.0, 1.0 / 6.0, 0.0),  # H211PI
    "pid": (1.0 / 18.0, 1.0 / 9.0, 1.0 / 18.0),  # H312PID
}


class StepSizeController:
    """Proposes the next step size from the error ratios of the last steps (I, PI or PID control).

    With error ratios ``e_n`` (this step), ``e_{n-1}``, ``e_{n-2}`` (the previous accepted ones) and ``k`` one
    more than the order of the error estimate, the step size is multiplied by

        safety * e_n^-(p+i+d)/k * e_{n-1}^((p+2d)/k) * e_{n-2}^(-d/k),

    clipped to ``[dfactor, ifactor]`` (to ``[dfactor, 1]`` after a rejection, where only the integral term is
    used). ``(p, i, d) = (0, 1, 0)`` is the classical integral controller (Hairer, Norsett & Wanner I, II.4);
    PI/PID control (Gustafsson 1991; Soderlind 2003) damps the step-size oscillations it can show.
    """

    def __init__(
        self,
        error_order: int,
        *,
        safety: float,
        ifactor: float,
        dfactor: float,
        pcoeff: float,
        icoeff: float,
        dcoeff: float,
    ):
        k = error_order + 1
        self.k = k
        self.beta1 = (pcoeff + icoeff + dcoeff) / k
        self.beta2 = -(pcoeff + 2.0 * dcoeff) / k
        self.beta3 = dcoeff / k
        self.safety, self.ifactor, self.dfactor = safety, ifactor, dfactor
        self.prev1 = 1.0  # e_{n-1}
        self.prev2 = 1.0  # e_{n-2}

    def next_step(self, h: float, error_ratio: float, accepted: bool) -> float:
        if not accepted:
            if not math.isfinite(error_ratio):
                return h * self.dfactor
            factor = self.safety * error_ratio ** (-1.0 / self.k)
            return h * min(1.0, max(self.dfactor, factor))
        e = max(error_ratio, 1e-10)
        factor = (
            self.safety
            * e ** (-self.beta1)
            * self.prev1 ** (-self.beta2)
            * self.prev2 ** (-self.beta3)
        )
        self.prev2, self.prev1 = self.prev1, e
        return h * min(self.ifactor, max(self.dfactor, factor))


def resolve_norm(
    norm, *, sizes: Sequence[int], structured: Callable[[torch.Tensor], object], state_parts: int | None = None
) -> Norm:
    """Turn the ``norm`` option into a callable on the flat scaled error.

    ``sizes`` are the sizes of the state's parts in the flat vector. ``"seminorm"`` needs ``state_parts`` (the
    adjoint passes it): the number of leading parts that stay under error control.
    """
    sizes = tuple(int(n) for n in sizes if n > 0)
    if callable(norm):
        return StructuredNorm(norm, structured)
    if norm == "seminorm" and state_parts is not None:
        return MixedRMSNorm(sizes, state_parts)
    if norm == "rms":
        return RMSNorm(sum(sizes)) if len(sizes) == 1 else MixedRMSNorm(sizes, len(sizes))
    if norm == "max":
        return MaxNorm()
    valid = ["rms", "max"] + (["seminorm"] if state_parts is not None else [])
    raise InvalidArgumentError(
        f"norm={norm!r} is not a norm this solve accepts. Use one of {valid}, or a callable that takes the scaled "
        f"error (shaped like the state) and returns a scalar. ('seminorm' applies to adjoint_options only.)"
    )
