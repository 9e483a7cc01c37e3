"""Figure 4 of Chen et al. (2018, section 4.1) from density-matching runs: planar NF against planar CNF.

    node-report flows outputs/figure4                       # the folder(s) holding the runs
    node-report flows RUN_DIR ... --figures docs/figures --output flows.md

Every finished ``nf_density_matching`` or ``cnf_density_matching`` run under the given paths is one cell: its
target (``data.target``) and size (the NF's K = ``model.layers``, the CNF's M = ``model.width``) are read from
the run's ``.hydra/config.yaml``. The report is the table of final losses (the loss E_q[log q + U] on the fixed
evaluation samples after the last epoch; lower is better) with the true KL(q || p) = loss + log Z beside it; with
``--figures DIR`` it writes two figures there:

- ``figure4_loss.png``: final loss against K or M, NF beside CNF, one panel per target (the paper's bottom row),
  with the loss's lower bound -log Z (where KL = 0);
- ``figure4_densities.png``: each target beside the learned densities q for every K and M (the paper's grid),
  evaluated from each run's last checkpoint.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.densities import energy, log_normaliser
from ..errors import ReportError
from ..training.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint
from . import Report
from .model_state import MODEL_STATE_FILE
from .runs import check_folders, finished_runs, nothing_found, run_config

KINDS = ("NF", "CNF")
SIZE_NAME = {"NF": "K", "CNF": "M"}


@dataclass
class Run:
    folder: Path
    kind: str  # NF or CNF
    target: str
    size: int  # K or M
    summary: dict
    config: DictConfig

    @property
    def iterations(self) -> int:
        return int(self.summary["epochs"]) * int(self.config.data.batches_per_epoch)


def find_runs(paths: list[Path]) -> list[Run]:
    """The finished density-matching runs at or under ``paths`` (their summaries have the true KL, ``test_kl``, and
    no ``test_nll``: maximum-likelihood runs report KL(p || q) beside their NLL)."""
    runs = []
    for folder, summary in finished_runs(paths):
        if "test_kl" not in summary or "test_nll" in summary:
            continue  # not a density-matching run
        config = run_config(folder)
        kind = "CNF" if config.model._target_.endswith("CNF") else "NF"
        size = int(config.model.width if kind == "CNF" else config.model.layers)
        runs.append(Run(folder, kind, str(config.data.target), size, summary, config))
    return runs


def table(runs: list[Run]) -> str:
    """Markdown: one row per target, one column per model and size; final loss (KL) per cell, then CPU time."""
    targets = sorted({run.target for run in runs})
    columns = [(kind, size) for kind in KINDS for size in sorted({r.size for r in runs if r.kind == kind})]
    cells = {(run.target, run.kind, run.size): run for run in runs}
    header = ["Target", *(f"{kind} {SIZE_NAME[kind]}={size}" for kind, size in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target in targets:
        row = [target]
        for kind, size in columns:
            run = cells.get((target, kind, size))
            row.append(f"{run.summary['final_loss']:.3f} ({run.summary['test_kl']:.3f})" if run else "-")
        lines.append("| " + " | ".join(row) + " |")
    times = {kind: sum(r.summary["train_time_s"] for r in runs if r.kind == kind) for kind in KINDS}
    iterations = sorted({(r.kind, r.iterations, r.config.optimizer.lr) for r in runs})
    notes = [
        "",
        "Cells: final loss E_q[log q + U] on 4096 fixed base samples (KL(q || p) = loss + log Z in parentheses).",
        "Training: " + "; ".join(f"{kind} {n} Adam iterations at lr {lr:g}" for kind, n, lr in iterations) + ".",
        "Training time, all runs: " + ", ".join(f"{kind} {times[kind] / 60:.1f} min" for kind in KINDS) + ".",
    ]
    return "\n".join(lines + notes) + "\n"


def loss_figure(runs: list[Run]) -> plt.Figure:
    """Final loss against K (NF) or M (CNF), one panel per target."""
    targets = sorted({run.target for run in runs})
    figure, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.2), squeeze=False)
    for axis, target in zip(axes[0], targets):
        for kind, marker in zip(KINDS, "os"):
            points = sorted((r.size, r.summary["final_loss"]) for r in runs if r.target == target and r.kind == kind)
            if points:
                axis.plot(*zip(*points), marker=marker, label=kind)
        axis.axhline(-log_normaliser(target), color="gray", linestyle="--", label="-log Z (KL = 0)")
        axis.set_xscale("log", base=2)
        sizes = sorted({r.size for r in runs})
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.set_xlabel("K (NF) or M (CNF)")
        axis.set_title(target)
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("final loss")
    axes[0, 0].legend()
    figure.tight_layout()
    return figure


def learned_density(folder: Path, points: torch.Tensor) -> torch.Tensor:
    """exp(log q) on ``points`` of the model in the last checkpoint of the run in ``folder``, or in the model file
    that ``node-report model-state`` wrote beside the run's records (``model.pt``)."""
    path = folder / CHECKPOINT_DIR / LAST
    if not path.is_file():
        path = folder / MODEL_STATE_FILE
    if not path.is_file():
        raise ReportError(f"{folder} holds no {CHECKPOINT_DIR}/{LAST} and no {MODEL_STATE_FILE}, and the density "
                          "figure reloads each run's model: give the run folders, write the model beside the "
                          f"records (node-report model-state RUN {folder / MODEL_STATE_FILE}), or add --no-densities.")
    checkpoint = load_checkpoint(path, key="RUN", required=("model", "config"))
    model = instantiate(OmegaConf.create(checkpoint["config"]).model, _convert_="all")
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model.density(points)


