"""One run, one folder: a run checks its folder before it trains, and holds it while it runs.

- **Writable.** The folder and its ``checkpoints/`` are created and a file is written into each before the first
  batch, so a folder where nothing can be written is a message at the start, not a crash after an epoch.
- **Not another run's.** A folder holding results (``summary.json``, a checkpoint or a non-empty
  ``metrics.jsonl``) is refused unless the run resumes from it (``trainer.resume`` points into it): a new run
  never writes over finished or interrupted work. The message names the command that works: continuing the run
  when the folder has a checkpoint, a new folder when it has none.
- **Started over when nothing can be continued.** A folder whose run was killed before its first checkpoint was
  complete (no ``summary.json``, no checkpoint, at most its first epoch in ``metrics.jsonl``: ``kill -9`` in the
  first epoch or while the first checkpoint was written) cannot be continued, so a run into it starts that run
  over, saying so, and removes what the killed run left (``metrics.jsonl``, TensorBoard events, a half-written
  checkpoint). ``trainer.resume`` pointing at such a folder names the command that starts it over
  (``resume_checkpoint``).
- **Not in use.** A training run holds its folder with the lock file ``run.lock`` (its process id and host);
  another run into a folder held by a live process is refused, even to resume. A lock left by a process that is
  gone (killed with SIGKILL) is taken over; one from another host cannot be checked, so the message says when to
  delete it.

``RunFolderCheck`` makes the same checks as a Hydra callback, with the resumption's (settings changed since the
checkpoint, ``resume``), before a single run configures its logging or validates its config, so that a refused
run changes nothing in the folder. The folder's record of the run's config is written once the run holds the
folder and has passed every check (``run_record``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..errors import ConfigError, RunError, RunFolderError
from .checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILES, load_checkpoint, resolve_checkpoint
from .resume import check_changes, resume_changes_mode
from .run_logger import METRICS_FILE, SUMMARY_FILE
from .run_record import start_over_command

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
CHECKPOINTS = tuple(f"{CHECKPOINT_DIR}/{name}" for name in CHECKPOINT_FILES)
RESULTS = (SUMMARY_FILE, *CHECKPOINTS, METRICS_FILE)
_HELD: set[Path] = set()  # the folders this process holds (their lock files carry its process id)


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
    _HELD.add(lock.resolve())
    try:
        yield
    finally:
        _HELD.discard(lock.resolve())
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8") == _lock_text():
                lock.unlink()


def folder_problem(run_dir: Path, resume: str | os.PathLike | None) -> str | None:
    """Why ``run_dir`` must not be used by a run resuming from ``resume`` (None to start afresh); None when fine."""
    in_use = _in_use(run_dir)
    if in_use:
        return in_use
    found = results_in(run_dir)
    if not found or resumes_in(run_dir, resume) or abandoned(run_dir):
        return None
    if any(name in found for name in CHECKPOINTS):
        fix = f"Continue that run with trainer.resume={run_dir}, or write this one elsewhere"
    else:  # a run that kept no checkpoint (trainer.checkpoint=false): it cannot be continued
        fix = "It holds no checkpoint to continue from. Write this run elsewhere"
    return (
        f"the run folder {run_dir} already holds the results of another run ({', '.join(found)}), which this run "
        f"would write over. {fix} (hydra.run.dir=..., or leave hydra.run.dir out for a new time-stamped folder)."
    )


def resume_checkpoint(resume: str | os.PathLike) -> Path:
    """``trainer.resume``'s checkpoint file (``checkpoint.resolve_checkpoint``). A run folder without any checkpoint
    is a message naming the command that works: starting its run over in the folder, when the run was killed before
    its first checkpoint, else a new run elsewhere."""
    folder = Path(resume).expanduser()
    if not folder.is_dir() or any((folder / name).is_file() for name in CHECKPOINTS):
        return resolve_checkpoint(resume)
    command = start_over_command(folder)
    if abandoned(folder) or command and not results_in(folder):
        command = command or f"the same command without trainer.resume, with hydra.run.dir={folder}"
        how = f"Start that run over in its folder with: {command}"  # last, without a full stop to copy with it
    elif results_in(folder):
        how = "Start it again in a new folder: the same command without trainer.resume and without hydra.run.dir."
    else:  # no run's folder at all
        return resolve_checkpoint(resume)
    raise ConfigError(
        f"trainer.resume={str(resume)!r}: the run folder {folder} holds no checkpoint, so there is nothing to "
        "continue: its run stopped before its first checkpoint was complete (killed in its first epoch or while "
        f"writing it) or ran with trainer.checkpoint=false. {how}"
    )


def abandoned(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a run killed before its first checkpoint was complete left behind: no
    ``summary.json`` and no checkpoint, at most one epoch in ``metrics.jsonl``, and something to clear."""
    found = results_in(run_dir)
    if SUMMARY_FILE in found or any(name in CHECKPOINTS for name in found):
        return False
    metrics = run_dir / METRICS_FILE
    epochs = len(metrics.read_text(encoding="utf-8").splitlines()) if METRICS_FILE in found else 0
    return epochs <= 1 and bool(_leftovers(run_dir))


def _leftovers(run_dir: Path) -> list[Path]:
    """What a killed run leaves that a new one must not mix with its own: metrics, events, half-written files."""
    metrics = run_dir / METRICS_FILE
    return [
        *([metrics] if metrics.is_file() and metrics.stat().st_size else []),
        *sorted((run_dir / "tb").glob("events.out.tfevents.*")),
        *sorted((run_dir / CHECKPOINT_DIR).glob("*.tmp")),
    ]


def start_over(run_dir: Path) -> None:
    """When ``run_dir`` is ``abandoned``, clear what the killed run left, saying so (the trainer calls it once it
    holds the folder and has passed every check, before it writes anything there)."""
    if not abandoned(run_dir):
        return
    leftovers = _leftovers(run_dir)
    log.warning(
        "The run folder %s holds what a run killed before its first checkpoint left (%s): that run cannot be "
        "continued, so it starts over here; those files are removed.", run_dir,
        ", ".join(str(path.relative_to(run_dir)) for path in leftovers),
    )  # fmt: skip
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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
    if host == socket.gethostname() and pid == os.getpid() and (run_dir / LOCK_FILE).resolve() not in _HELD:
        return None  # a dead run's lock whose process id this process now has
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
    """Hydra callback: before a single run configures its logging into the run folder, refuse the folder
    (``folder_problem``) and a resumption that changes settings (``resume.check_changes``), so that a refused run
    leaves the folder, its log included, as it was. (The folder's record of the config is written later, by the run
    that holds the folder: ``run_record``.)"""

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
    path = resume_checkpoint(resume)
    check_changes(load_checkpoint(path), current, path, resume_changes_mode(config.trainer))
