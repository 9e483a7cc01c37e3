"""The figures of the NFE study: the four panels of Chen et al. (2018) Figure 3, and memory against NFE.

Each panel is drawn by one function onto a given axes, so that the same drawing makes the separate panel
figures and the combined 2x2 ``figure3``. Inputs are the study's rows (see ``nfe_study``): the per-tolerance
table, the per-batch rows, the fitted backward/forward ratios and the training run's per-epoch history.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .memory_study import RESNET

Rows = Sequence[Mapping[str, Any]]
BACKWARD_SERIES = {"nfe_backward": ("adjoint, RMS norm", "o"), "nfe_backward_seminorm": ("adjoint, seminorm", "x")}
PAPER_RESNET_BLOCKS = 6
MIB = 2**20


def _label_tolerances(axes: Axes, table: Rows, y_column: str) -> None:
    for entry in table:
        axes.annotate(f"{entry['tolerance']:.0e}", (entry["nfe_forward"], entry[y_column]), fontsize=7,
                      textcoords="offset points", xytext=(4, 4))  # fmt: skip


def draw_error(axes: Axes, table: Rows) -> None:
    """(a) NFE forward against the numerical error of the ODE block's output."""
    axes.plot([e["nfe_forward"] for e in table], [e["error_max_abs"] for e in table], "o-")
    _label_tolerances(axes, table, "error_max_abs")
    axes.set(xlabel="NFE forward", ylabel="numerical error (max abs, vs float64 reference)", yscale="log",
             title="(a) NFE forward vs numerical error")  # fmt: skip


def draw_time(axes: Axes, table: Rows) -> None:
    """(b) NFE forward against wall time of a forward pass, relative to the tightest tolerance."""
    axes.plot([e["nfe_forward"] for e in table], [e["time_relative"] for e in table], "o-")
    _label_tolerances(axes, table, "time_relative")
    axes.set(xlabel="NFE forward", ylabel="forward time (relative to tightest tolerance)",
             title="(b) NFE forward vs relative time")  # fmt: skip


def draw_backward(axes: Axes, batch_rows: Rows, ratios: Mapping[str, float]) -> None:
    """(c) NFE backward against NFE forward, one point per batch and tolerance, with the fitted ratios."""
    forward = [row["nfe_forward"] for row in batch_rows]
    top = max(forward)
    for column, ratio in ratios.items():
        name, marker = BACKWARD_SERIES[column]
        (line,) = axes.plot([0, top], [0, ratio * top], label=f"{name}: fit {ratio:.2f} x forward")
        axes.scatter(forward, [row[column] for row in batch_rows], s=24, marker=marker, color=line.get_color())
    axes.plot([0, top], [0, 0.5 * top], ":", color="grey", label="paper's reported 0.5 x forward")
    axes.set(xlabel="NFE forward", ylabel="NFE backward", title="(c) NFE backward vs forward")
    axes.legend(fontsize=7)


def draw_training(axes: Axes, history: Rows) -> None:
    """(d) NFE per batch (training mean) against the training epoch, from the run's metrics.jsonl."""
    records = [record for record in history if "nfe/forward" in record]
    if not records:
        axes.text(0.5, 0.5, "the training run left no\nper-epoch NFE (metrics.jsonl)", ha="center",
                  va="center", transform=axes.transAxes)  # fmt: skip
    else:
        epochs = [record["epoch"] for record in records]
        axes.plot(epochs, [record["nfe/forward"] for record in records], "o-", label="forward")
        if all("nfe/backward" in record for record in records):
            axes.plot(epochs, [record["nfe/backward"] for record in records], "s--", label="backward")
        axes.legend(fontsize=7)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(xlabel="training epoch", ylabel="NFE per batch (training mean)", title="(d) NFE over training")


def figure3_panels(table: Rows, batch_rows: Rows, ratios: Mapping[str, float], history: Rows) -> dict[str, Figure]:
    """The four panels as separate figures, and all four as ``figure3``."""
    drawers: dict[str, Callable[[Axes], None]] = {
        "figure3a_nfe_error": lambda axes: draw_error(axes, table),
        "figure3b_nfe_time": lambda axes: draw_time(axes, table),
        "figure3c_backward_forward": lambda axes: draw_backward(axes, batch_rows, ratios),
        "figure3d_nfe_training": lambda axes: draw_training(axes, history),
    }
    figures = {}
    for name, draw in drawers.items():
        figure, axes = plt.subplots(figsize=(5, 4), layout="constrained")
        draw(axes)
        figures[name] = figure
    figure, grid = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
    for axes, draw in zip(grid.flat, drawers.values()):
        draw(axes)
    figures["figure3"] = figure
    return figures


def memory_figure(rows: Rows) -> Figure:
    """Memory against function evaluations (NFE, or blocks for the ResNet): saved bytes, and CUDA peak if any."""
    measures = [("saved_bytes", "MiB saved for backward (one batch)")]
    if any(row["cuda_peak_bytes"] is not None for row in rows):
        measures.append(("cuda_peak_bytes", "CUDA peak MiB, forward + backward"))
    figure, grid = plt.subplots(1, len(measures), figsize=(5.5 * len(measures), 4), layout="constrained",
                                squeeze=False)  # fmt: skip
    networks = dict.fromkeys(row["network"] for row in rows)
    for axes, (column, label) in zip(grid.flat, measures):
        for network in networks:
            points = sorted((row["evaluations"], row[column] / MIB) for row in rows if row["network"] == network)
            axes.plot(*zip(*points), "o-", label=network)
        resnet = {row["evaluations"]: row[column] / MIB for row in rows if row["network"] == RESNET}
        if PAPER_RESNET_BLOCKS in resnet:
            axes.annotate("the paper's ResNet (L = 6)", (PAPER_RESNET_BLOCKS, resnet[PAPER_RESNET_BLOCKS]), fontsize=7,
                          textcoords="offset points", xytext=(-10, 30), arrowprops={"arrowstyle": "->"})  # fmt: skip
        axes.set(xlabel="function evaluations: solver NFE, or residual blocks L (ResNet)", ylabel=label)
        axes.legend(fontsize=7)
    figure.suptitle("Memory against depth: O(1) with the adjoint, O(L) without")
    return figure
