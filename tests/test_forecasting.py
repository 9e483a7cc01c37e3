"""Table 2's extrapolation, third round: the forecasting objective (task.objective=forecast), the RNN's
autoregressive rollout it trains through, the latent ODE's consistency measure, and the metrics of training
spirals and of the other test range beside the test spirals'."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import compose
from node_experiments.data.spirals import make_spirals
from node_experiments.models.latent_ode import LatentODE
from node_experiments.models.sequence_rnn import SequenceRNN
from node_experiments.tasks import build_task
from node_experiments.tasks.sequence_metrics import latent_gaps

SIZES = ["data.n_spirals=24", "data.test_size=8", "data.n_obs=10", "data.window=20", "data.grid_points=200"]


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(n_spirals=8, n_obs=6, window=20, grid_points=200, seed=3)


def test_following_holds_the_noisy_series_one_window_on_at_the_observed_pattern(spirals) -> None:
    window, count = spirals.window, spirals.observations.shape[1]
    expected = spirals.noisy[:, window:][spirals.observed].view(len(spirals), count, 2)
    torch.testing.assert_close(spirals.following, expected, rtol=0, atol=0)


def test_the_rnn_rollout_is_its_extrapolation() -> None:
    """Past the last observation (here the window's last time), ``predict`` and ``rollout`` (the forecasting
    objective's predictions) agree."""
    spirals = make_spirals(n_spirals=8, n_obs=20, window=20, grid_points=200, seed=3)
    torch.manual_seed(0)
    model = SequenceRNN(obs_std=0.1)
    with torch.no_grad():
        _, predictions = model.predict(spirals.observations, spirals.obs_times, spirals.times)
        states = model.states(spirals.observations, spirals.obs_times)
        window = spirals.window
        future = spirals.times[window:].expand(len(spirals), -1)
        rolled = model.rollout(spirals.observations[:, -1], spirals.obs_times[:, -1], states[:, -1], future)
    torch.testing.assert_close(rolled, predictions[:, window:])


def test_the_rnn_forecast_loss_scores_its_own_rollout(spirals) -> None:
    """Future points equal to the model's own predictions add exactly the Gaussian's peak log-density per value."""
    torch.manual_seed(0)
    model = SequenceRNN(obs_std=0.1)
    observations, times = spirals.observations, spirals.obs_times
    future_times = times + spirals.times[spirals.window]
    with torch.no_grad():
        states = model.states(observations, times)
        own = model.rollout(observations[:, -1], times[:, -1], states[:, -1], future_times)
        reconstruct, _ = model.loss(observations, times)
        forecast, _ = model.loss(observations, times, own, future_times)
    values = own[0].numel()
    peak = -math.log(0.1) - 0.5 * math.log(2 * math.pi)
    assert float(forecast) == pytest.approx(float(reconstruct) - values * peak, rel=1e-6)


def test_the_latent_ode_forecast_scores_the_future_and_encodes_the_observations_alone(spirals) -> None:
    torch.manual_seed(0)
    model = LatentODE(obs_std=0.1, solver={"rtol": 1e-6, "atol": 1e-6, "gradient": "backprop"})
    observations, times = spirals.observations, spirals.obs_times
    future_times = times + spirals.times[spirals.window]

    def terms(future: torch.Tensor) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)  # the same posterior sample
        return model.loss(observations, times, future, future_times)[1]

    near, far = terms(spirals.following), terms(spirals.following + 5.0)
    assert float(near["kl"].detach()) == float(far["kl"].detach())  # q(z_0) never sees the future points
    assert float(far["log_likelihood"].detach()) < float(near["log_likelihood"].detach())
    with pytest.raises(ValueError, match="future and future_times go together"):
        model.loss(observations, times, spirals.following)


def test_the_forecast_objective_trains_on_the_following_window() -> None:
    """task.objective=forecast: the training step's loss depends on the following window, the default's does not."""
    for objective, moves in (("reconstruct", False), ("forecast", True)):
        task = build_task(compose("spiral_rnn", [*SIZES, f"task.objective={objective}"]), torch.device("cpu"))
        train_loader, _ = task.dataloaders(torch.Generator().manual_seed(0))
        batch = next(iter(train_loader))
        torch.manual_seed(0)
        model = task.build_model()
        loss, _ = task.training_step(model, batch)
        shifted, _ = task.training_step(model, {**batch, "following": batch["following"] + 1.0})
        assert (float(loss.detach()) != float(shifted.detach())) == moves


def test_latent_gaps_are_in_units_of_the_codes_spread() -> None:
    codes = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # spread 1
    next_codes = codes.clone()
    flowed = codes + torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 1.0], [0.0, 3.0]])
    gaps = latent_gaps(codes, flowed, next_codes)
    assert gaps == pytest.approx({"latent_gap": 0.75, "latent_gap_mean": 1.125})
    assert latent_gaps(10 * codes, 10 * flowed, 10 * next_codes) == pytest.approx(gaps)
    assert latent_gaps(codes, codes, codes) == {"latent_gap": 0.0, "latent_gap_mean": 0.0}


@pytest.mark.parametrize("experiment", ["spiral_latent_ode", "spiral_rnn"])
def test_evaluation_adds_training_spirals_the_other_test_range_and_the_latent_gap(experiment: str) -> None:
    task = build_task(compose(experiment, SIZES), torch.device("cpu"))
    train_loader, test_loader = task.dataloaders(torch.Generator())
    train = train_loader.dataset.spirals
    torch.testing.assert_close(task.extra_sets["train_spirals"].observations, train.observations[:8])
    other = task.extra_sets["observed_range"]
    assert not torch.equal(other.truth, test_loader.dataset.spirals.truth)
    torch.manual_seed(0)
    model = task.build_model().eval()
    metrics = task.evaluate(model, test_loader)
    extra = {f"{name}/rmse_extrapolation_clean{suffix}" for name in ("train_spirals", "observed_range")
             for suffix in ("", "_median")}  # fmt: skip
    gaps = {f"{prefix}latent_gap{suffix}" for prefix in ("", "train_spirals/", "observed_range/")
            for suffix in ("", "_mean")}  # fmt: skip
    assert extra <= set(metrics)
    assert (gaps <= set(metrics)) == (experiment == "spiral_latent_ode")
    assert all(math.isfinite(value) for value in metrics.values())


def test_the_example_preset_sets_the_data_and_the_latent_dynamics() -> None:
    latent, rnn = (compose(e, ["preset=torchdiffeq_example"]) for e in ("spiral_latent_ode", "spiral_rnn"))
    for cfg in (latent, rnn):
        assert (cfg.data.curve, cfg.data.noise) == ("torchdiffeq_example", 0.1)
    assert latent.model.dynamics_layers == 2 and compose("spiral_latent_ode", ["preset=paper_text"]).model.dynamics_layers == 1
    assert "dynamics_layers" not in rnn.model
