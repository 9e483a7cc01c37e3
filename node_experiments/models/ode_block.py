"""The ODE block: a layer whose output is the solution at t = 1 of dh/dt = f(t, h) started from its input.

This is the continuous-depth replacement of a stack of residual blocks (Chen et al. 2018, section 2 and eq. 1):
``h(1) = h(0) + integral_0^1 f(t, h(t)) dt``, computed by the project's adaptive solver. ``gradient`` names how
``backward()`` gets through the solve (``node_experiments.ode.GRADIENTS``): ``adjoint``, solving the adjoint
system backwards in time (section 2), so the memory saved for backward does not grow with the number of solver
steps; ``backprop``, through the solver's operations (the paper's RK-Net); ``checkpoint``, backprop's gradients
recomputed one solver step at a time, for one saved state per step.

``regularization`` adds RNODE's penalties (kinetic energy, Jacobian Frobenius norm; ``regularization.py``) as
extra states of the same solve, while the block's model trains; with every weight 0 (the default) the block solves
exactly as without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..ode import ADAPTIVE_METHODS, GRADIENTS, gradient_strategy, odeint_adjoint
from ..ode.adjoint import inherited_adjoint_options
from .regularization import ModelStateNorm, Regularization, RegularizedDynamics


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
            ``gradient="adjoint"`` only), set over the ones it inherits from ``options`` (see ``backward_options``).
        t1: the end of the integration interval; the paper's MNIST model uses 1.
        regularization: the weights of RNODE's penalties (``Regularization`` or a mapping ``{"kinetic": w,
            "jacobian": w}``); None or zero weights: none.

    Options set to None are dropped, so that a config can list an option as null for "the solver's default".
    Regularised solves (the model in training mode, gradients on) leave the batch means of the penalties over the
    solve's interval in ``penalties`` (a dict by kind), for ``regularization.collect_penalties``.
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
        regularization: Regularization | Mapping[str, float] | None = None,
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
        self.regularization = Regularization.of(regularization)
        self.penalties: dict[str, torch.Tensor] = {}
        self.register_buffer("integration_times", torch.tensor([0.0, t1]), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.trajectory(h, self.integration_times.to(dtype=h.dtype))[-1]

    def trajectory(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The solution from ``h`` at ``t[0]`` at every time of the 1-D monotonic ``t``, shaped ``(len(t), *h.shape)``.

        Solved with this block's settings; a latent ODE reads its whole latent trajectory from it. ``h`` may be a
        tuple of tensors (the CNF's (z, log p)); the result is then a tuple too.
        """
        if self.regularization.kinds and self.training and torch.is_grad_enabled():
            return self._regularized_trajectory(h, t)
        return self._solve(self.func, h, t, self.options)

    def _solve(self, func: nn.Module, h: Any, t: torch.Tensor, options: dict[str, Any]) -> Any:
        common = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=options)
        if self.gradient == "adjoint":
            return odeint_adjoint(func, h, t, adjoint_options=self.backward_options(), **common)
        return gradient_strategy(self.gradient)(func, h, t, **common)

    def _regularized_trajectory(self, h: Any, t: torch.Tensor) -> Any:
        """The trajectory with the penalties' integrals as extra states from 0 at ``t[0]``; their values at ``t[-1]``
        (per sample, times the direction of time: the integral over the interval) averaged into ``penalties``."""
        state = tuple(h) if isinstance(h, (tuple, list)) else (h,)
        if state[0].dim() == 0:
            raise ValueError("ODEBlock: a regularised solve needs a batch of states (N, ...); got a 0-dim state.")
        kinds = self.regularization.kinds
        dynamics = RegularizedDynamics(self.func, kinds)
        dynamics.new_probe(state[0])
        options = dict(self.options)
        if self.method in ADAPTIVE_METHODS:
            options["norm"] = ModelStateNorm(len(state), options.get("norm", "rms"))
        zero = state[0].new_zeros(state[0].shape[0])
        solution = self._solve(dynamics, (*state, *(zero for _ in kinds)), t, options)
        direction = torch.sign(t[-1] - t[0]).to(zero.dtype)
        integrals = solution[len(state) :]
        self.penalties = {kind: (integral[-1] * direction).mean() for kind, integral in zip(kinds, integrals)}
        trajectory = solution[: len(state)]
        return tuple(trajectory) if isinstance(h, (tuple, list)) else trajectory[0]

    def backward_options(self) -> dict[str, Any] | None:
        """What the adjoint's backward solve is given as ``adjoint_options``: None when none is set, so that it
        inherits ``options`` as ``odeint_adjoint`` does; else the set ones over the inherited ones. A config sets
        its keys one by one (``solver.adjoint_options.norm=seminorm``), and that one key should not drop the
        forward options the backward solve would otherwise take (``max_num_steps``, ``first_step``, ...)."""
        if not self.adjoint_options:
            return None
        return {**inherited_adjoint_options(self.options), **self.adjoint_options}

    def extra_repr(self) -> str:
        text = f"method={self.method}, rtol={self.rtol}, atol={self.atol}, gradient={self.gradient}"
        return text + (f", regularization=({self.regularization})" if self.regularization.kinds else "")

