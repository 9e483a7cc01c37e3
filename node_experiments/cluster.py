"""Sweeps on a Slurm cluster (``hydra/launcher=slurm``): Hydra's submitit launcher, with preempted jobs that
requeue and continue where they stopped.

When Slurm is about to preempt a job or its time runs out, submitit sends the job its preemption signal (USR2 by
default). The trainer catches it, writes a checkpoint of the position reached and summary.json (status
``interrupted``), then passes the signal on to submitit's handler (``node_experiments.training.signals``), which
calls the launcher's ``checkpoint`` to get the job to requeue, and requeues it. Hydra's launcher requeues the job
with the same overrides, which would start the run afresh in a folder that now holds results (and be refused);
this one adds ``trainer.resume=<the job's own folder>`` when that folder holds a checkpoint, so the requeued job
continues the run from it. Needs the ``cluster`` extra (``pip install 'node-experiments[cluster]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

from .training.checkpoint import CHECKPOINT_DIR, LAST

RESUME_KEY = "trainer.resume"


class SlurmLauncher(SubmititSlurmLauncher):
    """Hydra's submitit Slurm launcher whose requeued jobs resume from their own checkpoint."""

    def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
        """Called by submitit inside the job when it is preempted or times out: the submission to requeue."""
        folder = Path(HydraConfig.get().runtime.output_dir)
        return super().checkpoint(resume_overrides(sweep_overrides, folder), *args, **kwargs)


def resume_overrides(overrides: list[str], folder: Path) -> list[str]:
    """``overrides`` continuing from ``folder``'s checkpoint (``trainer.resume`` replaced), when it has one."""
    if not (folder / CHECKPOINT_DIR / LAST).is_file():
        return list(overrides)
    kept = [override for override in overrides if override.split("=", 1)[0].lstrip("+~") != RESUME_KEY]
    quoted = str(folder.resolve()).replace("\\", "\\\\").replace("'", "\\'")
    return [*kept, f"{RESUME_KEY}='{quoted}'"]
