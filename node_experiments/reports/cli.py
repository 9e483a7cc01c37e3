"""``node-report REPORT PATHS... [--output FILE]``: rebuild one of the paper's tables or figures from finished runs.

    node-report table1 RUNS...   [--output FILE]                          # Table 1: MNIST classifiers
    node-report table2 GRIDS...  [--test-range R] [--metrics [M ...]] [--definitions] [--figures DIR] [--retest K=V]
    node-report figure3 RUN      [--figures DIR]                          # Figure 3 and the memory claim
    node-report figure3d RUNS... [--figures DIR]                          # Figure 3d: NFE over training
    node-report flows RUNS...    [--figures DIR]                          # Figure 4: NF against CNF
    node-report beyond RUNS...   [--figures DIR]                          # FFJORD toys, RNODE, ANODE
    node-report all OUTPUTS --output-dir DIR [--figures DIR]              # every report found runs for
    node-report records SRC... DEST [--without-metrics]                   # runs' small records, to commit
    node-report model-state RUN FILE                                      # a run's trained model, to commit
    node-report pages PAGE... [--check]                                   # rewrite (check) the pages' blocks

The Markdown goes to stdout and, with ``--output``, to a file; the files written are named on stderr. A mistake
(an unknown report, a folder that is not there, folders without a finished run of the report's kind) is one line
on stderr, without a stack trace: exit status 2 for the command line, 1 for nothing to report.
``python -m node_experiments.reports`` is the same command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..errors import ReportError

PROG = "node-report"
REPORTS = {
    "table1": "Table 1: test error, parameters, NFE, memory and time of the MNIST classifiers",
    "table2": "Table 2 (and Figures 8-9): latent ODE against RNN on spirals, from node-run -m grids",
    "figure3": "Figure 3 and the memory claim, from an mnist_nfe_study run",
    "figure3d": "Figure 3d: NFE per batch over training, from the metrics.jsonl of ODE-Net runs",
    "flows": "Figure 4: planar NF against planar CNF at density matching",
    "beyond": "beyond the paper: FFJORD toys and the ODE-Net with RNODE's penalties and ANODE's augmentation",
    "all": "every report above whose runs are in a folder (outputs/), each written to its own file",
    "records": "copy the small records of finished runs (configs, summaries, metrics), to commit under "
               "docs/results/runs",
    "model-state": "write a run's trained model (float32 state and config, under 1 MiB) to commit beside its records",
    "pages": "rewrite the node-report blocks of results pages from their commands (--check: compare)",
}
MODULES = {"all": "every", "model-state": "model_state"}  # commands whose module is not named after them


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line that says where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message}. See {self.prog} --help.", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog=PROG, description="Rebuild one of the paper's tables or figures from finished runs, beside "
                  "the paper's numbers.", epilog=f"{PROG} REPORT --help: that report's options.")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--output", type=Path, help="also write the Markdown to this file")
    reports = top.add_subparsers(dest="report", required=True, metavar="REPORT", parser_class=_Parser)
    for name, summary in REPORTS.items():
        module = report_module(name)
        sub = reports.add_parser(name, parents=[output], help=summary, description=module.__doc__.split("\n\n")[0])
        module.add_arguments(sub)
    return top


def report_module(name: str):
    return importlib.import_module(f"{__package__}.{MODULES.get(name, name)}")


def main(argv: list[str] | None = None) -> int:
    """The ``node-report`` console script: print (and write) one report; its exit status."""
    args = parser().parse_args(argv)
    try:
        report = report_module(args.report).build(args)
    except ReportError as error:
        print(f"{PROG} {args.report}: {error}", file=sys.stderr)
        return error.exit_status
    print(report.text, end="")
    if args.output:
        report.write(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    for path in report.files:
        print(f"wrote {path}", file=sys.stderr)
    return 0
