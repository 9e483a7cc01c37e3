"""Figures of the spiral experiments (paper Figures 8 and 9), drawn with matplotlib from tensors.

- ``predictions_figure``: test spirals with their noisy observations, the truth, each model's prediction over the
  observation window and its extrapolation (the paper's blue and red curves); one row per model, so that a latent
  ODE and an RNN can be set side by side (Figure 8);
- ``latent_trajectories_figure``: latent trajectories projected on their two principal components, coloured by
  the spiral's direction of rotation (Figure 9);
- ``latent_dimensions_figure``: spirals decoded while one latent dimension is moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

DIRECTION_COLOURS = {False: "tab:blue", True: "tab:red"}  # counter-clockwise, clockwise
DIRECTION_NAMES = {False: "counter-clockwise", True: "clockwise"}


def predictions_figure(
    batch: Mapping[str, torch.Tensor], predictions: Mapping[str, Sequence[torch.Tensor]]
) -> Figure:
    """One panel per (model, spiral): observations, truth, prediction, extrapolation.

    Args:
        batch: spirals as the data set gives them (``observations``, ``truth``, ``clockwise``...).
        predictions: model name -> (reconstruction ``(B, n, 2)``, values at the grid times ``(B, 2W, 2)``), as
            ``SequenceTask.predict`` gives them.
    """
    spirals = batch["observations"].shape[0]
    figure, axes = plt.subplots(
        len(predictions), spirals, figsize=(3.2 * spirals, 3.2 * len(predictions)), squeeze=False
    )
    window = batch["truth"].shape[1] // 2
    for row, (name, (_, values)) in enumerate(predictions.items()):
        for column in range(spirals):
            axis = axes[row, column]
            truth = batch["truth"][column].cpu()
            observed = batch["observations"][column].cpu()
            axis.plot(truth[:window, 0], truth[:window, 1], color="0.6", lw=1, label="truth")
            axis.plot(truth[window:, 0], truth[window:, 1], color="0.6", lw=1, ls="--")
            axis.scatter(observed[:, 0], observed[:, 1], s=6, color="k", label="observations")
            curve = values[column].cpu()
            axis.plot(curve[:window, 0], curve[:window, 1], color="tab:blue", lw=1.2, label="prediction")
            axis.plot(curve[window - 1 :, 0], curve[window - 1 :, 1], color="tab:red", lw=1.5, label="extrapolation")
            axis.set_aspect("equal", adjustable="datalim")
            axis.set_xticks([])
            axis.set_yticks([])
            direction = DIRECTION_NAMES[bool(batch["clockwise"][column])]
            axis.set_title(f"{name}, {direction}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def principal_components(points: torch.Tensor, count: int = 2) -> torch.Tensor:
    """``points`` ``(..., D)`` projected on the ``count`` principal components of all of them."""
    flat = points.reshape(-1, points.shape[-1])
    centred = flat - flat.mean(dim=0)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ right[:count].T).reshape(*points.shape[:-1], count)


def latent_trajectories_figure(paths: torch.Tensor, clockwise: torch.Tensor, window: int) -> Figure:
    """Latent trajectories ``(B, T, D)`` on their first two principal components, coloured by direction.

    Solid over the observation window (the first ``window`` times), dashed over the extrapolation; a dot marks
    z_0.
    """
    projected = principal_components(paths.cpu()).numpy()
    colours = [DIRECTION_COLOURS[is_clockwise] for is_clockwise in clockwise.cpu().tolist()]
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.add_collection(LineCollection(list(projected[:, :window]), colors=colours, lw=0.8, alpha=0.7))
    axis.add_collection(LineCollection(list(projected[:, window - 1 :]), colors=colours, lw=0.8, alpha=0.5, ls="--"))
    axis.scatter(projected[:, 0, 0], projected[:, 0, 1], c=colours, s=8)
    axis.autoscale()
    for is_clockwise, colour in DIRECTION_COLOURS.items():
        axis.plot([], [], color=colour, label=DIRECTION_NAMES[is_clockwise])
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    axis.set_title("Latent trajectories (dashed: extrapolation)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def latent_dimensions_figure(decoded: torch.Tensor, offsets: torch.Tensor) -> Figure:
    """One panel per latent dimension: spirals ``decoded`` ``(D, K, T, 2)`` as that dimension moves by ``offsets``."""
    dims = decoded.shape[0]
    figure, axes = plt.subplots(1, dims, figsize=(3.2 * dims, 3.4), squeeze=False)
    colours = plt.get_cmap("coolwarm")(torch.linspace(0, 1, offsets.numel()).tolist())
    for dim, axis in enumerate(axes[0]):
        for curve, offset, colour in zip(decoded[dim].cpu(), offsets.cpu().tolist(), colours):
            axis.plot(curve[:, 0], curve[:, 1], color=colour, lw=1, label=f"{offset:+g} sd")
        axis.set_aspect("equal", adjustable="datalim")
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(f"latent dimension {dim + 1}", fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure
