"""With the Slurm launcher, a preempted job requeues and resumes by itself: the launcher's ``checkpoint`` (called
by submitit inside the job, after the trainer wrote its checkpoint) requeues the job continuing from its own folder.
Slurm itself is not needed: the callable is called as submitit would."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the `cluster` extra is not installed")
submitit = pytest.importorskip("submitit")

from node_experiments.cluster import SlurmLauncher, resume_overrides  # noqa: E402


def job_config(overrides: list[str], output_dir: Path):
    with initialize_config_module("node_experiments.configs", version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    return cfg


def test_a_preempted_job_is_requeued_to_resume_from_its_own_folder(tmp_path: Path) -> None:
    folder = tmp_path / "0_mnist_mlp it's"  # a quote and a space survive Hydra's override parser
    overrides = ["experiment=mnist_mlp", "trainer.resume=elsewhere", "trainer.max_epochs=3"]
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(job_config(overrides, folder))
    try:
        launcher = SlurmLauncher()
        args = ("hydra.sweep.dir", 0, "job_id_for_0", {})
        untouched = launcher.checkpoint(overrides, *args)  # preempted before its first checkpoint: start again
        assert isinstance(untouched, submitit.helpers.DelayedSubmission) and untouched.args[0] == overrides
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.pt").write_bytes(b"written by the trainer")
        requeued = launcher.checkpoint(overrides, *args)
    finally:
        HydraConfig.instance().cfg = previous
    assert requeued.function is launcher and requeued.args[1:] == args
    requeued_overrides = requeued.args[0]
    assert requeued_overrides[:2] == ["experiment=mnist_mlp", "trainer.max_epochs=3"]
    cfg = job_config(requeued_overrides, folder)  # what the requeued job composes
    assert cfg.trainer.resume == str(folder.resolve()) and cfg.trainer.max_epochs == 3


def test_resume_overrides_leave_a_folder_without_a_checkpoint_alone(tmp_path: Path) -> None:
    assert resume_overrides(["experiment=mnist_mlp"], tmp_path) == ["experiment=mnist_mlp"]

