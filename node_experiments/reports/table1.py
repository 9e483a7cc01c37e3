"""Table 1 of Chen et al. (2018, MNIST) from classification runs, beside the paper's figures.

    node-report table1 outputs/multirun/2026-01-01/12-00-00        # a sweep folder
    node-report table1 RUN_DIR [RUN_DIR ...] --output table1.md    # or run folders

Every finished classification run (its ``summary.json`` has a ``test_error``) under the given folders is one row:
test error, parameters, NFE per batch forward and backward (last epoch's mean), peak memory (CUDA: most memory
allocated; CPU: bytes saved for backward per batch) and training time per epoch (wall clock, and the process's CPU
time, which a busy machine distorts less). The paper's figures are shown for the four MNIST experiments on MNIST.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import Report
from .grids import run_overrides
from .runs import check_folders, finished_runs, nothing_found, run_config

# experiment -> (the paper's row name, test error %, parameters in millions, memory, time)
PAPER = {
    "mnist_mlp": ("1-Layer MLP", 1.60, 0.24, "-", "-"),
    "mnist_resnet": ("ResNet", 0.41, 0.60, "O(L)", "O(L)"),
    "mnist_rknet": ("RK-Net", 0.47, 0.22, "O(L~)", "O(L~)"),
    "mnist_odenet": ("ODE-Net", 0.42, 0.22, "O(1)", "O(L~)"),
}
COLUMNS = (
    "Model", "Data", "Epochs", "Seed", "Settings", "Test error", "(paper)", "Params", "(paper)", "NFE fwd", "NFE bwd",
    "Peak memory", "(paper)", "Time / epoch", "CPU time / epoch", "(paper)", "Device",
)
NOTES = (
    "NFE: function evaluations per training batch (mean over the last epoch). Peak memory: most memory allocated on "
    "CUDA; on the CPU, the most bytes saved for backward by a batch. Times: training loop only, evaluation excluded. "
    "Paper: 160 epochs; L: layers, L~: solver steps."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, or folders holding them")


def build(args: argparse.Namespace) -> Report:
    check_folders(args.runs)
    summaries = find_summaries(args.runs)
    if not summaries:
        raise nothing_found("classification run", args.runs,
                            "node-run -m experiment=mnist_odenet,mnist_resnet,mnist_rknet,mnist_mlp")
    return Report(markdown([row(summary, folder) for folder, summary in summaries]) + "\n" + NOTES + "\n")


def find_summaries(paths: list[Path]) -> list[tuple[Path, dict]]:
    """(run folder, summary) of every finished classification run at or under ``paths``, in the paper's order."""
    found = [(folder, summary) for folder, summary in finished_runs(paths) if "test_error" in summary]
    order = list(PAPER)

    def rank(item: tuple[Path, dict]) -> tuple[int, str]:
        name = item[1].get("experiment")
        return (order.index(name) if name in order else len(order), str(item[0]))

    return sorted(found, key=rank)


# Overrides a row's other columns already show, or that only say where things lie: the data, and the checkpoint a
# run resumed from (a resumption continues the same run exactly).
SHOWN_ELSEWHERE = ("experiment", "data.root", "data.download", "trainer.max_epochs", "trainer.seed", "trainer.resume")


def settings(folder: Path) -> str:
    """The run's command-line overrides that set it apart (``.hydra/overrides.yaml``), e.g.
    ``data.random_crop_padding=0``; sweeps across experiments give keys with ``++``, shown without."""
    overrides = [item.lstrip("+~") for item in run_overrides(folder)]
    return " ".join(f"`{item}`" for item in overrides if item.split("=", 1)[0] not in SHOWN_ELSEWHERE)


def seed(folder: Path) -> str:
    """The run's ``trainer.seed``, from its composed config ("-" for a run folder without one)."""
    return str(run_config(folder)["trainer"]["seed"]) if (folder / ".hydra" / "config.yaml").is_file() else "-"


def row(summary: dict, folder: Path) -> list[str]:
    """One Markdown row: our figures, with the paper's beside them where it has them."""
    experiment = summary.get("experiment", "?")
    on_mnist = summary.get("data", "mnist") == "mnist"
    name, error, params, memory, time = PAPER.get(experiment, (experiment, None, None, "", ""))
    paper = on_mnist and experiment in PAPER
    return [
        name,
        summary.get("data", "?"),
        str(summary.get("epochs", "?")),
        seed(folder),
        settings(folder),
        f"{100 * summary['test_error']:.2f}%",
        f"{error:.2f}%" if paper else "",
        f"{summary['params'] / 1e6:.3f}M",
        f"{params:.2f}M" if paper else "",
        f"{summary['nfe_forward']:.1f}",
        f"{summary['nfe_backward']:.1f}",
        f"{summary['peak_memory_bytes'] / 2**20:.1f} MiB",
        memory if paper else "",
        f"{summary['epoch_time_s']:.0f} s",
        f"{summary['train_cpu_s'] / summary['epochs']:.0f} s" if "train_cpu_s" in summary else "",
        time if paper else "",
        device_text(summary),
    ]


def device_text(summary: dict) -> str:
    """The device, with the number of torch threads on a CPU."""
    device = summary.get("device", "?")
    threads = summary.get("torch_threads")
    return f"{device}, {threads} thread{'s' if threads != 1 else ''}" if device == "cpu" and threads else device


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"
