"""The RMSE definitions of Table 2 (``node_experiments.tasks.sequence_metrics``) on predictions with known errors."""

from __future__ import annotations

import math

import pytest
import torch

from node_experiments.tasks.sequence_metrics import PredictionErrors

WINDOW = 4


def batch_of_three(observed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three spirals at the origin (truth 0) whose noisy series is 0.5 in x everywhere; ``observed`` ``(3, W)``."""
    obs_index = observed.nonzero()[:, 1].reshape(3, -1)
    truth = torch.zeros(3, 2 * WINDOW, 2)
    noisy = truth + torch.tensor([0.5, 0.0])
    return {
        "truth": truth,
        "noisy": noisy,
        "observed": observed,
        "obs_times": obs_index.float(),
        "obs_truth": truth[:, : obs_index.shape[1]],
        "observations": noisy[:, : obs_index.shape[1]],
    }


def predictions(window_value: float, extrapolation_values: list[tuple[float, float]]) -> torch.Tensor:
    """``(3, 2W, 2)``: ``window_value`` in both coordinates over the observation window, spiral i's
    ``extrapolation_values[i]`` over the extrapolation window."""
    values = torch.full((3, 2 * WINDOW, 2), window_value)
    values[:, WINDOW:] = torch.tensor(extrapolation_values)[:, None]
    return values


def test_extrapolation_rmse_per_coordinate_euclidean_and_per_spiral() -> None:
    """Spiral errors (3, 4), (0, 0), (0, 1) at every extrapolation time: squared distances 25, 0, 1."""
    observed = torch.tensor([[True, True, False, False]] * 3)
    batch = batch_of_three(observed)
    errors = PredictionErrors()
    errors.add(torch.zeros(3, 2, 2), predictions(0.0, [(3.0, 4.0), (0.0, 0.0), (0.0, 1.0)]), batch)
    metrics = errors.metrics()
    assert metrics["rmse_extrapolation_clean"] == pytest.approx(math.sqrt(26 / 6))
    assert metrics["rmse_extrapolation_clean_euclidean"] == pytest.approx(math.sqrt(26 / 3))
    per_spiral = [math.sqrt(25 / 2), 0.0, math.sqrt(1 / 2)]
    assert metrics["rmse_extrapolation_clean_median"] == pytest.approx(per_spiral[2])
    assert metrics["rmse_extrapolation_clean_mean_of_spirals"] == pytest.approx(sum(per_spiral) / 3)
    # Against the noisy series (0.5, 0): squared distances 2.5^2 + 16, 0.25, 0.25 + 1.
    noisy = [2.5**2 + 16, 0.25, 1.25]
    assert metrics["rmse_extrapolation_noisy"] == pytest.approx(math.sqrt(sum(noisy) / 6))
    assert metrics["rmse_extrapolation_noisy_euclidean"] == pytest.approx(math.sqrt(sum(noisy) / 3))
    assert metrics["rmse_extrapolation_noisy_median"] == pytest.approx(math.sqrt(1.25 / 2))


def test_interpolation_counts_only_the_unobserved_window_times_and_reconstruction_the_observed_ones() -> None:
    """The window predictions are 1 in both coordinates, but 100 at the observed times: interpolation sees only the
    1s; the reconstruction (given separately, 2 in both coordinates) is measured at the observation times."""
    observed = torch.tensor([[True, False, True, False], [False, True, True, False], [True, True, False, False]])
    batch = batch_of_three(observed)
    values = predictions(1.0, [(0.0, 0.0)] * 3)
    values[:, :WINDOW][observed] = 100.0
    errors = PredictionErrors()
    errors.add(torch.full((3, 2, 2), 2.0), values, batch)
    metrics = errors.metrics()
    assert metrics["rmse_interpolation_clean"] == pytest.approx(1.0)
    assert metrics["rmse_interpolation_clean_euclidean"] == pytest.approx(math.sqrt(2))
    assert metrics["rmse_interpolation_noisy"] == pytest.approx(math.sqrt((0.25 + 1) / 2))
    assert metrics["rmse_reconstruction_clean"] == pytest.approx(2.0)
    assert metrics["rmse_reconstruction_noisy"] == pytest.approx(math.sqrt((1.5**2 + 4) / 2))
    assert metrics["rmse_extrapolation_clean"] == 0.0


def test_batches_pool_their_points_and_no_interpolation_when_every_time_is_observed() -> None:
    """Two batches, one all errors 1 and one all errors 0, give the pooled RMSE sqrt(1/2) per coordinate of an
    error (1, 0); with every window time observed there is no interpolation metric."""
    batch = batch_of_three(torch.ones(3, WINDOW, dtype=torch.bool))
    errors = PredictionErrors()
    errors.add(torch.zeros(3, WINDOW, 2), predictions(0.0, [(1.0, 0.0)] * 3), batch)
    errors.add(torch.zeros(3, WINDOW, 2), predictions(0.0, [(0.0, 0.0)] * 3), batch)
    metrics = errors.metrics()
    assert metrics["rmse_extrapolation_clean"] == pytest.approx(math.sqrt(1 / 4))
    assert not any(name.startswith("rmse_interpolation") for name in metrics)
    assert {"rmse_reconstruction_clean", "rmse_extrapolation_noisy_mean_of_spirals"} <= set(metrics)
