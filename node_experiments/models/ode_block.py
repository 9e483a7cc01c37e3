"""The ODE block: a layer whose output is the solution at t = 1 of dh/dt = f(t, h) started from its input.

This is the continuous-depth replacement of a stack of residual blocks (Chen et al. 2018, section 2 and eq. 1):
``h(1) = h(0) + integral_0^1 f(t, h(t)) dt``, computed by the project's adaptive solver. ``gradient`` names how
``backward()`` gets through the solve (``node_experiments.ode.GRADIENTS``): ``adjoint``, solving the adjoint
system backwards in time (section 2), so the memory saved for backward does not grow with the number of solver
steps; ``backprop``, through the solver's operations (the paper's RK-Net); ``checkpoint``, backprop's gradients
recomputed one solver step at a time, for one saved state per step.

``check_solver_config`` validates a ``solver`` config group before any training starts, with messages that name
the config key, so that a bad value on the command line fails at once and not in the middle of the first batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, retired_adjoint_setting
from ..ode import GRADIENTS, METHODS, InvalidArgumentError, gradient_strategy, odeint_adjoint


def _drop_unset(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options whose value is None are left to the solver's defaults (the configs list them as null)."""
    return {name: value for name, value in dict(options or {}).items() if value is not None}


class ODEBlock(nn.Module):
    """Integrate ``func`` over [0, ``t1``] from the input and return the final state.

    Args:
        func: the vector field, an ``nn.Module`` called as ``func(t, h)`` with ``t`` a 0-dim tensor.
        method, rtol, atol, options: passed to the solve (torchdiffeq's names).
        gradient: ``adjoint``, ``backprop`` or ``checkpoint`` (see the module docstring).
        adjoint_options: options of the adjoint's backward solve, e.g. ``{"norm": "seminorm"}`` (used by
            ``gradient="adjoint"`` only).
        t1: the end of the integration interval; the paper's MNIST model uses 1.

    Options set to None are dropped, so that a config can list an option as null for "the solver's default".
    """

    def __init__(
        self,
        func: nn.Module,
        *,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        gradient: str = "adjoint",
        options: Mapping[str, Any] | None = None,
        adjoint_options: Mapping[str, Any] | None = None,
        t1: float = 1.0,
    ) -> None:
        super().__init__()
        if gradient not in GRADIENTS:
            raise ValueError(f"ODEBlock: gradient={gradient!r} is not one of {list(GRADIENTS)}.")
        self.func = func
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.gradient = gradient
        self.options = _drop_unset(options)
        self.adjoint_options = _drop_unset(adjoint_options)
        self.register_buffer("integration_times", torch.tensor([0.0, t1]), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.trajectory(h, self.integration_times.to(dtype=h.dtype))[-1]

    def trajectory(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The solution from ``h`` at ``t[0]`` at every time of the 1-D monotonic ``t``, shaped ``(len(t), *h.shape)``.

        Solved with this block's settings; a latent ODE reads its whole latent trajectory from it.
        """
        common = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        if self.gradient == "adjoint":
            return odeint_adjoint(self.func, h, t, adjoint_options=self.adjoint_options, **common)
        return gradient_strategy(self.gradient)(self.func, h, t, **common)

    def extra_repr(self) -> str:
        return f"method={self.method}, rtol={self.rtol}, atol={self.atol}, gradient={self.gradient}"


def check_solver_config(solver: Mapping[str, Any], key: str = "solver") -> None:
    """Raise ``ConfigError`` naming ``key.<field>`` when the solver settings cannot work.

    Checks the method name, the tolerances and the gradient strategy here, then lets the solver itself judge the
    options by solving dy/dt = -y over [0, 1] once (and its adjoint once, when ``gradient`` is ``adjoint``): that
    costs microseconds and catches every option the solver rejects, in the solver's own words.
    """
    method = solver.get("method")
    if method not in METHODS:
        raise ConfigError(
            f"{key}.method={method!r} is not a solver method. Choose one of: {', '.join(sorted(METHODS))}."
        )
    for name in ("rtol", "atol"):
        value = solver.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"{key}.{name}={value!r} is not a valid tolerance: it must be a finite number >= 0 "
                f"(for example {key}.{name}=1e-3)."
            )
    if solver["rtol"] == 0 and solver["atol"] == 0:
        raise ConfigError(f"{key}.rtol and {key}.atol are both 0: at least one must be positive (e.g. 1e-3).")
    if "adjoint" in solver:
        raise retired_adjoint_setting(solver["adjoint"], key)
    gradient = solver.get("gradient")
    if gradient not in GRADIENTS:
        raise ConfigError(
            f"{key}.gradient={gradient!r} is not a gradient strategy. Choose one of: {', '.join(GRADIENTS)} "
            f"(adjoint: memory independent of the solver's steps; backprop: through the solver's operations; "
            f"checkpoint: backprop's gradients for one saved state per step)."
        )
    _dry_run(solver, key)


class _Decay(nn.Module):
    """dy/dt = w * y with one parameter, so that the adjoint has a parameter gradient to compute."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(-1.0))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.weight * y


def _dry_run(solver: Mapping[str, Any], key: str) -> None:
    """Solve dy/dt = -y once with these settings (and its adjoint) so the solver judges the options."""
    settings = dict(method=solver["method"], rtol=solver["rtol"], atol=solver["atol"], options=solver.get("options"))
    try:
        ODEBlock(_Decay(), gradient="backprop", **settings)(torch.ones(1))
    except InvalidArgumentError as error:
        raise ConfigError(f"{key}.options: {error}") from None
    if solver["gradient"] == "adjoint":
        block = ODEBlock(_Decay(), gradient="adjoint", adjoint_options=solver.get("adjoint_options"), **settings)
        try:
            block(torch.ones(1)).sum().backward()
        except InvalidArgumentError as error:
            raise ConfigError(f"{key}.adjoint_options: {error}") from None
