"""Shared test problems and instruments for the ``node_experiments.ode`` test suite.

Every problem used by more than one test file is defined here, once:

- problems with a closed-form solution (``EXACT_PROBLEMS``): exponential decay, the harmonic oscillator, a
  non-normal 3x3 linear system on a batch of states (checked against ``torch.linalg.matrix_exp``), and a
  nonlinear, non-autonomous Riccati equation ``y' = -2 t y**2`` (solution ``1 / (c + t**2)``);
- nonlinear problems without one (``NONLINEAR_PROBLEMS``), whose reference comes from scipy's DOP853 at
  ``rtol = atol = 1e-12`` (``scipy_reference``): Van der Pol (mu = 1), Lotka-Volterra on a batch of two
  states, and the cubic spiral ``y' = (y**3) @ A`` of the benchmark;
- instruments: ``CountingField`` (wraps a vector field, counts its calls and records the times it is called at),
  ``MLPField`` (a small time-dependent tanh network, the "neural vector field" of the gradient tests),
  ``DampedOscillator`` (a tuple-state field with parameters), ``gradients_of`` (the gradients of a weighted sum
  of a solution, for comparing gradient strategies), and the method lists, written out here rather than imported so that a wrong ``METHODS`` is caught.

This module is imported by the test files as ``ode_problems`` (pytest puts ``tests/ode`` on ``sys.path``; the
directory has no ``__init__.py``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

# The solver tests run small problems on the CPU: one intra-op thread is faster for such tensors than several and
# keeps the suite polite on a shared machine. (Set here rather than in a tests/ode/conftest.py: a second module
# named ``conftest`` would shadow tests/conftest.py for the ``from conftest import ...`` of the other tests.)
torch.set_num_threads(1)
from torch import nn

# Written out (the spec's list), not imported: the tests check the library against the spec.
ADAPTIVE = ("dopri5", "tsit5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8")
FIXED = ("euler", "midpoint", "heun", "heun3", "rk4")
ALL_METHODS = ADAPTIVE + FIXED

# Order of the propagated solution of each method, and of the embedded solution of each adaptive method
# (literature values: Dormand & Prince 1980, Tsitouras 2011, Bogacki & Shampine 1989, Fehlberg 1969 RKF1(2)
# propagating the second-order solution, Heun/Euler, Prince & Dormand 1981 / Hairer's DOP853).
ORDER = {
    "dopri5": 5,
    "tsit5": 5,
    "bosh3": 3,
    "fehlberg2": 2,
    "adaptive_heun": 2,
    "dopri8": 8,
    "euler": 1,
    "midpoint": 2,
    "heun": 2,
    "heun3": 3,
    "rk4": 4,
}
EMBEDDED_ORDER = {"dopri5": 4, "tsit5": 4, "bosh3": 2, "fehlberg2": 1, "adaptive_heun": 1, "dopri8": 7}

DTYPES = (torch.float32, torch.float64)

# Bound on an adaptive solve's global error, in units of ``rtol * |y| + atol`` (see test_exact_solutions.py for
# the reasoning): 20 for every method but fehlberg2, whose embedded estimate (Fehlberg's first-order formula,
# leading error coefficient 1/512) understates the propagated solution's error by a factor of order 512.
C_ADAPTIVE = 20.0
C_FEHLBERG2 = 4 * 512.0


def accurate_output_options(method: str, t) -> dict | None:
    """Options under which every output time is as accurate as the steps themselves.

    dopri8's dense output is a 5th-order continuous extension beside 8th-order steps, so between its (long) steps
    the interpolation error exceeds the tolerance (by ~30-100x at rtol 1e-10); its documented remedy is to step
    on the output times with ``step_t``. Its dense output's own order is tested in test_tableaus.py. Every other
    method's dense output is held to the tolerance as it is.
    """
    return {"step_t": t} if method == "dopri8" else None


def error_factor(method: str) -> float:
    return C_FEHLBERG2 if method == "fehlberg2" else C_ADAPTIVE


def cheap_tol(method: str) -> float:
    """rtol = atol for tests that count work rather than measure accuracy: a few hundred steps at most."""
    return 1e-4 if method in ("fehlberg2", "adaptive_heun") else 1e-6


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------------------


class _PerDtype:
    """A float64 constant, cast once per dtype (vector fields must not upcast a float32 state)."""

    def __init__(self, value):
        self._value = torch.as_tensor(value, dtype=torch.float64)
        self._cache: dict[torch.dtype, torch.Tensor] = {}

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        key = like.dtype
        if key not in self._cache:
            self._cache[key] = self._value.to(dtype=key)
        return self._cache[key]


@dataclass(frozen=True)
class Problem:
    """An initial value problem ``y' = func(t, y)``, ``y(t0) = y0`` on ``[t0, t1]``.

    ``exact(ts)`` (float64 times, shape ``(n,)``) returns the float64 solution at those times, shape
    ``(n, *y0.shape)``; ``None`` where no closed form is known (use ``scipy_reference``).
    """

    name: str
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    y0_values: tuple
    t0: float
    t1: float
    exact: Callable[[torch.Tensor], torch.Tensor] | None = None
    notes: str = field(default="", compare=False)

    def y0(self, dtype=torch.float64) -> torch.Tensor:
        return torch.tensor(self.y0_values, dtype=dtype)

    def times(self, n: int, dtype=torch.float64, reverse: bool = False) -> torch.Tensor:
        ts = torch.linspace(self.t0, self.t1, n, dtype=torch.float64)
        if reverse:
            ts = ts.flip(0)
        return ts.to(dtype)

    def start(self, dtype=torch.float64, reverse: bool = False) -> torch.Tensor:
        """Initial state for a solve starting at ``t0`` (forward) or at ``t1`` (reversed, from the exact value)."""
        if not reverse:
            return self.y0(dtype)
        assert self.exact is not None, f"{self.name}: reversed solves need the exact solution"
        return self.exact(torch.tensor([self.t1], dtype=torch.float64))[0].to(dtype)

    def __repr__(self) -> str:  # short ids in pytest output
        return self.name


# Exponential decay, one rate per component. Over [0, 1]: reversed in time it grows by at most e**2, so errors
# committed where |y| is small (absolute tolerance dominating) are not amplified beyond that.
_DECAY_RATES = _PerDtype([0.5, 1.0, 2.0])
EXP_DECAY = Problem(
    name="exp_decay",
    func=lambda t, y: -_DECAY_RATES(y) * y,
    y0_values=(1.0, -2.0, 0.5),
    t0=0.0,
    t1=1.0,
    exact=lambda ts: torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    * torch.exp(-ts[:, None] * torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)),
)

# Harmonic oscillator x'' = -omega**2 x as a first-order system (x, v); exact solution by cos/sin.
_OMEGA = 2.0
_HARMONIC_A = _PerDtype([[0.0, 1.0], [-_OMEGA**2, 0.0]])


def _harmonic_exact(ts: torch.Tensor) -> torch.Tensor:
    x0, v0 = 1.0, 0.5
    c, s = torch.cos(_OMEGA * ts), torch.sin(_OMEGA * ts)
    return torch.stack([x0 * c + v0 / _OMEGA * s, -x0 * _OMEGA * s + v0 * c], dim=-1)


HARMONIC = Problem(
    name="harmonic",
    func=lambda t, y: y @ _HARMONIC_A(y).T,
    y0_values=(1.0, 0.5),
    t0=0.0,
    t1=3.0,
    exact=_harmonic_exact,
)

# A non-normal 3x3 linear system (damped rotation with coupling) on a batch of two states: y' = A y per row.
_LINEAR3_A_VALUES = [[-0.1, -1.0, 0.0], [1.0, -0.1, 0.5], [0.0, -0.3, -0.4]]
_LINEAR3_A = _PerDtype(_LINEAR3_A_VALUES)
_LINEAR3_Y0 = ((1.0, 0.0, -1.0), (0.5, 2.0, 0.3))


def _linear3_exact(ts: torch.Tensor) -> torch.Tensor:
    A = torch.tensor(_LINEAR3_A_VALUES, dtype=torch.float64)
    y0 = torch.tensor(_LINEAR3_Y0, dtype=torch.float64)
    expm = torch.linalg.matrix_exp(ts[:, None, None] * A)  # (n, 3, 3)
    return torch.einsum("nij,bj->nbi", expm, y0)


LINEAR3 = Problem(
    name="linear3",
    func=lambda t, y: y @ _LINEAR3_A(y).T,
    y0_values=_LINEAR3_Y0,
    t0=0.0,
    t1=2.0,
    exact=_linear3_exact,
)

# Nonlinear and non-autonomous: y' = -2 t y**2, solved by y = 1 / (c + t**2) for any c (here c = 1, 2).
_RICCATI_C = (1.0, 2.0)


def _riccati_exact(ts: torch.Tensor) -> torch.Tensor:
    c = torch.tensor(_RICCATI_C, dtype=torch.float64)
    return 1.0 / (c + ts[:, None] ** 2)


RICCATI = Problem(
    name="riccati",
    func=lambda t, y: -2.0 * t * y**2,
    y0_values=tuple(1.0 / (c + 0.3**2) for c in _RICCATI_C),
    t0=0.3,
    t1=1.3,
    exact=_riccati_exact,
)

EXACT_PROBLEMS = (EXP_DECAY, HARMONIC, LINEAR3, RICCATI)

# Nonlinear problems checked against scipy.
_VDP_MU = 1.0


def _vdp(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, _VDP_MU * (1 - x**2) * v - x], dim=-1)


VAN_DER_POL = Problem(name="van_der_pol", func=_vdp, y0_values=(2.0, 0.0), t0=0.0, t1=5.0)


def _lotka_volterra(t, y):
    a, b, c, d = 1.5, 1.0, 3.0, 1.0
    prey, pred = y[..., 0], y[..., 1]
    return torch.stack([a * prey - b * prey * pred, d * prey * pred - c * pred], dim=-1)


LOTKA_VOLTERRA = Problem(
    name="lotka_volterra", func=_lotka_volterra, y0_values=((1.0, 1.0), (2.0, 0.5)), t0=0.0, t1=5.0
)

_SPIRAL_A = _PerDtype([[-0.1, 2.0], [-2.0, -0.1]])
CUBIC_SPIRAL = Problem(
    name="cubic_spiral", func=lambda t, y: (y**3) @ _SPIRAL_A(y), y0_values=((2.0, 0.0),), t0=0.0, t1=5.0
)

NONLINEAR_PROBLEMS = (VAN_DER_POL, LOTKA_VOLTERRA, CUBIC_SPIRAL)


@functools.lru_cache(maxsize=None)
def _scipy_reference_cached(problem: Problem, times: tuple[float, ...]) -> np.ndarray:
    from scipy.integrate import solve_ivp

    shape = np.array(problem.y0_values).shape

    def rhs(t, y):
        y_t = torch.from_numpy(y.reshape(shape))
        return problem.func(torch.tensor(t, dtype=torch.float64), y_t).numpy().ravel()

    sol = solve_ivp(
        rhs,
        (times[0], times[-1]),
        np.array(problem.y0_values, dtype=np.float64).ravel(),
        method="DOP853",
        t_eval=np.array(times),
        rtol=1e-12,
        atol=1e-12,
    )
    assert sol.success, sol.message
    return sol.y.T.reshape((len(times), *shape))


def scipy_reference(problem: Problem, ts: torch.Tensor) -> torch.Tensor:
    """Reference solution from scipy ``solve_ivp(method="DOP853", rtol=1e-12, atol=1e-12)``, float64."""
    times = tuple(float(x) for x in ts.to(torch.float64))
    return torch.from_numpy(_scipy_reference_cached(problem, times).copy())


# --------------------------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------------------------


class CountingField(nn.Module):
    """Wraps a vector field; counts every call and records the time (as a Python float) it was called at.

    It is an ``nn.Module`` so that ``odeint_adjoint`` accepts it; a wrapped module's parameters are its own.
    ``calls`` counts calls of ``forward``: the adjoint evaluates the field inside a vector-Jacobian product,
    which calls ``forward`` once per evaluation, so the same counter serves forward and backward solves.
    """

    def __init__(self, inner):
        super().__init__()
        if isinstance(inner, nn.Module):
            self.inner = inner
        else:
            self._inner_fn = inner
        self.calls = 0
        self.times: list[float] = []

    def reset(self) -> None:
        self.calls = 0
        self.times = []

    def forward(self, t, y):
        self.calls += 1
        self.times.append(float(t.detach()))
        fn = self.inner if hasattr(self, "inner") else self._inner_fn
        return fn(t, y)


class MLPField(nn.Module):
    """A small time-dependent neural vector field: ``tanh([y, t] W1 + b1) W2 + b2``, seeded initialisation."""

    def __init__(self, dim: int = 2, hidden: int = 16, seed: int = 0, dtype=torch.float64, scale: float = 1.0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(torch.randn(dim, hidden, generator=gen, dtype=dtype) * scale / math.sqrt(dim))
        self.wt = nn.Parameter(torch.randn(hidden, generator=gen, dtype=dtype) * 0.5)
        self.b1 = nn.Parameter(torch.randn(hidden, generator=gen, dtype=dtype) * 0.1)
        self.W2 = nn.Parameter(torch.randn(hidden, dim, generator=gen, dtype=dtype) * scale / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.randn(dim, generator=gen, dtype=dtype) * 0.1)

    def forward(self, t, y):
        return torch.tanh(y @ self.W1 + t * self.wt + self.b1) @ self.W2 + self.b2


class DampedOscillator(nn.Module):
    """A tuple-state field ``(x, v) -> (v, -k x - c v + tanh(x @ W))`` with parameters k, c, W."""

    def __init__(self):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))
        self.c = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
        self.W = nn.Parameter(torch.tensor([[0.5, -0.2], [0.1, 0.4]], dtype=torch.float64))

    def forward(self, t, state):
        x, v = state
        return v, -self.k * x - self.c * v + torch.tanh(x @ self.W)


def gradients_of(solver, func, y0, t, weights, params, **kwargs):
    """Gradients of ``sum(weights * solution)`` w.r.t. ``y0`` (tensor or tuple), ``t`` and ``params``."""
    ys = solver(func, y0, t, **kwargs)
    if isinstance(ys, tuple):
        loss = sum((y * w).sum() for y, w in zip(ys, weights))
        inputs = (*y0, t, *params)
    else:
        loss = (ys * weights).sum()
        inputs = (y0, t, *params)
    return torch.autograd.grad(loss, inputs)


# --------------------------------------------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------------------------------------------

_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def floats_in(message: str) -> list[float]:
    """Every number written in ``message`` (so that tests check values, not wording or formatting)."""
    return [float(m) for m in _FLOAT_RE.findall(message)]


def mentions_number(message: str, value: float, rel: float = 1e-3, abs_: float = 0.0) -> bool:
    return any(math.isclose(x, value, rel_tol=rel, abs_tol=abs_) for x in floats_in(message))


def mentions_number_in(message: str, lo: float, hi: float) -> bool:
    return any(lo <= x <= hi for x in floats_in(message))


def max_scaled_error(y: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> float:
    """``max |y - ref| / (rtol |ref| + atol)``, elementwise, in float64: the global error in units of the tolerance."""
    y, ref = y.to(torch.float64), ref.to(torch.float64)
    return float(((y - ref).abs() / (rtol * ref.abs() + atol)).max())


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` (Frobenius), for comparing gradients."""
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def fsal_attempts(times: list[float], c: tuple[float, ...]) -> list[tuple[float, float]]:
    """The step attempts ``(start, end)`` of an FSAL method, reconstructed from the times ``func`` was called at.

    Valid for a solve given ``first_step`` (so no evaluation for the initial step size), without ``jump_t`` and
    with a first-same-as-last method (dopri5, tsit5, bosh3): after ``f(t0, y0)`` every attempt, accepted or
    rejected, evaluates exactly the stages ``1 .. S-1`` at ``start + c_i * h``, in order (stage 0 is reused).
    """
    per_attempt = len(c) - 1
    calls = times[1:]
    assert len(calls) % per_attempt == 0, f"{len(calls)} calls after the first are not whole attempts"
    attempts = []
    for i in range(0, len(calls), per_attempt):
        chunk = calls[i : i + per_attempt]
        h = (chunk[-1] - chunk[0]) / (c[-1] - c[1])
        start = chunk[0] - c[1] * h
        attempts.append((start, start + h))
    return attempts
