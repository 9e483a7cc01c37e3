"""``node-report records SRC... DEST``: the small records of finished runs, to commit beside the pages they feed.

    node-report records outputs/table1/e10 docs/results/runs/table1/e10
    node-report records outputs/table2/default outputs/table2/forecast docs/results/runs/table2 --without-metrics

For every finished run at or under SRC (a run folder, a sweep folder, or any folder above them) it copies the files
the reports read, keeping their place relative to SRC: ``.hydra/config.yaml`` and ``.hydra/overrides.yaml`` (the
composed config and the command line's overrides), ``summary.json`` and ``metrics.jsonl`` (one line per epoch). It
leaves out what is large or tied to this machine: TensorBoard events, checkpoints, figures, logs and Hydra's own
``hydra.yaml``. Values tied to the machine are made neutral in every file copied: ``summary.json``'s ``run_dir``
becomes the run's folder relative to SRC, any other absolute path under SRC the path relative to SRC, and an
absolute path elsewhere ``<elsewhere>/<its last part>`` (``data.root=/home/me/mnist`` -> ``<elsewhere>/mnist``).
Each sweep folder at or under SRC gets a ``grid.json`` among its copied runs (``grids``): the sweep's overrides,
its wall time, and the runs that did not complete, whose records are not copied.

With one SRC, DEST becomes its copy; with several, each is copied to ``DEST/<SRC's name>``. Files already in DEST
are overwritten. ``--without-metrics`` leaves metrics.jsonl out: Table 2's reports read summaries only, and a
500-epoch spiral run's metrics.jsonl is about 1 MB. The trained model of a run is another command, ``node-report
model-state``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..errors import ReportError
from ..training.run_logger import METRICS_FILE, SUMMARY_FILE, write_json
from . import Report
from .grids import GRID_FILE, SWEEP_FILE, grid_info
from .runs import check_folders, finished_runs, nothing_found

CONFIG_FILES = (".hydra/config.yaml", ".hydra/overrides.yaml")
ELSEWHERE = "<elsewhere>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                        help="run or sweep folders, or folders holding them")
    parser.add_argument("destination", type=Path, metavar="DEST", help="the folder the records go to")
    parser.add_argument("--without-metrics", action="store_true", help="leave each run's metrics.jsonl out")


def build(args: argparse.Namespace) -> Report:
    sources, destination = args.sources, args.destination
    check_folders(sources)
    targets = destinations(sources, destination)
    found = {source: finished_runs([source]) for source in sources}
    if not any(found.values()):
        raise nothing_found("run", sources, "node-run experiment=... (or node-run -m ...)")
    lines, files = [], []
    for source, target in targets.items():
        written = [path for run, summary in found[source]
                   for path in copy_run(run, source, target / run.relative_to(source), summary,
                                        metrics=not args.without_metrics)]  # fmt: skip
        grids = sorted({path.parent for name in (SWEEP_FILE, GRID_FILE) for path in source.rglob(name)})
        for grid in grids:
            written.append(target / grid.relative_to(source) / GRID_FILE)
            written[-1].parent.mkdir(parents=True, exist_ok=True)
            write_json(written[-1], neutral(grid_info(grid).as_json(), source))
        size = sum(path.stat().st_size for path in written)
        lines.append(f"{source} -> {target}: {len(found[source])} runs, {len(grids)} grids, {len(written)} files, "
                     f"{size / 1e6:.2f} MB")
        files += written
    return Report("\n".join(lines) + "\n", files)


def destinations(sources: list[Path], destination: Path) -> dict[Path, Path]:
    """Where each source's records go; refuses two sources of one name, and a destination inside a source."""
    if len(sources) == 1:
        targets = {sources[0]: destination}
    else:
        targets = {source: destination / source.resolve().name for source in sources}
        if len(set(targets.values())) < len(targets):
            raise ReportError(f"two of {', '.join(map(str, sources))} have the same name, so their records would "
                              f"land in the same folder of {destination}: copy them one at a time, each to its own "
                              "DEST.", exit_status=2)
    for source in sources:
        if destination.resolve().is_relative_to(source.resolve()):
            raise ReportError(f"DEST {destination} lies inside SRC {source}: the next copy would copy the records "
                              "again. Give a DEST outside it (docs/results/runs/...).", exit_status=2)
    return targets


def copy_run(run: Path, source: Path, target: Path, summary: dict, metrics: bool) -> list[Path]:
    """Copy one run's records from ``run`` into ``target``, machine paths made neutral; the files written."""
    written = []
    for name in CONFIG_FILES:
        if (run / name).is_file():
            written.append(target / name)
            copy_yaml(run / name, written[-1], source)
    written.append(target / SUMMARY_FILE)
    target.mkdir(parents=True, exist_ok=True)
    write_json(written[-1], neutral({**summary, "run_dir": run.relative_to(source).as_posix()}, source))
    if metrics and (run / METRICS_FILE).is_file():
        written.append(target / METRICS_FILE)
        shutil.copyfile(run / METRICS_FILE, written[-1])
    return written


def copy_yaml(path: Path, target: Path, source: Path) -> None:
    """Copy a YAML file byte for byte, or rewritten when it holds a machine path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    value = yaml.safe_load(path.read_text(encoding="utf-8"))
    clean = neutral(value, source)
    if clean == value:
        shutil.copyfile(path, target)
    else:
        target.write_text(yaml.safe_dump(clean, sort_keys=False, default_flow_style=False), encoding="utf-8")


def neutral(value: Any, source: Path) -> Any:
    """``value`` (JSON or YAML data) with every absolute path made neutral: relative to ``source`` when it lies
    under it, else ``<elsewhere>/<its last part>``; also the value of an override ``key=/a/path``."""
    if isinstance(value, dict):
        return {key: neutral(item, source) for key, item in value.items()}
    if isinstance(value, list):
        return [neutral(item, source) for item in value]
    if not isinstance(value, str):
        return value
    key, equals, rest = value.partition("=")
    if equals and not value.startswith("/") and rest.startswith("/"):
        return f"{key}={neutral(rest, source)}"
    if not value.startswith("/"):
        return value
    path = Path(os.path.normpath(value))
    for base in (source.absolute(), source.resolve()):
        if path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return f"{ELSEWHERE}/{path.name}"
