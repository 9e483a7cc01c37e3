"""2-D densities of the paper's section 4.1: unnormalised targets for density matching, and batches of samples.

- ``ENERGIES``: the energy functions U1..U4 of Rezende & Mohamed (2015, Table 1); the target density is
  p(z) proportional to exp(-U(z)). U2, U3 and U4 do not decay along z1 (exp(-U) has infinite mass on R^2; their
  paper shows the window [-4, 4]^2), so for those we add a soft wall beyond |z1| = 4,
  ``0.5 ((|z1| - 4)_+ / 0.4)^2``: inside the window the targets are exactly Rezende & Mohamed's, and the targets
  are normalisable, so that KL(q || p) is finite and the density-matching loss is bounded below. ``log_normaliser``
  computes log Z = log integral exp(-U) by quadrature on a fine grid, so a loss E_q[log q + U] can be reported as
  the true KL(q || p) = loss + log Z >= 0.
- ``standard_normal``: the base noise that density matching pushes through a flow (the data sets of maximum
  likelihood, Figure 5's two moons and circles and FFJORD's toys, are in ``toys.py``).
- ``SampledBatches``: a "loader" of fresh batches drawn from a sampler with the trainer's seeded generator, so
  that an "epoch" is a fixed number of iterations and a resumed run sees the same batches; ``fixed_batches``: a
  fixed evaluation set (a list of tensors, drawn once from its own seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache

import torch

Sampler = Callable[[int, torch.Generator], torch.Tensor]
WALL = 4.0  # |z1| beyond which the soft wall confines U2..U4
WALL_WIDTH = 0.4


def _w1(z: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _wall(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.relu(z[:, 0].abs() - WALL) / WALL_WIDTH) ** 2


def _neg_logsumexp(*exponents: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(torch.stack(exponents), dim=0)


def u1(z: torch.Tensor) -> torch.Tensor:
    """A ring of radius 2 with two lobes at z1 = +-2."""
    ring = 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2
    return ring + _neg_logsumexp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2, -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)


def u2(z: torch.Tensor) -> torch.Tensor:
    """A sine wave."""
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2 + _wall(z)


def u3(z: torch.Tensor) -> torch.Tensor:
    """Two sine waves that split around z1 = 1."""
    return _neg_logsumexp(
        -0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2, -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    ) + _wall(z)


def u4(z: torch.Tensor) -> torch.Tensor:
    """A sine wave and a step-shifted copy of it."""
    return _neg_logsumexp(
        -0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2, -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    ) + _wall(z)


ENERGIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}


def energy(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The energy function U called ``name`` (``U1``..``U4``), taking (N, 2) points to (N,) energies."""
    if name not in ENERGIES:
        raise ValueError(
            f"{name!r} is not a target density. Choose one of Rezende & Mohamed's energy functions: "
            f"{', '.join(ENERGIES)}."
        )
    return ENERGIES[name]


@lru_cache(maxsize=None)
def log_normaliser(name: str, half_width: float = 8.0, points: int = 1601) -> float:
    """log integral exp(-U) over R^2, by the trapezoidal rule on [-half_width, half_width]^2 in float64.

    Every target's mass lies well inside |z| < 6, so the window loses nothing measurable, and at 100 points per
    unit the smallest feature (width 0.35) is resolved.
    """
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    step = (axis[1] - axis[0]).item()
    log_values = -energy(name)(grid).reshape(points, points)
    weights = torch.ones(points, dtype=torch.float64)
    weights[0] = weights[-1] = 0.5
    log_weights = (weights[:, None] * weights[None, :]).log()
    return (torch.logsumexp((log_values + log_weights).reshape(-1), 0) + 2 * math.log(step)).item()


# ------------------------------------------------------------------------------------------------- data sets
def standard_normal(dim: int) -> Sampler:
    """Samples of N(0, I) in ``dim`` dimensions: the base density that density matching pushes through a flow."""

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(count, dim, generator=generator)

    return sample


# --------------------------------------------------------------------------------------------------- loaders
class SampledBatches:
    """``num_batches`` fresh batches of ``batch_size`` samples per pass, drawn with ``generator``.

    Stands in for a DataLoader where the data are a distribution rather than a data set: the trainer's epoch is
    ``num_batches`` iterations, and because the samples come from the trainer's seeded generator (whose state is
    saved in checkpoints), a resumed run draws the same batches.
    """

    def __init__(self, sampler: Sampler, batch_size: int, num_batches: int, generator: torch.Generator) -> None:
        if batch_size < 1 or num_batches < 1:
            raise ValueError(f"batch_size={batch_size} and num_batches={num_batches} must both be at least 1.")
        self.sampler, self.batch_size, self.num_batches, self.generator = sampler, batch_size, num_batches, generator

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self.num_batches):
            yield self.sampler(self.batch_size, self.generator)


def fixed_batches(sampler: Sampler, count: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """``count`` samples drawn once from ``seed``, in batches: the same evaluation set for every run and epoch."""
    if count < 1 or batch_size < 1:
        raise ValueError(f"count={count} and batch_size={batch_size} must both be at least 1.")
    samples = sampler(count, torch.Generator().manual_seed(seed))
    return list(samples.split(batch_size))
