"""Time series observed at irregular times (paper section 5, Table 2, Figures 8-9): noisy spirals.

The model (``model`` group: the latent ODE or the RNN baseline) implements ``loss(observations, obs_times)``,
returning the loss and its terms (the ELBO, its log-likelihood and KL for the latent ODE; the log-likelihood for
the RNN), and ``predict(observations, obs_times, query_times)``, returning its reconstruction at the observation
times and its prediction at the query times. This task adds the metrics of Table 2 and the figures.

Metrics of ``evaluate`` (``test/<name>`` per epoch, ``test_<name>`` in ``summary.json``): the loss terms averaged
per test spiral, and

- ``rmse_extrapolation``: Table 2's predictive RMSE, over the ``window`` grid times that follow the observation
  window, against the noise-free spirals;
- ``rmse_reconstruction``: the same at each spiral's own observation times (the RNN predicts each observation from
  the earlier ones; the latent ODE decodes its posterior mean, having read them all);
- ``rmse_extrapolation_median``: the median over test spirals of each spiral's own extrapolation RMSE. The RMSE
  of Table 2 squares the errors before averaging, so a few spirals continued badly can dominate it; the median
  says how well a typical spiral is continued.

An RMSE is the root of the mean squared error over spirals, times and both coordinates. Predictions come from
the posterior mean of z_0 for the latent ODE; the test ELBO uses one posterior sample per spiral, drawn from a
generator seeded with ``task.eval_seed`` so that it does not change the training's random numbers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import instantiate
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader

from ..data.spirals import spiral_loaders
from ..models.latent_ode import LatentODE
from .base import Task, to_device
from .sequence_figures import latent_dimensions_figure, latent_trajectories_figure, predictions_figure


class SequenceTask(Task):
    """Fit a sequence model to the ``data`` group's spirals; Table 2's RMSEs as metrics."""

    def build_model(self) -> nn.Module:
        return instantiate(self.cfg.model, _convert_="all")

    def dataloaders(self, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
        return spiral_loaders(self.cfg.data, generator)

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return model.loss(batch["observations"], batch["obs_times"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        sums: dict[str, float] = {}
        squared = {"rmse_reconstruction": 0.0, "rmse_extrapolation": 0.0}
        counts = {"rmse_reconstruction": 0, "rmse_extrapolation": 0}
        spirals = 0
        per_spiral = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.task.eval_seed)
            for batch in loader:
                batch = to_device(batch, self.device)
                size = batch["observations"].shape[0]
                loss, terms = model.loss(batch["observations"], batch["obs_times"])
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * size
                reconstruction, future = self.predict(model, batch, loader)
                window = loader.dataset.spirals.window
                extrapolation_error = future - batch["truth"][:, window:]
                for name, error in (
                    ("rmse_reconstruction", reconstruction - batch["obs_truth"]),
                    ("rmse_extrapolation", extrapolation_error),
                ):
                    squared[name] += float(error.pow(2).sum())
                    counts[name] += error.numel()
                per_spiral.append(extrapolation_error.pow(2).mean(dim=(1, 2)).sqrt())
                spirals += size
        metrics = {name: value / max(spirals, 1) for name, value in sums.items()}
        metrics.update({name: math.sqrt(squared[name] / max(counts[name], 1)) for name in squared})
        if per_spiral:
            metrics["rmse_extrapolation_median"] = float(torch.cat(per_spiral).median())
        return metrics

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor], loader: DataLoader) -> tuple[torch.Tensor, ...]:
        """The model's reconstruction at the batch's observation times and its extrapolation window."""
        times = loader.dataset.times.to(self.device)
        extrapolation_times = times[loader.dataset.spirals.window :]
        return model.predict(batch["observations"], batch["obs_times"], extrapolation_times)

    def example_batch(self, loader: DataLoader, count: int) -> dict[str, torch.Tensor]:
        """The first ``count`` test spirals (directions alternate) on the task's device."""
        return to_device(loader.dataset[: min(count, len(loader.dataset))], self.device)

    @torch.no_grad()
    def figures(self, model: nn.Module, loader: DataLoader) -> dict[str, Figure]:
        settings = self.cfg.task
        batch = self.example_batch(loader, settings.figure_spirals)
        label = "Latent ODE" if isinstance(model, LatentODE) else "RNN"
        figures = {"predictions": predictions_figure(batch, {label: self.predict(model, batch, loader)})}
        if isinstance(model, LatentODE):
            latent_batch = self.example_batch(loader, settings.figure_latent_spirals)
            times = loader.dataset.times.to(self.device)
            z0 = model.posterior(latent_batch["observations"], latent_batch["obs_times"]).mean
            paths = model.latent_path(z0, times.expand(z0.shape[0], -1))
            figures["latent_trajectories"] = latent_trajectories_figure(
                paths, latent_batch["clockwise"], loader.dataset.spirals.window
            )
            offsets = torch.tensor(list(settings.latent_offsets), device=self.device)
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
