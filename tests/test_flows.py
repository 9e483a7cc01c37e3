"""Normalizing flows (paper section 4): the CNF's log-density, trace estimators, planar layers, targets, training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import compose, run_node_run
from node_experiments.data.densities import ENERGIES, SampledBatches, energy, fixed_batches, log_normaliser
from node_experiments.data.toys import TwoCircles, TwoMoons
from node_experiments.models.flows import (
    CNF,
    PlanarField,
    PlanarLayer,
    PlanarNF,
    exact_trace,
    hutchinson_trace,
    normal_log_prob,
)
from node_experiments.reports.cli import main as report_main
from node_experiments.tasks.base import build_task
from node_experiments.training import train

TIGHT = dict(method="dopri5", rtol=1e-8, atol=1e-8, gradient="adjoint", options={}, adjoint_options={})


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch):
    """These models are tiny: one thread is much faster than several on a busy machine (node-run included)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Linear(nn.Module):
    """dz/dt = A z."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.matrix.t()


@pytest.mark.parametrize("gradient", ["adjoint", "backprop", "checkpoint"])
def test_linear_flow_log_density_is_analytic(gradient: str) -> None:
    """dz/dt = A z: z(t) = expm(t A) z0 and log p(z(t)) = log p(z0) - t tr(A)."""
    torch.manual_seed(0)
    matrix = torch.tensor([[-0.3, 1.2], [-0.7, 0.5]], dtype=torch.float64)
    t1 = 1.5
    flow = CNF(Linear(matrix.clone()), dim=2, t1=t1, solver={**TIGHT, "gradient": gradient}).double()
    z0 = torch.randn(64, 2, dtype=torch.float64)
    x, log_q = flow.push_forward(z0)
    assert torch.allclose(x, z0 @ torch.linalg.matrix_exp(t1 * matrix).t(), atol=1e-7)
    assert torch.allclose(log_q, normal_log_prob(z0) - t1 * torch.trace(matrix), atol=1e-7)
    # The reverse solve gives the same density back, and part of the way it is the marginal at t.
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-6)
    z_half = z0 @ torch.linalg.matrix_exp(0.5 * t1 * matrix).t()
    expected_half = normal_log_prob(z0) - 0.5 * t1 * torch.trace(matrix)
    assert torch.allclose(flow.log_prob(z_half, fraction=0.5), expected_half, atol=1e-6)
    # Gradients reach the field's parameters: d/dA of mean log q = -t1 I.
    log_q.mean().backward()
    assert torch.allclose(flow.dynamics.field.matrix.grad, -t1 * torch.eye(2, dtype=torch.float64), atol=1e-6)


def test_planar_field_closed_form_divergence_is_the_trace() -> None:
    torch.manual_seed(1)
    field = PlanarField(dim=2, width=8).double()
    z = torch.randn(32, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64)
    assert torch.allclose(exact_trace(field(t, z), z, create_graph=False), field.divergence(t, z), atol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_estimate_is_unbiased(probe: str) -> None:
    """The mean of e^T J e over many probes approaches tr(J), within a few standard errors."""
    torch.manual_seed(2)
    field = PlanarField(dim=3, width=8).double()
    t = torch.tensor(0.5, dtype=torch.float64)
    point = torch.randn(1, 3, dtype=torch.float64)
    z = point.repeat(20000, 1).requires_grad_(True)
    probes = torch.randint(0, 2, z.shape).double() * 2 - 1 if probe == "rademacher" else torch.randn_like(z)
    estimates = hutchinson_trace(field(t, z), z, probes, create_graph=False)
    exact = field.divergence(t, point)
    standard_error = estimates.std() / math.sqrt(len(estimates))
    assert standard_error > 0  # the estimator is noisy: a single probe is not the trace
    assert abs(estimates.mean() - exact) < 4 * standard_error


def test_hutchinson_cnf_uses_one_probe_per_solve_and_matches_exact_on_average() -> None:
    torch.manual_seed(3)
    solver = dict(TIGHT, rtol=1e-6, atol=1e-6)
    exact = CNF(PlanarField(dim=2, width=4), solver=solver).double()
    estimated = CNF(PlanarField(dim=2, width=4), trace="hutchinson", solver=solver).double()
    estimated.load_state_dict(exact.state_dict())
    z0 = torch.randn(1, 2, dtype=torch.float64).repeat(4000, 1)
    with torch.no_grad():
        x_exact, log_q_exact = exact.push_forward(z0[:1])
        x, log_q = estimated.push_forward(z0)
    assert torch.allclose(x, x_exact.expand_as(x), atol=1e-6)  # the trace never changes the path
    assert log_q.std() > 0
    assert abs(log_q.mean() - log_q_exact[0]) < 4 * log_q.std() / math.sqrt(len(log_q))


def test_planar_layer_is_invertible_and_its_log_det_is_right() -> None:
    torch.manual_seed(4)
    layer = PlanarLayer(2).double()
    with torch.no_grad():
        layer.u.copy_(torch.tensor([-3.0, 2.0]))  # w^T u < -1 before the reparameterisation
    z = torch.randn(50, 2, dtype=torch.float64)
    y, logdet = layer(z)
    assert layer.w @ layer.u_hat() >= -1
    assert torch.allclose(layer.inverse(y), z, atol=1e-9)
    jacobians = torch.stack([torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], v) for v in z])
    assert torch.allclose(logdet, torch.linalg.slogdet(jacobians)[1], atol=1e-9)


@pytest.mark.parametrize("direction", ["sample", "density"])
def test_planar_nf_samples_and_density_agree(direction: str) -> None:
    torch.manual_seed(5)
    flow = PlanarNF(layers=6, direction=direction).double()
    for layer in flow.layers:
        nn.init.normal_(layer.w, std=1.0)
        nn.init.normal_(layer.u, std=1.0)
    z0 = torch.randn(40, 2, dtype=torch.float64)
    x, log_q = flow.push_forward(z0)
    assert torch.allclose(flow.log_prob(x), log_q, atol=1e-7)
    carried = flow.trajectory(z0, [0.0, 0.5, 1.0])
    assert torch.allclose(carried[0], z0) and torch.allclose(carried[-1], x, atol=1e-7)
    assert flow.trainable_samples == (direction == "sample") and flow.trainable_density == (direction == "density")


def test_targets_and_their_normalisers() -> None:
    # U2 with its wall integrates in closed form: sqrt(2 pi) 0.4 (8 + 0.4 sqrt(2 pi)).
    sigma = 0.4 * math.sqrt(2 * math.pi)
    assert log_normaliser("U2") == pytest.approx(math.log(sigma * (8 + sigma)), abs=1e-6)
    points = torch.randn(100, 2)
    for name in ENERGIES:
        assert energy(name)(points).shape == (100,)
        assert math.isfinite(log_normaliser(name))
    with pytest.raises(ValueError, match="U5.*U1, U2, U3, U4"):
        energy("U5")


def test_samplers_and_sampled_batches_follow_the_generator() -> None:
    moons = TwoMoons()(1000, torch.Generator().manual_seed(0))
    circles = TwoCircles(noise=0.0, factor=0.5, scale=2.0)(1000, torch.Generator().manual_seed(0))
    assert moons.shape == (1000, 2) and moons.abs().max() < 3.5
    assert set(torch.round(circles.norm(dim=1), decimals=4).tolist()) == {1.0, 2.0}
    batches = lambda seed: list(SampledBatches(TwoMoons(), 8, 3, torch.Generator().manual_seed(seed)))  # noqa: E731
    assert len(batches(0)) == 3 and all(torch.equal(a, b) for a, b in zip(batches(0), batches(0)))
    assert not torch.equal(batches(0)[0], batches(1)[0])
    assert [len(b) for b in fixed_batches(TwoMoons(), 10, 4, seed=0)] == [4, 4, 2]


def _train(task, model, steps: int, lr: float) -> tuple[float, float]:
    """The evaluation loss before and after ``steps`` Adam steps of the task."""
    train_loader, eval_loader = task.dataloaders(torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    before = task.evaluate(model, eval_loader)["loss"]
    batches = iter(train_loader)
    for _ in range(steps):
        loss, _ = task.training_step(model, next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, task.evaluate(model, eval_loader)["loss"]


SMALL = ["data.batch_size=64", "data.batches_per_epoch=20", "data.eval_samples=512", "data.eval_batch_size=512"]


@pytest.mark.parametrize(
    "experiment, overrides",
    [
        ("cnf_density_matching", ["model.width=4", "solver.rtol=1e-4", "solver.atol=1e-4"]),
        ("cnf_density_matching", ["model.width=4", "model.trace=hutchinson", "solver.rtol=1e-4", "solver.atol=1e-4"]),
        ("cnf_density_matching", ["model.width=4", "model.trace=closed_form", "solver.rtol=1e-4", "solver.atol=1e-4"]),
        ("nf_density_matching", ["model.layers=4"]),
        ("cnf_two_moons", ["model.width=8", "solver.rtol=1e-4", "solver.atol=1e-4"]),
        ("nf_two_circles", ["model.layers=8"]),
    ],
)
def test_a_few_training_steps_lower_the_loss(experiment: str, overrides: list[str]) -> None:
    torch.manual_seed(0)
    task = build_task(compose(experiment, [*SMALL, *overrides]), torch.device("cpu"))
    before, after = _train(task, task.build_model(), steps=15, lr=2e-2)
    assert after < before - 0.05, (before, after)


def test_a_briefly_trained_cnf_density_integrates_to_one() -> None:
    torch.manual_seed(0)
    cfg = compose("cnf_two_moons", [*SMALL, "model.width=8", "solver.rtol=1e-5", "solver.atol=1e-5"])
    task = build_task(cfg, torch.device("cpu"))
    model = task.build_model()
    _train(task, model, steps=10, lr=2e-2)
    axis = torch.linspace(-7, 7, 141)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = model.log_prob(grid).exp()
    mass = density.sum().item() * (axis[1] - axis[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=0.02)


FLOW_EXPERIMENTS = [
    "cnf_density_matching", "nf_density_matching", "cnf_two_moons", "cnf_two_circles", "nf_two_moons", "nf_two_circles",
]  # fmt: skip


@pytest.fixture(scope="module")
def flow_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One node-run sweep over the six experiments with debug=quick."""
    folder = tmp_path_factory.mktemp("flows")
    experiments = ",".join(FLOW_EXPERIMENTS)
    result = run_node_run(["-m", f"experiment={experiments}", "debug=quick", f"hydra.sweep.dir={folder}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.e2e
def test_every_flow_experiment_runs_through_node_run(flow_sweep: Path) -> None:
    """Each run writes summary.json with final_loss, and its figures."""
    for number, experiment in enumerate(FLOW_EXPERIMENTS):
        run_dir = flow_sweep / f"{number}_{experiment}"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["experiment"] == experiment
        assert math.isfinite(summary["final_loss"]) and summary["final_loss"] == summary["test_loss"]
        assert ("test_kl" if "density_matching" in experiment else "test_nll") in summary
        assert (summary["nfe_forward"] > 0) == experiment.startswith("cnf")
        figures = {path.name for path in (run_dir / "figures").iterdir()}
        main = "density_matching.png" if "density_matching" in experiment else "learned_density.png"
        assert figures == {main, "noise_to_data.png"}
        assert list((run_dir / "tb").iterdir())


@pytest.mark.e2e
def test_node_report_flows_tabulates_the_density_matching_runs(flow_sweep: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """node-report flows on the whole sweep: one cell per density-matching run (the others are not its kind), the
    final loss with KL = loss + log Z, and both figures."""
    assert report_main(["flows", str(flow_sweep), "--figures", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    rows = [line.split(" | ") for line in printed.out.splitlines() if line.startswith("| ")]
    nf, cnf = (compose(name, ["debug=quick"]) for name in ("nf_density_matching", "cnf_density_matching"))
    assert rows[0] == ["| Target", f"NF K={nf.model.layers}", f"CNF M={cnf.model.width} |"]
    assert nf.data.target == cnf.data.target and rows[1][0] == f"| {nf.data.target}" and len(rows) == 2
    for cell, number, experiment in ((rows[1][1], 1, "nf"), (rows[1][2], 0, "cnf")):
        summary = json.loads((flow_sweep / f"{number}_{experiment}_density_matching" / "summary.json").read_text())
        assert cell.removesuffix(" |") == f"{summary['final_loss']:.3f} ({summary['test_kl']:.3f})"
        assert summary["test_kl"] == pytest.approx(summary["final_loss"] + log_normaliser(nf.data.target), abs=1e-5)
    for name in ("figure4_loss.png", "figure4_densities.png"):
        assert (tmp_path / name).stat().st_size > 5_000 and f"wrote {tmp_path / name}" in printed.err


@pytest.mark.e2e
def test_a_bad_target_is_reported_without_a_stack_trace(tmp_path) -> None:
    result = run_node_run(["experiment=nf_density_matching", "data.target=U9", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 1
    assert "data.target='U9': the target density must be one of U1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_resumed_run_draws_the_same_batches(tmp_path) -> None:
    """Fresh batches come from the trainer's generator, so 2 epochs + 1 resumed epoch equal 3 epochs straight."""
    tiny = ["model.layers=4", "data.batch_size=16", "data.batches_per_epoch=3", "data.eval_samples=64",
            "task.grid_points=8", "task.figure_samples=50", "logger.tensorboard=false", "trainer.progress_bar=false"]  # fmt: skip
    for name in ("straight", "first", "resumed"):
        (tmp_path / name).mkdir()
    straight = train(compose("nf_density_matching", [*tiny, "trainer.max_epochs=3"]), tmp_path / "straight")
    train(compose("nf_density_matching", [*tiny, "trainer.max_epochs=2"]), tmp_path / "first")
    resumed = train(
        compose("nf_density_matching", [*tiny, "trainer.max_epochs=3", f"trainer.resume={tmp_path / 'first'}"]),
        tmp_path / "resumed",
    )
    assert resumed["final_loss"] == straight["final_loss"] and resumed["epochs"] == 3
