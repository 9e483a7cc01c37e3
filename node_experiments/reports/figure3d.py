"""Figure 3d of Chen et al. (2018, section 3): the evaluations an ODE-Net needs grow as it trains.

    node-report figure3d docs/results/runs/table1/e10                    # the table and the trend
    node-report figure3d outputs/table1/e10 --figures docs/figures       # and figure3d_nfe_training.png

Every finished classification run at or under the paths whose training counted backward evaluations (an ODE-Net
with adjoint gradients: ``nfe/backward`` > 0 in its ``metrics.jsonl``; the RK-Net, which backpropagates through
the solver's operations, counts none) gives a table of its epochs: NFE per training batch forward and backward (the
epoch's mean, ``nfe/forward`` and ``nfe/backward``), the training loss (the epoch's mean, ``train/loss``) and the
test error after the epoch (``test/error``). A line under it states the trend: the first and last epoch's NFE and
their ratio. ``--figures DIR`` draws ``figure3d_nfe_training.png`` there as the paper draws its panel (d), NFE per
batch against the training epoch, forward and backward, and beside it NFE against the training loss (its axis
reversed, so that training runs left to right in both panels).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from ..training.run_logger import METRICS_FILE
from . import Report
from .runs import check_folders, finished_runs, nothing_found

FIGURE = "figure3d_nfe_training.png"
DIRECTIONS = {"nfe/forward": ("forward", "o-"), "nfe/backward": ("backward", "s--")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--figures", type=Path, help=f"write {FIGURE} into this folder")


def build(args: argparse.Namespace) -> Report:
    check_folders(args.runs)
    runs = find_histories(args.runs)
    if not runs:
        raise nothing_found("ODE-Net run with a metrics.jsonl", args.runs,
                            "node-run experiment=mnist_odenet trainer.max_epochs=10 scheduler=multistep_scaled")
    report = Report("\n\n".join(run_text(folder, history) for folder, history in runs.items()) + "\n")
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        figure = nfe_figure(runs)
        report.files.append(args.figures / FIGURE)
        figure.savefig(report.files[-1], dpi=120, bbox_inches="tight")
        plt.close(figure)
    return report


def find_histories(paths: list[Path]) -> dict[Path, list[dict]]:
    """The per-epoch records of every finished classification run under ``paths`` that counted backward NFE."""
    found = {}
    for folder, summary in finished_runs(paths):
        if "test_error" not in summary or not (folder / METRICS_FILE).is_file():
            continue
        lines = (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines()
        history = [record for record in map(json.loads, filter(str.strip, lines)) if "nfe/forward" in record]
        if history and any(record.get("nfe/backward", 0) > 0 for record in history):
            found[folder] = history
    return found


def run_text(folder: Path, history: list[dict]) -> str:
    """The run's table, one row per epoch, and its trend in one line."""
    lines = [f"`{folder.as_posix()}`:", "", "| epoch | NFE forward | NFE backward | training loss | test error |",
             "|---|---|---|---|---|"]
    for record in history:
        error = f"{100 * record['test/error']:.2f}%" if "test/error" in record else "-"
        lines.append(f"| {record['epoch']} | {record['nfe/forward']:.1f} | {record.get('nfe/backward', 0):.1f} | "
                     f"{record.get('train/loss', float('nan')):.4f} | {error} |")
    return "\n".join([*lines, "", trend(history)])


def trend(history: list[dict]) -> str:
    """The first and last epoch's NFE per batch, forward and backward, and their ratio."""
    first, last = history[0], history[-1]
    parts = [f"{name} {first[key]:.1f} at epoch {first['epoch']}, {last[key]:.1f} at epoch {last['epoch']} "
             f"({last[key] / first[key]:.2f}x)" for key, (name, _) in DIRECTIONS.items() if first.get(key)]
    return "NFE per training batch: " + "; ".join(parts) + "."


def nfe_figure(runs: dict[Path, list[dict]]) -> Figure:
    """NFE per batch against epoch (the paper's panel d) and against the training loss, forward and backward."""
    figure, (by_epoch, by_loss) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for folder, history in runs.items():
        prefix = f"{folder.name}, " if len(runs) > 1 else ""
        for key, (name, style) in DIRECTIONS.items():
            records = [record for record in history if key in record and "train/loss" in record]
            by_epoch.plot([r["epoch"] for r in records], [r[key] for r in records], style, label=prefix + name)
            by_loss.plot([r["train/loss"] for r in records], [r[key] for r in records], style, label=prefix + name)
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set(xlabel="training epoch", ylabel="NFE per batch (epoch mean)", title="(d) NFE over training")
    by_loss.set(xlabel="training loss (epoch mean, decreasing: training runs left to right)",
                ylabel="NFE per batch (epoch mean)", xscale="log", title="NFE against training loss")
    by_loss.xaxis.set_minor_formatter(NullFormatter())
    by_loss.invert_xaxis()
    for axes in (by_epoch, by_loss):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return figure
