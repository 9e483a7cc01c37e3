"""The prediction errors of Table 2, under each definition a reader of the paper could take for its RMSE.

The paper reports "predictive RMSE on 100 time points extending beyond those that were used for training"
without saying against what, or how the two coordinates enter. So every variant is measured, and named by what
it measures: ``rmse_<part>_<target>[_<aggregate>]``.

- part: ``extrapolation`` (the window of times after the observation window: Table 2's), ``interpolation``
  (the observation window's times that a spiral did not observe: none when it observes them all) or
  ``reconstruction`` (each spiral's own observation times);
- target: ``clean`` (the noise-free spiral) or ``noisy`` (the noisy series: at the observation times, the
  observations themselves; elsewhere what a measurement would have given, with the same noise);
- aggregate: none, the root of the mean of the squared errors over spirals, times and both coordinates (per
  coordinate); ``euclidean``, over spirals and times of the squared distance in the plane, which is exactly
  sqrt(2) times the former; and, for extrapolation, ``median`` and ``mean_of_spirals``: the median and the mean
  over spirals of each spiral's own (per coordinate) RMSE. The pooled RMSE squares before averaging, so a few
  badly continued spirals can dominate it; these two say how a typical spiral fares.

``latent_gaps`` measures whether the latent ODE's latent space behaves as a state space (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

PARTS = ("extrapolation", "interpolation", "reconstruction")
TARGETS = ("clean", "noisy")
PER_SPIRAL = ("median", "mean_of_spirals")


def point_errors(
    reconstruction: torch.Tensor, predictions: torch.Tensor, batch: Mapping[str, torch.Tensor]
) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """Squared distances ``(B, P)`` and the mask ``(B, P)`` of the points counted, by (part, target).

    Args:
        reconstruction: ``(B, n, 2)`` the model's values at each spiral's observation times.
        predictions: ``(B, 2W, 2)`` its values at the grid times, observation window then extrapolation window.
        batch: spirals as the data set gives them (``observations``, ``obs_truth``, ``truth``, ``noisy``,
            ``observed``).
    """
    window = batch["observed"].shape[1]
    everywhere = torch.ones_like(batch["observed"])
    unobserved = ~batch["observed"]
    parts = {
        "extrapolation": (predictions[:, window:], batch["truth"][:, window:], batch["noisy"][:, window:], everywhere),
        "interpolation": (predictions[:, :window], batch["truth"][:, :window], batch["noisy"][:, :window], unobserved),
        "reconstruction": (reconstruction, batch["obs_truth"], batch["observations"], batch["obs_times"] >= 0),
    }
    return {
        (part, target): ((values - reference).pow(2).sum(dim=-1), mask)
        for part, (values, clean, noisy, mask) in parts.items()
        for target, reference in zip(TARGETS, (clean, noisy))
    }


class PredictionErrors:
    """Accumulates ``point_errors`` over the batches of a data set; ``metrics()`` gives the RMSEs named above."""

    def __init__(self) -> None:
        self.squared: dict[tuple[str, str], float] = {}
        self.points: dict[tuple[str, str], int] = {}
        self.per_spiral: dict[str, list[torch.Tensor]] = {target: [] for target in TARGETS}
        self.coordinates = 1

    def add(self, reconstruction: torch.Tensor, predictions: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> None:
        self.coordinates = predictions.shape[-1]
        for (part, target), (squared, mask) in point_errors(reconstruction, predictions, batch).items():
            self.squared[part, target] = self.squared.get((part, target), 0.0) + float(squared[mask].sum())
            self.points[part, target] = self.points.get((part, target), 0) + int(mask.sum())
            if part == "extrapolation":
                self.per_spiral[target].append(squared.mean(dim=1).div(self.coordinates).sqrt())

    def metrics(self) -> dict[str, float]:
        """The RMSEs of the parts that had points (no ``interpolation`` when every window time was observed)."""
        metrics = {}
        for (part, target), squared in self.squared.items():
            points = self.points[part, target]
            if points == 0:
                continue
            metrics[f"rmse_{part}_{target}"] = math.sqrt(squared / (self.coordinates * points))
            metrics[f"rmse_{part}_{target}_euclidean"] = math.sqrt(squared / points)
        for target, spirals in self.per_spiral.items():
            if spirals:
                rmse = torch.cat(spirals)
                metrics[f"rmse_extrapolation_{target}_median"] = float(rmse.median())
                metrics[f"rmse_extrapolation_{target}_mean_of_spirals"] = float(rmse.mean())
        return metrics


def latent_gaps(codes: torch.Tensor, flowed: torch.Tensor, next_codes: torch.Tensor) -> dict[str, float]:
    """How far the latent space is from a consistent state space: ``latent_gap`` (median over spirals) and
    ``latent_gap_mean``.

    For each spiral, ``codes`` ``(N, D)`` is the encoder's code for its observation window (the posterior mean of
    z_0), ``flowed`` the state that code reaches when flowed by the latent ODE to the start of the following window,
    and ``next_codes`` the encoder's code for the following window. Were the latent space a state space, the two
    would coincide: the dynamics would carry a window's state to the next window's. The gap is their distance in
    units of the codes' spread (the root mean squared distance of ``codes`` from their mean), so it reads the same
    whatever the scale of the latent space: 0 is consistent, 1 is as far as codes typically lie from one another's
    centre.
    """
    spread = (codes - codes.mean(dim=0)).pow(2).sum(dim=-1).mean().sqrt().clamp_min(torch.finfo(codes.dtype).tiny)
    gaps = (flowed - next_codes).norm(dim=-1) / spread
    return {"latent_gap": float(gaps.quantile(0.5)), "latent_gap_mean": float(gaps.mean())}
