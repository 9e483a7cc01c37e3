"""Table 2 of Chen et al. (2018, section 5.1) from spiral grids: Markdown tables beside the paper's numbers.

A grid is one Hydra sweep of both spiral experiments over data.n_obs and seeds, run by Hydra's launcher:

    node-run -m experiment=spiral_latent_ode,spiral_rnn data.n_obs=30,50,100 trainer.seed=0,1,2,3,4 \\
        hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir=outputs/table2/default
    node-report table2 outputs/table2/default                     # Table 2 of that grid
    node-report table2 docs/results/runs/table2/default           # the same from its records (node-report records)
    node-report table2 outputs/table2/noise_0.3 outputs/table2/default outputs/table2/noise_0.05
    node-report table2 outputs/table2/default --test-range observed   # on test spirals in the observed range
    node-report table2 outputs/table2/default --metrics           # and the consistency table
    node-report table2 outputs/table2/default --definitions       # every RMSE definition, from the same runs
    node-report table2 outputs/table2/default --figures docs/figures   # Figures 8-9, first seed, n_obs 30
    node-report table2 outputs/table2/default --retest data.test_range=observed   # other test spirals

A grid folder is a sweep folder, the records of one, or a plain folder of run folders (``spiral_grids``). The table
has a row per grid, model and n_obs, labelled by the overrides that set the grid apart (the paper's value beside
each), and gives the chosen metric (``--metric``, by default ``test_rmse_extrapolation_clean``: against the
noise-free spirals, per coordinate; ``node_experiments/tasks/sequence_metrics.py`` defines them all) over seeds as
mean ± std, median and the value of every seed (``seed_stats``), so that a lucky or unlucky seed shows. A line per
grid gives its runs, seeds, wall time (its sweep's start to its last run's end; from ``grid.json`` for records,
omitted when unknown) and its runs' training time; runs that did not complete are left out and named.

``--test-range same|observed`` tabulates every grid on the test spirals of that range, whatever its runs were
configured with: each run also measured the other range (``test_observed_range/...`` or ``test_same_range/...``).
``--metrics [METRIC ...]`` adds a second table of the same statistics for other summary entries, by default the
extrapolation of training spirals beside test spirals and the latent ODE's consistency (``CONSISTENCY``).

``--retest KEY=VALUE ...`` evaluates each run's trained model (its last checkpoint) again, on the test spirals of its
data settings changed by these overrides, and tabulates that instead. It refuses overrides that change the training
spirals: the models are then exactly those a grid run with the overrides would have trained (``data.test_range``
moves only the test spirals, for instance), and no training needs repeating. ``--retest`` and ``--figures`` need the
run folders node-run wrote (records keep no checkpoint).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..data.spirals import TEST_RANGES
from ..errors import ReportError
from ..training.checkpoint import CHECKPOINT_DIR, LAST
from . import Report
from .runs import check_folders, nothing_found
from .seed_stats import mean_std, seed_cells
from .spiral_grids import MODELS, Grid, SpiralRun, read_grid

# The paper's Table 2: predictive RMSE on the test set, by number of observed time points.
PAPER = {
    "spiral_rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813},
    "spiral_latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346},
}
METRIC = "test_rmse_extrapolation_clean"
# Whether a run's extrapolation is learnt or luck (tasks/sequences.py): test against training spirals, pooled and
# for the median spiral, and the latent ODE's latent_gap (0: a consistent state space; sequence_metrics.latent_gaps).
CONSISTENCY = (
    "test_rmse_extrapolation_clean", "test_train_spirals/rmse_extrapolation_clean",
    "test_rmse_extrapolation_clean_median", "test_train_spirals/rmse_extrapolation_clean_median",
    "test_latent_gap", "test_train_spirals/latent_gap",
)  # fmt: skip
STATISTICS = ["mean ± std", "median", "per seed"]


def range_text(test_range: str | None) -> str:
    return "each run's own test spirals" if test_range is None else f"test spirals of data.test_range={test_range}"


def rows(grids: list[Grid], metrics: list[str]) -> Iterator[tuple[list[str], Grid, str, int, str]]:
    """(the row's first cells: grid, model, n_obs; grid, experiment, n_obs, metric) for each grid, model, n_obs and
    metric of which the grid has runs."""
    for grid in grids:
        for experiment, name in MODELS.items():
            for n_obs in grid.n_obs_values():
                if not any((run.experiment, run.n_obs) == (experiment, n_obs) for run in grid.runs):
                    continue
                for metric in metrics:
                    yield [f"`{grid.label}`", name, str(n_obs)], grid, experiment, n_obs, metric


def markdown(header: list[str], lines: list[list[str]], grouped: int) -> str:
    """A Markdown table; of its first ``grouped`` columns, a cell that repeats the row above (with all cells left
    of it) is left blank, so that each grid and model is named once."""
    shown = [[cell if i >= grouped or cells[: i + 1] != above[: i + 1] else "" for i, cell in enumerate(cells)]
             for above, cells in zip([[]] + lines, lines)]  # fmt: skip
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
                      *("| " + " | ".join(cells) + " |" for cells in shown)])  # fmt: skip


def results_table(grids: list[Grid], metric: str, test_range: str | None) -> str:
    """One row per grid, model and n_obs: the paper's value, then the metric's statistics over seeds."""
    lines = []
    for first, grid, experiment, n_obs, _ in rows(grids, [metric]):
        paper = PAPER[experiment].get(n_obs)
        by_seed = grid.by_seed(experiment, n_obs, metric, test_range)
        lines.append([*first, f"{paper:.4f}" if paper else "-", *seed_cells(by_seed, len(grid.seeds))])
    return f"`{metric.removeprefix('test_')}` on {range_text(test_range)}, over seeds:\n\n" + markdown(
        ["Grid", "Model", "n", "paper", *STATISTICS], lines, grouped=2)


def metrics_table(grids: list[Grid], metrics: list[str], test_range: str | None) -> str:
    """One row per grid, model, n_obs and metric (those the model's runs have), with the statistics over seeds."""
    lines = []
    for first, grid, experiment, n_obs, metric in rows(grids, metrics):
        by_seed = grid.by_seed(experiment, n_obs, metric, test_range)
        if by_seed:
            lines.append([*first, f"`{metric.removeprefix('test_')}`", *seed_cells(by_seed, len(grid.seeds))])
    return (f"Extrapolation of training against test spirals, and consistency, on {range_text(test_range)}:\n\n"
            + markdown(["Grid", "Model", "n", "metric", *STATISTICS], lines, grouped=3))


def grid_line(grid: Grid) -> str:
    """The grid's runs, seeds, times and the runs left out."""
    times = [] if grid.wall_time_s is None else [f"wall time {grid.wall_time_s / 60:.0f} min"]
    times.append(f"training {grid.train_time_s / 60:.0f} min (all runs)")
    unfinished = f"; not completed: {', '.join(grid.not_completed)}" if grid.not_completed else ""
    runs = f"{len(grid.runs)} run{'s' if len(grid.runs) != 1 else ''}"
    return (f"`{grid.label}` ({grid.folder.name}): {runs}, seeds {grid.seeds}, {', '.join(times)}"
            f"{unfinished}")


def definitions_table(grid: Grid) -> str:
    """Every RMSE a run recorded, by model and n_obs: the metric definitions, from the same runs."""
    columns = grid.n_obs_values()
    metrics = sorted({name for run in grid.runs for name in run.summary if name.startswith("test_rmse_")})
    header = ["Metric", "Model"] + [f"n = {n}" for n in columns]
    lines = []
    for metric in metrics:
        for experiment, name in MODELS.items():
            cells = [mean_std(list(grid.by_seed(experiment, n, metric).values()), len(grid.seeds)) for n in columns]
            lines.append([f"`{metric.removeprefix('test_')}`", name, *cells])
    return markdown(header, lines, grouped=1)


def with_checkpoint(run: SpiralRun, option: str) -> Path:
    """The run's folder, when it holds the checkpoint that ``option`` needs."""
    if not (run.folder / CHECKPOINT_DIR / LAST).is_file():
        raise ReportError(f"{option} needs the trained models, and {run.folder} holds no {CHECKPOINT_DIR}/{LAST} "
                          "(run records keep none): give the run folders node-run wrote (outputs/...).")
    return run.folder


def retest(grid: Grid, overrides: list[str]) -> None:
    """Replace the grid's metrics by those of its trained models on the test spirals ``overrides`` give."""
    import torch
    from omegaconf import OmegaConf

    from ..studies.trained_run import load_trained_run
    from ..tasks import build_task

    torch.set_num_threads(1)
    device = torch.device("cpu")
    retested = []
    for run in grid.runs:
        trained = load_trained_run(with_checkpoint(run, "--retest"), device, key="run folder")
        config = OmegaConf.merge(OmegaConf.create(trained.config), OmegaConf.from_dotlist(overrides))
        task = build_task(config, device)  # evaluate needs the task whose dataloaders made the test loader
        before, after = trained.task(device).dataloaders(torch.Generator()), task.dataloaders(torch.Generator())
        if not all(torch.equal(x, y) for x, y in zip(_tensors(before[0]), _tensors(after[0]))):
            raise ReportError(f"--retest {' '.join(overrides)} changes the training spirals of {run.folder}; only "
                              "overrides that leave them as they were (such as data.test_range) can be retested.")
        metrics = task.evaluate(trained.model, after[1])
        summary = {**run.summary, **{f"test_{name}": value for name, value in metrics.items()}}
        retested.append(SpiralRun(run.folder, run.experiment, run.n_obs, run.seed, str(config.data.test_range),
                                  summary))  # fmt: skip
    grid.runs = retested
    grid.label += f" (retested: {' '.join(overrides)})"


def _tensors(loader) -> list:
    spirals = loader.dataset.spirals
    return [spirals.observations, spirals.obs_times, spirals.noisy, spirals.clockwise]


def figures(grid: Grid, out: Path, n_obs: int) -> list[Path]:
    """Figure 8 (both models on the first test spirals, from their checkpoints) and Figure 9 (the latent ODE run's
    latent trajectories) of the grid's first seed at ``n_obs``."""
    import torch

    from ..studies.trained_run import load_trained_run
    from ..tasks.sequence_figures import predictions_figure

    seed = min(grid.seeds)
    found = {(run.experiment, run.n_obs, run.seed): run for run in grid.runs}
    missing = [experiment for experiment in MODELS if (experiment, n_obs, seed) not in found]
    if missing:
        raise ReportError(f"{grid.folder} has no finished {' or '.join(missing)} run at n_obs={n_obs}, seed {seed}: "
                          "choose another --figure-n-obs.")
    folders = {experiment: with_checkpoint(found[experiment, n_obs, seed], "--figures") for experiment in MODELS}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    predictions, batch = {}, None
    for experiment, name in MODELS.items():
        run = load_trained_run(folders[experiment], torch.device("cpu"), key="run folder")
        task = run.task(torch.device("cpu"))
        _, test_loader = task.dataloaders(torch.Generator())
        batch = task.example_batch(test_loader, task.figure_spirals)
        with torch.no_grad():
            predictions[name] = task.predict(run.model, batch, test_loader)
        if experiment == "spiral_latent_ode":
            written.append(out / f"spirals_figure9_n{n_obs}.png")
            shutil.copyfile(folders[experiment] / "figures" / "latent_trajectories.png", written[-1])
    written.append(out / f"spirals_figure8_n{n_obs}.png")
    predictions_figure(batch, predictions).savefig(written[-1], dpi=110, bbox_inches="tight")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("grids", type=Path, nargs="+",
                        help="grid folders: node-run -m sweep folders, their records, or folders of run folders")
    parser.add_argument("--metric", default=METRIC, help=f"summary.json entry to tabulate (default {METRIC})")
    parser.add_argument("--test-range", choices=TEST_RANGES,
                        help="tabulate every grid on the test spirals of this data.test_range (default: the runs' own)")
    parser.add_argument("--metrics", nargs="*", metavar="METRIC",
                        help="a second table of these summary.json entries (none named: training against test "
                             "spirals and consistency)")
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
    lines = [results_table(grids, args.metric, args.test_range), "", *map(grid_line, grids)]
    if args.metrics is not None:
        lines += ["", metrics_table(grids, args.metrics or list(CONSISTENCY), args.test_range)]
    if args.definitions:
        lines += ["", definitions_table(grids[0])]
    files = figures(grids[0], args.figures, args.figure_n_obs) if args.figures else []
    return Report("\n".join(lines) + "\n", files)
