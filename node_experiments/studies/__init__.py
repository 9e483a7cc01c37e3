"""Studies: experiments that measure a trained model instead of training one.

A study is chosen like any experiment, by a config file: ``configs/experiment/<name>.yaml`` adds a ``study``
group (``configs/study/<name>.yaml``) whose ``_target_`` names a function ``study(cfg, run_dir, labels) -> dict``.
``node-run`` calls that function instead of the trainer when the composed config holds a ``study`` group; the
function writes what it measures under ``run_dir`` (Hydra's run folder, as for a training run) and returns its
summary. Nothing is trained, so a study is not a ``Task``: it reads a checkpoint that a training run wrote.

The studies:

- ``nfe_study.run_nfe_study`` (``experiment=mnist_nfe_study``): Figure 3 of Chen et al. (2018) on a trained
  ODE-Net (NFE against tolerance, numerical error and time; backward against forward NFE; NFE over training) and
  the memory claim of Table 1 (bytes saved for backward against NFE for ODE-Net, RK-Net and ResNet).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig

from ..errors import ConfigError
from ..training.threads import configure_threads


def run_study(cfg: DictConfig, run_dir: str | Path, labels: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the study that ``cfg.study._target_`` names, writing under ``run_dir``; return its summary."""
    target = cfg.study.get("_target_")
    try:
        study = get_method(target)
    except Exception as error:
        raise ConfigError(
            f"study._target_={target!r} does not name an importable function ({error}). A study config names "
            "one such as node_experiments.studies.nfe_study.run_nfe_study."
        ) from None
    configure_threads(cfg.trainer.get("num_threads", 1))
    return study(cfg, Path(run_dir), dict(labels or {}))
