"""What a grid of runs is beyond its runs' own records: the overrides it swept and its wall time.

A ``node-run -m`` grid (a Hydra sweep folder) keeps both in ``multirun.yaml``: the sweep's overrides under
``hydra.overrides.task``, and its start as the file's modification time (Hydra writes it as the sweep begins), so
that its wall time runs from then to the last ``summary.json`` written. Modification times do not survive a copy
or a git checkout, so a records folder (``node-report records``) keeps both in ``grid.json`` instead, with the
runs that did not complete (their records are not copied). ``grid_info`` reads either; a plain folder of run
folders has neither, and ``common_overrides`` gives what its runs share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ReportError
from ..training.run_logger import SUMMARY_FILE
from .runs import finished_runs

SWEEP_FILE = "multirun.yaml"
GRID_FILE = "grid.json"


@dataclass
class GridInfo:
    """A grid's overrides (as given to ``node-run -m``), wall time (None: unknown) and runs that did not complete
    (their folders, relative to the grid's)."""

    overrides: list[str]
    wall_time_s: float | None = None
    not_completed: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"overrides": self.overrides, "wall_time_s": self.wall_time_s, "not_completed": self.not_completed}


def is_grid(folder: Path) -> bool:
    """Whether ``folder`` is a sweep folder or the records of one."""
    return (folder / GRID_FILE).is_file() or (folder / SWEEP_FILE).is_file()


def grid_info(folder: Path) -> GridInfo | None:
    """The grid's ``grid.json`` (a records folder), else what its ``multirun.yaml`` gives (a sweep folder), else
    None (a plain folder of runs)."""
    if (folder / GRID_FILE).is_file():
        try:
            record = json.loads((folder / GRID_FILE).read_text(encoding="utf-8"))
            return GridInfo(list(record["overrides"]), record.get("wall_time_s"), list(record.get("not_completed", [])))
        except (ValueError, KeyError, TypeError) as error:
            raise ReportError(f"{folder / GRID_FILE} cannot be read ({type(error).__name__}: {error}): it is not one "
                              "that node-report records wrote. Write it again with node-report records SWEEP "
                              "DEST.") from None
    if (folder / SWEEP_FILE).is_file():
        return GridInfo(sweep_overrides(folder), sweep_wall_time(folder), not_completed(folder))
    return None


def sweep_overrides(folder: Path) -> list[str]:
    """The overrides of the sweep in ``folder`` (``multirun.yaml``'s ``hydra.overrides.task``)."""
    path = folder / SWEEP_FILE
    try:
        return list(yaml.safe_load(path.read_text(encoding="utf-8"))["hydra"]["overrides"]["task"])
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise ReportError(f"{path} holds no hydra.overrides.task ({type(error).__name__}: {error}); it is not the "
                          "multirun.yaml of a node-run -m sweep. Give the hydra.sweep.dir of one.") from None


def sweep_wall_time(folder: Path) -> float | None:
    """Seconds from the sweep's start (``multirun.yaml`` written) to the last run's end (its ``summary.json``
    written, however it ended); None before any run has ended."""
    ends = [path.stat().st_mtime for path in folder.rglob(SUMMARY_FILE)]
    return max(ends) - (folder / SWEEP_FILE).stat().st_mtime if ends else None


def not_completed(folder: Path) -> list[str]:
    """The run folders under ``folder`` (those holding ``.hydra/config.yaml``) without a completed run, relative to
    ``folder``."""
    completed = {run for run, _ in finished_runs([folder])}
    started = sorted(path.parent.parent for path in folder.rglob(".hydra/config.yaml"))
    return [run.relative_to(folder).as_posix() for run in started if run not in completed]


def run_overrides(run: Path) -> list[str]:
    """The command-line overrides of one run (``.hydra/overrides.yaml``; none when it is missing)."""
    path = run / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text(encoding="utf-8")) or []) if path.is_file() else []


def common_overrides(runs: list[Path]) -> list[str]:
    """The overrides every run of ``runs`` was started with, in the first run's order."""
    if not runs:
        return []
    shared = set.intersection(*(set(run_overrides(run)) for run in runs))
    return [item for item in run_overrides(runs[0]) if item in shared]
