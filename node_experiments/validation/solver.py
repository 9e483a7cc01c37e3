"""The ``solver`` group: its keys (the solver API's names, ``node_experiments.ode``), tolerances, method and gradient
strategy, and every option judged by the solver itself in a dry run."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError, retired_adjoint_setting
from .rules import Config, is_number, show, unknown_key

SOLVER_KEYS = ("method", "rtol", "atol", "gradient", "options", "adjoint_options")


def check_solver(solver: Config, key: str = "solver") -> None:
    """Raise ``ConfigError`` naming ``key.<field>`` when the solver settings cannot work.

    Checks the keys, the tolerances, the gradient strategy and the method name here, then lets the solver itself
    judge the options by solving dy/dt = -y over [0, 1] once (and its adjoint once, when ``gradient`` is
    ``adjoint``): that costs microseconds and catches every option the solver rejects, in the solver's own words.
    """
    if "adjoint" in solver:  # the boolean of earlier versions
        raise retired_adjoint_setting(show(solver["adjoint"], quote=False), key)
    for name, value in solver.items():
        if name not in SOLVER_KEYS:
            raise unknown_key(key, name, value, SOLVER_KEYS)
    rtol, atol = solver.get("rtol"), solver.get("atol")
    if not is_number(rtol) or rtol < 0:
        raise ConfigError(f"{key}.rtol={show(rtol)} is not a valid tolerance: it must be a finite number >= 0 (for "
                          f"example {key}.rtol=1e-3).")  # fmt: skip
    if not is_number(atol) or atol <= 0:
        zero = (" With atol = 0 a state component at zero gets an error tolerance of zero, which no step can meet "
                "(the adjoint's parameter gradients and many features start at zero), so the first solve would "
                "fail." if is_number(atol) and atol == 0 else "")  # fmt: skip
        raise ConfigError(f"{key}.atol={show(atol)} is not a valid tolerance: it must be a finite number > 0 (for "
                          f"example {key}.atol=1e-6).{zero}")  # fmt: skip
    for name in ("options", "adjoint_options"):
        if not isinstance(solver.get(name) or {}, Mapping):
            raise ConfigError(f"{key}.{name}={show(solver[name])} must be a mapping of solver options, e.g. "
                              f"{key}.{name}.max_num_steps=1000.")  # fmt: skip
    from ..ode import GRADIENTS, METHODS  # loads torch

    method = solver.get("method")
    if method not in METHODS:
        raise ConfigError(
            f"{key}.method={show(method)} is not a solver method. Choose one of: {', '.join(sorted(METHODS))}."
        )
    gradient = solver.get("gradient")
    if gradient not in GRADIENTS:
        raise ConfigError(
            f"{key}.gradient={show(gradient)} is not a gradient strategy. Choose one of: {', '.join(GRADIENTS)} "
            f"(adjoint: memory independent of the solver's steps; backprop: through the solver's operations; "
            f"checkpoint: backprop's gradients for one saved state per step)."
        )
    _dry_run(solver, key)


def _dry_run(solver: Config, key: str) -> None:
    """Solve dy/dt = w y (w = -1) once with these settings, and its adjoint, so the solver judges the options."""
    import torch

    from ..models.ode_block import ODEBlock
    from ..ode import InvalidArgumentError

    class Decay(torch.nn.Module):  # one parameter, so that the adjoint has a parameter gradient to compute
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor(-1.0))

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.weight * y

    field = Decay()
    settings = dict(method=solver["method"], rtol=solver["rtol"], atol=solver["atol"], options=solver.get("options"))
    try:
        ODEBlock(field, gradient="backprop", **settings)(torch.ones(1))
    except InvalidArgumentError as error:
        raise ConfigError(f"{key}.options: {error}") from None
    if solver["gradient"] == "adjoint":
        block = ODEBlock(field, gradient="adjoint", adjoint_options=solver.get("adjoint_options"), **settings)
        try:
            block(torch.ones(1)).sum().backward()
        except InvalidArgumentError as error:
            raise ConfigError(f"{key}.adjoint_options: {error}") from None

