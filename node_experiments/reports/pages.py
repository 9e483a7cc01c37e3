"""``node-report pages PAGE... [--check]``: results pages whose tables are what their commands print.

A results page embeds each generated block between two markers, the first of which holds the command:

    <!-- node-report table1 docs/results/runs/table1/e10 -->
    (what ``node-report table1 docs/results/runs/table1/e10`` prints)
    <!-- end node-report -->

``node-report pages docs/results/*.md`` runs every block's command in this process, from ``--root`` (by default
the current folder, which should be the repository root: the commands' paths are relative to it), and puts what it
prints between the markers, after a blank line and before one. A block's command is one of the reports that print
a table (``BLOCK_REPORTS``). ``--check`` writes nothing: it exits 1 naming the first page and line that differ from
what the commands print now, so that a test holds every page to the run records committed under
``docs/results/runs/`` (tests/test_reports_pages.py). Figures a block's command writes (``--figures DIR``) are
drawn when rewriting and left alone when checking: matplotlib's bytes vary between versions, and no report's text
depends on its figures.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReportError
from . import Report

BEGIN, END = "<!-- node-report ", "<!-- end node-report -->"
BLOCK_REPORTS = ("table1", "table2", "figure3", "figure3d", "flows", "beyond")


@dataclass
class Block:
    """One generated block of a page: its first marker's line (from 1), its command and the lines between."""

    line: int
    command: str
    body: list[str] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pages", nargs="+", type=Path, metavar="PAGE", help="Markdown pages holding node-report blocks")
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting; exit 1 at a difference")
    parser.add_argument("--root", type=Path, default=Path("."), help="where the commands run (the repository root)")


def build(args: argparse.Namespace) -> Report:
    missing = [str(page) for page in args.pages if not page.is_file()]
    if missing:
        raise ReportError(f"not a file: {', '.join(missing)}. Give the Markdown pages (docs/results/*.md).",
                          exit_status=2)
    lines, files = [], []
    for page in args.pages:
        pieces = parse(page)
        blocks = [piece for piece in pieces if isinstance(piece, Block)]
        rendered, figures = render(page, pieces, args.root.resolve(), args.check)
        changed = rendered != page.read_text(encoding="utf-8")
        if changed and not args.check:
            page.write_text(rendered, encoding="utf-8")
            files.append(page)
        files += figures
        state = "rewritten" if changed else "up to date"
        count = f"{len(blocks)} block{'s' if len(blocks) != 1 else ''}" if blocks else "no node-report blocks"
        lines.append(f"{page}: {count}, {state}")
    return Report("\n".join(lines) + "\n", files)


def parse(page: Path) -> list[str | Block]:
    """The page as its plain lines and its blocks, in order; a marker out of place is a ``ReportError``. Markers
    inside fenced code (a page showing how blocks are written) are plain lines."""
    pieces: list[str | Block] = []
    block, fenced = None, False
    for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), start=1):
        marker = line.strip()
        fenced ^= block is None and marker.startswith("```")
        begins = not fenced and marker.startswith(BEGIN) and marker.endswith("-->")
        if fenced or (block is None and not begins and marker != END):
            pieces.append(line)
        elif block is None and begins:
            block = Block(number, marker[len(BEGIN):-len("-->")].strip())
        elif block is not None and not begins and marker != END:
            block.body.append(line)
        elif block is not None and marker == END:
            pieces.append(block)
            block = None
        else:
            what = "another block begins before the last one ended" if begins else f"{END} ends no block"
            raise ReportError(f"{page} line {number}: {what}. A block is {BEGIN}COMMAND --> on a line of its own, "
                              f"then {END} on a later line; fix the markers.")
    if block is not None:
        raise ReportError(f"{page} line {block.line}: the block of `node-report {block.command}` has no {END} after "
                          "it; add one after the block's last line.")
    return pieces


def render(page: Path, pieces: list[str | Block], root: Path, check: bool) -> tuple[str, list[Path]]:
    """The page with every block's body replaced by what its command prints now, and the figures the commands
    wrote; with ``check``, a ``ReportError`` at the first line that differs instead."""
    lines, figures = [], []
    for piece in pieces:
        if isinstance(piece, str):
            lines.append(piece)
            continue
        report = run_block(page, piece, root, check)
        figures += report.files
        body = ["", *report.text.rstrip("\n").split("\n"), ""]
        if check and body != piece.body:
            offset = next(i for i in range(max(len(body), len(piece.body)))
                          if i >= len(body) or i >= len(piece.body) or body[i] != piece.body[i])
            has = piece.body[offset] if offset < len(piece.body) else END
            prints = body[offset] if offset < len(body) else END
            raise ReportError(f"{page} line {piece.line + 1 + offset} differs from what `node-report {piece.command}` "
                              f"prints: the page has {has!r}, the command prints {prints!r}. Rewrite the page with "
                              f"node-report pages {page}, or see why the records under the command's paths changed.")
        lines += [f"{BEGIN}{piece.command} -->", *body, END]
    return "\n".join(lines), figures


def run_block(page: Path, block: Block, root: Path, check: bool) -> Report:
    """What the block's command prints, run in this process from ``root`` (without its figures when checking)."""
    from .cli import parser, report_module

    where = f"{page} line {block.line}"
    argv = shlex.split(block.command)
    if not argv or argv[0] not in BLOCK_REPORTS:
        raise ReportError(f"{where}: `node-report {block.command}` is not a report that prints a table; a block's "
                          f"command is one of {', '.join(BLOCK_REPORTS)} with its arguments.")
    if check:
        argv = without_figures(argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit:
        raise ReportError(f"{where}: `node-report {block.command}` is not a valid command (the line above says why); "
                          "fix the block's first marker.") from None
    with contextlib.chdir(root):
        try:
            report = report_module(args.report).build(args)
        except ReportError as error:
            raise ReportError(f"{where}: `node-report {block.command}` failed: {error}") from None
    return report


def without_figures(argv: list[str]) -> list[str]:
    """``argv`` without ``--figures DIR`` (or ``--figures=DIR``)."""
    kept, skip = [], False
    for item in argv:
        if not skip and item != "--figures" and not item.startswith("--figures="):
            kept.append(item)
        skip = item == "--figures"
    return kept
