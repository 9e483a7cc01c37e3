"""One run, one folder: a run checks its folder before it trains, and holds it while it runs.

- **Writable.** The folder and its ``checkpoints/`` are created and a file is written into each before the first
  batch, so a folder where nothing can be written is a message at the start, not a crash after an epoch.
- **Not another run's.** A folder holding results (``summary.json``, ``checkpoints/last.pt`` or a non-empty
  ``metrics.jsonl``) is refused unless the run resumes from it (``trainer.resume`` points into it): a new run
  never writes over finished or interrupted work.
- **Not in use.** A training run holds its folder with the lock file ``run.lock`` (its process id and host);
  another run into a folder held by a live process is refused, even to resume. A lock left by a process that is
  gone (killed with SIGKILL) is taken over; one from another host cannot be checked, so the message says when to
  delete it.

``RunFolderCheck`` makes the same checks as a Hydra callback, with the resumption's (settings changed since the
checkpoint, ``resume``), before Hydra writes its ``.hydra/`` record of the config into the folder, so that a refused
single run changes nothing there.
"""

from __future__ import annotations

import contextlib
import copy
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..errors import RunError, RunFolderError
from .checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint, resolve_checkpoint
from .resume import check_changes, resume_changes_mode
from .run_logger import METRICS_FILE, SUMMARY_FILE

LOCK_FILE = "run.lock"
RESULTS = (SUMMARY_FILE, f"{CHECKPOINT_DIR}/{LAST}", METRICS_FILE)


@contextlib.contextmanager
def claim(run_dir: Path, resume: str | os.PathLike | None, checkpoints: bool) -> Iterator[None]:
    """Check ``run_dir`` (see the module's docstring) and hold it with the lock file until the block ends."""
    problem = folder_problem(run_dir, resume)
    if problem:
        raise RunFolderError(problem)
    check_writable(run_dir)
    if checkpoints:
        check_writable(run_dir / CHECKPOINT_DIR)
    lock = run_dir / LOCK_FILE
    _acquire(lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8") == _lock_text():
                lock.unlink()


def folder_problem(run_dir: Path, resume: str | os.PathLike | None) -> str | None:
    """Why ``run_dir`` must not be used by a run resuming from ``resume`` (None to start afresh); None when fine."""
    in_use = _in_use(run_dir)
    if in_use:
        return in_use
    found = results_in(run_dir)
    if found and not resumes_in(run_dir, resume):
        return (
            f"the run folder {run_dir} already holds the results of another run ({', '.join(found)}), which this "
            f"run would write over. Continue that run with trainer.resume={run_dir}, or write this one elsewhere "
            "(hydra.run.dir=..., or leave hydra.run.dir out for a new time-stamped folder)."
        )
    return None


def _in_use(run_dir: Path) -> str | None:
    """The message for a folder whose lock a live process holds; None when no live process holds it."""
    holder = lock_holder(run_dir)
    if not holder:
        return None
    return (
        f"the run folder {run_dir} is in use by {holder}: two runs in one folder would mix their logs, metrics and "
        f"checkpoints. Wait for that run to end, or write this one elsewhere (hydra.run.dir=...). If it is no "
        f"longer running, delete {run_dir / LOCK_FILE}."
    )


def results_in(run_dir: Path) -> list[str]:
    """The result files present in ``run_dir`` (relative names)."""
    found = []
    for name in RESULTS:
        path = run_dir / name
        if path.is_file() and (name != METRICS_FILE or path.stat().st_size > 0):
            found.append(name)
    return found


def resumes_in(run_dir: Path, resume: str | os.PathLike | None) -> bool:
    """Whether ``resume`` (a run folder or a checkpoint file) is ``run_dir`` or lies inside it."""
    if not resume:
        return False
    folder, target = Path(run_dir).resolve(), Path(resume).expanduser().resolve()
    return target == folder or folder in target.parents


def lock_holder(run_dir: Path) -> str | None:
    """'process N on HOST' when a live process (or one on another host) holds ``run_dir``'s lock; else None."""
    try:
        pid_text, host = (run_dir / LOCK_FILE).read_text(encoding="utf-8").split(maxsplit=1)
        pid = int(pid_text)
    except (OSError, ValueError):
        return None  # no lock, or one cut short while it was written: nobody can be told to wait for it
    host = host.strip()
    if host == socket.gethostname() and not _alive(pid):
        return None
    return f"process {pid} on {host}"


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a file into it, or raise ``RunFolderError`` saying why that failed."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunFolderError(
            f"cannot write into {folder} ({error.strerror or error}): nothing was trained. Write the run into a "
            "folder you can write to (hydra.run.dir=/path/to/runs/NAME, or start node-run elsewhere), or fix the "
            "folder's permissions."
        ) from None


def _acquire(lock: Path) -> None:
    """Create ``lock`` atomically; a stale one (its process gone) is replaced; a live one raises."""
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            in_use = _in_use(lock.parent)
            if in_use:
                raise RunFolderError(in_use) from None
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(_lock_text())
        return
    raise RunFolderError(f"could not take the lock {lock}: another run keeps creating it. Write this run elsewhere.")


def _lock_text() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


class RunFolderCheck(Callback):
    """Hydra callback: before Hydra writes its record of a single run's config into the run folder, refuse the folder
    (``folder_problem``) and a resumption that changes settings (``resume.check_changes``), so that a refused run
    leaves the folder, and the record of the run that wrote it, as they were."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        trainer = config.get("trainer") or {}
        resume = None if "study" in config else trainer.get("resume")
        try:
            problem = folder_problem(run_dir, resume)
            if problem:
                raise RunFolderError(problem)
            check_writable(run_dir)
            if resume:
                _check_resume(config, resume)
        except RunError as error:
            print(f"node-run: {error}", file=sys.stderr)
            sys.exit(1)


def _check_resume(config: DictConfig, resume: str) -> None:
    """Refuse a resumption with changed settings now, as the trainer would later (it checks again)."""
    task_config = copy.deepcopy(config)
    with read_write(task_config), open_dict(task_config):
        del task_config["hydra"]
    try:
        current = OmegaConf.to_container(task_config, resolve=True)
    except Exception:  # an interpolation only the running job can resolve: the trainer's check will do
        return
    path = resolve_checkpoint(resume)
    check_changes(load_checkpoint(path), current, path, resume_changes_mode(config.trainer))
