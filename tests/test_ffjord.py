"""FFJORD's toys: the samplers against their log-densities and entropies, the free-form CNF, the ffjord_*
experiments through node-run (debug=quick) and node-report beyond on them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import compose, run_node_run
from node_experiments.data.toys import (
    Checkerboard,
    EightGaussians,
    Pinwheel,
    Rings,
    TwoCircles,
    TwoMoons,
    dataset_sampler,
)
from node_experiments.models.ffjord import FFJORD, ConcatSquashLinear
from node_experiments.reports.beyond import Run, comparison_table, groups
from node_experiments.reports.cli import main as report_main
from node_experiments.tasks.base import build_task

FFJORD_MOONS = TwoMoons(noise=0.1, scale=2.0, centre=(0.5, 0.1))
FFJORD_CIRCLES = TwoCircles(noise=0.08, factor=0.5, scale=3.0)
WITH_DENSITY = {
    "eight_gaussians": EightGaussians(),
    "checkerboard": Checkerboard(),
    "rings": Rings(),
    "ffjord_moons": FFJORD_MOONS,
    "ffjord_circles": FFJORD_CIRCLES,
    "two_moons": TwoMoons(),
    "two_circles": TwoCircles(),
}


def midpoints(limit: float, cells: int) -> tuple[torch.Tensor, float]:
    """The centres of a ``cells`` x ``cells`` grid of square cells on [-limit, limit]^2, and a cell's area."""
    side = 2 * limit / cells
    axis = torch.linspace(-limit + side / 2, limit - side / 2, cells, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis), side**2


@pytest.mark.parametrize("name", WITH_DENSITY)
def test_each_density_integrates_to_one_and_matches_its_samples(name: str) -> None:
    """The density's mass on a fine grid is 1, and over 0.5 x 0.5 cells it predicts the samples' histogram (grids
    whose cells the checkerboard's edges do not cut)."""
    toy = WITH_DENSITY[name]
    points, cell = midpoints(6.0, 240)
    mass = toy.log_prob(points).exp().sum().item() * cell
    assert mass == pytest.approx(1.0, abs=2e-3)
    samples = toy(200_000, torch.Generator().manual_seed(0)).double()
    edges = torch.arange(-4.5, 4.51, 0.5, dtype=torch.float64)
    counts = torch.histogramdd(samples, bins=[edges, edges]).hist / samples.shape[0]
    fine, fine_cell = midpoints(4.5, 90)  # 5 x 5 sub-cells per cell
    predicted = torch.histogramdd(fine, bins=[edges, edges], weight=toy.log_prob(fine).exp() * fine_cell).hist
    assert (counts - predicted).abs().max().item() < 5 * math.sqrt(counts.max().item() / samples.shape[0]) + 2e-3


def test_the_entropies_are_those_of_the_shapes() -> None:
    """Eight Gaussians six stds apart: log 8 + log(2 pi e s^2); the checkerboard: log 32; four thin rings:
    log 4 + the mean over rings of log(2 pi r) + log(2 pi e s^2) / 2."""
    def entropy(toy, count: int = 100_000) -> float:
        return -toy.log_prob(toy(count, torch.Generator().manual_seed(1)).double()).mean().item()

    std = 0.5 / 1.414
    assert entropy(EightGaussians()) == pytest.approx(math.log(8) + math.log(2 * math.pi * math.e * std**2), abs=0.01)
    assert entropy(Checkerboard()) == pytest.approx(math.log(32), abs=1e-12)
    rings = Rings()
    thin = math.log(4) + sum(math.log(2 * math.pi * r) for r in rings.radii) / 4
    assert entropy(rings) == pytest.approx(thin + 0.5 * math.log(2 * math.pi * math.e * 0.08**2), abs=0.01)


