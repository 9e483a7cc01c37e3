"""Figure 3 of Chen et al. (2018, section 3) and Table 1's memory claim, from an ``mnist_nfe_study`` run.

    node-run experiment=mnist_nfe_study study.checkpoint=RUN_OF_mnist_odenet hydra.run.dir=outputs/nfe_study/run
    node-report figure3 outputs/nfe_study/run --figures docs/figures --output figure3.md

The study (``node_experiments.studies.nfe_study``) measures and draws; this report reads its ``summary.json``:
the per-tolerance table (NFE forward and backward, numerical error, forward time, accuracy), how far its reference
solve moved, the fitted backward/forward NFE ratio beside the paper's 0.5, and the bytes saved for backward by the
ODE-Net, the RK-Net and ResNets beside the paper's O(1), O(L~) and O(L). ``--figures DIR`` copies the study's
combined Figure 3 and its memory figure there (``nfe_study_figure3.png``, ``nfe_study_memory.png``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..errors import ReportError
from ..studies.memory_study import ODE_NET, RESNET, RK_NET
from . import Report
from .runs import check_folders, finished_runs, nothing_found

PAPER_RATIO = 0.5  # backward NFE about half the forward NFE (Figure 3c)
PAPER_MEMORY = {ODE_NET: "O(1)", RK_NET: "O(L~)", RESNET: "O(L)"}
FIGURES = {"figure3.png": "nfe_study_figure3.png", "memory.png": "nfe_study_memory.png"}
MIB = 2**20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="the folder of one mnist_nfe_study run (or a folder holding one)")
    parser.add_argument("--figures", type=Path, help="copy the study's Figure 3 and memory figure into this folder")


def build(args: argparse.Namespace) -> Report:
    check_folders([args.run])
    folder, summary = find_study(args.run)
    report = Report(markdown(folder, summary))
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        for name, copy in FIGURES.items():
            if (folder / "figures" / name).is_file():
                report.files.append(args.figures / copy)
                shutil.copyfile(folder / "figures" / name, report.files[-1])
    return report


def find_study(path: Path) -> tuple[Path, dict]:
    """The one finished NFE study run at or under ``path`` (its summary has the fitted backward/forward ratio)."""
    studies = [(folder, summary) for folder, summary in finished_runs([path]) if "backward_forward_ratio" in summary]
    if not studies:
        raise nothing_found("mnist_nfe_study run", [path],
                            "node-run experiment=mnist_nfe_study study.checkpoint=RUN_OF_mnist_odenet")
    if len(studies) > 1:
        raise ReportError(f"{path} holds {len(studies)} NFE study runs ({', '.join(str(f) for f, _ in studies)}); "
                          "give the folder of one.", exit_status=2)
    return studies[0]


def markdown(folder: Path, summary: dict) -> str:
    table = summary["table"]
    lines = [
        f"NFE study of `{summary['checkpoint']}` ({summary['trained_epochs']} epochs trained), {summary['method']}, "
        f"on {summary['images']} test images, {summary['device']}:",
        "",
        *tolerance_table(table),
        "",
        reference_line(summary["reference"], table),
        "",
        "| | this run | paper |",
        "|---|---|---|",
        f"| (c) backward / forward NFE, fitted through the origin | {ratio_text(summary)} | about {PAPER_RATIO} |",
    ]
    if summary.get("memory"):
        lines += ["", *memory_table(summary["memory"])]
    return "\n".join(lines) + "\n"


def tolerance_table(table: list[dict]) -> list[str]:
    """One row per tolerance, as the study's ``nfe_study.csv``."""
    seminorm = "nfe_backward_seminorm" in table[0]
    header = ["tolerance", "NFE fwd", "NFE bwd", *(["NFE bwd (seminorm)"] if seminorm else []), "max abs error",
              "rel. RMS error", "forward pass", "relative time", "accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in table:
        cells = [tolerance_text(entry["tolerance"]), f"{entry['nfe_forward']:.0f}", f"{entry['nfe_backward']:.0f}",
                 *([f"{entry['nfe_backward_seminorm']:.0f}"] if seminorm else []), f"{entry['error_max_abs']:.2e}",
                 f"{entry['error_rel_rms']:.2e}", f"{entry['forward_s']:.2f} s", f"{entry['time_relative']:.2f}",
                 f"{100 * entry['accuracy']:.2f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reference_line(reference: dict, table: list[dict]) -> str:
    """How far the reference solve moved at 10 times its tolerance, against the smallest error measured."""
    moved, tolerance = reference["self_error"], float(reference["tolerance"])
    share = moved / min(entry["error_max_abs"] for entry in table)
    return (f"The reference ({reference['method']}, float64) moved by {moved:.1e} between {tolerance_text(tolerance)} "
            f"and {tolerance_text(10 * tolerance)}, {share:.0%} of the smallest error in the table.")


def ratio_text(summary: dict) -> str:
    seminorm = summary.get("backward_forward_ratio_seminorm")
    return f"{summary['backward_forward_ratio']:.2f}" + (f" ({seminorm:.2f} with the seminorm)" if seminorm else "")


def memory_table(rows: list[dict]) -> list[str]:
    """Bytes saved for backward by one batch (and the CUDA peak where measured), beside the paper's order; the
    study's rows grouped by network, in the paper's order (ODE-Net, RK-Net, ResNet)."""
    cuda = any(row.get("cuda_peak_bytes") is not None for row in rows)
    header = ["network", "tolerance", "NFE or blocks", "saved for backward", *(["CUDA peak"] if cuda else []),
              "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    networks = list(PAPER_MEMORY)
    for row in sorted(rows, key=lambda row: networks.index(row["network"]) if row["network"] in networks else 3):
        peak = row.get("cuda_peak_bytes")
        cells = [row["network"], "" if row["tolerance"] is None else tolerance_text(row["tolerance"]),
                 str(row["evaluations"]), f"{row['saved_bytes'] / MIB:.1f} MiB",
                 *([f"{peak / MIB:.1f} MiB" if peak is not None else ""] if cuda else []),
                 PAPER_MEMORY.get(row["network"], "")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def tolerance_text(tolerance: float) -> str:
    """1e-05 -> 1e-5, 1.0 -> 1e0: the docs' spelling."""
    mantissa, exponent = f"{tolerance:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"
