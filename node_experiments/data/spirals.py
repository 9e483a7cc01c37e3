"""Noisy two-dimensional spirals observed at irregular times (Chen et al. 2018, section 5.1, Table 2).

What the paper states: 1000 two-dimensional spirals, half clockwise and half counter-clockwise, each starting at
a different point, sampled at 100 equally spaced times, with Gaussian observation noise; irregular versions keep
n = 30, 50 or 100 points of each trajectory, drawn without replacement; the predictive RMSE is measured on the 100
time points that follow the observed ones. What it leaves open (the curves, their range, the time grid, the
noise level, the test split) is a setting here (``configs/data/spirals.yaml`` says which default is whose):

- ``curve`` picks the two curves, both wound outwards at one radian per unit of time, over ``turns`` full turns
  of the angle ``theta`` sampled at ``grid_points`` equally spaced times:

  - ``mirrored`` (the default): one Archimedean spiral, counter-clockwise ``(r cos theta, r sin theta)`` with
    ``r = growth * theta``, and its mirror image ``(-r cos theta, r sin theta)``, which turns clockwise. The two
    types of spiral then differ in their direction alone, the one difference the paper names;
  - ``torchdiffeq_example``: the pair of torchdiffeq's ``examples/latent_ode.py`` (contributed after the paper;
    its author wrote that the paper does not give the true dynamics). Counter-clockwise spirals follow
    ``r = growth * theta`` around (5, 0); clockwise ones the angle ``phi = theta_end + 1 - theta`` (decreasing)
    with radius ``r = 50 * growth / phi`` around (-5, 0): a hyperbolic spiral whose radius grows from 0.8 to 15
    over the grid (``growth = 0.3``), 5 to 15 over its last 100 points of 1000;
- a spiral starts at an angle drawn uniformly (not on the grid, so that no two start at the same point) between
  grid index ``window``, skipping the first turn's tight centre, and the last index that leaves a whole
  observation and an extrapolation window on the curve;
- ``test_range`` says where the test spirals start: ``same`` (the default) draws them like the training spirals,
  so the extrapolation windows of the latest ones run past the last grid point (hence the largest radius) that
  any training observation window reaches; ``observed`` draws them from a range one window shorter, so that every
  extrapolation window stays on the part of the curve that training observation windows cover;
- a spiral's times are the grid's spacing ``dt`` counted from its start, t = 0: times ``k * dt`` for
  k < ``window`` form the observation window, the next ``window`` ones the extrapolation window.

Each spiral is a noisy series at all ``2 * window`` times: the true points plus Gaussian noise of std ``noise``.
It keeps ``n_obs`` of the ``window`` observation times, drawn without replacement and sorted, so every spiral has
its own irregular times; its observations are the noisy series there. Directions alternate with the index (even:
counter-clockwise), so the data set, and both splits when their sizes are even, hold as many spirals of each
direction. The last ``test_size`` spirals are the test split. Everything is drawn from one ``torch.Generator``
seeded with ``seed``: the same settings give the same spirals.

A setting that cannot work is a plain ``ValueError`` naming the argument as ``name=value`` (``check_spiral_arguments``
states every rule once); the arguments are the ``data`` group's keys, and the validation boundary
(``node_experiments.validation.config_arguments``) turns the message into the config error naming ``data.<name>``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spirals:
    """A set of spirals as tensors; ``N`` spirals, ``n`` observations each, ``W`` grid times per window.

    Attributes:
        times: ``(2W,)`` the grid times shared by all spirals: the observation window, then the extrapolation one.
        observations: ``(N, n, 2)`` the noisy observations, at ``obs_times``.
        obs_times: ``(N, n)`` each spiral's own observation times, increasing, a subset of ``times[:W]``.
        obs_truth: ``(N, n, 2)`` the noise-free points at ``obs_times``.
        truth: ``(N, 2W, 2)`` the noise-free points at every grid time.
        noisy: ``(N, 2W, 2)`` the noisy series at every grid time (``observations`` are its values at
            ``obs_times``; the rest is what a measurement there would have given).
        observed: ``(N, W)`` bool, which observation-window times each spiral observed.
        clockwise: ``(N,)`` bool, the direction of rotation.
        following: ``(N, n, 2)`` the noisy series at the observation times moved one window on (``obs_times``
            plus ``times[W]``): what the spiral's observations of the following window would be, read by the
            forecasting objective (its targets) and by the latent ODE's consistency measure (the encoder's code
            for the following window).
    """

    times: torch.Tensor
    observations: torch.Tensor
    obs_times: torch.Tensor
    obs_truth: torch.Tensor
    truth: torch.Tensor
    noisy: torch.Tensor
    observed: torch.Tensor
    clockwise: torch.Tensor
    following: torch.Tensor

    @property
    def window(self) -> int:
        """Grid times per window (observation and extrapolation alike)."""
        return self.times.numel() // 2

    def __len__(self) -> int:
        return self.observations.shape[0]

    def subset(self, index: slice | torch.Tensor) -> "Spirals":
        """The spirals selected by ``index`` (the grid times are shared)."""
        return Spirals(self.times, *(getattr(self, f.name)[index] for f in fields(self)[1:]))


CURVES = ("mirrored", "torchdiffeq_example")
TEST_RANGES = ("same", "observed")
# The centres of the example's counter-clockwise and clockwise spirals: (+5, 0) and (-5, 0).
EXAMPLE_OFFSET = 5.0


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not a choice of {name}: use one of {', '.join(choices)}.")


def _polar(radius: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)


def spiral_points(
    theta: torch.Tensor, clockwise: torch.Tensor, growth: float, curve: str = "mirrored", theta_end: float = 6 * math.pi
) -> torch.Tensor:
    """Points ``(..., 2)`` at angles ``theta`` of the ``curve`` pair (see the module docstring).

    ``clockwise`` (broadcast against ``theta``) picks the clockwise curve of the pair; ``theta_end`` is the grid's
    last angle, from which the example's clockwise curve counts its angle backwards.
    """
    _check_choice("curve", curve, CURVES)
    counter_clockwise = _polar(growth * theta, theta)
    if curve == "mirrored":
        mirror = counter_clockwise.new_tensor([-1.0, 1.0])
        return torch.where(clockwise[..., None], counter_clockwise * mirror, counter_clockwise)
    phi = theta_end + 1 - theta
    offset = theta.new_tensor([EXAMPLE_OFFSET, 0.0])
    return torch.where(clockwise[..., None], _polar(50 * growth / phi, phi) - offset, counter_clockwise + offset)


def spiral_centres(clockwise: torch.Tensor, curve: str = "mirrored") -> torch.Tensor:
    """The centre ``(..., 2)`` each spiral winds around: the origin for ``mirrored``, (+-5, 0) for the example."""
    _check_choice("curve", curve, CURVES)
    x = torch.where(clockwise, -EXAMPLE_OFFSET, EXAMPLE_OFFSET) if curve != "mirrored" else torch.zeros(clockwise.shape)
    return torch.stack([x, torch.zeros_like(x)], dim=-1)


def make_spirals(
    *,
    n_spirals: int = 1000,
    n_obs: int = 100,
    noise: float = 0.1,
    window: int = 100,
    grid_points: int = 1000,
    turns: float = 3.0,
    growth: float = 0.3,
    curve: str = "mirrored",
    test_size: int = 0,
    test_range: str = "same",
    seed: int = 0,
) -> Spirals:
    """Generate the spirals described in the module docstring (defaults: the paper's and the example's sizes).

    ``test_size`` and ``test_range`` place the starts of the last ``test_size`` spirals (the test split of
    ``split_spirals``); with ``test_range="same"`` they are drawn like all the others.
    """
    check_spiral_arguments(n_spirals=n_spirals, n_obs=n_obs, noise=noise, window=window, grid_points=grid_points,
                           curve=curve, test_size=test_size, test_range=test_range)  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    dt = 2 * math.pi * turns / (grid_points - 1)
    offsets = torch.arange(2 * window)
    # Start indices, uniform over [window, last]: last = grid_points - 2 * window leaves both windows on the grid;
    # a test spiral kept within the observed range stops one window earlier.
    last = torch.full((n_spirals, 1), float(grid_points - 2 * window))
    if test_range == "observed" and test_size > 0:
        last[-test_size:] -= window
    first = window + (last - window) * torch.rand(n_spirals, 1, generator=generator)
    clockwise = torch.arange(n_spirals) % 2 == 1
    theta_end = 2 * math.pi * turns
    truth = spiral_points((first + offsets) * dt, clockwise[:, None], growth, curve, theta_end)  # (N, 2W, 2)

    # n_obs of the window's grid indices per spiral, without replacement, sorted: the k smallest of random keys.
    keys = torch.rand(n_spirals, window, generator=generator)
    obs_index = keys.argsort(dim=1)[:, :n_obs].sort(dim=1).values
    noisy = truth + noise * torch.randn(truth.shape, generator=generator)

    def at_observations(series: torch.Tensor, shift: int = 0) -> torch.Tensor:
        return series.gather(1, (obs_index + shift)[..., None].expand(-1, -1, 2))

    return Spirals(
        times=offsets * dt,
        observations=at_observations(noisy),
        obs_times=obs_index * dt,
        obs_truth=at_observations(truth),
        truth=truth,
        noisy=noisy,
        observed=torch.zeros(n_spirals, window, dtype=torch.bool).scatter_(1, obs_index, True),
        clockwise=clockwise,
        following=at_observations(noisy, shift=window),
    )


def check_spiral_arguments(
    *, n_spirals: int, n_obs: int, noise: float, window: int, grid_points: int, curve: str, test_size: int,
    test_range: str
) -> None:
    """Raise ``ValueError`` naming the argument (``name=value``), what is wrong and a value that works, for
    settings of ``make_spirals`` that cannot work alone or together."""
    if window < 1:
        raise ValueError(f"window={window} must be a positive number of grid times, e.g. window=100 (the paper's).")
    if n_obs < 1:
        raise ValueError(f"n_obs={n_obs} must be at least 1: each spiral keeps n_obs of the window's grid times, "
                         "e.g. n_obs=100 (the paper's Table 2 uses 30, 50 and 100).")  # fmt: skip
    if n_obs > window:
        raise ValueError(f"n_obs={n_obs} is more than window={window}: each spiral keeps n_obs of the window's grid "
                         f"times, e.g. n_obs={window}.")  # fmt: skip
    if grid_points < 3 * window:
        raise ValueError(
            f"grid_points={grid_points} is too few for window={window}: a spiral skips the first window of the curve "
            f"and needs two windows after its start, e.g. grid_points={3 * window}."
        )
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise={noise!r} must be a finite standard deviation >= 0, e.g. noise=0.1.")
    if n_spirals < 2:
        raise ValueError(f"n_spirals={n_spirals} must be at least 2 (one for training, one for testing), "
                         "e.g. n_spirals=1000.")  # fmt: skip
    if not 0 <= test_size < n_spirals:
        raise ValueError(f"test_size={test_size} must be below n_spirals={n_spirals} (and not negative) so that "
                         "both splits hold spirals, e.g. test_size=200 of n_spirals=1000.")  # fmt: skip
    _check_choice("curve", curve, CURVES)
    _check_choice("test_range", test_range, TEST_RANGES)
    if test_range == "observed" and grid_points < 4 * window:
        raise ValueError(
            f"test_range=observed needs grid_points >= {4 * window} (four windows of window={window}): test spirals "
            f"then start one window earlier than training ones can; got grid_points={grid_points}. Raise it, e.g. "
            f"grid_points={4 * window}, or use test_range=same."
        )


class SpiralDataset(Dataset):
    """Spirals as a torch ``Dataset`` of dicts (``observations``, ``obs_times``, ``obs_truth``, ``truth``, ``noisy``,
    ``observed``, ``clockwise``); the shared grid times are the attribute ``times``."""

    def __init__(self, spirals: Spirals) -> None:
        self.spirals = spirals
        self.times = spirals.times

    def __len__(self) -> int:
        return len(self.spirals)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self.spirals, f.name)[index] for f in fields(self.spirals)[1:]}


def split_spirals(spirals: Spirals, test_size: int) -> tuple[Spirals, Spirals]:
    """The fixed train/test split: the last ``test_size`` spirals are the test set."""
    if not 1 <= test_size < len(spirals):
        raise ValueError(
            f"test_size={test_size} must be at least 1 and below n_spirals={len(spirals)}, so that both splits hold "
            "spirals, e.g. test_size=200 of n_spirals=1000."
        )
    cut = len(spirals) - test_size
    return spirals.subset(slice(0, cut)), spirals.subset(slice(cut, None))


def spiral_splits(data: Mapping[str, Any], test_range: str | None = None) -> tuple[Spirals, Spirals]:
    """The training and test spirals of a ``data`` config group (see configs/data/spirals.yaml).

    ``test_range`` draws the test spirals' starts from another range than ``data.test_range`` says; the training
    spirals stay the same, tensor for tensor (only the test split's starts depend on it).
    """
    spirals = make_spirals(
        n_spirals=data["n_spirals"],
        n_obs=data["n_obs"],
        noise=data["noise"],
        window=data["window"],
        grid_points=data["grid_points"],
        turns=data["turns"],
        growth=data["growth"],
        curve=data["curve"],
        test_size=data["test_size"],
        test_range=test_range or data["test_range"],
        seed=data["seed"],
    )
    return split_spirals(spirals, data["test_size"])


def spiral_loaders(data: Mapping[str, Any], generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    """The training and test loaders described by a ``data`` config group (see configs/data/spirals.yaml).

    ``generator`` drives the training loader's shuffling (the trainer saves its state for resuming); the spirals
    themselves come from ``data.seed``.
    """
    train_set, test_set = spiral_splits(data)
    log.info(
        "Spirals (%s curves): %d training and %d test (starts: %s), %d of %d observation times each, noise std %g, "
        "seed %d.", data["curve"], len(train_set), len(test_set), data["test_range"], data["n_obs"], data["window"],
        data["noise"], data["seed"],
    )
    train_loader = DataLoader(
        SpiralDataset(train_set), batch_size=data["batch_size"], shuffle=True, drop_last=False, generator=generator
    )
    test_loader = DataLoader(SpiralDataset(test_set), batch_size=data["test_batch_size"], shuffle=False)
    return train_loader, test_loader
