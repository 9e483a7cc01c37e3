"""Table 2 of Chen et al. (2018, section 5.1) from spiral grids: Markdown tables beside the paper's numbers.

A grid is one Hydra sweep of both spiral experiments over data.n_obs and seeds, run by Hydra's launcher:

    node-run -m experiment=spiral_latent_ode,spiral_rnn data.n_obs=30,50,100 trainer.seed=0,1,2 \\
        hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=outputs/table2/default
    node-report table2 outputs/table2/default                     # Table 2 of that grid
    node-report table2 outputs/table2/noise_0.3 outputs/table2/default outputs/table2/noise_0.05
    node-report table2 outputs/table2/default --definitions       # every RMSE definition, from the same runs
    node-report table2 outputs/table2/default --figures docs/figures   # Figures 8-9, first seed, n_obs 30
    node-report table2 outputs/table2/default --retest data.test_range=observed   # other test spirals

The table has a row per grid and model, labelled by the overrides that set the grid apart (the paper's rows
first), with the grid's wall time (its sweep's start to its last run's end) and its runs' training time. Cells are the
mean ± std over seeds of the chosen metric (``--metric``, by default ``test_rmse_extrapolation_clean``: against the
noise-free spirals, per coordinate; ``node_experiments/tasks/sequence_metrics.py`` defines them all); a cell with
fewer runs than the grid's seeds says how many it has. Runs that did not complete (no ``summary.json``, or one whose
``status`` is not ``completed``) are left out and named.

``--retest KEY=VALUE ...`` evaluates each run's trained model (its last checkpoint) again, on the test spirals of its
data settings changed by these overrides, and tabulates that instead. It refuses overrides that change the training
spirals: the models are then exactly those a grid run with the overrides would have trained (``data.test_range``
moves only the test spirals, for instance), and no training needs repeating.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ReportError
from ..training.run_logger import SUMMARY_FILE
from . import Report
from .runs import check_folders, finished_runs, nothing_found, run_config

MODELS = {"spiral_rnn": "RNN", "spiral_latent_ode": "Latent ODE"}
# The paper's Table 2: predictive RMSE on the test set, by number of observed time points.
PAPER = {
    "spiral_rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813},
    "spiral_latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346},
}
METRIC = "test_rmse_extrapolation_clean"
# Overrides that do not set a grid apart: its axes, and settings that do not change results (``data=spirals`` is
# the experiments' own choice; ``solver.adjoint=false``, retired since, gave the gradients of today's default).
GRID_AXES = ("experiment", "data", "data.n_obs", "trainer.seed", "solver.adjoint", "trainer.progress_bar")


@dataclass
class Grid:
    """The finished runs of one sweep folder, by (experiment, n_obs)."""

    folder: Path
    label: str
    runs: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    seeds: set[int] = field(default_factory=set)
    unfinished: list[Path] = field(default_factory=list)
    wall_time_s: float = float("nan")
    train_time_s: float = 0.0


def read_grid(folder: Path) -> Grid:
    """The runs under ``folder`` (a ``hydra.sweep.dir``), labelled by the sweep's own overrides."""
    sweep = folder / "multirun.yaml"
    if not sweep.exists():
        raise ReportError(f"{folder} holds no multirun.yaml: give the hydra.sweep.dir of a node-run -m grid "
                          "(node-run -m experiment=spiral_latent_ode,spiral_rnn ... hydra.sweep.dir=FOLDER).")
    overrides = yaml.safe_load(sweep.read_text(encoding="utf-8"))["hydra"]["overrides"]["task"]
    # node-run gives a sweep across experiments their own keys with ++ (node_experiments/sweeps.py): shown without.
    settings = [item.lstrip("+") for item in overrides if item.split("=", 1)[0].lstrip("+~") not in GRID_AXES]
    grid = Grid(folder, " ".join(settings) or "defaults")
    runs = defaultdict(list)
    ends, completed = [], set()
    for run_dir, summary in finished_runs([folder]):
        completed.add(run_dir)
        config = run_config(run_dir)
        runs[summary["experiment"], int(config["data"]["n_obs"])].append(summary)
        grid.seeds.add(int(config["trainer"]["seed"]))
        grid.train_time_s += summary.get("train_time_s", 0.0)
        ends.append((run_dir / SUMMARY_FILE).stat().st_mtime)
    grid.runs = dict(runs)
    grid.unfinished = sorted(path.parent.parent for path in folder.glob("*/.hydra/config.yaml")
                             if path.parent.parent not in completed)
    if ends:
        grid.wall_time_s = max(ends) - sweep.stat().st_mtime
    return grid


