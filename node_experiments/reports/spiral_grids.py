"""Table 2's grids: the finished spiral runs of a folder, each with its model, n_obs, seed and test range.

A grid folder is a ``node-run -m`` sweep folder (``multirun.yaml``), the records of one (``grid.json``, written by
``node-report records``), or a plain folder of run folders; ``grids.grid_info`` gives what the first two know of
the sweep. A grid's label is the overrides that set it apart, less its axes (``GRID_AXES``): the sweep's own, or
for a plain folder the overrides all its runs share.

A run measures its test spirals (``test_<metric>``) on its configured ``data.test_range`` and, beside them, on the
other range (``test_<range>_range/<metric>``, see ``tasks/sequences.py``); ``SpiralRun.value`` finds the one of
a given range, so that grids run with either setting can be tabulated on the same test spirals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReportError
from .grids import common_overrides, grid_info, not_completed
from .runs import finished_runs, run_config

MODELS = {"spiral_rnn": "RNN", "spiral_latent_ode": "Latent ODE"}
# Overrides that do not set a grid apart: its axes, and settings that do not change results (``data=spirals`` is
# the experiments' own choice; ``solver.adjoint=false``, retired since, gave the gradients of today's default).
GRID_AXES = ("experiment", "data", "data.n_obs", "trainer.seed", "solver.adjoint", "trainer.progress_bar")
DEFAULT_TEST_RANGE = "same"  # runs from before data.test_range existed


def metric_name(metric: str, configured: str, wanted: str | None) -> str:
    """The summary entry of ``metric`` (a ``test_*`` entry) on the ``wanted`` test range, for a run configured with
    ``configured``; metrics of other sets (``test_train_spirals/...``) and ``wanted=None`` are left as they are."""
    if wanted is None or wanted == configured or "/" in metric:
        return metric
    return f"test_{wanted}_range/{metric.removeprefix('test_')}"


@dataclass
class SpiralRun:
    """One finished run of ``spiral_latent_ode`` or ``spiral_rnn``."""

    folder: Path
    experiment: str
    n_obs: int
    seed: int
    test_range: str
    summary: dict

    def value(self, metric: str, test_range: str | None = None) -> float | None:
        """``metric`` of this run, measured on the test spirals of ``test_range`` (None: the run's own)."""
        return self.summary.get(metric_name(metric, self.test_range, test_range))


@dataclass
class Grid:
    """The finished spiral runs of one grid folder, with what is known of its sweep."""

    folder: Path
    label: str
    runs: list[SpiralRun] = field(default_factory=list)
    not_completed: list[str] = field(default_factory=list)
    wall_time_s: float | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted({run.seed for run in self.runs})

    @property
    def train_time_s(self) -> float:
        return sum(run.summary.get("train_time_s") or 0.0 for run in self.runs)

    def n_obs_values(self) -> list[int]:
        return sorted({run.n_obs for run in self.runs})

    def by_seed(self, experiment: str, n_obs: int, metric: str, test_range: str | None = None) -> dict[int, float]:
        """The value of ``metric`` for each seed of the grid's runs of ``experiment`` at ``n_obs`` that have it."""
        found = {run.seed: run.value(metric, test_range) for run in self.runs
                 if (run.experiment, run.n_obs) == (experiment, n_obs)}  # fmt: skip
        return {seed: value for seed, value in found.items() if value is not None}


def read_grid(folder: Path) -> Grid:
    """The spiral runs at or under ``folder``, labelled by the overrides that set the grid apart."""
    runs = []
    for run_dir, summary in finished_runs([folder]):
        if summary.get("experiment") not in MODELS:
            continue
        config = run_config(run_dir)
        runs.append(SpiralRun(run_dir, summary["experiment"], int(config.data.n_obs), int(config.trainer.seed),
                              str(config.data.get("test_range", DEFAULT_TEST_RANGE)), summary))  # fmt: skip
    runs.sort(key=lambda run: (list(MODELS).index(run.experiment), run.n_obs, run.seed))
    for run, after in zip(runs, runs[1:]):
        if (run.experiment, run.n_obs, run.seed) == (after.experiment, after.n_obs, after.seed):
            raise ReportError(f"{folder} holds two {run.experiment} runs at n_obs={run.n_obs}, seed {run.seed} "
                              f"({run.folder} and {after.folder}): a grid has one run per model, n_obs and seed. Give "
                              "each grid's folder on its own (a run and its records are two grids).")
    info = grid_info(folder)
    overrides = info.overrides if info else common_overrides([run.folder for run in runs])
    # node-run gives a sweep across experiments their own keys with ++ (node_experiments/sweeps.py): shown without.
    settings = [item.lstrip("+") for item in overrides if item.split("=", 1)[0].lstrip("+~") not in GRID_AXES]
    return Grid(folder, " ".join(settings) or "defaults", runs,
                info.not_completed if info else not_completed(folder), info.wall_time_s if info else None)
