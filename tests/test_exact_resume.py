"""Resuming mid-epoch is exact for every model family: a run stopped in the middle of its second epoch, after the
stopped batch had drawn its random numbers (the latent ODE's posterior sample, the CNF's Hutchinson probes, the
flows' and spirals' sampled batches), and resumed from its checkpoint ends with every tensor of the model and the
optimizer equal, bit for bit, to the uninterrupted run's (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import get_class

from conftest import compose
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint

QUIET = ["trainer.progress_bar=false", "logger.tensorboard=false", "trainer.max_epochs=2"]
FLOWS = ["data.batch_size=16", "data.batches_per_epoch=3", "data.eval_samples=32", "data.eval_batch_size=32",
         "task.grid_points=8", "task.figure_samples=50"]  # fmt: skip
SPIRALS = ["data.n_spirals=24", "data.test_size=8", "data.n_obs=10", "data.window=20", "data.grid_points=200",
           "data.batch_size=4", "task.figure_latent_spirals=8"]  # fmt: skip
FAMILIES = {  # experiment: overrides making it tiny, with 3 or 4 batches per epoch
    "mnist_odenet": ["data.batch_size=16", "model.width=8"],
    "spiral_latent_ode": SPIRALS,
    "spiral_rnn": SPIRALS,
    "cnf_two_moons": [*FLOWS, "model.width=4", "model.hidden=8", "model.trace=hutchinson"],
    "nf_two_moons": [*FLOWS, "model.layers=4"],
}


def family_config(experiment: str, data_root: Path, *overrides: str):
    mnist = [f"data.root={data_root}", "data.download=false"] if "mnist" in experiment else []
    return compose(experiment, [*mnist, *FAMILIES[experiment], *QUIET, *overrides])


def tensors(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a (nested) state dict, by its path."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found: dict[str, torch.Tensor] = {}
    for key, item in items:
        found.update(tensors(item, f"{prefix}/{key}"))
    return found


def assert_same_tensors(a: Any, b: Any) -> int:
    first, second = tensors(a), tensors(b)
    assert first.keys() == second.keys()
    differing = [name for name in first if not torch.equal(first[name], second[name])]
    assert not differing, f"{len(differing)} of {len(first)} tensors differ, e.g. {differing[:3]}"
    return len(first)


@pytest.mark.parametrize("experiment", list(FAMILIES))
def test_a_run_stopped_mid_epoch_resumes_bit_for_bit(
    experiment: str, tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = family_config(experiment, tiny_data_root)
    train(cfg, tmp_path / "uninterrupted")
    batches = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")["position"]["step"] // 2

    task_class = get_class(cfg.task._target_)
    real_step = task_class.training_step
    calls = {"count": 0}

    def stopped_after_its_draws(self: Any, model: Any, batch: Any) -> Any:
        result = real_step(self, model, batch)  # the forward pass, with its random draws
        calls["count"] += 1
        if calls["count"] == batches + 2:  # epoch 2, batch 2
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(task_class, "training_step", stopped_after_its_draws)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "stopped")
    monkeypatch.undo()
    stopped = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert (stopped["position"]["epoch"], stopped["position"]["batches_done"]) == (1, 1)
    assert "batch" in stopped["rng"], "a mid-epoch checkpoint holds the random states at the batch position"

    train(family_config(experiment, tiny_data_root, f"trainer.resume={tmp_path / 'stopped'}"), tmp_path / "stopped")
    resumed = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    expected = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    assert resumed["position"]["step"] == expected["position"]["step"] == 2 * batches
    compared = assert_same_tensors(resumed["model"], expected["model"])
    compared += assert_same_tensors(resumed["optimizer"], expected["optimizer"])
    assert compared > len(expected["model"])  # the optimizer's state was compared too
    for record, other in zip(resumed["position"]["history"], expected["position"]["history"], strict=True):
        assert {k: v for k, v in record.items() if k.startswith("test/")} == {
            k: v for k, v in other.items() if k.startswith("test/")}
        assert record["train/loss"] == pytest.approx(other["train/loss"], rel=1e-12)  # summed in another order


def test_a_run_stopped_during_its_evaluation_resumes_bit_for_bit(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped in epoch 1's evaluation, after the CNF's evaluation drew its Hutchinson probes: the checkpoint holds
    the random states after the epoch's last batch, so that the evaluation, redone, draws the same ones."""
    cfg = family_config("cnf_two_moons", tiny_data_root)
    train(cfg, tmp_path / "uninterrupted")
    task_class = get_class(cfg.task._target_)
    real_evaluate = task_class.evaluate

    def stopped_after_its_draws(self: Any, model: Any, loader: Any) -> Any:
        real_evaluate(self, model, loader)
        raise KeyboardInterrupt

    monkeypatch.setattr(task_class, "evaluate", stopped_after_its_draws)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "stopped")
    monkeypatch.undo()
    stopped = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert (stopped["position"]["epoch"], stopped["position"]["batches_done"]) == (0, 3)
    train(family_config("cnf_two_moons", tiny_data_root, f"trainer.resume={tmp_path / 'stopped'}"),
          tmp_path / "stopped")  # fmt: skip
    resumed = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    expected = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    assert_same_tensors(resumed["model"], expected["model"])
    assert_same_tensors(resumed["optimizer"], expected["optimizer"])
    assert resumed["position"]["history"][0]["test/loss"] == expected["position"]["history"][0]["test/loss"]