def mean_std(values: list[float], seeds: int) -> str:
    if not values:
        return "-"
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    count = f" ({len(values)} runs)" if len(values) != seeds else ""
    return f"{statistics.mean(values):.3f}{spread}{count}"


def n_obs_values(grids: list[Grid]) -> list[int]:
    """The paper's columns and any other n_obs the grids ran."""
    return sorted({n for grid in grids for _, n in grid.runs} | set(PAPER["spiral_rnn"]))


def results_table(grids: list[Grid], metric: str) -> str:
    """One row per grid and model (the paper's first), one column per n_obs, with each grid's times."""
    columns = n_obs_values(grids)
    header = ["Grid", "Model"] + [f"n = {n}" for n in columns] + ["wall time", "training"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for experiment, name in MODELS.items():
        paper = [f"{PAPER[experiment][n]:.4f}" if n in PAPER[experiment] else "-" for n in columns]
        lines.append("| " + " | ".join(["paper", name] + paper + ["", ""]) + " |")
    for grid in grids:
        for experiment, name in MODELS.items():
            cells = [
                mean_std([s[metric] for s in grid.runs.get((experiment, n), []) if metric in s], len(grid.seeds))
                for n in columns
            ]
            last = experiment == list(MODELS)[-1]
            times = [f"{grid.wall_time_s / 60:.0f} min", f"{grid.train_time_s / 60:.0f} min"] if last else ["", ""]
            lines.append("| " + " | ".join([f"`{grid.label}`", name] + cells + times) + " |")
    return "\n".join(lines)


def definitions_table(grid: Grid) -> str:
    """Every RMSE a run recorded, by model and n_obs: the metric definitions, from the same runs."""
    columns = sorted({n for _, n in grid.runs})
    metrics = sorted({name for summaries in grid.runs.values() for s in summaries for name in s
                      if name.startswith("test_rmse_")})
    header = ["Metric", "Model"] + [f"n = {n}" for n in columns]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for metric in metrics:
        for experiment, name in MODELS.items():
            cells = [mean_std([s[metric] for s in grid.runs.get((experiment, n), []) if metric in s], len(grid.seeds))
                     for n in columns]
            lines.append(f"| `{metric.removeprefix('test_')}` | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retest(grid: Grid, overrides: list[str]) -> None:
    """Replace the grid's metrics by those of its trained models on the test spirals ``overrides`` give."""
    import torch
    from omegaconf import OmegaConf

    from ..studies.trained_run import load_trained_run
    from ..tasks import build_task

    torch.set_num_threads(1)
    device = torch.device("cpu")
    retested = defaultdict(list)
    for run_dir, summary in finished_runs([grid.folder]):
        run = load_trained_run(run_dir, device, key="run folder")
        config = OmegaConf.merge(OmegaConf.create(run.config), OmegaConf.from_dotlist(overrides))
        before, after = (task.dataloaders(torch.Generator()) for task in (run.task(device), build_task(config, device)))
        if not all(torch.equal(x, y) for x, y in zip(_tensors(before[0]), _tensors(after[0]))):
            raise ReportError(f"--retest {' '.join(overrides)} changes the training spirals of {run_dir}; only "
                              "overrides that leave them as they were (such as data.test_range) can be retested.")
        metrics = build_task(config, device).evaluate(run.model, after[1])
        key = (summary["experiment"], int(config.data.n_obs))
        retested[key].append({**summary, **{f"test_{name}": value for name, value in metrics.items()}})
    grid.runs = dict(retested)
    grid.label += f" (retested: {' '.join(overrides)})"


def _tensors(loader) -> list:
    spirals = loader.dataset.spirals
    return [spirals.observations, spirals.obs_times, spirals.noisy, spirals.clockwise]


def run_folder(grid: Grid, experiment: str, n_obs: int, seed: int) -> Path | None:
    for run_dir, summary in finished_runs([grid.folder]):
        config = run_config(run_dir)
        if (summary["experiment"], config["data"]["n_obs"], config["trainer"]["seed"]) == (experiment, n_obs, seed):
            return run_dir
    return None


def figures(grid: Grid, out: Path, n_obs: int) -> list[Path]:
    """Figure 8 (both models on the first test spirals, from their checkpoints) and Figure 9 (the latent ODE run's
    latent trajectories) of the grid's first seed at ``n_obs``."""
    import torch

    from ..studies.trained_run import load_trained_run
    from ..tasks.sequence_figures import predictions_figure

    out.mkdir(parents=True, exist_ok=True)
    written = []
    seed = min(grid.seeds)
    predictions, batch = {}, None
    for experiment, name in MODELS.items():
        folder = run_folder(grid, experiment, n_obs, seed)
        if folder is None:
            raise ReportError(f"{grid.folder} has no finished {experiment} run at n_obs={n_obs}, seed {seed}.")
        run = load_trained_run(folder, torch.device("cpu"), key="run folder")
        task = run.task(torch.device("cpu"))
        _, test_loader = task.dataloaders(torch.Generator())
        batch = task.example_batch(test_loader, task.cfg.task.figure_spirals)
        with torch.no_grad():
            predictions[name] = task.predict(run.model, batch, test_loader)
        if experiment == "spiral_latent_ode":
            written.append(out / f"spirals_figure9_n{n_obs}.png")
            shutil.copyfile(folder / "figures" / "latent_trajectories.png", written[-1])
    written.append(out / f"spirals_figure8_n{n_obs}.png")
    predictions_figure(batch, predictions).savefig(written[-1], dpi=110, bbox_inches="tight")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grids", type=Path, nargs="+", help="hydra.sweep.dir folders of node-run -m grids")
    parser.add_argument("--metric", default=METRIC, help=f"summary.json entry to tabulate (default {METRIC})")
    parser.add_argument("--definitions", action="store_true", help="every RMSE definition of the first grid")
    parser.add_argument("--figures", type=Path, help="write Figures 8 and 9 of the first grid into this folder")
    parser.add_argument("--figure-n-obs", type=int, default=30, help="n_obs of the figures (default 30, as Figure 8)")
    parser.add_argument(
        "--retest", nargs="+", metavar="KEY=VALUE", help="evaluate the trained models on other test spirals"
    )


def build(args: argparse.Namespace) -> Report:
    check_folders(args.grids)
    grids = [read_grid(folder) for folder in args.grids]
    if not any(grid.runs for grid in grids):
        raise nothing_found("spiral run", args.grids, "node-run -m experiment=spiral_latent_ode,spiral_rnn "
                            "data.n_obs=30,50,100 trainer.seed=0,1,2 hydra.sweep.dir=FOLDER")
    for grid in grids if args.retest else []:
        retest(grid, args.retest)
    lines = [results_table(grids, args.metric), ""]
    for grid in grids:
        runs = sum(len(summaries) for summaries in grid.runs.values())
        unfinished = "; not completed: " + ", ".join(map(str, grid.unfinished)) if grid.unfinished else ""
        lines.append(f"`{grid.label}` ({grid.folder.name}): {runs} runs, seeds {sorted(grid.seeds)}{unfinished}")
    if args.definitions:
        lines += ["", definitions_table(grids[0])]
    files = figures(grids[0], args.figures, args.figure_n_obs) if args.figures else []
    return Report("\n".join(lines) + "\n", files)
