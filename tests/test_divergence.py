"""Divergence is an outcome: a run whose loss, gradients or weights become NaN or infinite, or whose loss explodes
and stays finite (``trainer.divergence_factor``), stops with a message, keeps its last good checkpoints, and writes
a strict-JSON summary.json with its status. Every model family (MNIST classifiers, the latent ODE, the CNF, the NF)
is made to diverge after one good epoch with a huge learning rate."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose, run_node_run, tiny_overrides
from node_experiments.errors import DivergedError, SolveFailedError, TrainingStopped
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint
from node_experiments.training.divergence import FiniteCheck, LossScale, Step
from test_trainer import LineFitTask

QUIET = ["trainer.progress_bar=false", "logger.tensorboard=false"]
FLOWS = ["data.batch_size=16", "data.batches_per_epoch=3", "data.eval_samples=32", "data.eval_batch_size=32",
         "task.grid_points=8", "task.figure_samples=50"]  # fmt: skip
SPIRALS = ["data.n_spirals=24", "data.test_size=8", "data.n_obs=10", "data.window=20", "data.grid_points=200",
           "data.batch_size=8", "task.figure_latent_spirals=8"]  # fmt: skip
FAMILIES = {  # experiment: overrides making it tiny
    "mnist_resnet": ["model.width=8"],
    "mnist_odenet": ["model.width=8"],
    "spiral_latent_ode": SPIRALS,
    "cnf_two_moons": [*FLOWS, "model.width=4", "model.hidden=8"],
    "nf_two_moons": [*FLOWS, "model.layers=4"],
}
# Learning rates that make each diverge at once. The CNF's is the largest Adam can take: from 1e20 to 1e36 the
# solver's initial step selection divides by zero (test_a_cnf_whose_field_overflows_at_the_start_diverges).
HUGE_LR = {"cnf_two_moons": 1e38}


def strict_json(path: Path) -> dict[str, Any]:
    """Parse ``path`` as strict JSON: a bare NaN or Infinity fails the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds a bare {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def family_config(experiment: str, data_root: Path, *overrides: str):
    mnist = [f"data.root={data_root}", "data.download=false", "data.batch_size=16"] if "mnist" in experiment else []
    return compose(experiment, [*mnist, *FAMILIES[experiment], *QUIET, *overrides])


@pytest.mark.parametrize("experiment", list(FAMILIES))
def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(
    experiment: str, tiny_data_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    train(family_config(experiment, tiny_data_root, "trainer.max_epochs=1"), run_dir, {"experiment": experiment})
    good = load_checkpoint(run_dir / "checkpoints" / "last.pt")

    # The same run continued with a learning rate that makes it diverge in its second epoch.
    lr = HUGE_LR.get(experiment, 1e30)
    diverging = family_config(experiment, tiny_data_root, "trainer.max_epochs=3", f"optimizer.lr={lr}",
                              f"trainer.resume={run_dir}", "trainer.resume_changes=apply")  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(TrainingStopped) as stopped:
        train(diverging, run_dir, {"experiment": experiment})
    assert time.perf_counter() - start < 60
    message = str(stopped.value)
    assert isinstance(stopped.value, DivergedError), message
    assert "epoch 2, batch" in message and "optimizer.lr=" in message, message
    rates = [f"learning rate {rate:.3g}" for rate in (lr, lr * 0.995405)]  # the latent ODE's schedule decays it
    assert any(rate in message for rate in rates), message
    assert f"trainer.resume={run_dir}" in message, message

    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert kept["position"]["epoch"] == 1 and kept["position"]["batches_done"] == 0
    for name, tensor in kept["model"].items():
        assert torch.isfinite(tensor).all(), name
        torch.testing.assert_close(tensor, good["model"][name], rtol=0, atol=0)
    summary = strict_json(run_dir / "summary.json")
    assert summary["status"] == "diverged" and summary["epochs"] == 1 and "epoch 2" in summary["message"]
    assert summary["settings_changed"][0]["changes"]["optimizer.lr"][1] == lr


def test_a_run_diverging_in_its_first_epoch_writes_no_checkpoint(tiny_data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DivergedError, match="epoch 1, batch 2 of 4.*No checkpoint was written"):
        train(family_config("mnist_resnet", tiny_data_root, "optimizer.lr=1e30"), tmp_path, {})
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    summary = strict_json(tmp_path / "summary.json")
    assert (summary["status"], summary["epochs"]) == ("diverged", 0) and "test_accuracy" not in summary
    assert summary["train_loss"] is None and summary["epoch_time_s"] is None


def test_node_run_reports_a_divergence_in_one_paragraph(tiny_data_root: Path, tmp_path: Path) -> None:
    result = run_node_run(["experiment=mnist_mlp", *tiny_overrides(tiny_data_root, tmp_path), "optimizer.lr=1e30"])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "node-run: training diverged at epoch 1, batch" in result.stderr and "the loss is nan" in result.stderr
    assert strict_json(tmp_path / "summary.json")["status"] == "diverged"


@pytest.mark.slow
def test_a_runaway_cnf_solve_fails_within_a_minute_with_the_experiment_budget(tmp_path: Path) -> None:
    """The issue's case: a CNF at learning rate 1e4 stiffens until each solve would take steps without end; the
    experiment's max_num_steps stops it within a minute, with the epoch and batch named."""
    cfg = compose("cnf_two_moons", [*FAMILIES["cnf_two_moons"], *QUIET, "optimizer.lr=1e4", "trainer.max_epochs=5"])
    assert cfg.solver.options.max_num_steps  # the adjoint's backward solve inherits it
    start = time.perf_counter()
    with pytest.raises(TrainingStopped) as stopped:
        train(cfg, tmp_path, {})
    assert time.perf_counter() - start < 60
    assert isinstance(stopped.value, (SolveFailedError, DivergedError))
    assert "epoch" in str(stopped.value) and "batch" in str(stopped.value) and "optimizer.lr=" in str(stopped.value)
    assert strict_json(tmp_path / "summary.json")["status"] in ("solver_failed", "diverged")


def test_a_cnf_whose_field_overflows_at_the_start_diverges(tmp_path: Path) -> None:
    cfg = compose("cnf_two_moons", [*FAMILIES["cnf_two_moons"], *QUIET, "optimizer.lr=1e30"])
    with pytest.raises(DivergedError):
        train(cfg, tmp_path, {})


def test_a_solve_over_budget_is_named_with_the_epoch_and_batch(tmp_path: Path) -> None:
    cfg = compose("cnf_two_moons", [*FAMILIES["cnf_two_moons"], *QUIET, "solver.options.max_num_steps=2"])
    with pytest.raises(SolveFailedError, match="failed at epoch 1, batch 1 .*max_num_steps=2.*solver.options.max_num_steps"):
        train(cfg, tmp_path, {})
    assert strict_json(tmp_path / "summary.json")["status"] == "solver_failed"


@pytest.mark.parametrize("experiment", ["mnist_resnet", "nf_two_moons"])
def test_a_finite_explosion_stops_the_run_and_keeps_its_checkpoints(
    experiment: str, tiny_data_root: Path, tmp_path: Path
) -> None:
    """The issue's cases: resumed at learning rate 1e4, a ResNet's loss reaches 1e5 and a planar NF's 1e8, finite
    both, where the run went on, completed with exit status 0 and wrote over its last good checkpoint."""
    run_dir = tmp_path / "run"
    train(family_config(experiment, tiny_data_root, "trainer.max_epochs=1"), run_dir, {"experiment": experiment})
    kept = {path.name: path.read_bytes() for path in (run_dir / "checkpoints").iterdir()}
    assert set(kept) == {"last.pt", "best.pt"}
    exploding = family_config(experiment, tiny_data_root, "trainer.max_epochs=3", "optimizer.lr=1e4",
                              f"trainer.resume={run_dir}", "trainer.resume_changes=apply")  # fmt: skip
    with pytest.raises(DivergedError) as stopped:
        train(exploding, run_dir, {"experiment": experiment})
    message = str(stopped.value)
    assert message.startswith("training diverged at epoch 2, batch 2 of ")
    assert "learning rate 1e+04: the loss is " in message
    assert "more than trainer.divergence_factor=100 times the run's loss scale" in message, message
    assert "optimizer.lr=1e+03" in message and f"trainer.resume={run_dir}" in message and "\n" not in message
    loss = float(message.split("the loss is ")[1].split(",")[0])
    assert math.isfinite(loss) and loss > 1e4
    assert {path.name: path.read_bytes() for path in (run_dir / "checkpoints").iterdir()} == kept
    summary = strict_json(run_dir / "summary.json")
    assert (summary["status"], summary["epochs"]) == ("diverged", 1) and "divergence_factor" in summary["message"]


def test_the_loss_scale_rule() -> None:
    scale = LossScale(100.0)
    assert scale.limit() is None
    scale.check(2.3, "the loss", "epoch 1, batch 1", 0.1)  # the first loss sets the scale
    assert scale.first == 2.3 and scale.limit() == pytest.approx(230.0)
    scale.epoch_done(-40.0)  # losses below zero (a negative ELBO, an NLL): their size counts
    assert scale.limit() == pytest.approx(4000.0)
    for loss in (-1e9, 3999.0):
        scale.check(loss, "the loss", "epoch 2, batch 1", 0.1)
    with pytest.raises(DivergedError, match=r"at epoch 2, batch 2: the test loss is 4001, more than "
                                            r"trainer.divergence_factor=100 times the run's loss scale 40 "):
        scale.check(4001.0, "the test loss", "epoch 2, batch 2", 0.1)
    off = LossScale(None, first=1.0, best_mean=1.0)
    off.check(1e30, "the loss", "epoch 2, batch 1", 0.1)  # trainer.divergence_factor=null: the rule is off
    assert LossScale(100.0, first=0.0, best_mean=None).limit() is None


class ExplodesAtItsLastStep(LineFitTask):
    """A finite explosion that the training losses cannot see: the last optimizer step of epoch 2 multiplies the
    weights by 1e6. Only epoch 2's evaluation shows it, and it must stop the run before that epoch's checkpoint."""

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, float]:
        return {"loss": super().evaluate(model, loader)["mse"]}


def test_an_explosion_seen_only_by_the_evaluation_stops_before_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = torch.optim.SGD.step
    steps = {"count": 0}

    def step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        result = real_step(self, *args, **kwargs)
        steps["count"] += 1
        if steps["count"] == 16:  # the last of epoch 2's 8 steps
            with torch.no_grad():
                for group in self.param_groups:
                    for parameter in group["params"]:
                        parameter.mul_(1e6)
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    cfg = OmegaConf.create({
        "task": {"_target_": f"{__name__}.ExplodesAtItsLastStep"},
        "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.ConstantLR", "factor": 1.0, "total_iters": 0},
        "trainer": {"device": "cpu", "max_epochs": 3, "seed": 0, "grad_clip_norm": None, "progress_bar": False,
                    "checkpoint": True, "resume": None, "divergence_factor": 100},
        "logger": {"tensorboard": False, "log_every_n_steps": 4},
    })  # fmt: skip
    with pytest.raises(DivergedError, match="at the evaluation after epoch 2 .*: the test loss is .*divergence_factor"):
        train(cfg, tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["position"]["epoch"] == 1


def test_on_a_gpu_the_steps_are_read_at_the_logging_interval() -> None:
    check = FiniteCheck(torch.device("cuda"), every=4)  # no GPU needed: only the device type is read
    one = torch.ones(())
    for batch in (1, 2, 3):
        check.step(torch.full((), math.nan) if batch == 2 else one, one, Step(1, batch, 9, 0.1))
    with pytest.raises(DivergedError, match="epoch 1, batch 2 of 9, learning rate 0.1: the loss is nan"):
        check.step(one, one, Step(1, 4, 9, 0.1))
    cpu = FiniteCheck(torch.device("cpu"), every=4)
    with pytest.raises(DivergedError, match="the gradient norm is inf"):
        cpu.step(one, torch.full((), math.inf), Step(3, 1, 9, 0.1))
    exploding = FiniteCheck(torch.device("cuda"), every=4, scale=LossScale(100.0))
    for batch in (1, 2, 3):
        exploding.step(torch.full((), 1e5) if batch == 3 else one, one, Step(1, batch, 9, 0.1))
    with pytest.raises(DivergedError, match="epoch 1, batch 3 of 9, learning rate 0.1: the loss is 1e\\+05, more than"):
        exploding.flush()


class WeightsTurnNaN(LineFitTask):
    """Finite losses, but a weight becomes NaN during the second epoch (what a GPU run may apply between two reads
    of the loss): the checkpoint at its end must not be written."""

    calls = 0

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        WeightsTurnNaN.calls += 1
        if WeightsTurnNaN.calls == 12:  # epoch 2 of 8 batches
            with torch.no_grad():
                model.bias.fill_(math.nan)
        x, y = batch
        loss = nn.functional.mse_loss(model(x).nan_to_num(), y)
        return loss, {}


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path: Path) -> None:
    cfg = OmegaConf.create({
        "task": {"_target_": f"{__name__}.WeightsTurnNaN"},
        "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1},
        "scheduler": {"_target_": "torch.optim.lr_scheduler.ConstantLR", "factor": 1.0, "total_iters": 0},
        "trainer": {"device": "cpu", "max_epochs": 3, "seed": 0, "grad_clip_norm": None, "progress_bar": False,
                    "checkpoint": True, "resume": None},
        "logger": {"tensorboard": False, "log_every_n_steps": 4},
    })  # fmt: skip
    WeightsTurnNaN.calls = 0
    with pytest.raises(DivergedError, match="weights hold NaN or infinity at the end of epoch 2"):
        train(cfg, tmp_path)
    kept = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert kept["position"]["epoch"] == 1 and torch.isfinite(kept["model"]["bias"]).all()
    assert strict_json(tmp_path / "summary.json")["status"] == "diverged"
