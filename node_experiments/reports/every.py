"""Every report at once, from one folder of runs of all kinds: ``node-report all outputs --output-dir DIR``.

Each report whose runs are under the folder is built as its own command would build it and written to
``DIR/<report>.md``: ``table1``, ``figure3d`` and ``flows`` from the whole folder, ``beyond`` from it when it holds
an ``ffjord_*`` run; ``table2`` from every grid (a sweep folder with a ``multirun.yaml``, or the records of one with
a ``grid.json``) holding spiral runs; ``figure3`` from each NFE study run (``figure3.md``, or ``figure3_<run folder>.md`` when there are several).
``--figures DIR`` passes on to the reports that draw (for ``figure3`` only when there is one study, as the copies
would otherwise overwrite each other). A report without runs is skipped and said so; the command fails only when
no report has runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ReportError
from . import Report
from .grids import GRID_FILE, SWEEP_FILE
from .runs import check_folders, finished_runs
from .spiral_grids import MODELS as SPIRAL_EXPERIMENTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a folder holding runs of any kind (outputs/)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where each <report>.md goes")
    parser.add_argument("--figures", type=Path, help="where the reports' figures go")


def build(args: argparse.Namespace) -> Report:
    check_folders([args.folder])
    runs = finished_runs([args.folder])
    lines, files = [], []
    for name, paths, output, figures in commands(args.folder, runs, args.output_dir, args.figures):
        if not paths:
            lines.append(f"- {name}: skipped: no {KINDS[name]} under {args.folder}")
            continue
        report, problem = _build(name, paths, figures)
        if problem and figures:  # the table alone, when it is the figures that the runs cannot give
            report, _ = _build(name, paths, None)
            if report:
                lines.append(f"- {name}: figures skipped: {problem}")
        if report is None:
            lines.append(f"- {name}: skipped: {problem}")
            continue
        report.write(output)
        files += [output, *report.files]
        lines.append(f"- {name}: {output}")
    if not files:
        raise ReportError(f"no finished run of any report under {args.folder}. Run the experiments first; "
                          "docs/results/ gives each report's commands.")
    return Report("\n".join(lines) + "\n", files)


# What each report needs, for the line that says it was skipped.
KINDS = {"table2": "node-run -m grid of spiral runs", "figure3": "finished mnist_nfe_study run",
         "beyond": "finished ffjord_* run"}  # fmt: skip


def _build(name: str, paths: list[Path], figures: Path | None) -> tuple[Report | None, str]:
    """The report as ``node-report NAME PATHS [--figures DIR]`` builds it (the command's parser gives defaults),
    or None and why not."""
    from .cli import parser, report_module

    argv = [name, *map(str, paths), *(["--figures", str(figures)] if figures else [])]
    try:
        return report_module(name).build(parser().parse_args(argv)), ""
    except ReportError as error:
        return None, str(error)


def commands(folder: Path, runs: list[tuple[Path, dict]], output_dir: Path,
             figures: Path | None) -> list[tuple[str, list[Path], Path, Path | None]]:
    """(report, its paths, its Markdown file, its figures folder) for each report; no paths: nothing to build."""
    grids = sorted({sweep.parent for name in (SWEEP_FILE, GRID_FILE) for sweep in folder.rglob(name)
                    if any(run.is_relative_to(sweep.parent) and summary.get("experiment") in SPIRAL_EXPERIMENTS
                           for run, summary in runs)})
    studies = [run for run, summary in runs if "backward_forward_ratio" in summary]
    found = [("table1", [folder], output_dir / "table1.md", None), ("table2", grids, output_dir / "table2.md", figures)]
    found += [("figure3", [study], output_dir / (f"figure3_{study.name}.md" if len(studies) > 1 else "figure3.md"),
               figures if len(studies) == 1 else None) for study in studies] or [("figure3", [], Path(), None)]
    toys = any(str(summary.get("experiment", "")).startswith("ffjord_") for _, summary in runs)
    return found + [("figure3d", [folder], output_dir / "figure3d.md", figures),
                    ("flows", [folder], output_dir / "flows.md", figures),
                    ("beyond", [folder] if toys else [], output_dir / "beyond.md", figures)]
