"""2-D toy data sets for maximum likelihood: samplers, and each one's exact log-density where it has one.

- ``TwoMoons``, ``TwoCircles``: scikit-learn's ``make_moons`` and ``make_circles`` shapes, written here without
  scikit-learn: the paper's Figure 5 (centred and scaled to a standard normal's spread) and, with FFJORD's
  settings, two of its toys.
- ``EightGaussians``, ``Checkerboard``, ``Rings``, ``Pinwheel``: the other toys of FFJORD (Grathwohl et al., ICLR
  2019, Figure 2), defined as in FFJORD's ``lib/toy_data.py`` (written anew here from those definitions).

A data set is called as ``sampler(count, generator) -> (count, 2)`` samples, drawn from the generator alone. Where
the density is known, ``log_prob(x)`` gives it, so that a flow's test NLL can be set beside the data's entropy
H = E[-log p(x)] (and KL(p || q) = NLL - H >= 0 measured on the same samples):

- eight Gaussians: a mixture with closed-form density;
- checkerboard: uniform on eight squares, log p = -log(area) = -log 32 on its support;
- rings and circles: each ring is a uniform angle plus isotropic Gaussian noise, whose density is closed form with
  the modified Bessel function I0: p(x) = exp(-(|x|^2 + r^2) / 2 s^2) I0(|x| r / s^2) / (2 pi s^2);
- moons: each half circle's density is a 1-D integral over its angle, computed by Gauss-Legendre quadrature (32
  panels of 8 nodes, each panel under 2 noise stds wide for the paper's moons and 1 for FFJORD's: accurate far
  below the Monte-Carlo error of any entropy estimate here);
- pinwheel: unknown (``density_unknown`` says why).

Without noise (``noise = 0``) the moons and circles lie on curves and have no density on the plane.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch


class Toy:
    """A 2-D data distribution: ``toy(count, generator)`` draws samples; ``log_prob(x)`` is its log-density when
    ``density_unknown`` is None (else that says why there is none)."""

    density_unknown: str | None = None

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    @property
    def has_density(self) -> bool:
        return self.density_unknown is None

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) (N,) at the points ``x`` (N, 2), computed in float64 and returned in ``x``'s dtype."""
        if not self.has_density:
            raise ValueError(f"{type(self).__name__} has no known density: {self.density_unknown}")
        chunks = [self._log_prob(chunk.to(torch.float64)) for chunk in x.split(4096)]
        return torch.cat(chunks).to(x.dtype)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _check_noise(noise: float, name: str) -> None:
    if not noise >= 0:
        raise ValueError(f"noise={noise} must be >= 0: the standard deviation of the Gaussian noise of {name}.")


def gaussian_mixture_log_prob(x: torch.Tensor, centres: torch.Tensor, log_weights: torch.Tensor,
                              std: float) -> torch.Tensor:
    """log sum_m w_m N(x; centre_m, std^2 I) for points ``x`` (N, 2), ``centres`` (M, 2), ``log_weights`` (M,)."""
    squared = (x.pow(2).sum(1, keepdim=True) + centres.pow(2).sum(1) - 2 * x @ centres.t()).clamp_min(0)
    return torch.logsumexp(log_weights - squared / (2 * std**2), dim=1) - math.log(2 * math.pi * std**2)


