"""The memory claim of Chen et al. (2018, section 3, Table 1): with the adjoint, an ODE-Net's memory is O(1).

Backpropagating through the solver (the RK-Net) keeps every step's activations, so its memory grows with the
number of function evaluations L~, as a ResNet's grows with its number of blocks L; the adjoint keeps only the
ODE block's input and output. This module measures that directly on one batch:

- on any device, the bytes the forward pass saves for backward (``SavedTensorBytes``, parameters left out): exact
  and repeatable, the same count the trainer logs as ``memory/saved_bytes``;
- on CUDA, in addition, the peak memory allocated by a forward and backward pass above what was allocated
  before it (``torch.cuda.max_memory_allocated``).

The ODE-Net and the RK-Net are the same trained network with ``adjoint`` on and off, and their number of
evaluations is driven by the tolerance; the ResNets have ``L`` residual blocks, one evaluation each, with the
trained network's width (their weights are untrained: the memory does not depend on them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models import ODEBlock, ResNet
from ..ode import record_stats
from ..training.meters import SavedTensorBytes
from .trained_run import solver_settings

ODE_NET, RK_NET, RESNET = "ODE-Net (adjoint)", "RK-Net (backprop through solver)", "ResNet"


def saved_bytes(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """Bytes saved for backward by ``model(images)`` (parameters excluded), and the solver's forward NFE."""
    with record_stats() as stats, SavedTensorBytes(exclude=model.parameters()) as saved:
        model(images)
    return saved.bytes, stats.nfe_forward


def cuda_peak_bytes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int | None:
    """Peak CUDA memory of a forward and backward pass above what was allocated before it; None off CUDA."""
    if images.device.type != "cuda":
        return None
    torch.cuda.synchronize(images.device)
    before = torch.cuda.memory_allocated(images.device)
    torch.cuda.reset_peak_memory_stats(images.device)
    F.cross_entropy(model(images), labels).backward()
    torch.cuda.synchronize(images.device)
    peak = torch.cuda.max_memory_allocated(images.device) - before
    model.zero_grad(set_to_none=True)
    return peak


def measure_memory(
    model: nn.Module,
    block: ODEBlock,
    images: torch.Tensor,
    labels: torch.Tensor,
    tolerances: Sequence[float],
    resnet_blocks: Sequence[int],
    model_config: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One row per (network, tolerance) and per ResNet depth: evaluations (NFE or L), saved bytes, CUDA peak."""
    rows = []
    for tolerance in tolerances:
        for name, gradient in ((ODE_NET, "adjoint"), (RK_NET, "backprop")):
            with solver_settings(block, rtol=tolerance, atol=tolerance, gradient=gradient):
                saved, nfe = saved_bytes(model, images)
                rows.append(_row(name, tolerance, nfe, saved, cuda_peak_bytes(model, images, labels)))
    missing = {"in_channels", "num_classes", "width"} - set(model_config)
    if resnet_blocks and missing:
        raise ConfigError(
            f"study.memory.resnet_blocks: the trained model's config has no {sorted(missing)}, so no ResNet of the "
            "same shape can be built. Set study.memory.resnet_blocks=[] to leave the ResNet out."
        )
    for depth in resnet_blocks:
        resnet = ResNet(model_config["in_channels"], model_config["num_classes"], model_config["width"], depth)
        resnet = resnet.to(images.device)
        saved, _ = saved_bytes(resnet, images)
        rows.append(_row(RESNET, None, depth, saved, cuda_peak_bytes(resnet, images, labels)))
    return rows


def _row(network: str, tolerance: float | None, evaluations: int, saved: int, peak: int | None) -> dict[str, Any]:
    return {"network": network, "tolerance": tolerance, "evaluations": evaluations, "saved_bytes": saved,
            "cuda_peak_bytes": peak}
