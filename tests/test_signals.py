"""SIGTERM and submitit's preemption signal write a checkpoint of the position reached (resuming from it equals an
uninterrupted run), summary.json says the run was interrupted, and the signal is then passed on to the handler
that was there before (submitit's requeues the job)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import node_run_executable, tiny_overrides
from node_experiments.tasks import ClassificationTask, Task
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint
from node_experiments.training.signals import Interrupted
from test_divergence import strict_json
from test_trainer import assert_same_models, final_model, tiny_config


@pytest.fixture(scope="module")
def uninterrupted(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.tensorboard=false"), run_dir)
    return run_dir


def signal_at_step(monkeypatch: pytest.MonkeyPatch, signum: int, call: int) -> None:
    """Send ``signum`` to this process from inside the ``call``-th training step, before its optimizer step."""
    real_step = ClassificationTask.training_step
    calls = {"count": 0}

    def step(self: Task, model: nn.Module, batch: Any):
        calls["count"] += 1
        if calls["count"] == call:
            os.kill(os.getpid(), signum)
        return real_step(self, model, batch)

    monkeypatch.setattr(ClassificationTask, "training_step", step)


def resume_and_compare(data_root: Path, stopped: Path, uninterrupted: Path, resumed: Path) -> None:
    train(tiny_config(data_root, "trainer.max_epochs=2", "logger.tensorboard=false", f"trainer.resume={stopped}"),
          resumed)  # fmt: skip
    assert_same_models(final_model(resumed), final_model(uninterrupted))


def test_sigterm_mid_batch_checkpoints_the_position_reached(
    tiny_data_root: Path, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signal_at_step(monkeypatch, signal.SIGTERM, call=6)  # epoch 2, batch 2 of 4: stops before its step
    with pytest.raises(Interrupted) as stopped:
        train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.tensorboard=false"), tmp_path / "stopped")
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back
    position = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["position"]
    assert (position["epoch"], position["batches_done"]) == (1, 1)
    summary = strict_json(tmp_path / "stopped" / "summary.json")
    assert (summary["status"], summary["signal"], summary["epochs"]) == ("interrupted", "SIGTERM", 1)
    assert summary["message"] == (f"Stopped by SIGTERM: checkpoint of epoch 2, after batch 1 written to "
                                  f"{tmp_path / 'stopped' / 'checkpoints' / 'last.pt'}. Continue with "
                                  f"trainer.resume={tmp_path / 'stopped'}")  # fmt: skip
    monkeypatch.undo()
    resume_and_compare(tiny_data_root, tmp_path / "stopped", uninterrupted, tmp_path / "resumed")


def test_a_signal_after_the_optimizer_step_waits_for_the_batch_to_be_counted(
    tiny_data_root: Path, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = torch.optim.SGD.step
    calls = {"count": 0}

    def step_then_signal(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        result = real_step(self, *args, **kwargs)
        calls["count"] += 1
        if calls["count"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_signal)
    with pytest.raises(Interrupted):
        train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.tensorboard=false"), tmp_path / "stopped")
    position = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["position"]
    assert (position["epoch"], position["batches_done"], position["step"]) == (1, 2, 6)
    monkeypatch.undo()
    resume_and_compare(tiny_data_root, tmp_path / "stopped", uninterrupted, tmp_path / "resumed")


def test_the_preemption_signal_is_passed_on_after_the_checkpoint(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As under submitit: its USR2 handler requeues the job and exits; it must find the checkpoint written."""
    seen = []

    def submitit_like(signum: int, frame: Any) -> None:
        summary = strict_json(tmp_path / "summary.json")
        seen.append((signum, (tmp_path / "checkpoints" / "last.pt").is_file(), summary["status"], summary["signal"]))
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        signal_at_step(monkeypatch, signal.SIGUSR2, call=3)
        with pytest.raises(SystemExit):
            train(tiny_config(tiny_data_root, "trainer.max_epochs=2", "logger.tensorboard=false"), tmp_path)
        assert seen == [(signal.SIGUSR2, True, "interrupted", "SIGUSR2")]
        assert signal.getsignal(signal.SIGUSR2) is submitit_like
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_node_run_stopped_by_sigterm_says_how_to_resume(tiny_data_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    args = [node_run_executable(), "experiment=mnist_mlp", *tiny_overrides(tiny_data_root, tmp_path),
            "trainer.max_epochs=1000", "model.hidden=16"]  # fmt: skip
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "node-run: stopped by SIGTERM" in stderr, stderr
    assert f"trainer.resume={tmp_path}" in (tmp_path / "node-run.log").read_text()
    assert strict_json(tmp_path / "summary.json")["status"] == "interrupted"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["position"]["epoch"] >= 1
