"""RNODE's penalties (model.regularization) integrated along the solve, and ANODE's augmentation (model.augment_dim):
the integrals against a finely stepped reference, every gradient strategy, nothing changed when off, the models
and tasks that use them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from conftest import compose
from node_experiments.models.flows import CNF, PlanarCNF, normal_log_prob
from node_experiments.models.mnist import ODENet
from node_experiments.models.ode_block import ODEBlock
from node_experiments.models.regularization import (
    Regularization,
    collect_penalties,
    draw_probe,
    mean_square,
    vector_jacobian,
)
from node_experiments.ode import GRADIENTS, odeint, record_stats
from node_experiments.tasks.base import build_task
from test_flows import Linear  # dz/dt = A z, whose Jacobian is A everywhere

TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)
BOTH = {"kinetic": 1.0, "jacobian": 1.0}


class Field(nn.Module):
    """A small time-dependent field f(t, h) = W2 tanh(W1 h + t c) on R^3."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.outer = nn.Linear(3, 8), nn.Linear(8, 3)
        self.time = nn.Parameter(torch.randn(8))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(h) + t * self.time))


def simpson(values: torch.Tensor, step: float) -> torch.Tensor:
    """Simpson's rule along the first dimension (an odd number of points)."""
    weights = torch.ones(values.shape[0], dtype=values.dtype)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return (weights[:, None] * values).sum(0) * step / 3


def reference(field: nn.Module, h0: torch.Tensor, probe: torch.Tensor, t1: float = 1.0, points: int = 401):
    """Per sample: integral ||f||^2 / D dt and integral ||e^T df/dh||^2 / D dt along the path of a fixed-step RK4
    solve (step 2.5e-3), by Simpson's rule on the same grid (both errors of order step^4, about 1e-10 here)."""
    grid = torch.linspace(0, t1, points, dtype=h0.dtype)
    with torch.no_grad():
        path = odeint(field, h0, grid, method="rk4")
    kinetic, jacobian = [], []
    for t, h in zip(grid, path):
        h = h.clone().requires_grad_(True)
        f = field(t, h)
        kinetic.append(mean_square(f.detach()))
        jacobian.append(mean_square(vector_jacobian(f, h, probe, create_graph=False)))
    step = t1 / (points - 1)
    return simpson(torch.stack(kinetic), step), simpson(torch.stack(jacobian), step), path[-1]


@pytest.fixture
def field() -> nn.Module:
    torch.manual_seed(0)
    return Field().double()


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_the_integrated_penalties_match_a_finely_stepped_reference(field: nn.Module, gradient: str) -> None:
    h0 = torch.randn(5, 3, dtype=torch.float64)
    block = ODEBlock(field, **TIGHT, gradient=gradient, regularization=BOTH)
    torch.manual_seed(7)
    end = block(h0)
    torch.manual_seed(7)
    probe = draw_probe(h0)  # the block's Frobenius probe, drawn the same way from the same seed
    kinetic, jacobian, reference_end = reference(field, h0, probe)
    assert torch.allclose(end, reference_end, atol=1e-9)
    assert set(block.penalties) == {"kinetic", "jacobian"}
    assert block.penalties["kinetic"].item() == pytest.approx(kinetic.mean().item(), rel=1e-8)
    assert block.penalties["jacobian"].item() == pytest.approx(jacobian.mean().item(), rel=1e-8)


def test_the_integrals_run_backwards_in_time_too(field: nn.Module) -> None:
    """A solve from t = 1 to 0 (a CNF's log_prob) gives the integral over the interval, positive."""
    h1 = torch.randn(4, 3, dtype=torch.float64)
    block = ODEBlock(field, **TIGHT, regularization={"kinetic": 1.0})
    h0 = block.trajectory(h1, torch.tensor([1.0, 0.0], dtype=torch.float64))[-1]
    kinetic, _, _ = reference(field, h0.detach(), torch.zeros_like(h0))
    assert block.penalties["kinetic"].item() == pytest.approx(kinetic.mean().item(), rel=1e-7)


