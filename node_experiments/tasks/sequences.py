"""Time series observed at irregular times (paper section 5, Table 2, Figures 8-9): noisy spirals.

The model (``model`` group: the latent ODE or the RNN baseline) implements ``loss(observations, obs_times,
future=None, future_times=None)``, returning the loss and its terms (the ELBO, its log-likelihood and KL for the
latent ODE; the log-likelihood for the RNN), and ``predict(observations, obs_times, query_times)``, returning its
reconstruction at the observation times and its prediction at the query times. This task adds the training
objective, the metrics of Table 2 and the figures.

``task.objective`` says what training fits: ``reconstruct`` (the paper's) the observations of each training
spiral's window; ``forecast`` (Rubanova et al., NeurIPS 2019) those and the spiral's points of the following
window (``Spirals.following``), predicted from the window's observations alone. Test spirals are predicted from
their window alone either way.

Metrics of ``evaluate`` (``test/<name>`` per epoch, ``test_<name>`` in ``summary.json``): the loss terms averaged
per test spiral, and the prediction errors of ``sequence_metrics`` under every definition of Table 2's RMSE that
the paper's text allows (``rmse_extrapolation_clean`` is the one of the published table). The model predicts at
every grid time of the observation and the extrapolation windows, and at each spiral's own observation times:
the latent ODE from the posterior mean of z_0, having read all the observations; the RNN from the observations
before each time, and autoregressively past the last one. The test ELBO uses one posterior sample per spiral,
drawn from a generator seeded with ``task.eval_seed`` so that it does not change the training's random numbers.

Beside them, so that a run shows whether its extrapolation is learnt or luck: the extrapolation RMSEs (pooled and
median spiral) of the first ``data.test_size`` training spirals (``train_spirals/*``) and of test spirals drawn
from the other ``data.test_range`` (``observed_range/*`` or ``same_range/*``; the training spirals do not depend
on it), and for the latent ODE the consistency of its latent space, ``latent_gap`` (``sequence_metrics.latent_gaps``)
on each of these sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader

from ..data.spirals import TEST_RANGES, SpiralDataset, spiral_loaders, spiral_splits
from ..models.latent_ode import LatentODE
from ..validation import config_arguments
from .base import Task, add_regularization, to_device
from .sequence_figures import latent_dimensions_figure, latent_trajectories_figure, predictions_figure
from .sequence_metrics import PredictionErrors, latent_gaps


OBJECTIVES = ("reconstruct", "forecast")
EXTRA_METRICS = ("rmse_extrapolation_clean", "rmse_extrapolation_clean_median", "latent_gap", "latent_gap_mean")


class SequenceTask(Task):
    """Fit a sequence model to the ``data`` group's spirals; Table 2's RMSEs as metrics."""

    best_metric = ("rmse_extrapolation_clean", "min")  # the RMSE of the published Table 2

    def __init__(
        self,
        cfg: Any,
        device: torch.device,
        *,
        objective: str = "reconstruct",
        eval_seed: int = 0,
        figure_spirals: int = 4,
        figure_latent_spirals: int = 100,
        latent_offsets: Sequence[float] = (-2, -1, 0, 1, 2),
    ) -> None:
        """``objective``: ``reconstruct`` or ``forecast`` (module docstring); ``eval_seed`` seeds the test ELBO's
        posterior samples; the figures show ``figure_spirals`` test spirals' predictions, ``figure_latent_spirals``
        spirals' latent trajectories, and one latent dimension moved by each of ``latent_offsets`` (in stds)."""
        super().__init__(cfg, device)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r} is not a training objective: use one of {', '.join(OBJECTIVES)}.")
        self.objective, self.eval_seed = objective, eval_seed
        self.figure_spirals, self.figure_latent_spirals = figure_spirals, figure_latent_spirals
        self.latent_offsets = [float(offset) for offset in latent_offsets]

    def dataloaders(self, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
        data = self.cfg.data
        other_range = next(name for name in TEST_RANGES if name != data.test_range)
        with config_arguments("data", data):
            train_loader, test_loader = spiral_loaders(data, generator)
            other_test_set = spiral_splits(data, test_range=other_range)[1]
        train_spirals = train_loader.dataset.spirals
        self.extra_sets = {
            "train_spirals": train_spirals.subset(slice(0, data.test_size)),
            f"{other_range}_range": other_test_set,
        }
        self.following_start = float(train_spirals.times[train_spirals.window])  # the following window's t = 0
        return train_loader, test_loader

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        observations, obs_times = batch["observations"], batch["obs_times"]
        forecast = self.objective == "forecast"
        future = (batch["following"], obs_times + self.following_start) if forecast else ()
        return add_regularization(model, *model.loss(observations, obs_times, *future))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        sums: dict[str, float] = {}
        spirals = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.eval_seed)
            for batch in loader:
                batch = to_device(batch, self.device)
                size = batch["observations"].shape[0]
                loss, terms = model.loss(batch["observations"], batch["obs_times"])
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * size
                spirals += size
        metrics = {name: value / max(spirals, 1) for name, value in sums.items()}
        metrics.update(self.prediction_metrics(model, loader))
        for name, extra in self.extra_sets.items():
            extra_loader = DataLoader(SpiralDataset(extra), batch_size=self.cfg.data.test_batch_size)
            found = self.prediction_metrics(model, extra_loader)
            metrics.update({f"{name}/{key}": value for key, value in found.items() if key in EXTRA_METRICS})
        return metrics

    def prediction_metrics(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """The RMSEs of the model's predictions on the loader's spirals and, for the latent ODE, its latent gaps."""
        errors = PredictionErrors()
        codes: list[tuple[torch.Tensor, ...]] = []
        for batch in loader:
            batch = to_device(batch, self.device)
            errors.add(*self.predict(model, batch, loader), batch)
            if isinstance(model, LatentODE):
                codes.append(self.latent_codes(model, batch))
        gaps = latent_gaps(*(torch.cat(parts) for parts in zip(*codes))) if codes else {}
        return {**errors.metrics(), **gaps}

    def latent_codes(self, model: LatentODE, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The encoder's codes for the batch's windows, those codes flowed to the following window's start, and the
        encoder's codes for the following windows (``sequence_metrics.latent_gaps``)."""
        codes = model.posterior(batch["observations"], batch["obs_times"]).mean
        start = codes.new_full((codes.shape[0], 1), self.following_start)
        flowed = model.latent_path(codes, start)[:, 0]
        return codes, flowed, model.posterior(batch["following"], batch["obs_times"]).mean

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor], loader: DataLoader) -> tuple[torch.Tensor, ...]:
        """The model's values at the batch's observation times ``(B, n, 2)`` and at every grid time ``(B, 2W, 2)``
        (the observation window, then the extrapolation window)."""
        return model.predict(batch["observations"], batch["obs_times"], loader.dataset.times.to(self.device))

    def example_batch(self, loader: DataLoader, count: int) -> dict[str, torch.Tensor]:
        """The first ``count`` test spirals (directions alternate) on the task's device."""
        return to_device(loader.dataset[: min(count, len(loader.dataset))], self.device)

    @torch.no_grad()
    def figures(self, model: nn.Module, loader: DataLoader) -> dict[str, Figure]:
        batch = self.example_batch(loader, self.figure_spirals)
        label = "Latent ODE" if isinstance(model, LatentODE) else "RNN"
        figures = {"predictions": predictions_figure(batch, {label: self.predict(model, batch, loader)})}
        if isinstance(model, LatentODE):
            latent_batch = self.example_batch(loader, self.figure_latent_spirals)
            times = loader.dataset.times.to(self.device)
            z0 = model.posterior(latent_batch["observations"], latent_batch["obs_times"]).mean
            paths = model.latent_path(z0, times.expand(z0.shape[0], -1))
            figures["latent_trajectories"] = latent_trajectories_figure(
                paths, latent_batch["clockwise"], loader.dataset.spirals.window
            )
            offsets = torch.tensor(self.latent_offsets, device=self.device)
            figures["latent_dimensions"] = latent_dimensions_figure(vary_latent(model, z0, times, offsets), offsets)
        return figures


def vary_latent(model: LatentODE, z0: torch.Tensor, times: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Spirals decoded from the first spiral's z_0 with one latent dimension moved: ``(D, K, T, obs_dim)``.

    Dimension d is moved by each of the K ``offsets`` times the spread (std) of z_0[:, d] over ``z0`` ``(B, D)``.
    """
    spread = z0.std(dim=0) if z0.shape[0] > 1 else torch.ones_like(z0[0])
    decoded = []
    for dim in range(z0.shape[1]):
        varied = z0[:1].repeat(offsets.numel(), 1)
        varied[:, dim] += offsets * spread[dim]
        decoded.append(model.decode(varied, times.expand(offsets.numel(), -1)))
    return torch.stack(decoded)
