"""Figure 3 of Chen et al. (2018, section 3) on a trained ODE-Net: what it does with its solver tolerance.

``node-run experiment=mnist_nfe_study study.checkpoint=<run folder or checkpoint of an mnist_odenet run>``

For each tolerance of ``study.tolerances`` (rtol = atol), on the same first ``num_batches`` test batches:

- forward NFE, and backward NFE of the cross-entropy loss with the adjoint, without and with the seminorm
  (``adjoint_options.norm=seminorm``, Kidger, Chen & Lyons 2021), each counted inside its own ``record_stats``
  block so that no count leaks into another;
- the numerical error of the ODE block's output against a reference solve of the same block from the same input
  in float64 at a tight tolerance (``study.reference``, checked against a solve at 10 times its tolerance): the
  largest absolute difference and the relative RMS difference;
- the wall time of a forward pass (the fastest of ``timing_repeats``), relative to the tightest tolerance;
- the accuracy on those batches.

The paper reported that backward NFE is about half the forward NFE; an independent replication traced that to
a logging artefact (each logged forward count held the previous batch's backward count). This study fits the
ratio it measures by least squares through the origin and reports it as it comes.

Written under the run folder: ``nfe_study.csv`` (one row per tolerance), ``nfe_study_batches.csv`` (one row per
tolerance and batch), ``memory.csv`` (see ``memory_study``), ``figures/*.png`` (also in TensorBoard under
``<run>/tb``) and ``summary.json``.
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from ..data.images import load_image_dataset
from ..errors import ConfigError
from ..models import ODEBlock
from ..ode import odeint, record_stats
from ..training import resolve_device, seed_everything
from ..training.run_logger import SUMMARY_FILE, RunLogger, write_json
from ..validation import config_arguments
from .figures import Rows, figure3_panels, memory_figure
from .memory_study import measure_memory
from .trained_run import load_trained_run, solver_settings

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
REFERENCE_MARGIN = 0.1  # the reference's own error should be at most this fraction of the smallest error measured


@dataclass
class ForwardPass:
    """One forward pass of the classifier, with what its ODE block saw and did."""

    logits: torch.Tensor
    block_input: torch.Tensor
    block_output: torch.Tensor
    nfe: int
    seconds: float  # the fastest of the repeats


def forward_pass(model: nn.Module, block: ODEBlock, images: torch.Tensor, repeats: int) -> ForwardPass:
    """Run ``model(images)`` ``repeats`` times without gradients, timing each, and capture the block's in/output."""
    captured: dict[str, torch.Tensor] = {}
    hook = block.register_forward_hook(lambda module, inputs, output: captured.update(input=inputs[0], output=output))
    seconds = []
    try:
        with torch.no_grad():
            for _ in range(repeats):
                with record_stats() as stats:
                    start = time.perf_counter()
                    logits = model(images)
                    if images.device.type == "cuda":
                        torch.cuda.synchronize(images.device)
                    seconds.append(time.perf_counter() - start)
    finally:
        hook.remove()
    return ForwardPass(logits, captured["input"], captured["output"], stats.nfe_forward, min(seconds))