class TwoMoons(Toy):
    """Two interleaved half circles (``make_moons``): the upper (cos a, sin a) and the lower (1 - cos a,
    0.5 - sin a), a uniform on [0, pi], each half the samples; minus ``centre``, times ``scale``, plus Gaussian noise
    of std ``noise * scale``. ``centre`` (0.5, 0.25) is the moons' centre of mass (the paper's Figure 5); FFJORD's
    moons are ``noise=0.1, scale=2, centre=(0.5, 0.1)``."""

    def __init__(self, noise: float = 0.05, scale: float = 1.5, centre: Sequence[float] = (0.5, 0.25)) -> None:
        _check_noise(noise, "the moons")
        if len(centre) != 2:
            raise ValueError(f"centre={list(centre)} must be a point of the plane, two numbers, e.g. [0.5, 0.25].")
        self.noise, self.scale, self.centre = noise, scale, (float(centre[0]), float(centre[1]))
        self.density_unknown = None if noise > 0 else "without noise the moons are curves, with no density"

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        angle = math.pi * torch.rand(count, generator=generator)
        upper = torch.rand(count, generator=generator) < 0.5
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle)) - self.centre[0]
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle)) - self.centre[1]
        points = torch.stack([x, y], dim=1) * self.scale
        return points + self.noise * self.scale * torch.randn(count, 2, generator=generator)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        angle, log_weights = _angle_quadrature(math.pi)
        upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
        centre = torch.tensor(self.centre, dtype=torch.float64)
        curve = (torch.cat([upper, lower]) - centre) * self.scale
        weights = torch.cat([log_weights, log_weights]) - math.log(2)
        return gaussian_mixture_log_prob(x, curve.to(x.device), weights.to(x.device), self.noise * self.scale)


