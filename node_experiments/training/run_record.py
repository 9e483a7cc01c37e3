"""The run folder's record of how its run was started: ``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``.

Hydra writes these files itself when a job starts (in ``run_job``), after the ``on_run_start`` callback and before
anything else of node-run runs: before ``on_job_start``, the config checks, the folder's lock and the checkpoint's
restore. A run refused after that point (its folder held by a run that claimed it a moment earlier, a resumption
with an invalid value, a checkpoint that does not fit the model) has by then written its config over the record of
the run whose results the folder holds, and ``node-report`` reads that record: of two runs started together into
one folder, one trained with seed 2 while the record said seed 1. A callback cannot close the gap for every job
(in a sweep, ``on_job_start`` comes after the records), and a lock taken earlier still leaves the checks that come
after it.

So node-run turns Hydra's writing off (``hydra.output_subdir: null`` in ``configs/config.yaml``) and writes the same
three files, with the same contents, at the one point where a run can no longer be refused: it holds its folder
(``run_folder.claim``), its config is valid, its checkpoint is restored, and it has written nothing else yet. The
trainer calls ``write_record`` there (``train(on_start=...)``), and a study before it starts. The record in a run
folder is therefore always that of the run that trained there; a refused run leaves the folder's record as it
was. A run refused before that point leaves no record of its own; its ``node-run.log`` has the reason.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

RECORD_DIR = ".hydra"
RESUME_KEY = "trainer.resume"


def write_record(run_dir: str | os.PathLike, cfg: DictConfig) -> None:
    """Write Hydra's three records of the running job (``cfg``: its config, without the ``hydra`` node) into
    ``<run_dir>/.hydra``, each atomically; nothing when Hydra is not running (``train`` called from Python)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.instance().cfg  # {"hydra": ...}, as Hydra would have saved it
    folder = Path(run_dir) / RECORD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg),
                          ("overrides.yaml", hydra_cfg.hydra.overrides.task)):  # fmt: skip
        temporary = folder / f"{name}.tmp"
        temporary.write_text(OmegaConf.to_yaml(content), encoding="utf-8")
        os.replace(temporary, folder / name)


def start_over_command(run_dir: Path) -> str | None:
    """The node-run command line that starts the run recorded in ``run_dir`` over in that folder: its overrides
    without ``trainer.resume``, with ``hydra.run.dir``; None when the folder has no record of them."""
    try:
        overrides = OmegaConf.load(Path(run_dir) / RECORD_DIR / "overrides.yaml")
    except (OSError, ValueError):
        return None
    if not isinstance(overrides, (list, tuple)) and not OmegaConf.is_list(overrides):
        return None
    kept = [str(item) for item in overrides if str(item).split("=", 1)[0].lstrip("+~") != RESUME_KEY]
    return shlex.join(["node-run", *kept, f"hydra.run.dir={run_dir}"])
