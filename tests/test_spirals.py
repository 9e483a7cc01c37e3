"""The spiral data set of Table 2: shapes, directions, irregular times within the windows, noise, seeding."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.utils.data import DataLoader

from node_experiments.data.spirals import (
    CURVES,
    TEST_RANGES,
    SpiralDataset,
    make_spirals,
    spiral_centres,
    spiral_points,
    spiral_loaders,
    split_spirals,
)
from node_experiments.errors import ConfigError, DataFormatError
from node_experiments.validation import config_arguments

SMALL = dict(n_spirals=40, n_obs=30, window=50, grid_points=400, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(**SMALL)


def test_shapes(spirals) -> None:
    n, obs, window = SMALL["n_spirals"], SMALL["n_obs"], SMALL["window"]
    assert spirals.times.shape == (2 * window,)
    assert spirals.observations.shape == spirals.obs_truth.shape == (n, obs, 2)
    assert spirals.obs_times.shape == (n, obs)
    assert spirals.truth.shape == spirals.noisy.shape == (n, 2 * window, 2)
    assert spirals.observed.shape == (n, window) and spirals.observed.dtype == torch.bool
    assert spirals.clockwise.shape == (n,) and spirals.clockwise.dtype == torch.bool
    assert spirals.window == window and len(spirals) == n


def test_the_paper_sizes_are_the_default() -> None:
    spirals = make_spirals()
    assert len(spirals) == 1000 and spirals.observations.shape[1] == 100 and spirals.window == 100


def test_half_of_the_spirals_turn_each_way_in_each_split(spirals) -> None:
    train, test = split_spirals(spirals, 10)
    for part in (spirals, train, test):
        assert int(part.clockwise.sum()) * 2 == len(part)


@pytest.mark.parametrize("curve", CURVES)
def test_directions_of_rotation_and_outward_winding(curve: str) -> None:
    """Around each spiral's centre the angular momentum x * dy - y * dx is negative along clockwise spirals and
    positive along the others, and the distance from the centre grows: every spiral winds outwards."""
    spirals = make_spirals(**SMALL, curve=curve)
    points = spirals.truth - spiral_centres(spirals.clockwise, curve)[:, None]
    step = points[:, 1:] - points[:, :-1]
    momentum = points[:, :-1, 0] * step[..., 1] - points[:, :-1, 1] * step[..., 0]
    assert bool((momentum[spirals.clockwise] < 0).all()) and bool((momentum[~spirals.clockwise] > 0).all())
    assert bool((points.norm(dim=-1).diff(dim=1) > 0).all())


def test_the_example_curves_keep_the_directions_apart_and_the_mirrored_ones_share_the_plane() -> None:
    """``torchdiffeq_example``: counter-clockwise spirals lie right of x = 0, clockwise ones left of it (at most 1%
    of the points across); ``mirrored``: both directions cover the same disc around the origin."""
    example = make_spirals(**SMALL, curve="torchdiffeq_example")
    x, clockwise = example.truth[..., 0], example.clockwise
    assert float((x[~clockwise] <= 0).float().mean()) <= 0.01 and float((x[clockwise] >= 0).float().mean()) <= 0.01
    mirrored = make_spirals(**SMALL, curve="mirrored")
    x, clockwise = mirrored.truth[..., 0], mirrored.clockwise
    for side in (x[clockwise], x[~clockwise]):
        assert 0.3 < float((side > 0).float().mean()) < 0.7


def test_the_mirrored_curves_are_the_default_and_a_spiral_mirrors_the_other_direction() -> None:
    """A clockwise spiral is the mirror image (x -> -x) of the counter-clockwise one through the same angles."""
    spirals = make_spirals(**SMALL)
    assert torch.equal(spirals.truth, make_spirals(**SMALL, curve="mirrored").truth)
    theta = torch.linspace(2.0, 9.0, 50)
    counter = spiral_points(theta, torch.tensor(False), growth=0.3)
    clockwise = spiral_points(theta, torch.tensor(True), growth=0.3)
    torch.testing.assert_close(clockwise, counter * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(counter.norm(dim=-1), 0.3 * theta)


def test_the_example_curves_follow_the_example_formulas() -> None:
    """Counter-clockwise r = b theta around (5, 0); clockwise r = 50 b / phi, phi = 6 pi + 1 - theta, around (-5, 0)."""
    theta = torch.tensor([1.0, 10.0, 6 * math.pi])
    counter = spiral_points(theta, torch.tensor(False), growth=0.3, curve="torchdiffeq_example")
    clockwise = spiral_points(theta, torch.tensor(True), growth=0.3, curve="torchdiffeq_example")
    torch.testing.assert_close((counter - torch.tensor([5.0, 0.0])).norm(dim=-1), 0.3 * theta)
    torch.testing.assert_close((clockwise + torch.tensor([5.0, 0.0])).norm(dim=-1), 15 / (6 * math.pi + 1 - theta))


def test_each_spiral_starts_at_its_own_point(spirals) -> None:
    starts = spirals.truth[:, 0]
    assert torch.cdist(starts, starts).add(torch.eye(len(starts))).min() > 0


def test_observation_times_are_distinct_grid_times_within_the_observation_window(spirals) -> None:
    window = spirals.window
    grid = spirals.times
    assert grid[0] == 0 and bool((grid.diff() > 0).all())
    times = spirals.obs_times
    assert bool((times.diff(dim=1) > 0).all()), "times must be increasing, hence drawn without replacement"
    assert bool((times >= 0).all()) and bool((times <= grid[window - 1]).all())
    assert bool(torch.isin(times, grid[:window]).all())
    assert len({tuple(row.tolist()) for row in times}) > 1, "each spiral should have its own times"
    index = torch.searchsorted(grid, times)
    assert torch.equal(spirals.obs_truth, spirals.truth.gather(1, index[..., None].expand(-1, -1, 2)))


def test_all_window_times_are_kept_when_n_obs_is_the_window() -> None:
    spirals = make_spirals(**{**SMALL, "n_obs": SMALL["window"]})
    assert torch.equal(spirals.obs_times, spirals.times[: spirals.window].expand(len(spirals), -1))
    assert bool(spirals.observed.all())


def test_the_observations_are_the_noisy_series_at_the_observed_times(spirals) -> None:
    index = torch.searchsorted(spirals.times, spirals.obs_times)
    assert torch.equal(spirals.observations, spirals.noisy.gather(1, index[..., None].expand(-1, -1, 2)))
    mask = torch.zeros_like(spirals.observed).scatter_(1, index, True)
    assert torch.equal(spirals.observed, mask) and bool((spirals.observed.sum(dim=1) == SMALL["n_obs"]).all())


def test_noise_level() -> None:
    spirals = make_spirals(**{**SMALL, "n_spirals": 200, "noise": 0.3})
    assert float((spirals.noisy - spirals.truth).std()) == pytest.approx(0.3, rel=0.05)
    assert float((spirals.observations - spirals.obs_truth).std()) == pytest.approx(0.3, rel=0.05)
    clean = make_spirals(**{**SMALL, "noise": 0.0})
    assert torch.equal(clean.observations, clean.obs_truth) and torch.equal(clean.noisy, clean.truth)


@pytest.mark.parametrize("curve", CURVES)
def test_the_test_range_keeps_extrapolation_within_the_radii_training_windows_cover(curve: str) -> None:
    """``observed``: no test spiral's extrapolation goes farther from its centre than a training observation window
    can reach (it ends at grid index grid_points - window - 1); ``same``: the latest-starting test spirals do."""
    settings = {**SMALL, "n_spirals": 400, "curve": curve, "test_size": 100}
    window, grid_points = SMALL["window"], SMALL["grid_points"]
    theta_end = 6 * math.pi
    last_seen = torch.tensor((grid_points - window - 1) * theta_end / (grid_points - 1))
    for test_range, beyond in (("observed", False), ("same", True)):
        train, test = split_spirals(make_spirals(**settings, test_range=test_range), 100)
        for direction in (False, True):
            centre = spiral_centres(torch.tensor(direction), curve)
            bound = float((spiral_points(last_seen, torch.tensor(direction), 0.3, curve) - centre).norm())
            seen = (train.truth[train.clockwise == direction, :window] - centre).norm(dim=-1).max()
            reach = (test.truth[test.clockwise == direction, window:] - centre).norm(dim=-1).max()
            assert float(seen) <= bound * (1 + 1e-6) and float(seen) > 0.95 * bound
            assert (float(reach) > bound * (1 + 1e-6)) == beyond, (test_range, direction)


def test_the_test_range_moves_only_the_test_spirals() -> None:
    """The training split is the same tensor for tensor, so a model trained under one test range is the model
    trained under the other (node-report table2 --retest relies on this)."""
    same, observed = (split_spirals(make_spirals(**SMALL, test_size=10, test_range=choice), 10) for choice in TEST_RANGES)
    for name in ("observations", "obs_times", "truth", "noisy", "clockwise"):
        assert torch.equal(getattr(same[0], name), getattr(observed[0], name)), name
    assert not torch.equal(same[1].truth, observed[1].truth)


def test_same_seed_same_spirals_other_seed_other_spirals(spirals) -> None:
    again = make_spirals(**SMALL)
    other = make_spirals(**{**SMALL, "seed": 4})
    assert torch.equal(spirals.observations, again.observations) and torch.equal(spirals.obs_times, again.obs_times)
    assert not torch.equal(spirals.observations, other.observations)
    assert not torch.equal(spirals.obs_times, other.obs_times)


def test_dataset_items_and_slices(spirals) -> None:
    dataset = SpiralDataset(spirals)
    item = dataset[5]
    assert torch.equal(item["observations"], spirals.observations[5]) and torch.equal(dataset.times, spirals.times)
    batch = next(iter(DataLoader(dataset, batch_size=8)))
    assert batch["obs_times"].shape == (8, SMALL["n_obs"])
    assert dataset[:3]["truth"].shape == (3, 2 * SMALL["window"], 2)


def test_loaders_split_and_shuffle_with_the_generator() -> None:
    data = {**SMALL, "turns": 3.0, "growth": 0.3, "curve": "mirrored", "test_range": "same"}
    data.update(test_size=10, batch_size=6, test_batch_size=10)
    train, test = spiral_loaders(data, torch.Generator().manual_seed(0))
    assert len(train.dataset) == 30 and len(test.dataset) == 10
    first = next(iter(train))["observations"]
    again = next(iter(spiral_loaders(data, torch.Generator().manual_seed(0))[0]))["observations"]
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"n_obs": 51}, "n_obs=51 is more than window=50: each spiral keeps n_obs of the window's grid times, e.g. "
         "n_obs=50."),
        ({"n_obs": 0}, "n_obs=0 must be at least 1"),
        ({"noise": -0.1}, "noise=-0.1 must be a finite standard deviation >= 0, e.g. noise=0.1."),
        ({"grid_points": 100}, "grid_points=100 is too few for window=50"),
        ({"window": 0}, "window=0 must be a positive number of grid times"),
        ({"n_spirals": 1}, "n_spirals=1 must be at least 2"),
        ({"test_size": 40}, "test_size=40 must be below n_spirals=40"),
        ({"curve": "round"}, "curve='round' is not a choice of curve: use one of mirrored, torchdiffeq_example."),
        ({"test_range": "all"}, "test_range='all' is not a choice of test_range"),
        ({"test_range": "observed", "grid_points": 199}, "test_range=observed needs grid_points >= 200"),
    ],
)  # fmt: skip
def test_bad_settings_are_value_errors_naming_the_argument(change: dict, phrase: str) -> None:
    with pytest.raises(ValueError, match=re.escape(phrase)) as raised:
        make_spirals(**{**SMALL, **change})
    assert not isinstance(raised.value, ConfigError)


def test_bad_test_size_names_the_argument(spirals) -> None:
    with pytest.raises(ValueError, match=r"test_size=40 must be at least 1 and below n_spirals=40"):
        split_spirals(spirals, 40)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n_obs": 51}, "data.n_obs=51 is more than data.window=50: each spiral keeps n_obs of the window's grid "
         "times, e.g. data.n_obs=50."),
        ({"test_range": "observed", "grid_points": 199}, "data.test_range=observed needs data.grid_points >= 200 "
         "(four windows of data.window=50): test spirals then start one window earlier than training ones can; got "
         "data.grid_points=199. Raise it, e.g. data.grid_points=200, or use data.test_range=same."),
    ],
)  # fmt: skip
def test_the_boundary_names_the_config_keys_once(change: dict, message: str) -> None:
    data = {**SMALL, "curve": "mirrored", "test_size": 10, "test_range": "same", **change}
    with pytest.raises(ConfigError) as raised, config_arguments("data", data):
        make_spirals(**data)
    assert str(raised.value) == message
    assert isinstance(raised.value.__cause__, ValueError) and "data." not in str(raised.value.__cause__)


def test_the_boundary_passes_run_errors_and_other_exceptions_unchanged() -> None:
    for error in (DataFormatError("data.root=x: a damaged file"), TypeError("n_obs=1")):
        with pytest.raises(type(error)) as raised, config_arguments("data", {"n_obs": 1, "root": "x"}):
            raise error
        assert raised.value is error
