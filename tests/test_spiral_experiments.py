"""Both spiral experiments run end to end through ``node-run`` on a tiny setting and write Table 2's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import compose, run_node_run

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
COMMON_METRICS = {"test_rmse_extrapolation", "test_rmse_reconstruction", "test_log_likelihood", "test_loss"}


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
        assert summary["nfe_forward"] > 0 and summary["nfe_backward"] > 0, "the adjoint's backward solve is counted"
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
    assert cfg.solver.adjoint is True and cfg.model.obs_std == cfg.data.noise
    assert compose("spiral_rnn").model.hidden == 25
