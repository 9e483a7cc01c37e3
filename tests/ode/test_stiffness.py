"""Stiffness detection (``ode/stiffness.py``): Hairer's test flags a stiff problem in a fraction of a second, names
where and what it measured, can be switched off, costs no host synchronisation of its own, and never trips on the
project's non-stiff problems: the benchmark's batched Van der Pol (mu = 2), the cubic spiral, the ODE-Net, latent
ODE and CNF fields (at initialisation and with weights scaled up, as training makes them), and torchdiffeq's test
problems. In the non-stiff tests every accepted step is checked (not only every ``CHECK_EVERY``-th), so they hold
the detector to more than it does by default.
"""

from __future__ import annotations

import math
import re
import time

import pytest
import torch
from ode_problems import CUBIC_SPIRAL, floats_in
from torch import nn

from node_experiments.models.flows import PlanarField
from node_experiments.models.latent_ode import LatentDynamics
from node_experiments.models.mnist import ConvODEFunc
from node_experiments.ode import (
    InvalidArgumentError,
    MaxStepsExceededError,
    StiffnessError,
    odeint,
    odeint_adjoint,
    odeint_checkpoint,
    record_stats,
)
from node_experiments.ode import stiffness
from node_experiments.ode.stiffness import NONSTIFF_RESET, STIFF_STEPS, StiffnessDetector
from node_experiments.ode.tableaus import TABLEAUS

TESTED = ("dopri5", "tsit5")


def van_der_pol(mu: float):
    def field(t, y):
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)

    return field


VDP_Y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
VDP_T = torch.tensor([0.0, 3000.0], dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ stiff problems
@pytest.mark.parametrize("method", TESTED)
def test_van_der_pol_mu_1000_is_stiff_within_seconds(method):
    """Without the test this solve crawled for minutes to max_num_steps (about 2.8 million steps to t = 3000)."""
    start = time.perf_counter()
    with pytest.raises(StiffnessError) as info:
        odeint(van_der_pol(1000.0), VDP_Y0, VDP_T, method=method)
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    where = float(re.search(r"stiff at t=(\S+):", message).group(1))
    assert 0.0 < where < 1.0, message  # stiff from the start: the solution sits on the slow manifold
    h_lambda = float(re.search(r"h\*\|lambda\| = (\S+) ", message).group(1))
    assert h_lambda > TABLEAUS[method].stiffness_boundary, message
    assert any(2000 < x < 4000 for x in floats_in(message)), f"|lambda| ~ mu (x^2 - 1) = 3000: {message}"
    assert "stiffness_check" in message and "implicit" in message, message


@pytest.mark.parametrize("method", TESTED)
def test_switched_off_the_solve_goes_on(method):
    with pytest.raises(MaxStepsExceededError):
        odeint(van_der_pol(1000.0), VDP_Y0, VDP_T, method=method,
               options={"stiffness_check": False, "max_num_steps": 500})  # fmt: skip


@pytest.mark.parametrize("adjoint_options, checked", [(None, False), ({}, True), ({"stiffness_check": False}, False)])
def test_the_adjoint_backward_solve_follows_its_options(monkeypatch, adjoint_options, checked):
    """The backward solve is checked by default, and inherits the forward solve's choice with the other options."""
    made = []
    original = StiffnessDetector.__init__
    monkeypatch.setattr(StiffnessDetector, "__init__", lambda self, *a: made.append(a[2]) or original(self, *a))
    w = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    ys = odeint_adjoint(lambda t, y: w * y, VDP_Y0.clone().requires_grad_(True),
                        torch.tensor([0.0, 1.0], dtype=torch.float64), adjoint_params=(w,),
                        options={"stiffness_check": False}, adjoint_options=adjoint_options)  # fmt: skip
    assert made == []
    ys[-1].sum().backward()
    assert made == ([-0.0] if checked else []), made  # the backward solve runs in s = -t, from -1 to -0


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_stiffness_check_must_be_a_bool(value):
    with pytest.raises(InvalidArgumentError, match="stiffness_check"):
        odeint(van_der_pol(2.0), VDP_Y0, VDP_T, options={"stiffness_check": value})


def test_fixed_step_and_untested_methods_accept_the_option():
    """The option is an adaptive option; methods without a test (bosh3, ...) take it and ignore it."""
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for method in ("bosh3", "dopri8"):
        odeint(van_der_pol(2.0), VDP_Y0, t, method=method, options={"stiffness_check": True})


# --------------------------------------------------------------------------------------------------- the counters
def detector(method: str = "dopri5") -> StiffnessDetector:
    return StiffnessDetector(TABLEAUS[method], 1.0, 100.0)


def test_fifteen_stiff_steps_make_a_stiff_problem():
    d = detector()
    for i in range(STIFF_STEPS - 1):
        d.observe(float(i), 1.0, [4.0, 1.0])  # h |lambda| = 4 > 3.25
    with pytest.raises(StiffnessError, match=r"stiff at t=15\b"):
        d.observe(14.0, 1.0, [4.0, 1.0])


def test_six_non_stiff_steps_in_a_row_reset_the_count():
    d = detector()
    for i in range(STIFF_STEPS - 1):
        d.observe(float(i), 1.0, [4.0, 1.0])
    for i in range(NONSTIFF_RESET):
        d.observe(float(i), 1.0, [1.0, 1.0])
    for i in range(STIFF_STEPS - 1):
        d.observe(float(i), 1.0, [4.0, 1.0])  # 14 again: no error


def test_fewer_non_stiff_steps_do_not_reset_it():
    d = detector()
    for i in range(STIFF_STEPS - 1):
        d.observe(float(i), 1.0, [4.0, 1.0])
        if i % 3 == 0:
            for _ in range(NONSTIFF_RESET - 1):
                d.observe(float(i), 1.0, [1.0, 1.0])
    with pytest.raises(StiffnessError):
        d.observe(20.0, 1.0, [4.0, 1.0])


def test_equal_stage_inputs_say_nothing():
    d = detector()
    for i in range(3 * STIFF_STEPS):
        d.observe(float(i), 1.0, [4.0, 0.0])  # ||y_last - y_prev|| = 0: no estimate, counted as non-stiff


@pytest.mark.parametrize("shape", [(), (3,), (8, 2), (2, 4, 3, 3)])
def test_quantities_are_two_norms_over_the_whole_state(shape):
    """One ``(||dk||, ||dy||)`` pair whatever the state's shape (a batch, an image), not one pair per column."""
    g = torch.Generator().manual_seed(0)
    k_last, k_prev, y_last, y_prev = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(4))
    expected = [math.sqrt(float(((k_last - k_prev) ** 2).sum())), math.sqrt(float(((y_last - y_prev) ** 2).sum()))]
    got = stiffness.stiffness_quantities(k_last.requires_grad_(), k_prev, y_last, y_prev)
    assert got.shape == (2,) and not got.requires_grad
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_unchecked_steps_only_count():
    d = detector()
    checks = 0
    for i in range(10 * stiffness.CHECK_EVERY):
        if d.wants_check():
            checks += 1
            d.observe(float(i), 1.0, [1.0, 1.0])
        else:
            d.observe(float(i), 1.0, None)
    assert checks == 10