def backward_nfe(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """NFE of the backward pass of the cross-entropy loss on one batch (the forward's NFE not included)."""
    logits = model(images)
    with record_stats() as stats:
        F.cross_entropy(logits, labels).backward()
    model.zero_grad(set_to_none=True)
    return stats.nfe_backward


def reference_solution(block: ODEBlock, block_input: torch.Tensor, method: str, tolerance: float) -> torch.Tensor:
    """The block's output from ``block_input``, solved in float64 with ``method`` at rtol = atol = ``tolerance``."""
    func = copy.deepcopy(block.func).to(torch.float64)
    times = block.integration_times.to(torch.float64)
    with torch.no_grad():
        path = odeint(func, block_input.to(torch.float64), times, method=method, rtol=tolerance, atol=tolerance)
    return path[-1]


def solution_error(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(largest absolute difference, relative RMS difference) of ``output`` against ``reference``."""
    difference = output.to(torch.float64) - reference
    return difference.abs().max().item(), (difference.norm() / reference.norm()).item()


class References:
    """The float64 reference output of the ODE block for each batch, solved the first time it is asked for.

    The first batch's reference is also solved at a 10 times looser tolerance: the largest difference between
    the two, ``self_error``, estimates how far the reference itself may be off. The vector field of the MNIST
    ODE-Net is only piecewise smooth (ReLU), so a solver's error estimate is less reliable than on smooth
    problems, and high-order methods need many steps at tight tolerances: this check says whether the reference
    is tight enough for the errors it is compared with.
    """

    def __init__(self, block: ODEBlock, method: str, tolerance: float) -> None:
        self.block, self.method, self.tolerance = block, method, tolerance
        self.outputs: dict[int, torch.Tensor] = {}
        self.self_error: float | None = None

    def error(self, index: int, block_input: torch.Tensor, block_output: torch.Tensor) -> tuple[float, float]:
        """``solution_error`` of batch ``index``'s block output against its reference."""
        if index not in self.outputs:
            self.outputs[index] = reference_solution(self.block, block_input, self.method, self.tolerance)
            if self.self_error is None:
                looser = reference_solution(self.block, block_input, self.method, 10 * self.tolerance)
                self.self_error = solution_error(looser, self.outputs[index])[0]
        return solution_error(block_output, self.outputs[index])


def fit_through_origin(x: Sequence[float], y: Sequence[float]) -> float:
    """The slope k of y = k x that minimises the squared error: sum(x y) / sum(x x)."""
    return sum(a * b for a, b in zip(x, y)) / sum(a * a for a in x)


def evaluation_batches(data: Mapping[str, Any], batch_size: int, num_batches: int, device: torch.device) -> list[Batch]:
    """The first ``num_batches`` batches of the test split of the ``data`` group's data set, unaugmented."""
    with config_arguments("data", data):
        dataset = load_image_dataset(data["dataset"], data["root"], train=False, download=data["download"],
                                     transform=transforms.ToTensor(), num_classes=data["num_classes"])  # fmt: skip
    subset = Subset(dataset, range(min(len(dataset), batch_size * num_batches)))
    return [(images.to(device), labels.to(device)) for images, labels in DataLoader(subset, batch_size=batch_size)]


def measure_tolerance(
    model: nn.Module,
    block: ODEBlock,
    batches: Sequence[Batch],
    tolerance: float,
    settings: DictConfig,
    references: References,
) -> list[dict[str, Any]]:
    """One row per batch at ``tolerance``: NFE forward and backward, error, forward time, correct answers."""
    plain = {name: value for name, value in block.adjoint_options.items() if name != "norm"}
    variants = {"nfe_backward": plain}
    if settings.seminorm:
        variants["nfe_backward_seminorm"] = {**plain, "norm": "seminorm"}
    rows = []
    with solver_settings(block, rtol=tolerance, atol=tolerance, gradient="adjoint"):
        for index, (images, labels) in enumerate(batches):
            forward = forward_pass(model, block, images, settings.timing_repeats)
            max_error, relative_error = references.error(index, forward.block_input, forward.block_output)
            row = {"tolerance": tolerance, "batch": index, "nfe_forward": forward.nfe}
            for column, adjoint_options in variants.items():
                with solver_settings(block, adjoint_options=adjoint_options):
                    row[column] = backward_nfe(model, images, labels)
            rows.append({
                **row,
                "error_max_abs": max_error,
                "error_rel_rms": relative_error,
                "forward_s": forward.seconds,
                "correct": (forward.logits.argmax(dim=1) == labels).sum().item(),
                "images": labels.numel(),
            })  # fmt: skip
    return rows


def summarise(batch_rows: Rows, tolerances: Sequence[float]) -> list[dict[str, Any]]:
    """One row per tolerance: means over the batches (the largest max-abs error), accuracy over all images."""
    table = []
    for tolerance in tolerances:
        rows = [row for row in batch_rows if row["tolerance"] == tolerance]
        mean = lambda column: sum(row[column] for row in rows) / len(rows)  # noqa: E731
        entry = {"tolerance": tolerance, "nfe_forward": mean("nfe_forward"), "nfe_backward": mean("nfe_backward")}
        if "nfe_backward_seminorm" in rows[0]:
            entry["nfe_backward_seminorm"] = mean("nfe_backward_seminorm")
        entry.update(
            error_max_abs=max(row["error_max_abs"] for row in rows),
            error_rel_rms=mean("error_rel_rms"),
            forward_s=mean("forward_s"),
            accuracy=sum(row["correct"] for row in rows) / sum(row["images"] for row in rows),
        )
        table.append(entry)
    tightest = min(table, key=lambda entry: entry["tolerance"])
    for entry in table:
        entry["time_relative"] = entry["forward_s"] / tightest["forward_s"]
    return table


def backward_forward_ratios(batch_rows: Rows) -> dict[str, float]:
    """The fitted backward/forward NFE ratio per backward column (``nfe_backward``, ``nfe_backward_seminorm``)."""
    forward = [row["nfe_forward"] for row in batch_rows]
    columns = [column for column in ("nfe_backward", "nfe_backward_seminorm") if column in batch_rows[0]]
    return {column: fit_through_origin(forward, [row[column] for row in batch_rows]) for column in columns}


def write_csv(path: Path, rows: Rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_same_data(trained_config: Mapping[str, Any], data: DictConfig) -> None:
    """Raise ``ConfigError`` when the study's ``data`` group is not the data set the model was trained on."""
    trained_on = trained_config["data"]
    if trained_on["dataset"] != data.dataset:
        raise ConfigError(
            f"study.checkpoint was trained on {trained_on['dataset']}, but this study's data group reads "
            f"{data.dataset}. Pick the matching data group: data={trained_on.get('name', '?')}."
        )


def run_nfe_study(cfg: DictConfig, run_dir: Path, labels: Mapping[str, Any]) -> dict[str, Any]:
    """The study: measure, then write the CSV tables, the figures and ``summary.json`` under ``run_dir``."""
    settings = cfg.study
    started = time.perf_counter()
    device = resolve_device(cfg.trainer.device)
    seed_everything(cfg.trainer.seed)
    trained = load_trained_run(settings.checkpoint, device)
    block = trained.ode_block
    check_same_data(trained.config, cfg.data)
    batches = evaluation_batches(cfg.data, settings.batch_size, settings.num_batches, device)
    num_images = sum(len(batch_labels) for _, batch_labels in batches)
    tolerances = sorted(settings.tolerances, reverse=True)
    log.info("NFE study of %s (%s) on %d test images, %d tolerances, on %s.", trained.checkpoint, block.method,
             num_images, len(tolerances), device)  # fmt: skip

    references = References(block, settings.reference.method, settings.reference.tolerance)
    batch_rows = []
    for tolerance in tolerances:
        rows = measure_tolerance(trained.model, block, batches, tolerance, settings, references)
        batch_rows.extend(rows)
        log.info(_describe(summarise(rows, [tolerance])[0]))
    table = summarise(batch_rows, tolerances)
    ratios = backward_forward_ratios(batch_rows)
    log.info("backward / forward NFE fitted through the origin: %s",
             ", ".join(f"{column} {ratio:.3f}" for column, ratio in ratios.items()))  # fmt: skip
    _check_reference(references, table)
    memory_rows = []
    if settings.memory.enabled:
        images, image_labels = batches[0]
        memory_rows = measure_memory(trained.model, block, images, image_labels, tolerances,
                                     settings.memory.resnet_blocks, trained.config["model"])  # fmt: skip

    figures = figure3_panels(table, batch_rows, ratios, trained.history)
    tables = {"nfe_study.csv": table, "nfe_study_batches.csv": batch_rows}
    if memory_rows:
        figures["memory"] = memory_figure(memory_rows)
        tables["memory.csv"] = memory_rows
    _write(run_dir, tables, figures, tensorboard=cfg.logger.tensorboard)
    summary = {
        "experiment": labels.get("experiment"),
        "run_dir": str(run_dir),
        "checkpoint": str(trained.checkpoint),
        "trained_epochs": len(trained.history),
        "method": block.method,
        "images": num_images,
        "reference": {**OmegaConf.to_container(settings.reference), "self_error": references.self_error},
        "backward_forward_ratio": ratios.get("nfe_backward"),
        "backward_forward_ratio_seminorm": ratios.get("nfe_backward_seminorm"),
        "table": table,
        "memory": memory_rows,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "study_time_s": time.perf_counter() - started,
    }
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary


def _check_reference(references: References, table: Rows) -> None:
    """Warn when the reference is not ``REFERENCE_MARGIN`` times more accurate than the smallest error measured."""
    smallest = min(entry["error_max_abs"] for entry in table)
    if references.self_error > REFERENCE_MARGIN * smallest:
        log.warning(
            "The reference may be too loose: at 10x its tolerance it moves by %.1e, more than %g of the smallest "
            "error measured (%.1e). Tighten study.reference.tolerance.", references.self_error, REFERENCE_MARGIN,
            smallest,
        )  # fmt: skip


def _write(run_dir: Path, tables: Mapping[str, Rows], figures: Mapping[str, Figure], *, tensorboard: bool) -> None:
    """The CSV tables, and the figures as PNG under ``run_dir/figures`` (and in TensorBoard when it is on)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_csv(run_dir / name, rows)
    logger = RunLogger(run_dir, tensorboard=tensorboard)
    for name, figure in figures.items():
        logger.figure(name, figure, 0)
        plt.close(figure)
    logger.close()


def _describe(entry: Mapping[str, Any]) -> str:
    seminorm = f" (seminorm {entry['nfe_backward_seminorm']:.1f})" if "nfe_backward_seminorm" in entry else ""
    return (
        f"tol {entry['tolerance']:.0e}: NFE forward {entry['nfe_forward']:.1f}, backward {entry['nfe_backward']:.1f}"
        f"{seminorm}, max error {entry['error_max_abs']:.2e}, forward pass {entry['forward_s']:.2f} s, "
        f"accuracy {entry['accuracy']:.4f}"
    )
