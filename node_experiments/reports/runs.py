"""Finding finished runs: every report reads the runs it tabulates through ``finished_runs``.

A run is finished when its ``summary.json`` (written by ``training.run_logger`` however a run ends) says it
trained all its epochs; runs that diverged, failed or were interrupted are left out. The reports take run folders
or any folder above them (a sweep folder, a whole ``outputs/``) and pick the runs of their own kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ReportError
from ..training.run_logger import COMPLETED, SUMMARY_FILE


def finished_runs(paths: list[Path]) -> list[tuple[Path, dict]]:
    """(run folder, summary) for every completed run at or under ``paths`` (runs that stopped early are left out)."""
    found = [
        (summary_file.parent, json.loads(summary_file.read_text(encoding="utf-8")))
        for path in paths
        for summary_file in sorted(Path(path).rglob(SUMMARY_FILE))
    ]
    return [(folder, summary) for folder, summary in found if is_completed(summary)]


def is_completed(summary: Mapping[str, Any]) -> bool:
    """Whether a run's summary says it trained all its epochs (summaries without a status predate the field)."""
    return summary.get("status", COMPLETED) == COMPLETED


def run_config(folder: Path) -> DictConfig:
    """The composed config a run was started with (Hydra's ``<run>/.hydra/config.yaml``, which node-run writes)."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ReportError(f"{folder} holds a summary.json but no .hydra/config.yaml: the reports read runs that "
                          "node-run started (it writes both); leave this folder out or run it with node-run.")
    return OmegaConf.load(path)


def check_folders(paths: list[Path]) -> None:
    """Raise ``ReportError`` (exit status 2) naming every path that is not a folder."""
    missing = [str(path) for path in paths if not Path(path).is_dir()]
    if missing:
        raise ReportError(f"not a folder: {', '.join(missing)}. Give run folders or the folders holding them "
                          "(a sweep folder, outputs/).", exit_status=2)


def nothing_found(what: str, paths: list[Path], how: str) -> ReportError:
    """The error for folders that hold no finished run of a report's kind; ``how`` is the command that makes one."""
    return ReportError(f"no finished {what} under {', '.join(map(str, paths))}. Make them first: {how}")
