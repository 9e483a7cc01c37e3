"""Both spiral experiments run end to end through ``node-run`` on a tiny setting and write Table 2's metrics; the
metrics themselves are checked on a model with known errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import compose, run_node_run
from node_experiments.tasks import build_task

COMMON_METRICS = {
    f"test_rmse_{part}_{target}{aggregate}"
    for part in ("extrapolation", "interpolation", "reconstruction")
    for target in ("clean", "noisy")
    for aggregate in ("", "_euclidean")
} | {"test_rmse_extrapolation_clean_median", "test_rmse_extrapolation_noisy_mean_of_spirals", "test_log_likelihood",
     "test_loss"}  # fmt: skip
EXPERIMENTS = {  # the metrics and figures each writes beside the common ones
    "spiral_latent_ode": ({"test_elbo", "test_kl"}, {"predictions", "latent_trajectories", "latent_dimensions"}),
    "spiral_rnn": (set(), {"predictions"}),
}


@pytest.mark.e2e
def test_both_experiments_run_in_one_sweep_with_a_key_only_they_have(tmp_path: Path) -> None:
    """``data.n_obs=8`` without ``++``: a key that the default (MNIST) config lacks, given once for both jobs."""
    result = run_node_run(["-m", f"experiment={','.join(EXPERIMENTS)}", "debug=quick", "data.n_obs=8",
                           f"hydra.sweep.dir={tmp_path}"], cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for number, (experiment, (metrics, figures)) in enumerate(EXPERIMENTS.items()):
        run_dir = tmp_path / f"{number}_{experiment}"
        assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]["n_obs"] == 8
        summary = json.loads((run_dir / "summary.json").read_text())
        assert COMMON_METRICS | metrics <= set(summary), sorted(summary)
        assert math.isfinite(summary["test_rmse_extrapolation_clean"]) and summary["test_rmse_extrapolation_clean_median"] > 0
        assert summary["epochs"] == 1
        solves = experiment == "spiral_latent_ode"  # checkpointed: its recomputation is counted too
        assert (summary["nfe_forward"] > 0) == (summary["nfe_backward"] > 0) == solves
        assert summary.get("solver", {}).get("gradient") == ("checkpoint" if solves else None)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert {"test/rmse_extrapolation_clean", "nfe/forward", "time/epoch_s"} <= set(records[-1])
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
    assert (cfg.data.curve, cfg.data.noise, cfg.data.test_range) == ("torchdiffeq_example", 0.1, "same")
    assert cfg.model.dynamics_layers == 2


def test_the_paper_text_preset() -> None:
    """preset=paper_text: the mirrored curves and one-layer latent dynamics; nothing else changes."""
    for experiment in ("spiral_latent_ode", "spiral_rnn"):
        cfg, default = compose(experiment, ["preset=paper_text"]), compose(experiment)
        assert (cfg.data.curve, cfg.data.noise, cfg.model.obs_std) == ("mirrored", 0.1, 0.1)
        assert {key for key in default.data if cfg.data[key] != default.data[key]} == {"curve"}
        changed = {key for key in default.model if cfg.model[key] != default.model[key]}
        assert changed == ({"dynamics_layers"} if experiment == "spiral_latent_ode" else set())


class _TruthButOne(torch.nn.Module):
    """Predicts every test spiral exactly, except the first, whose extrapolation is off by ``offset`` everywhere."""

    def __init__(self, truth: torch.Tensor, window: int, offset: float) -> None:
        super().__init__()
        self.truth, self.window, self.offset = truth, window, offset

    def loss(self, observations, obs_times):
        return observations.new_zeros(()), {}

    def predict(self, observations, obs_times, query_times):
        values = self.truth[: observations.shape[0]].clone()
        values[0, self.window :] += self.offset
        return observations.clone(), values


def test_the_task_measures_the_model_on_its_test_spirals() -> None:
    """Through the task's evaluate: a model exact but for one of the 10 test spirals, off by (3, 3) over the
    extrapolation window, has extrapolation RMSE 3 / sqrt(10) against the clean spirals, median spiral 0."""
    sizes = ["data.n_spirals=40", "data.test_size=10", "data.n_obs=10", "data.window=20", "data.grid_points=200"]
    cfg = compose("spiral_rnn", sizes)
    task = build_task(cfg, torch.device("cpu"))
    _, test_loader = task.dataloaders(torch.Generator())
    spirals = test_loader.dataset.spirals
    metrics = task.evaluate(_TruthButOne(spirals.truth, spirals.window, offset=3.0), test_loader)
    assert metrics["rmse_extrapolation_clean"] == pytest.approx(3.0 / math.sqrt(10), rel=1e-5)
    assert metrics["rmse_extrapolation_clean_median"] == 0.0
    assert metrics["rmse_interpolation_clean"] == 0.0 and metrics["rmse_interpolation_noisy"] > 0