@lru_cache(maxsize=None)
def _angle_quadrature(length: float, panels: int = 32, order: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss-Legendre nodes on [0, ``length``] and the log of their weights divided by ``length`` (the
    uniform distribution's): sum_m w_m g(a_m) = E[g(a)] for a uniform on [0, length]."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    starts = np.arange(panels) * length / panels
    angle = (starts[:, None] + (nodes[None, :] + 1) * length / (2 * panels)).reshape(-1)
    weight = np.tile(weights / (2 * panels), panels)
    return torch.from_numpy(angle), torch.from_numpy(np.log(weight))


class Rings(Toy):
    """Concentric rings of the given ``radii``, each an equal share of the samples at a uniform angle, plus
    isotropic Gaussian noise of std ``noise``. FFJORD's rings: radii 0.75, 1.5, 2.25, 3 and noise 0.08."""

    def __init__(self, radii: Sequence[float] = (0.75, 1.5, 2.25, 3.0), noise: float = 0.08) -> None:
        _check_noise(noise, "the rings")
        if not radii or any(not r > 0 for r in radii):
            raise ValueError(f"radii={list(radii)} must be a non-empty list of positive radii, e.g. [1.5, 3.0].")
        self.radii, self.std = [float(r) for r in radii], float(noise)
        self.density_unknown = None if noise > 0 else "without noise the rings are circles, with no density"

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        angle = 2 * math.pi * torch.rand(count, generator=generator)
        radius = torch.tensor(self.radii)[torch.randint(len(self.radii), (count,), generator=generator)]
        points = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * radius.unsqueeze(1)
        return points + self.std * torch.randn(count, 2, generator=generator)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        distance = x.norm(dim=1, keepdim=True)
        radii = torch.tensor(self.radii, dtype=x.dtype, device=x.device)
        variance = self.std**2
        # log I0(z) = log i0e(z) + z: the ring's density, stable however far from the ring
        per_ring = (
            -(distance - radii).pow(2) / (2 * variance)
            + torch.special.i0e(distance * radii / variance).log()
            - math.log(2 * math.pi * variance)
        )
        return torch.logsumexp(per_ring, dim=1) - math.log(len(self.radii))


class TwoCircles(Rings):
    """Two concentric circles of radii ``scale`` and ``factor * scale`` (``make_circles``), equal shares, plus
    Gaussian noise of std ``noise * scale``. FFJORD's circles are ``noise=0.08, factor=0.5, scale=3``."""

    def __init__(self, noise: float = 0.05, factor: float = 0.5, scale: float = 2.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor={factor} must lie in (0, 1): the inner circle's radius relative to the outer.")
        super().__init__(radii=(scale, factor * scale), noise=noise * scale)
        self.noise, self.factor, self.scale = noise, factor, scale

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        angle = 2 * math.pi * torch.rand(count, generator=generator)
        radius = torch.where(torch.rand(count, generator=generator) < 0.5, 1.0, self.factor)
        points = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1) * radius.unsqueeze(1) * self.scale
        return points + self.noise * self.scale * torch.randn(count, 2, generator=generator)


class EightGaussians(Toy):
    """FFJORD's eight Gaussians: centres ``scale`` times the unit vectors at multiples of 45 degrees, std ``std``,
    every sample then divided by 1.414 (FFJORD's constant, not sqrt 2): in the end, centres at radius 2.83 and
    std 0.354, modes 6 stds apart."""

    SHRINK = 1.414

    def __init__(self, scale: float = 4.0, std: float = 0.5) -> None:
        if not (scale > 0 and std > 0):
            raise ValueError(f"scale={scale} and std={std} must be positive: the centres' radius and the modes' std.")
        self.scale, self.std = scale, std
        angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
        self.centres = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * scale

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        mode = torch.randint(8, (count,), generator=generator)
        points = self.centres.to(torch.float32)[mode] + self.std * torch.randn(count, 2, generator=generator)
        return points / self.SHRINK

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        centres = (self.centres / self.SHRINK).to(x.device)
        log_weights = torch.full((8,), -math.log(8), dtype=x.dtype, device=x.device)
        return gaussian_mixture_log_prob(x, centres, log_weights, self.std / self.SHRINK)


class Checkerboard(Toy):
    """FFJORD's checkerboard: uniform on the eight 2 x 2 squares of [-4, 4]^2 whose corners' floors (in units of
    2) have an even sum; log p = -log 32 on them and -inf elsewhere."""

    SIDE = 2.0

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        x1 = torch.rand(count, generator=generator) * 4 - 2
        x2 = torch.rand(count, generator=generator) - torch.randint(2, (count,), generator=generator) * 2
        x2 = x2 + torch.floor(x1) % 2
        return torch.stack([x1, x2], dim=1) * self.SIDE

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        cells = torch.floor(x / self.SIDE)
        inside = ((cells >= -2) & (cells <= 1)).all(dim=1) & (cells.sum(dim=1) % 2 == 0)
        area = 8 * self.SIDE**2
        return torch.full_like(x[:, 0], -math.log(area)).masked_fill(~inside, -math.inf)


class Pinwheel(Toy):
    """FFJORD's pinwheel: ``arms`` arms; a sample of arm k is f = (1 + radial_std n1, tangential_std n2), turned by
    -(2 pi k / arms + rate exp(f_1)) and doubled (FFJORD's rotation matrices, applied as written there)."""

    density_unknown = (
        "a point's density sums over every root of a transcendental equation per arm (the turn depends on the "
        "radial coordinate through exp), and it has no closed form"
    )

    def __init__(self, arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1, rate: float = 0.25) -> None:
        if arms < 1 or not (radial_std > 0 and tangential_std > 0):
            raise ValueError(f"arms={arms}, radial_std={radial_std} and tangential_std={tangential_std} must be "
                             "positive (FFJORD: 5, 0.3, 0.1).")  # fmt: skip
        self.arms, self.radial_std, self.tangential_std, self.rate = arms, radial_std, tangential_std, rate

    def __call__(self, count: int, generator: torch.Generator) -> torch.Tensor:
        arm = torch.randint(self.arms, (count,), generator=generator)
        features = torch.randn(count, 2, generator=generator) * torch.tensor([self.radial_std, self.tangential_std])
        features[:, 0] += 1
        turn = 2 * math.pi * arm / self.arms + self.rate * torch.exp(features[:, 0])
        cos, sin = torch.cos(turn), torch.sin(turn)
        x = features[:, 0] * cos + features[:, 1] * sin
        y = -features[:, 0] * sin + features[:, 1] * cos
        return 2 * torch.stack([x, y], dim=1)


DATASETS: dict[str, Callable[..., Toy]] = {
    "two_moons": TwoMoons,
    "two_circles": TwoCircles,
    "eight_gaussians": EightGaussians,
    "checkerboard": Checkerboard,
    "rings": Rings,
    "pinwheel": Pinwheel,
}


def dataset_sampler(name: str, **settings: object) -> Toy:
    """The toy data set ``name`` (one of ``DATASETS``) with its settings."""
    if name not in DATASETS:
        raise ValueError(f"{name!r} is not a 2-D data set. Choose one of: {', '.join(DATASETS)}.")
    return DATASETS[name](**settings)

