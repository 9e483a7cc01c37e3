"""Beyond the paper (docs/results/beyond.md): FFJORD on 2-D toys and the MNIST ODE-Net, with and without RNODE's
penalties (``model.regularization``) and ANODE's augmentation (``model.augment_dim``).

    node-report beyond outputs/beyond                              # the folder(s) holding the sweeps
    node-report beyond RUNS... --figures docs/figures --output beyond.md

Every finished ``ffjord_*`` run and every finished ODE-Net classification run under the given paths is read, with
its variant from its ``.hydra/config.yaml`` (``plain``, or the penalty weights ``K=`` and ``B=`` and ``aug=``),
its seed and its per-epoch ``metrics.jsonl``. Runs of one experiment, variant and length are averaged over their
seeds. The report prints:

- the toys: test NLL beside the data's entropy where it is known (``data_entropy`` of the run: E[-log p] on the
  same evaluation samples; their difference estimates KL(p || q)), NFE per training batch in the last epoch
  (forward / backward), CPU time per epoch;
- the ODE-Net: test error, the same NFE and times;
- each variant against the plain runs of the same experiment and length: the NFE ratio (plain / variant, forward
  plus backward, last epoch) and the change of the metric, with the issue's criteria (toys: >= 2x fewer NFE at no
  more than 0.05 nats of NLL; ODE-Net: fewer NFE at no more than 0.1 percentage points of test error).

``--figures DIR`` writes ``beyond_nfe.png`` and ``beyond_time.png`` (NFE per batch and CPU time per epoch against
the epoch, a panel per experiment, a line per variant) and, unless ``--no-densities``, ``beyond_densities.png``
(each toy's learned density per variant, from the first seed's last checkpoint).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import matplotlib.pyplot as plt
import torch
from omegaconf import DictConfig

from ..training.run_logger import METRICS_FILE
from . import Report
from .flows import learned_density
from .runs import check_folders, finished_runs, nothing_found, run_config

ODENET = "node_experiments.models.mnist.ODENet"
TOY_NLL_SLACK = 0.05  # nats: the "NLL at most 0.05 nats worse"
ODENET_ERROR_SLACK = 0.1  # percentage points of test error
NFE_FACTOR = 2.0  # toys: at least 2x fewer NFE per batch


@dataclass
class Run:
    folder: Path
    experiment: str
    variant: str
    seed: int
    epochs: int
    summary: dict
    history: list[dict]

    @property
    def nfe(self) -> float:
        """Forward plus backward NFE per training batch, mean over the last epoch."""
        return self.summary["nfe_forward"] + self.summary["nfe_backward"]

    @property
    def toy(self) -> bool:
        return self.experiment.startswith("ffjord_")


def variant(config: DictConfig) -> str:
    """``plain``, or what the run adds: ``K=w`` (kinetic), ``B=w`` (Jacobian Frobenius), ``aug=a``."""
    model = config.model
    weights = model.get("regularization") or {}
    parts = [f"{name}={weights[key]:g}" for key, name in (("kinetic", "K"), ("jacobian", "B")) if weights.get(key)]
    if model.get("augment_dim"):
        parts.append(f"aug={model.augment_dim}")
    return " ".join(parts) or "plain"


def read_history(folder: Path) -> list[dict]:
    path = folder / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def find_runs(paths: list[Path]) -> list[Run]:
    """The finished FFJORD toy runs and ODE-Net classification runs at or under ``paths``."""
    runs = []
    for folder, summary in finished_runs(paths):
        experiment = str(summary.get("experiment", ""))
        if not (experiment.startswith("ffjord_") or ("test_error" in summary and "nfe_forward" in summary)):
            continue
        config = run_config(folder)
        if not experiment.startswith("ffjord_") and config.model._target_ != ODENET:
            continue
        runs.append(Run(folder, experiment, variant(config), int(config.trainer.seed), int(summary["epochs"]),
                        summary, read_history(folder)))  # fmt: skip
    return sorted(runs, key=lambda run: (not run.toy, run.experiment, run.variant != "plain", run.variant, run.seed))


Group = tuple[str, str, int]  # experiment, variant, epochs


def groups(runs: list[Run]) -> dict[Group, list[Run]]:
    grouped: dict[Group, list[Run]] = defaultdict(list)
    for run in runs:
        grouped[(run.experiment, run.variant, run.epochs)].append(run)
    return dict(grouped)


def _mean(runs: list[Run], key: str) -> float | None:
    values = [run.summary[key] for run in runs if run.summary.get(key) is not None]
    return mean(values) if values else None


def _cpu(runs: list[Run]) -> str:
    """The training loop's CPU time per epoch and per run, means over the seeds."""
    per_run = mean(run.summary["train_cpu_s"] for run in runs)
    return f"{per_run / runs[0].epochs:.0f} s / {per_run / 60:.0f} min"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), "|" + "---|" * len(header), *map(_row, rows)]


