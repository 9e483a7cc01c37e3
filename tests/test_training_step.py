"""The trainer's step loop: saved bytes counted on a sample of steps, host reads once per logging interval, exact
per-epoch means, and the thread count every run sets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from node_experiments.errors import ConfigError
from node_experiments.models.mnist import ODENet
from node_experiments.tasks import ClassificationTask
from node_experiments.training import train, trainer
from node_experiments.training.meters import Means, SavedTensorBytes, StepSums
from test_trainer import tiny_config


class CountedSavedBytes(SavedTensorBytes):
    instances = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CountedSavedBytes.instances += 1


def test_saved_bytes_are_counted_on_the_sampled_steps_only_and_keep_their_meaning(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer, "SavedTensorBytes", CountedSavedBytes)
    CountedSavedBytes.instances = 0
    # 2 epochs of 4 steps, intervals of 3: steps 1 and 5 open an epoch, steps 3 and 6 close an interval.
    summary = train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.log_every_n_steps=3"), tmp_path, {})
    assert CountedSavedBytes.instances == 4

    # The adjoint ODE-Net saves the same bytes on every batch: the sampled figure is the one of any batch.
    cfg = tiny_config(tiny_data_root)
    model = ODENet(1, 10, 16, cfg.solver)
    with SavedTensorBytes(exclude=model.parameters()) as saved:
        F.cross_entropy(model(torch.rand(16, 1, 28, 28)), torch.zeros(16, dtype=torch.long))
    assert summary["saved_bytes_per_batch"] == saved.bytes
    assert summary["peak_memory_bytes"] == saved.bytes


def test_loss_and_metrics_are_read_once_per_interval_and_averaged_exactly(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads, losses = [], []
    real_read, real_step = StepSums.read, ClassificationTask.training_step

    def counted_read(self: StepSums) -> Means:
        reads.append(1)
        return real_read(self)

    def recorded_step(self: ClassificationTask, model: nn.Module, batch: Any):
        loss, metrics = real_step(self, model, batch)
        losses.append(loss.detach().clone())
        return loss, metrics

    monkeypatch.setattr(StepSums, "read", counted_read)
    monkeypatch.setattr(ClassificationTask, "training_step", recorded_step)
    train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.log_every_n_steps=3"), tmp_path, {})
    assert len(losses) == 8 and len(reads) == 4  # steps 3, 4 (end of epoch 1), 6, 8 (end of epoch 2)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for record, epoch_losses in zip(records, (losses[:4], losses[4:])):
        expected = sum(float(loss) for loss in epoch_losses) / 4
        assert record["train/loss"] == pytest.approx(expected, rel=1e-15, abs=0)


def test_step_sums_add_in_float64_on_the_device_and_numbers_on_the_host() -> None:
    sums = StepSums()
    values = [torch.tensor(0.1, dtype=torch.float32) * k for k in range(1, 6)]
    for k, value in enumerate(values):
        sums.update({"loss": value, "nfe": 10 + k})
    means = sums.read().means()
    assert means["loss"] == sum(float(v) for v in values) / 5  # the same additions as Python floats
    assert means["nfe"] == 12.0
    assert Means.from_state(sums.read().state_dict()).counts["loss"] == 5


def test_a_run_sets_one_thread_unless_told_otherwise(tiny_data_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)  # torch's default on a 2-core machine; the single_thread fixture restores its own
    summary = train(tiny_config(tiny_data_root, "data.train_subset=16"), tmp_path, {})
    assert summary["torch_threads"] == torch.get_num_threads() == 1


@pytest.mark.parametrize(("value", "shown"), [("null", "None"), ("0", "0"), ("two", "'two'"), ("1.5", "1.5")])
def test_a_bad_thread_count_is_named(tiny_data_root: Path, tmp_path: Path, value: str, shown: str) -> None:
    with pytest.raises(ConfigError, match=f"trainer.num_threads={re.escape(shown)} is not a number of threads"):
        train(tiny_config(tiny_data_root, f"trainer.num_threads={value}"), tmp_path, {})
