"""The method and its options, checked: the tableau a method name picks, the options it accepts, and the settings
of an adaptive solve built from them.

Every option a user can get wrong is reported as an ``InvalidArgumentError`` naming the value, the problem and the
fix. torchdiffeq's method names and options are accepted with the same meaning, or refused with a message that
says how this solver differs (``docs/solver.md`` has the table).
"""

from __future__ import annotations

import math
import warnings

import torch

from .controllers import CONTROLLER_PRESETS
from .errors import InvalidArgumentError
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


def positive_option(options: dict, key: str, default, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """``options[key]`` (else ``default``) as a positive float (non-negative with ``allow_zero``, infinite allowed
    with ``allow_inf``); None stays None."""
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
    dfactor = positive_option(options, "dfactor", 0.2)
    ifactor = positive_option(options, "ifactor", 10.0)
    if not dfactor < 1.0 < ifactor:
        raise InvalidArgumentError(
            f"options dfactor={dfactor} and ifactor={ifactor} must satisfy dfactor < 1 < ifactor (they bound how "
            f"much one step may shrink or grow the step size)."
        )
    return AdaptiveConfig(
        rtol=rtol,
        atol=atol,
        norm=norm,
        first_step=positive_option(options, "first_step", None),
        safety=positive_option(options, "safety", 0.9),
        ifactor=ifactor,
        dfactor=dfactor,
        pcoeff=float(options.get("pcoeff", p)),
        icoeff=float(options.get("icoeff", i)),
        dcoeff=float(options.get("dcoeff", d)),
        max_num_steps=max_num_steps(options),
        min_step=positive_option(options, "min_step", 0.0, allow_zero=True),
        max_step=positive_option(options, "max_step", math.inf, allow_inf=True),
        step_s=_times_inside(options, "step_t", sign, s_first, s_last),
        jump_s=_times_inside(options, "jump_t", sign, s_first, s_last),
        stiffness_check=options.get("stiffness_check", True),
    )


def max_num_steps(options: dict) -> int:
    value = options.get("max_num_steps", DEFAULT_MAX_NUM_STEPS)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"options['max_num_steps']={value!r} must be a positive integer.")
    return value