def toy_table(grouped: dict[Group, list[Run]]) -> list[str]:
    rows = []
    for (experiment, name, epochs), runs in grouped.items():
        if not experiment.startswith("ffjord_"):
            continue
        nll, entropy = _mean(runs, "test_nll"), _mean(runs, "data_entropy")
        iterations = epochs * int(run_config(runs[0].folder).data.batches_per_epoch)
        rows.append([
            experiment.removeprefix("ffjord_"), name, str(len(runs)), str(iterations), f"{nll:.3f}",
            f"{entropy:.3f}" if entropy is not None else "unknown",
            f"{nll - entropy:.3f}" if entropy is not None else "-",
            f"{_mean(runs, 'nfe_forward'):.1f} / {_mean(runs, 'nfe_backward'):.1f}", _cpu(runs),
        ])  # fmt: skip
    header = ["Data", "Variant", "Seeds", "Iterations", "Test NLL", "Entropy", "NLL - entropy", "NFE fwd / bwd",
              "CPU / epoch / run"]  # fmt: skip
    return _table(header, rows) if rows else []


def odenet_table(grouped: dict[Group, list[Run]]) -> list[str]:
    rows = [
        [name, str(len(runs)), str(epochs), f"{100 * _mean(runs, 'test_error'):.2f}%",
         f"{_mean(runs, 'nfe_forward'):.1f} / {_mean(runs, 'nfe_backward'):.1f}", _cpu(runs)]
        for (experiment, name, epochs), runs in grouped.items() if not experiment.startswith("ffjord_")
    ]  # fmt: skip
    header = ["ODE-Net variant", "Seeds", "Epochs", "Test error", "NFE fwd / bwd", "CPU / epoch / run"]
    return _table(header, rows) if rows else []


def comparison_table(grouped: dict[Group, list[Run]]) -> list[str]:
    """Each variant against the plain runs of its experiment and length, on the seeds both have (the issue's "same
    seeds and steps"): NFE ratio, metric change, criteria."""
    rows = []
    for (experiment, name, epochs), variant_runs in grouped.items():
        plain_runs = grouped.get((experiment, "plain", epochs), [])
        seeds = {run.seed for run in variant_runs} & {run.seed for run in plain_runs}
        if name == "plain" or not seeds:
            continue
        runs = [run for run in variant_runs if run.seed in seeds]
        plain = [run for run in plain_runs if run.seed in seeds]
        ratio = mean(run.nfe for run in plain) / mean(run.nfe for run in runs)
        if experiment.startswith("ffjord_"):
            change = _mean(runs, "test_nll") - _mean(plain, "test_nll")
            shown = f"{change:+.3f} nats"
            holds = ratio >= NFE_FACTOR and change <= TOY_NLL_SLACK
        else:
            change = 100 * (_mean(runs, "test_error") - _mean(plain, "test_error"))
            shown = f"{change:+.2f} pp"
            holds = ratio > 1 and change <= ODENET_ERROR_SLACK
        seed_list = ", ".join(map(str, sorted(seeds)))
        rows.append([experiment, name, str(epochs), seed_list, f"{ratio:.2f}x", shown, "yes" if holds else "no"])
    header = ["Experiment", "Variant", "Epochs", "Seeds", "NFE plain / variant", "Metric change", "Criterion holds"]
    return _table(header, rows) if rows else []


NOTES = [
    "",
    "NFE: function evaluations per training batch, forward / backward, mean over the last epoch (the comparison adds "
    "both). CPU / epoch / run: the training loop's process time per epoch and per run, evaluation excluded. "
    "Entropy: E[-log p(x)] of the data on the run's evaluation samples (unknown where the density has no closed "
    "form); NLL - entropy estimates KL(p || q). Augmented flows (aug=) report the NLL's variational upper bound.",
    f"Criterion: toys, NFE plain / variant >= {NFE_FACTOR:g} with the NLL at most {TOY_NLL_SLACK} nats worse; "
    f"ODE-Net, fewer NFE with the test error at most {ODENET_ERROR_SLACK} percentage points worse.",
]


