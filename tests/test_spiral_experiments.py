"""Both spiral experiments run end to end through ``node-run`` on a tiny setting and write Table 2's metrics; the
metrics themselves are checked on a model with known errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import compose, run_node_run
from node_experiments.tasks import build_task

TINY = [
    "data.n_spirals=24",
    "data.test_size=8",
    "data.n_obs=10",
    "data.window=20",
    "data.grid_points=200",
    "data.batch_size=8",
    "task.figure_latent_spirals=8",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "logger.log_every_n_steps=1",
]
COMMON_METRICS = {
    "test_rmse_extrapolation",
    "test_rmse_extrapolation_median",
    "test_rmse_reconstruction",
    "test_log_likelihood",
    "test_loss",
}


@pytest.mark.parametrize(
    "experiment, metrics, figures",
    [
        ("spiral_latent_ode", {"test_elbo", "test_kl"}, {"predictions", "latent_trajectories", "latent_dimensions"}),
        ("spiral_rnn", set(), {"predictions"}),
    ],
)
def test_experiment_runs_and_writes_the_metrics(tmp_path: Path, experiment: str, metrics: set, figures: set) -> None:
    run_dir = tmp_path / experiment
    result = run_node_run([f"experiment={experiment}", *TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert COMMON_METRICS | metrics <= set(summary), sorted(summary)
    assert summary["test_rmse_extrapolation"] > 0 and summary["epochs"] == 1
    if experiment == "spiral_latent_ode":
        assert summary["nfe_forward"] > 0 and summary["nfe_backward"] > 0, "the recomputation is counted"
        assert summary["solver"]["gradient"] == "checkpoint"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"test/rmse_extrapolation", "nfe/forward", "time/epoch_s"} <= set(records[-1])
    assert {path.stem for path in (run_dir / "figures").glob("*.png")} == figures
    assert any((run_dir / "tb").iterdir())


def test_the_paper_settings_are_the_default() -> None:
    cfg = compose("spiral_latent_ode")
    assert (cfg.data.n_spirals, cfg.data.window, cfg.data.n_obs) == (1000, 100, 100)
    assert (cfg.model.latent_dim, cfg.model.rnn_hidden, cfg.model.dynamics_hidden, cfg.model.decoder_hidden) == (
        4, 25, 20, 20,
    )
    assert cfg.solver.gradient == "checkpoint" and cfg.model.obs_std == cfg.data.noise
    assert compose("spiral_rnn").model.hidden == 25


class _TruthButOne(torch.nn.Module):
    """Predicts every test spiral exactly, except the first, whose extrapolation is off by ``offset`` everywhere."""

    def __init__(self, truth: torch.Tensor, window: int, offset: float) -> None:
        super().__init__()
        self.truth, self.window, self.offset = truth, window, offset

    def loss(self, observations, obs_times):
        return observations.new_zeros(()), {}

    def predict(self, observations, obs_times, query_times):
        future = self.truth[: observations.shape[0], self.window :].clone()
        future[0] += self.offset
        return observations.clone(), future


def test_the_extrapolation_rmse_squares_errors_and_the_median_shows_the_typical_spiral() -> None:
    sizes = ["data.n_spirals=40", "data.test_size=10", "data.n_obs=10", "data.window=20", "data.grid_points=200"]
    cfg = compose("spiral_rnn", sizes)
    task = build_task(cfg, torch.device("cpu"))
    _, test_loader = task.dataloaders(torch.Generator())
    spirals = test_loader.dataset.spirals
    metrics = task.evaluate(_TruthButOne(spirals.truth, spirals.window, offset=3.0), test_loader)
    assert metrics["rmse_extrapolation"] == pytest.approx(3.0 / math.sqrt(10), rel=1e-5)
    assert metrics["rmse_extrapolation_median"] == 0.0