class Growth(nn.Module):
    """dh/dt = c h: h(t) = h0 e^(ct), so K = (||h0||^2 / D) c (e^(2c) - 1) / 2 over [0, 1], and B = c^2 for every
    Rademacher probe (||e^T c I||^2 = c^2 D)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate, dtype=torch.float64))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.rate * h


def growth_penalties(h0: torch.Tensor, c: float) -> tuple[float, float, float, float]:
    """K, B (batch means) of ``Growth(c)`` from ``h0`` over [0, 1], and their derivatives with respect to c."""
    m = h0.pow(2).mean(1).mean().item()
    kinetic = m * c * (math.exp(2 * c) - 1) / 2
    d_kinetic = m * ((math.exp(2 * c) - 1) / 2 + c * math.exp(2 * c))
    return kinetic, c**2, d_kinetic, 2 * c


def check_growth_penalties(device: torch.device, gradient: str) -> None:
    """The penalties of dh/dt = c h and their gradients with respect to c, on ``device``, against the closed form."""
    field = Growth(0.7).to(device)
    h0 = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64, device=device).reshape(4, 3)
    block = ODEBlock(field, **TIGHT, gradient=gradient, regularization=BOTH)
    block(h0)
    penalty, values = collect_penalties(block)
    kinetic, jacobian, d_kinetic, d_jacobian = growth_penalties(h0.cpu(), 0.7)
    assert values["reg_kinetic"].device.type == device.type
    assert values["reg_kinetic"].item() == pytest.approx(kinetic, rel=1e-8)
    assert values["reg_jacobian"].item() == pytest.approx(jacobian, rel=1e-8)
    penalty.backward()
    assert field.rate.grad.item() == pytest.approx(d_kinetic + d_jacobian, rel=1e-6)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_the_penalties_and_their_gradients_have_the_closed_form_of_exponential_growth(gradient: str) -> None:
    check_growth_penalties(torch.device("cpu"), gradient)


def test_the_hutchinson_frobenius_estimate_is_unbiased() -> None:
    """Averaged over all 2^D Rademacher probes, ||e^T A||^2 is ||A||_F^2 exactly."""
    matrix = torch.randn(4, 4, dtype=torch.float64)
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=torch.float64)
    assert (probes @ matrix).pow(2).sum(1).mean().item() == pytest.approx(matrix.pow(2).sum().item(), rel=1e-12)


def test_the_gradients_of_the_penalties_agree_across_strategies(field: nn.Module) -> None:
    h0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    gradients = {}
    for gradient in GRADIENTS:
        block = ODEBlock(field, **TIGHT, gradient=gradient, regularization={"kinetic": 0.3, "jacobian": 0.7})
        torch.manual_seed(3)
        end = block(h0)
        penalty, values = collect_penalties(block)
        assert set(values) == {"reg_kinetic", "reg_jacobian"} and block.penalties == {}
        (end.pow(2).sum() + penalty).backward()
        gradients[gradient] = [p.grad.clone() for p in (h0, *field.parameters())]
        h0.grad = None
        field.zero_grad()
    for gradient in ("adjoint", "checkpoint"):
        for ours, theirs in zip(gradients[gradient], gradients["backprop"]):
            assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-8), gradient


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_the_penalties_ride_along_without_steering_the_step_size(field: nn.Module, gradient: str) -> None:
    """The same steps as the plain solve (forward NFE equal), and the same end state."""
    h0 = torch.randn(5, 3, dtype=torch.float64)
    settings = dict(method="dopri5", rtol=1e-6, atol=1e-6, gradient=gradient)
    with record_stats() as plain:
        expected = ODEBlock(field, **settings)(h0)
    with record_stats() as regularized:
        end = ODEBlock(field, **settings, regularization=BOTH)(h0)
    assert regularized.nfe_forward == plain.nfe_forward
    assert torch.allclose(end, expected, rtol=0, atol=1e-12)


def test_off_by_default_in_evaluation_and_without_gradients(field: nn.Module) -> None:
    """Zero weights, eval mode or no_grad: the plain solve, bit for bit, and no penalties."""
    h0 = torch.randn(5, 3, dtype=torch.float64)
    expected = ODEBlock(field, **TIGHT)(h0)
    assert torch.equal(ODEBlock(field, **TIGHT, regularization={"kinetic": 0.0, "jacobian": 0.0})(h0), expected)
    block = ODEBlock(field, **TIGHT, regularization=BOTH)
    with torch.no_grad():
        assert torch.equal(block(h0), expected)
    block.eval()
    assert torch.equal(block(h0), expected) and block.penalties == {}
    assert collect_penalties(block) == (None, {})


def test_fixed_step_methods_integrate_the_penalties_too(field: nn.Module) -> None:
    h0 = torch.randn(5, 3, dtype=torch.float64)
    block = ODEBlock(field, method="rk4", options={"step_size": 1e-2}, regularization={"kinetic": 1.0})
    block(h0)
    kinetic, _, _ = reference(field, h0, torch.zeros_like(h0))
    assert block.penalties["kinetic"].item() == pytest.approx(kinetic.mean().item(), rel=1e-7)


@pytest.mark.parametrize(
    "value, message",
    [
        ({"kinetic": -1.0}, "kinetic=-1.0 must be a finite weight >= 0"),
        ({"jacobian": float("nan")}, "jacobian=nan must be a finite weight >= 0"),
        ({"kinetik": 1.0}, "regularization has no kinetik"),
    ],
)
def test_bad_weights_are_refused(value: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Regularization.of(value)


# ------------------------------------------------------------------------------------------------- the CNF
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_a_regularized_cnf_integrates_the_penalties_beside_its_density(trace: str) -> None:
    """dz/dt = A z: the log-density is the plain CNF's (tr A, or e^T A e for Hutchinson's probe e); the Frobenius
    estimate along the path is ||e^T A||^2 / D for the solve's probe (Hutchinson's own when the trace is
    Hutchinson's: one product for both)."""
    matrix = torch.tensor([[-0.3, 1.2], [-0.7, 0.5]], dtype=torch.float64)
    solver = {**TIGHT, "gradient": "adjoint"}
    flow = CNF(Linear(matrix), dim=2, trace=trace, solver=solver, regularization=BOTH).double()
    z0 = torch.randn(6, 2, dtype=torch.float64)
    torch.manual_seed(11)
    x, log_q = flow.push_forward(z0)
    torch.manual_seed(11)
    probe = draw_probe(z0)  # the one probe drawn for the solve: the trace's (Hutchinson) or the penalty's (exact)
    trace_estimate = ((probe @ matrix) * probe).sum(1) if trace == "hutchinson" else torch.trace(matrix)
    assert torch.allclose(log_q, normal_log_prob(z0) - trace_estimate, atol=1e-8)
    expected_jacobian = (probe @ matrix).pow(2).mean(1).mean()  # constant along the path, t1 = 1
    kinetic, _, _ = reference(flow.dynamics.field, z0, probe)
    penalty, values = collect_penalties(flow)
    assert values["reg_jacobian"].item() == pytest.approx(expected_jacobian.item(), rel=1e-9)
    assert values["reg_kinetic"].item() == pytest.approx(kinetic.mean().item(), rel=1e-8)
    (log_q.mean() + penalty).backward()
    assert flow.dynamics.field.matrix.grad is not None