def curves_figure(grouped: dict[Group, list[Run]], value: str, label: str) -> plt.Figure:
    """``value`` of each epoch's record against the epoch: a panel per experiment (four to a row), a line per
    variant and length (the mean over seeds)."""
    experiments = sorted({experiment for experiment, _, _ in grouped})
    columns = min(4, len(experiments))
    rows = -(-len(experiments) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[len(experiments):]:
        axis.set_visible(False)
    for axis, experiment in zip(axes.flat, experiments):
        for (name_experiment, name, epochs), runs in sorted(grouped.items()):
            if name_experiment != experiment:
                continue
            length = min(len(run.history) for run in runs)
            if not length:
                continue
            series = [mean(_epoch_value(run.history[i], value) for run in runs) for i in range(length)]
            axis.plot(range(1, length + 1), series, label=name if len({e for _, _, e in grouped}) == 1 else
                      f"{name} ({epochs} ep)")  # fmt: skip
        axis.set_title(experiment, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    for row in axes:
        row[0].set_ylabel(label)
    figure.tight_layout()
    return figure


def _epoch_value(record: dict, value: str) -> float:
    if value == "nfe":
        return record["nfe/forward"] + record["nfe/backward"]
    return record[value]


def density_figure(grouped: dict[Group, list[Run]], limit: float = 4.0, resolution: int = 100) -> plt.Figure:
    """Each toy (rows) by variant (columns): the learned density of the first seed's last checkpoint."""
    toys = sorted({experiment for experiment, _, _ in grouped if experiment.startswith("ffjord_")})
    variants = sorted({name for experiment, name, _ in grouped if experiment in toys}, key=lambda v: (v != "plain", v))
    axis_values = torch.linspace(-limit, limit, resolution)
    ys, xs = torch.meshgrid(axis_values, axis_values, indexing="ij")
    points = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)
    figure, axes = plt.subplots(len(toys), len(variants), figsize=(2.0 * len(variants), 2.0 * len(toys)),
                                squeeze=False)  # fmt: skip
    for row, toy in enumerate(toys):
        for column, name in enumerate(variants):
            axis = axes[row, column]
            runs = [run for (e, v, _), group in grouped.items() if e == toy and v == name for run in group]
            if runs:
                first = min(runs, key=lambda run: (-run.epochs, run.seed))  # the longest run's first seed
                image = learned_density(first.folder, points).reshape(resolution, resolution)
                axis.imshow(image.numpy(), origin="lower", extent=[-limit, limit, -limit, limit])
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(toy.removeprefix("ffjord_"))
    for column, name in enumerate(variants):
        axes[0, column].set_title(name, fontsize=9)
    figure.tight_layout()
    return figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")
    parser.add_argument("--figures", type=Path, help="write beyond_nfe.png, beyond_time.png, beyond_densities.png here")
    parser.add_argument("--no-densities", action="store_true", help="skip the density grid (it reloads every toy)")


def build(args: argparse.Namespace) -> Report:
    check_folders(args.runs)
    runs = find_runs(args.runs)
    if not runs:
        raise nothing_found(
            "FFJORD toy or ODE-Net run", args.runs, "the sweeps of docs/results/beyond.md, e.g. node-run -m "
            "experiment=ffjord_8gaussians,ffjord_checkerboard model.regularization.kinetic=0,0.01 "
            "hydra.sweep.dir=outputs/beyond/toys."
        )
    grouped = groups(runs)
    sections = [toy_table(grouped), odenet_table(grouped), comparison_table(grouped)]
    lines = [line for section in sections if section for line in [*section, ""]]
    report = Report("\n".join(lines[:-1] + NOTES) + "\n")
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        figures = {
            "beyond_nfe": curves_figure(grouped, "nfe", "NFE per batch (fwd + bwd)"),
            "beyond_time": curves_figure(grouped, "time/epoch_cpu_s", "CPU s per epoch"),
        }
        if not args.no_densities and any(run.toy for run in runs):
            figures["beyond_densities"] = density_figure(grouped)
        for name, figure in figures.items():
            report.files.append(args.figures / f"{name}.png")
            figure.savefig(report.files[-1], dpi=120, bbox_inches="tight")
            plt.close(figure)
    return report