# ------------------------------------------------------------------------------------------------ host syncs
def count_host_reads(monkeypatch) -> dict[str, int]:
    """Count the ways a tensor's value reaches the host (each one a synchronisation on a GPU)."""
    counts = {"reads": 0}
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counts["reads"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


@pytest.mark.parametrize("method", TESTED)
def test_the_check_adds_no_host_read(monkeypatch, method):
    """One host read per step attempt, with or without the stiffness test (its numbers travel with the error norm),
    on a solve long enough to be checked many times; every step is checked here."""
    y0 = torch.rand(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4 - 2
    t = torch.tensor([0.0, 20.0], dtype=torch.float64)
    reads = {}
    for check in (False, True):
        monkeypatch.setattr(stiffness, "CHECK_EVERY", 1)
        counts = count_host_reads(monkeypatch)
        with record_stats() as stats:
            odeint(van_der_pol(2.0), y0, t, method=method, rtol=1e-6, atol=1e-6, options={"stiffness_check": check})
        monkeypatch.undo()
        reads[check] = counts["reads"]
    attempts = stats.accepted_steps + stats.rejected_steps
    assert attempts > 50
    assert reads[True] == reads[False]
    assert reads[True] <= attempts + 5  # + the initial step's norms and t's values


# ------------------------------------------------------------------------------------------- non-stiff problems
@pytest.fixture
def every_step_checked(monkeypatch):
    """Check every accepted step, and count the checks (so a test cannot pass by never checking)."""
    monkeypatch.setattr(stiffness, "CHECK_EVERY", 1)
    checks = {"n": 0}
    original = StiffnessDetector.observe

    def observe(self, s, h, quantities):
        checks["n"] += quantities is not None
        return original(self, s, h, quantities)

    monkeypatch.setattr(StiffnessDetector, "observe", observe)
    return checks


@pytest.mark.parametrize("method", TESTED)
def test_batched_van_der_pol_mu_2(every_step_checked, method):
    """The benchmark's case 2 (256 states, tol 1e-5, 200 outputs on [0, 10], float32), and longer, looser and
    tighter solves of it."""
    y0 = torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) * 4 - 2
    odeint(van_der_pol(2.0), y0, torch.linspace(0.0, 10.0, 200), rtol=1e-5, atol=1e-5, method=method)
    for tol in (1e-3, 1e-7):
        odeint(van_der_pol(2.0), y0.double(), torch.tensor([0.0, 30.0], dtype=torch.float64), rtol=tol,
               atol=tol, method=method)  # fmt: skip
    assert every_step_checked["n"] > 300


@pytest.mark.parametrize("method", TESTED)
@pytest.mark.parametrize("tol", [1e-3, 1e-7])
def test_cubic_spiral(every_step_checked, method, tol):
    """The benchmark's case 1: 1000 outputs on [0, 25]."""
    t = torch.linspace(0.0, 25.0, 1000, dtype=torch.float64)
    odeint(CUBIC_SPIRAL.func, CUBIC_SPIRAL.y0(torch.float64), t, rtol=tol, atol=tol * 1e-2, method=method)
    assert every_step_checked["n"] > 20


def scaled(module: nn.Module, factor: float) -> nn.Module:
    """The module with its weights (not biases, not norms' affine parameters) multiplied by ``factor``: a field with
    a larger Lipschitz constant, as training makes them."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.mul_(factor)
    return module


@pytest.mark.parametrize("factor", [1.0, 3.0], ids=["init", "weights x3"])
@pytest.mark.parametrize("tol", [1e-3, 1e-5])
def test_odenet_field(every_step_checked, factor, tol):
    """The ODE-Net block (64 channels, 6 x 6, batch 8), forward and the adjoint's backward solve."""
    torch.manual_seed(0)
    field = scaled(ConvODEFunc(64), factor)
    x = torch.randn(8, 64, 6, 6, requires_grad=True)
    ys = odeint_adjoint(field, x, torch.tensor([0.0, 1.0]), rtol=tol, atol=tol)
    ys[-1].square().mean().backward()
    assert every_step_checked["n"] >= 4


@pytest.mark.parametrize("factor", [1.0, 3.0], ids=["init", "weights x3"])
def test_latent_ode_field(every_step_checked, factor):
    """The latent dynamics of ``spiral_latent_ode`` (4-D, 20 hidden units) on a batch of 100 latent states over a
    spiral's time span, at the experiment's tolerances, with its checkpointed gradients."""
    torch.manual_seed(0)
    field = scaled(LatentDynamics(4, 20), factor)
    z0 = torch.randn(100, 4, requires_grad=True)
    ys = odeint_checkpoint(field, z0, torch.linspace(0.0, 6.3, 100), rtol=1e-5, atol=1e-6)
    ys.square().mean().backward()
    assert every_step_checked["n"] >= 4


@pytest.mark.parametrize("factor", [1.0, 3.0], ids=["init", "weights x3"])
def test_cnf_field(every_step_checked, factor):
    """The planar CNF's field (M = 32 units, hypernetwork of t), a batch of 256 points, at a tight tolerance."""
    torch.manual_seed(0)
    field = scaled(PlanarField(dim=2, width=32, hidden=32), factor)
    z0 = torch.randn(256, 2)
    odeint(field, z0, torch.tensor([0.0, 1.0]), rtol=1e-7, atol=1e-7)
    assert every_step_checked["n"] >= 4


# torchdiffeq's test problems (its tests/problems.py), as it solves them: on [1, 8] at its default tolerances.
def constant_ode(t, y):
    return 0.2 + (y - (0.2 * t + 3.0)) ** 5


def sine_ode(t, y):
    return 2 * y / t + t**4 * torch.sin(2 * t) - t**2 + 4 * t**3


def linear_ode(dtype):
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(10, 10, generator=generator, dtype=dtype) * 0.1
    a = 2 * u - (u + u.T)
    return lambda t, y: a @ y


@pytest.mark.parametrize("method", TESTED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torchdiffeq_problems(every_step_checked, method, dtype):
    t = torch.linspace(1.0, 8.0, 10, dtype=dtype)
    odeint(constant_ode, torch.tensor(3.2, dtype=dtype), t, method=method)
    y1 = -0.5 * math.cos(2) + 0.5 * math.sin(2) + 0.25 * math.cos(2) - 1 + 2 + (math.pi - 0.25)
    odeint(sine_ode, torch.tensor(y1, dtype=dtype), t, method=method)
    odeint(linear_ode(dtype), torch.ones(10, dtype=dtype), t, method=method)
    assert every_step_checked["n"] > 20
