"""The shared trainer: exact resume (after an epoch, and after Ctrl-C mid-epoch), and a task of another kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import compose, tiny_overrides
from node_experiments.tasks import ClassificationTask, Task, to_device
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint


def tiny_config(data_root: Path, *overrides: str):
    """A narrow mnist_odenet on the tiny data (``hydra.run.dir`` dropped: train() is given its folder)."""
    base = [o for o in tiny_overrides(data_root, Path("unused")) if not o.startswith("hydra.")]
    return compose("mnist_odenet", [*base, "model.width=16", *overrides])


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same_models(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{name} differs")


@pytest.fixture(scope="module")
def two_epoch_run(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(tiny_config(tiny_data_root, "trainer.max_epochs=2"), run_dir, {"experiment": "mnist_odenet"})
    return run_dir


def test_a_run_resumed_after_one_epoch_matches_an_uninterrupted_one(
    tiny_data_root: Path, two_epoch_run: Path, tmp_path: Path
) -> None:
    train(tiny_config(tiny_data_root, "trainer.max_epochs=1"), tmp_path / "first", {})
    summary = train(
        tiny_config(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={tmp_path / 'first'}"),
        tmp_path / "resumed",
        {},
    )
    assert_same_models(final_model(tmp_path / "resumed"), final_model(two_epoch_run))
    expected = json.loads((two_epoch_run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["resumed_from"].endswith("last.pt")
    for key in ("test_accuracy", "test_loss", "nfe_forward", "nfe_backward", "train_loss"):
        assert summary[key] == expected[key], key
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_ctrl_c_mid_epoch_writes_a_checkpoint_that_resumes_exactly(
    tiny_data_root: Path, two_epoch_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = ClassificationTask.training_step
    calls = {"count": 0}

    def interrupted_step(self: Task, model: nn.Module, batch: Any):
        calls["count"] += 1
        if calls["count"] == 6:  # epoch 2, batch 2 of 4
            raise KeyboardInterrupt
        return real_step(self, model, batch)

    monkeypatch.setattr(ClassificationTask, "training_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_data_root, "trainer.max_epochs=2"), tmp_path / "stopped", {})
    position = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["position"]
    assert (position["epoch"], position["batches_done"]) == (1, 1)

    monkeypatch.setattr(ClassificationTask, "training_step", real_step)
    summary = train(
        tiny_config(tiny_data_root, "trainer.max_epochs=2", f"trainer.resume={tmp_path / 'stopped'}"),
        tmp_path / "resumed",
        {},
    )
    assert_same_models(final_model(tmp_path / "resumed"), final_model(two_epoch_run))
    expected = json.loads((two_epoch_run / "summary.json").read_text())
    assert summary["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-12)


class LineFitTask(Task):
    """A task of another kind than classification, to show that the trainer knows nothing of MNIST:
    fit y = 3x - 1 with a linear layer, reporting the mean squared error and a figure."""

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1)

    def dataloaders(self, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        data = TensorDataset(x, 3 * x - 1)
        return DataLoader(data, batch_size=8, shuffle=True, generator=generator), DataLoader(data, batch_size=64)

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        return loss, {"mse": loss.detach()}

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        with torch.no_grad():
            x, y = to_device(next(iter(loader)), self.device)
            return {"mse": nn.functional.mse_loss(model(x), y).item()}

    def figures(self, model: nn.Module, loader: DataLoader) -> dict[str, plt.Figure]:
        figure, axes = plt.subplots()
        x, y = next(iter(loader))
        axes.plot(x, y, ".")
        return {"fit": figure}


def test_a_new_kind_of_experiment_plugs_in_with_a_task_class(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {
            "task": {"_target_": f"{__name__}.LineFitTask"},
            "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},
            "scheduler": {"_target_": "torch.optim.lr_scheduler.ConstantLR", "factor": 1.0, "total_iters": 0},
            "trainer": {"device": "cpu", "max_epochs": 5, "seed": 0, "grad_clip_norm": 1.0, "progress_bar": False,
                        "checkpoint": True, "resume": None},
            "logger": {"tensorboard": True, "log_every_n_steps": 4},
        }
    )
    summary = train(cfg, tmp_path, {"experiment": "line_fit"})
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5]
    assert history[-1]["test/mse"] < history[0]["test/mse"]
    assert summary["experiment"] == "line_fit" and summary["test_mse"] == history[-1]["test/mse"]
    assert summary["nfe_forward"] == 0 and summary["params"] == 2
    assert (tmp_path / "figures" / "fit.png").is_file()
