"""Normalizing flows on 2-D densities (paper section 4.1, Figures 4 and 5): density matching and maximum likelihood.

Both tasks train a ``node_experiments.models.flows.Flow`` (the planar CNF, FFJORD or the planar NF) and share the
model check, the summary and the figures:

- ``DensityMatchingTask`` (Figure 4): minimise KL(q || p) to an unnormalised target p ~ exp(-U) with samples of
  the base density pushed through the flow: loss = E_q[log q(x) + U(x)]. It also reports ``kl``, the true
  divergence loss + log Z (Z by quadrature, ``node_experiments.data.densities.log_normaliser``), which is >= 0.
- ``MaximumLikelihoodTask`` (Figure 5, and FFJORD's toys): minimise the negative log-likelihood -E[log q(x)] of
  samples of a 2-D data set (``node_experiments.data.toys``). Where the data's density p is known it also reports
  ``kl`` = NLL + E[log p(x)] on the same samples, an estimate of KL(p || q) >= 0, and ``summary.json`` gets
  ``data_entropy``, E[-log p(x)] on the evaluation samples: the NLL a perfect flow would reach.

Neither has a data set to go over: an "epoch" is ``data.batches_per_epoch`` fresh batches drawn with the
trainer's generator, and evaluation uses a fixed set of samples drawn once from ``data.eval_seed``, so that every
run and every epoch is measured on the same samples. ``summary.json`` gets ``final_loss``: the loss on that set
after the last epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from ..data.densities import SampledBatches, energy, fixed_batches, log_normaliser, standard_normal
from ..data.toys import dataset_sampler
from ..models.flows import Flow
from .base import Task, add_regularization, to_device


class FlowTask(Task):
    """What the two density tasks share: building the flow, evaluation, summary and figures.

    The flow must give gradients through what the task trains through: ``push_forward`` for density matching,
    ``log_prob`` for maximum likelihood (a planar NF's ``direction``); ``node_experiments.validation`` checks it.
    """

    def __init__(
        self,
        cfg: Any,
        device: torch.device,
        *,
        figure_samples: int = 20000,
        grid_points: int = 120,
        figure_fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    ) -> None:
        """The figures show ``figure_samples`` samples, densities on ``grid_points`` x ``grid_points`` points, and
        samples carried from noise (0) to data (1) at each of ``figure_fractions``."""
        super().__init__(cfg, device)
        self.figure_samples, self.grid_points = int(figure_samples), int(grid_points)
        self.figure_fractions = [float(fraction) for fraction in figure_fractions]

    def sampler(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` samples of what the batches hold (base noise for density matching, data otherwise)."""
        raise NotImplementedError

    def dataloaders(self, generator: torch.Generator) -> tuple[SampledBatches, list[torch.Tensor]]:
        data = self.cfg.data
        train = SampledBatches(self.sampler, data.batch_size, data.batches_per_epoch, generator)
        return train, fixed_batches(self.sampler, data.eval_samples, data.eval_batch_size, data.eval_seed)

    def batch_loss(self, model: Flow, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean loss over a batch, and further metrics (0-dim tensors)."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return add_regularization(model, *self.batch_loss(model, batch))

    def evaluation_loss(self, model: Flow, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What ``evaluate`` measures on a batch: the training loss and metrics, unless a task adds more."""
        return self.batch_loss(model, batch)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, float]:
        # The CNF's trace needs autograd with respect to z; it switches that on by itself, inside each evaluation.
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            batch = to_device(batch, self.device)
            loss, metrics = self.evaluation_loss(model, batch)
            for name, value in {"loss": loss, **metrics}.items():
                sums[name] = sums.get(name, 0.0) + value.item() * batch.shape[0]
            count += batch.shape[0]
        return {name: total / count for name, total in sums.items()}

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {"final_loss": history[-1]["test/loss"]}

    # ------------------------------------------------------------------------------------------------ figures
    figure_name = "learned_density"

    def draw_reference(self, axis: Any, points: torch.Tensor, extent: list[float]) -> None:
        """The left panel of the main figure: what the flow should learn."""
        raise NotImplementedError

    def figures(self, model: nn.Module, loader: Any) -> dict[str, Figure]:
        """The target or data, the learned density and samples of it; and samples carried from noise to data."""
        points, extent = self.grid()
        n = self.grid_points
        with torch.no_grad():
            samples = model.sample(self.base_samples(model))
        figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
        self.draw_reference(axes[0], points, extent)
        show_density(axes[1], self.model_density(model, points).reshape(n, n), extent)
        axes[1].set_title(f"{type(model).__name__} density")
        scatter(axes[2], samples.cpu(), extent)
        axes[2].set_title("samples")
        figure.tight_layout()
        return {self.figure_name: figure, "noise_to_data": self.noise_to_data(model)}

    def grid(self) -> tuple[torch.Tensor, list[float]]:
        """Points (n*n, 2) on the plotting window, and its extent for imshow."""
        limit, points = float(self.cfg.data.plot_limit), self.grid_points
        axis = torch.linspace(-limit, limit, points)
        ys, xs = torch.meshgrid(axis, axis, indexing="ij")
        return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), [-limit, limit, -limit, limit]

    def model_density(self, model: Flow, points: torch.Tensor, fraction: float = 1.0) -> torch.Tensor:
        return model.density(points.to(self.device), fraction).cpu()

    @torch.no_grad()
    def base_samples(self, model: Flow) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(self.cfg.data.eval_seed) + 1)
        noise = torch.randn(self.figure_samples, model.base_dim, generator=generator)
        return (noise * model.base_std).to(self.device)

    def noise_to_data(self, model: Flow) -> Figure:
        """Samples and density at several fractions of the way from noise (0) to data (1): CNF time t / t1,
        or NF layers k / K (the paper's Figure 6 for the CNF)."""
        fractions = self.figure_fractions
        points, extent = self.grid()
        n = self.grid_points
        with torch.no_grad():
            carried = model.trajectory(self.base_samples(model), fractions)
        figure, axes = plt.subplots(2, len(fractions), figsize=(2.6 * len(fractions), 5.4), squeeze=False)
        for column, (fraction, samples) in enumerate(zip(fractions, carried)):
            scatter(axes[0, column], samples.cpu(), extent)
            axes[0, column].set_title(model.describe(fraction))
            density = self.model_density(model, points, fraction).reshape(n, n)
            show_density(axes[1, column], density, extent)
        axes[0, 0].set_ylabel("samples")
        axes[1, 0].set_ylabel("density")
        figure.suptitle(f"{type(model).__name__}: noise to data")
        figure.tight_layout()
        return figure


def scatter(axis: Any, samples: torch.Tensor, extent: list[float]) -> None:
    """A 2-D histogram of samples on the plotting window."""
    axis.hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=100, range=[extent[:2], extent[2:]], cmap="viridis")
    _clean(axis)


def show_density(axis: Any, density: torch.Tensor, extent: list[float]) -> None:
    """A density evaluated on the grid, as an image."""
    axis.imshow(density.numpy(), origin="lower", extent=extent, cmap="viridis")
    _clean(axis)


def _clean(axis: Any) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_aspect("equal")


class DensityMatchingTask(FlowTask):
    """Fit a flow to the unnormalised target exp(-U) of ``data.target`` by minimising KL(q || p) (Figure 4)."""

    figure_name = "density_matching"

    def __init__(self, cfg: Any, device: torch.device, **settings: Any) -> None:
        super().__init__(cfg, device, **settings)
        self.energy = energy(cfg.data.target)
        self.log_z = log_normaliser(cfg.data.target)

    def sampler(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return standard_normal(self.cfg.data.dim)(count, generator)

    def batch_loss(self, model: Flow, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, log_q = model.push_forward(batch * model.base_std)
        loss = (log_q + self.energy(x)).mean()
        return loss, {"kl": loss.detach() + self.log_z}

    def draw_reference(self, axis: Any, points: torch.Tensor, extent: list[float]) -> None:
        n = self.grid_points
        show_density(axis, (-self.energy(points)).exp().reshape(n, n), extent)
        axis.set_title(f"target exp(-{self.cfg.data.target})")


class MaximumLikelihoodTask(FlowTask):
    """Fit a flow to samples of ``data.dataset`` (``node_experiments.data.toys``) by maximum likelihood (Figure 5,
    FFJORD's toys)."""

    def __init__(self, cfg: Any, device: torch.device, **settings: Any) -> None:
        super().__init__(cfg, device, **settings)
        self.sampler = dataset_sampler(cfg.data.dataset, **cfg.data.sampler)

    def batch_loss(self, model: Flow, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll = -model.log_prob(batch).mean()
        return nll, {"nll": nll.detach()}

    def evaluation_loss(self, model: Flow, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        nll, metrics = self.batch_loss(model, batch)
        if self.sampler.has_density:
            metrics["kl"] = nll + self.sampler.log_prob(batch).mean()
        return nll, metrics

    def summary(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        last = history[-1]
        entropy = {"data_entropy": last["test/nll"] - last["test/kl"]} if "test/kl" in last else {}
        return {**super().summary(history), **entropy}

    def draw_reference(self, axis: Any, points: torch.Tensor, extent: list[float]) -> None:
        count, seed = self.figure_samples, int(self.cfg.data.eval_seed)
        scatter(axis, self.sampler(count, torch.Generator().manual_seed(seed)), extent)
        axis.set_title(f"data ({self.cfg.data.dataset})")