def test_the_samplers_are_ffjords_shapes() -> None:
    generator = torch.Generator().manual_seed(0)
    board = Checkerboard()(10_000, generator)
    assert torch.isfinite(Checkerboard().log_prob(board)).all() and board.abs().max() <= 4
    radius, std = EightGaussians()(10_000, generator).norm(dim=1), 0.5 / 1.414
    assert radius.mean().item() == pytest.approx(4 / 1.414 + std**2 / (2 * 4 / 1.414), abs=0.01)
    moons = FFJORD_MOONS(10_000, generator)  # make_moons * 2 + (-1, -0.2): centre of mass (0, 2 * 0.25 - 0.2)
    assert moons.mean(0).tolist() == pytest.approx([0.0, 0.3], abs=0.03)
    pinwheel = Pinwheel()(10_000, generator)
    assert (pinwheel.norm(dim=1) / 2).mean().item() == pytest.approx(1.0, abs=0.03)
    assert torch.equal(Rings()(100, torch.Generator().manual_seed(5)), Rings()(100, torch.Generator().manual_seed(5)))
    with pytest.raises(ValueError, match="Pinwheel has no known density: a point's density sums over every root"):
        Pinwheel().log_prob(pinwheel)
    with pytest.raises(ValueError, match="'spiral' is not a 2-D data set"):
        dataset_sampler("spiral")


def test_concat_squash_layers_gate_and_shift_by_time() -> None:
    layer = ConcatSquashLinear(3, 4)
    x, t = torch.randn(5, 3), torch.tensor(0.7)
    expected = layer.layer(x) * torch.sigmoid(layer.hyper_gate.weight[:, 0] * 0.7 + layer.hyper_gate.bias)
    assert torch.allclose(layer(t, x), expected + layer.hyper_bias.weight[:, 0] * 0.7, atol=1e-6)
    flow = FFJORD()
    assert sum(p.numel() for p in flow.parameters()) == 9224  # 2-64-64-64-2, FFJORD's toy model
    assert (flow.t1, flow.dynamics.trace) == (0.5, "hutchinson")


def test_pictures_of_a_hutchinson_flow_show_its_exact_density() -> None:
    """The NLL may average Hutchinson's estimate over samples; a picture needs each point's own value."""
    torch.manual_seed(0)
    flow = FFJORD().eval()
    exact = FFJORD(trace="exact").eval()
    exact.load_state_dict(flow.state_dict())
    points = torch.randn(64, 2)
    with torch.no_grad():
        estimates = torch.stack([flow.log_prob(points).exp() for _ in range(2)])
        expected = exact.log_prob(points).exp()
    assert not torch.allclose(estimates[0], estimates[1]), "Hutchinson's estimate varies with its probe"
    assert torch.allclose(flow.density(points), expected, rtol=1e-5)
    assert flow.dynamics.trace == "hutchinson", "the flow trains with the trace it had"