def density_figure(runs: list[Run], limit: float = 4.0, resolution: int = 100) -> plt.Figure:
    """Rows: targets; columns: the target, then q of every NF and CNF size (the paper's Figure 4 grid)."""
    targets = sorted({run.target for run in runs})
    columns = [(kind, size) for kind in KINDS for size in sorted({r.size for r in runs if r.kind == kind})]
    cells = {(run.target, run.kind, run.size): run for run in runs}
    axis_values = torch.linspace(-limit, limit, resolution)
    ys, xs = torch.meshgrid(axis_values, axis_values, indexing="ij")
    points = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    extent = [-limit, limit, -limit, limit]
    figure, axes = plt.subplots(
        len(targets), len(columns) + 1, figsize=(1.9 * (len(columns) + 1), 1.9 * len(targets)), squeeze=False
    )
    for row, target in enumerate(targets):
        images = [(-energy(target)(points)).exp()]
        images += [learned_density(cells[(target, *c)].folder, points) if (target, *c) in cells else None for c in columns]
        for column, image in enumerate(images):
            axis = axes[row, column]
            if image is not None:
                axis.imshow(image.reshape(resolution, resolution).numpy(), origin="lower", extent=extent)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(target)
    for column, title in enumerate(["target", *(f"{kind} {SIZE_NAME[kind]}={size}" for kind, size in columns)]):
        axes[0, column].set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--figures", type=Path, help="write figure4_loss.png and figure4_densities.png here")
    parser.add_argument("--no-densities", action="store_true", help="skip the density grid (it reloads every run)")


def build(args: argparse.Namespace) -> Report:
    check_folders(args.runs)
    runs = find_runs(args.runs)
    if not runs:
        raise nothing_found(
            "density-matching run", args.runs, "node-run -m experiment=nf_density_matching data.target=U1,U2,U3 "
            "model.layers=2,8,32 (and the same with experiment=cnf_density_matching model.width=2,8,32)."
        )
    report = Report(table(runs))
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        figures = {"figure4_loss": loss_figure(runs)}
        if not args.no_densities:
            figures["figure4_densities"] = density_figure(runs)
        for name, figure in figures.items():
            report.files.append(args.figures / f"{name}.png")
            figure.savefig(report.files[-1], dpi=120, bbox_inches="tight")
            plt.close(figure)
    return report
