"""CUDA: the solver with every method and gradient mode, NFE counted from autograd's device threads, the batch crop,
the trainer's memory figure, RNODE's penalties, and one-epoch runs of node-run (an FFJORD toy with the penalties and
augmentation among them).

Collected everywhere and skipped, with the reason, where CUDA is not available; ``scripts/gpu_check.sh`` runs them
on a GPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import mnist_data_config, tiny_overrides
from node_experiments.data.augment import crop_padded, random_offsets
from node_experiments.data.images import image_classification_loaders
from node_experiments.ode import FIXED_STEP_METHODS, GRADIENTS, METHODS, odeint_adjoint, record_stats
from node_experiments.training import train
from test_regularization import check_growth_penalties
from test_trainer import tiny_config

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here (torch.cuda.is_available() is False); scripts/gpu_check.sh runs these on a GPU",
)
CUDA = torch.device("cuda")
GRADIENT_MODES = GRADIENTS  # the solver's ways to compute gradients: adjoint, backprop, checkpoint
MNIST_EXPERIMENTS = ["mnist_odenet", "mnist_resnet", "mnist_rknet", "mnist_mlp"]


class LinearField(nn.Module):
    """dy/dt = y A^T + sin(t) b: linear in y, time-dependent, with parameters for the adjoint to differentiate."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.A = nn.Parameter(torch.randn(3, 3, generator=generator, dtype=torch.float64) * 0.5)
        self.b = nn.Parameter(torch.randn(3, generator=generator, dtype=torch.float64))
        self.threads: set[int] = set()
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.threads.add(threading.get_ident())
        self.calls += 1
        return y @ self.A.T + torch.sin(t) * self.b


def solve_and_differentiate(device: torch.device, method: str, gradient: str):
    """Solution, gradients (y0, A, b) and the recorder's counts of one solve and its backward pass on ``device``."""
    field = LinearField().to(device)
    y0 = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(4, 3).to(device).requires_grad_(True)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64, device=device)
    options = {"step_size": 0.01} if method in FIXED_STEP_METHODS else {}
    with record_stats() as stats:
        ys = GRADIENT_MODES[gradient](field, y0, t, rtol=1e-5, atol=1e-5, method=method, options=options)
        ys.square().sum().backward()
    return ys.detach(), (y0.grad, field.A.grad, field.b.grad), stats


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
@pytest.mark.parametrize("method", METHODS)
def test_the_solver_on_cuda_tensors_matches_the_cpu(method: str, gradient: str) -> None:
    ys, grads, stats = solve_and_differentiate(CUDA, method, gradient)
    cpu_ys, cpu_grads, _ = solve_and_differentiate(torch.device("cpu"), method, gradient)
    assert ys.device.type == "cuda" and all(g.device.type == "cuda" for g in grads)
    # The same arithmetic in float64: equal up to rounding or, should rounding flip a step decision, within ten
    # times the solver's tolerance.
    torch.testing.assert_close(ys.cpu(), cpu_ys, rtol=1e-4, atol=1e-6)
    for grad, cpu_grad in zip(grads, cpu_grads):
        torch.testing.assert_close(grad.cpu(), cpu_grad, rtol=1e-4, atol=1e-6)
    assert stats.nfe_forward > 0 and (stats.nfe_backward > 0) == (gradient == "adjoint")


@pytest.mark.parametrize("gradient", GRADIENT_MODES)
def test_the_penalties_on_cuda_have_their_closed_form(gradient: str) -> None:
    """RNODE's penalties integrated along a CUDA solve, and their gradients, for dh/dt = c h (test_regularization)."""
    check_growth_penalties(CUDA, gradient)


def test_backward_solves_on_autograd_device_threads_are_counted() -> None:
    field = LinearField().to(CUDA)
    y0 = torch.ones(4, 3, dtype=torch.float64, device=CUDA, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64, device=CUDA)
    with record_stats() as stats:
        ys = odeint_adjoint(field, y0, t, rtol=1e-7, atol=1e-9)
        forward_calls, forward_threads = field.calls, set(field.threads)
        ys.square().sum().backward()
    backward_threads = field.threads - forward_threads
    assert backward_threads, "autograd ran the CUDA backward pass on the calling thread: nothing to check"
    assert stats.nfe_forward == forward_calls
    assert stats.nfe_backward == field.calls - forward_calls > 0
    assert stats.backward_solves >= 1


def test_the_batch_crop_on_cuda_equals_the_cpu_crop() -> None:
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = random_offsets(64, 4, torch.Generator().manual_seed(1))
    assert torch.equal(crop_padded(images.to(CUDA), offsets, 4).cpu(), crop_padded(images, offsets, 4))


def test_cuda_batches_equal_cpu_batches(tiny_data_root: Path) -> None:
    data = mnist_data_config(tiny_data_root, "data.random_crop_padding=4", "data.batch_size=16")
    batches = {}
    for device in (torch.device("cpu"), CUDA):
        torch.manual_seed(0)
        train_batches, _ = image_classification_loaders(data, torch.Generator().manual_seed(0), device)
        batches[device.type] = list(train_batches)
    assert all(images.device.type == "cuda" for images, _ in batches["cuda"])
    for (images, labels), (cpu_images, cpu_labels) in zip(batches["cuda"], batches["cpu"]):
        assert torch.equal(images.cpu(), cpu_images) and torch.equal(labels.cpu(), cpu_labels)


def test_the_trainer_reports_the_cuda_memory_peak(tiny_data_root: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(tiny_data_root, "trainer.device=cuda"), tmp_path, {})
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["device"].startswith("cuda")
    # Allocated memory at its peak holds at least the parameters and the tensors saved for backward.
    assert summary["peak_memory_bytes"] == record["memory/peak_bytes"]
    assert summary["peak_memory_bytes"] >= summary["saved_bytes_per_batch"] + 4 * summary["params"]
    assert summary["nfe_forward"] > 0 and summary["nfe_backward"] > 0


@pytest.mark.parametrize("experiment", MNIST_EXPERIMENTS)
def test_one_epoch_on_cuda_end_to_end(experiment: str, tiny_data_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "node_experiments.cli", f"experiment={experiment}",
               *tiny_overrides(tiny_data_root, tmp_path), "trainer.device=cuda"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["epochs"] == 1
    assert summary["peak_memory_bytes"] > 0 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert (summary["nfe_forward"] > 0) == (experiment in ("mnist_odenet", "mnist_rknet"))


def test_an_ffjord_toy_with_penalties_and_augmentation_on_cuda(tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "node_experiments.cli", "experiment=ffjord_rings", "debug=quick",
               "trainer.device=cuda", "model.augment_dim=2", "model.regularization.kinetic=0.01",
               "model.regularization.jacobian=0.01", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["device"].startswith("cuda") and summary["nfe_forward"] > 0 and "data_entropy" in summary
    assert record["train/reg_kinetic"] > 0 and record["train/reg_jacobian"] > 0