@pytest.mark.parametrize("overrides", [[], ["model.augment_dim=2"], ["model.trace=exact"]])
def test_a_few_steps_of_ffjord_lower_the_nll(overrides: list[str]) -> None:
    cfg = compose("ffjord_8gaussians", ["model.hidden=[32,32]", "data.batch_size=128", "data.eval_samples=512",
                                        "data.eval_batch_size=512", "solver.rtol=1e-4", "solver.atol=1e-4", *overrides])  # fmt: skip
    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    model = task.build_model()
    train, evaluation = task.dataloaders(torch.Generator().manual_seed(0))
    before = task.evaluate(model.eval(), evaluation)["nll"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for batch in list(train)[:20]:
        loss, _ = task.training_step(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = task.evaluate(model.eval(), evaluation)
    assert after["nll"] < before - 0.2, (before, after)
    entropy = -EightGaussians().log_prob(torch.cat(evaluation)).mean().item()  # on the same samples
    assert after["kl"] == pytest.approx(after["nll"] - entropy, abs=1e-4)


TOYS = ["8gaussians", "checkerboard", "circles", "moons", "pinwheel", "rings"]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One node-run sweep: every ffjord_* experiment with debug=quick, plain and with the kinetic penalty."""
    folder = tmp_path_factory.mktemp("ffjord")
    experiments = ",".join(f"ffjord_{toy}" for toy in TOYS)
    result = run_node_run(["-m", f"experiment={experiments}", "debug=quick", "model.regularization.kinetic=0,0.01",
                           f"hydra.sweep.dir={folder}"])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.mark.e2e
def test_every_ffjord_experiment_runs_through_node_run(toy_sweep: Path) -> None:
    """Each run writes its figures, the NLL beside the data's entropy (the pinwheel's is unknown), the penalty when
    it is on."""
    runs = sorted(path for path in toy_sweep.iterdir() if path.is_dir())
    assert len(runs) == 2 * len(TOYS)
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["nfe_forward"] > 0
        assert ("data_entropy" in summary) == (summary["experiment"] != "ffjord_pinwheel")
        if "data_entropy" in summary:
            assert summary["test_kl"] == pytest.approx(summary["test_nll"] - summary["data_entropy"], abs=1e-5)
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert {path.name for path in (run / "figures").iterdir()} == {"learned_density.png", "noise_to_data.png"}
        assert ("train/reg_kinetic" in history[-1]) == (run.name.split("_", 1)[0] in _regularized_jobs(toy_sweep))


def _regularized_jobs(sweep: Path) -> set[str]:
    """The job numbers whose override set the kinetic weight above 0."""
    jobs = set()
    for run in sweep.iterdir():
        if run.is_dir() and "model.regularization.kinetic=0.01" in (run / ".hydra" / "overrides.yaml").read_text():
            jobs.add(run.name.split("_", 1)[0])
    return jobs


@pytest.mark.e2e
def test_node_report_beyond_tabulates_the_toys(toy_sweep: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    assert report_main(["beyond", str(toy_sweep), "--figures", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in printed.out.splitlines()
            if line.startswith("| ")]  # fmt: skip
    toy_rows = [row for row in rows if row[0] in TOYS]
    assert {(row[0], row[1]) for row in toy_rows} == {(toy, v) for toy in TOYS for v in ("plain", "K=0.01")}
    pinwheel = next(row for row in toy_rows if row[0] == "pinwheel")
    assert pinwheel[5:7] == ["unknown", "-"] and pinwheel[3] == "2"  # two iterations of debug=quick
    comparisons = [row for row in rows if row[0].startswith("ffjord_")]
    assert len(comparisons) == len(TOYS)
    assert all(row[1] == "K=0.01" and row[3] == "0" and row[6] in ("yes", "no") for row in comparisons)
    for name in ("beyond_nfe.png", "beyond_time.png", "beyond_densities.png"):
        assert (tmp_path / name).stat().st_size > 5_000 and f"wrote {tmp_path / name}" in printed.err


@pytest.mark.e2e
def test_the_density_figure_reads_the_model_beside_the_records(toy_sweep: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    """Records keep no checkpoint; ``node-report model-state`` writes the model beside them, which the figure reads."""
    records = tmp_path / "records"
    assert report_main(["records", str(toy_sweep), str(records)]) == 0
    figures = tmp_path / "figures"
    assert report_main(["beyond", str(records), "--figures", str(figures)]) == 1
    assert "holds no checkpoints/last.pt and no model.pt" in capsys.readouterr().err
    for run in sorted(path for path in toy_sweep.iterdir() if path.is_dir()):
        assert report_main(["model-state", str(run), str(records / run.name / "model.pt")]) == 0
    assert report_main(["beyond", str(records), "--figures", str(figures)]) == 0
    assert (figures / "beyond_densities.png").stat().st_size > 5_000


def test_a_variant_is_compared_on_the_seeds_both_have() -> None:
    """A plain run of a seed the variant lacks stays out of the comparison (the issue's "same seeds and steps")."""
    def run(variant: str, seed: int, nfe: float, error: float) -> Run:
        summary = {"nfe_forward": nfe, "nfe_backward": 20.0, "test_error": error}
        return Run(Path("."), "mnist_odenet", variant, seed, 3, summary, [])

    runs = [run("plain", 0, 22.0, 0.020), run("plain", 1, 30.0, 0.010), run("K=0.01", 0, 20.0, 0.018)]
    table = comparison_table(groups(runs))
    assert table[2] == "| mnist_odenet | K=0.01 | 3 | 0 | 1.05x | -0.20 pp | yes |"
