"""Sweeps that survive a bad job: a job's failure is its own, and ``node-run -m`` names the failed jobs at the end.

Hydra's launchers (basic, joblib, submitit) record each job's outcome as a ``JobReturn``, COMPLETED or FAILED: a
job whose function raises an exception fails alone and the other jobs run. A job that calls ``sys.exit`` instead
ends the basic launcher's loop, and with joblib it kills the jobs running beside it. So inside a sweep node-run
reports a mistake the user can fix by logging it (into the job's ``node-run.log``) and raising ``JobFailed``,
never by exiting.

When every job has ended, Hydra's sweeper re-raises the first failed job's exception and exits 1 (a
``JobFailed`` is printed as its message, without a stack trace); node-run then prints ``failed_jobs_report()``:
each failed job's number, overrides and error. The ``SweepJournal`` callback (configured in ``config.yaml``)
writes them to ``<sweep dir>/jobs.jsonl`` as each job ends, in whichever process or machine runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

JOURNAL = "jobs.jsonl"
_sweep_dir: Path | None = None  # the sweep folder of the sweep this process started (set by SweepJournal)


class JobFailed(CompactHydraException):
    """A sweep job's user-facing error; Hydra prints its message alone, without a stack trace."""


class SweepJournal(Callback):
    """Writes each sweep job's outcome to ``<sweep dir>/jobs.jsonl``: its number, overrides, status and error."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _sweep_dir
        _sweep_dir = Path(config.hydra.sweep.dir)
        (_sweep_dir / JOURNAL).unlink(missing_ok=True)  # a sweep folder given again starts a new journal

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        record = {
            "job": config.hydra.job.num,
            "overrides": list(config.hydra.overrides.task),
            "status": job_return.status.name,
            "folder": config.hydra.runtime.output_dir,
        }
        if job_return.status is JobStatus.FAILED:
            error = job_return._return_value  # the job's exception (return_value would raise it, and say so)
            message = str(error).removeprefix("node-run: ") if isinstance(error, JobFailed) else repr(error)
            record["error"] = " ".join(message.split())
        journal = Path(config.hydra.sweep.dir) / JOURNAL
        journal.parent.mkdir(parents=True, exist_ok=True)
        with open(journal, "a", encoding="utf-8") as file:  # one short line per append: jobs may end at once
            file.write(json.dumps(record) + "\n")


def failed_jobs_report() -> str | None:
    """The failed jobs of the sweep this process ran, one line each; None when there was no sweep or none failed."""
    journal = _sweep_dir / JOURNAL if _sweep_dir is not None else None
    if journal is None or not journal.is_file():
        return None
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    failed = sorted((record for record in records if record["status"] == JobStatus.FAILED.name), key=lambda r: r["job"])
    if not failed:
        return None
    finished = len(records) - len(failed)
    lines = [
        f"node-run: {len(failed)} of {len(records)} sweep jobs failed ({finished} finished); each job's folder, "
        f"with its log node-run.log, is under {_sweep_dir}:"
    ]
    lines += [f"  job {r['job']} ({' '.join(r['overrides'])}): {r.get('error', 'failed')}" for r in failed]
    return "\n".join(lines)