# ---------------------------------------------------------------------------------------------- augmentation
def test_an_augmented_cnf_gives_a_bound_that_is_tight_for_a_still_flow() -> None:
    """With f = 0 the extra coordinates stay independent of x: the bound log p(x, e) - log N(e) is log p(x)."""
    flow = PlanarCNF(width=4, augment_dim=3)
    for parameter in flow.parameters():
        nn.init.zeros_(parameter)
    x = torch.randn(10, 2)
    assert torch.allclose(flow.log_prob(x), normal_log_prob(x), atol=1e-5)
    assert flow.base_dim == 5 and flow.sample(torch.randn(7, 5)).shape == (7, 2)
    with pytest.raises(ValueError, match="augment_dim=3 does not have"):
        flow.push_forward(torch.randn(7, 2))


def test_augment_dim_zero_is_the_unaugmented_model_parameter_for_parameter() -> None:
    solver = dict(compose("mnist_odenet").solver)
    torch.manual_seed(0)
    plain = ODENet(1, 10, 32, solver)
    torch.manual_seed(0)
    zero = ODENet(1, 10, 32, solver, augment_dim=0, regularization={"kinetic": 0.0})
    assert plain.state_dict().keys() == zero.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), zero.state_dict().values()))


def test_an_augmented_odenet_carries_zero_channels_through_its_block() -> None:
    solver = dict(compose("mnist_odenet").solver)
    model = ODENet(1, 10, 16, solver, augment_dim=16)
    features = model[0](torch.randn(2, 1, 28, 28))
    assert features.shape == (2, 32, 6, 6) and features[:, 16:].abs().sum() == 0
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="width \\+ augment_dim=40 cannot be normalised"):
        ODENet(1, 10, 32, solver, augment_dim=8)


# -------------------------------------------------------------------------------------------------- tasks
@pytest.mark.parametrize(
    "experiment, overrides, loss_name",
    [
        ("mnist_odenet", ["model.width=8", "solver.gradient=backprop"], None),
        ("spiral_latent_ode", ["debug=quick"], None),
        ("ffjord_rings", ["model.hidden=[8,8]", "data.batch_size=16"], "nll"),
        ("cnf_density_matching", ["model.width=4", "data.batch_size=16", "solver.gradient=backprop"], None),
    ],
)
def test_every_task_adds_the_weighted_penalties_to_its_loss(
    experiment: str, overrides: list[str], loss_name: str | None, tiny_data_root
) -> None:
    if experiment.startswith("mnist"):
        overrides = [*overrides, f"data.root={tiny_data_root}", "data.download=false", "data.batch_size=4"]
    weights = ["model.regularization.kinetic=0.5", "model.regularization.jacobian=2.0"]
    cfg = compose(experiment, [*overrides, *weights, "solver.rtol=1e-4", "solver.atol=1e-4"])
    task = build_task(cfg, torch.device("cpu"))
    model = task.build_model()
    batch = next(iter(task.dataloaders(torch.Generator().manual_seed(0))[0]))
    model.train()
    torch.manual_seed(0)
    loss, metrics = task.training_step(model, batch)
    assert set(metrics) >= {"reg_kinetic", "reg_jacobian"}
    assert metrics["reg_kinetic"] > 0 and metrics["reg_jacobian"] > 0
    loss.backward()
    torch.manual_seed(0)
    model.eval()  # the plain loss: no penalties are integrated in evaluation
    with torch.enable_grad():
        plain, plain_metrics = task.training_step(model, batch)
    assert "reg_kinetic" not in plain_metrics
    penalty = 0.5 * metrics["reg_kinetic"] + 2.0 * metrics["reg_jacobian"]
    if loss_name:  # the flows: the same solve's data term is logged apart from the penalty
        assert loss.item() == pytest.approx(metrics[loss_name].item() + penalty.item(), rel=1e-6)
    assert loss.item() == pytest.approx(plain.item() + penalty.item(), rel=1e-3, abs=1e-3)
