"""The spiral data set of Table 2: shapes, directions, irregular times within the windows, noise, seeding."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from node_experiments.data.spirals import (
    CURVES,
    SpiralDataset,
    make_spirals,
    spiral_centres,
    spiral_loaders,
    split_spirals,
)
from node_experiments.errors import ConfigError

SMALL = dict(n_spirals=40, n_obs=30, window=50, grid_points=400, noise=0.1, seed=3)


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(**SMALL)


def test_shapes(spirals) -> None:
    n, obs, window = SMALL["n_spirals"], SMALL["n_obs"], SMALL["window"]
    assert spirals.times.shape == (2 * window,)
    assert spirals.observations.shape == spirals.obs_truth.shape == (n, obs, 2)
    assert spirals.obs_times.shape == (n, obs)
    assert spirals.truth.shape == (n, 2 * window, 2)
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


def test_the_authors_curves_keep_the_directions_apart_and_the_mirrored_ones_share_the_plane() -> None:
    """``authors``: counter-clockwise spirals lie right of x = 0, clockwise ones left of it (at most 1% of the
    points across); ``mirrored``: both directions cover the same disc around the origin."""
    authors = make_spirals(**SMALL, curve="authors")
    x, clockwise = authors.truth[..., 0], authors.clockwise
    assert float((x[~clockwise] <= 0).float().mean()) <= 0.01 and float((x[clockwise] >= 0).float().mean()) <= 0.01
    mirrored = make_spirals(**SMALL, curve="mirrored")
    x, clockwise = mirrored.truth[..., 0], mirrored.clockwise
    for side in (x[clockwise], x[~clockwise]):
        assert 0.3 < float((side > 0).float().mean()) < 0.7


def test_the_authors_curves_are_the_default() -> None:
    assert torch.equal(make_spirals(**SMALL).truth, make_spirals(**SMALL, curve="authors").truth)
    assert not torch.equal(make_spirals(**SMALL).truth, make_spirals(**SMALL, curve="mirrored").truth)


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


def test_noise_level() -> None:
    spirals = make_spirals(**{**SMALL, "n_spirals": 200, "noise": 0.3})
    assert float((spirals.observations - spirals.obs_truth).std()) == pytest.approx(0.3, rel=0.05)
    clean = make_spirals(**{**SMALL, "noise": 0.0})
    assert torch.equal(clean.observations, clean.obs_truth)


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
    data = {**SMALL, "turns": 3.0, "growth": 0.3, "curve": "authors"}
    data.update(test_size=10, batch_size=6, test_batch_size=10)
    train, test = spiral_loaders(data, torch.Generator().manual_seed(0))
    assert len(train.dataset) == 30 and len(test.dataset) == 10
    first = next(iter(train))["observations"]
    again = next(iter(spiral_loaders(data, torch.Generator().manual_seed(0))[0]))["observations"]
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"n_obs": 51}, "data.n_obs=51"),
        ({"n_obs": 0}, "data.n_obs=0"),
        ({"noise": -0.1}, "data.noise=-0.1"),
        ({"grid_points": 100}, "data.grid_points=100"),
        ({"window": 0}, "data.window=0"),
        ({"n_spirals": 1}, "data.n_spirals=1"),
        ({"curve": "round"}, "data.curve='round'"),
    ],
)
def test_bad_settings_name_the_key(change: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_spirals(**{**SMALL, **change})


def test_bad_test_size_names_the_key(spirals) -> None:
    with pytest.raises(ConfigError, match=r"data\.test_size=40"):
        split_spirals(spirals, 40)
