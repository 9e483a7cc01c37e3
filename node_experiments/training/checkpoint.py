"""Checkpoints: everything needed to continue a run exactly where it stopped, verified on every load.

**Contents.** The model, optimizer and scheduler states, the position in training (the epoch in progress and the
batches of it already done, the global step), the history of per-epoch metrics, the config, and the random states
in two parts (``capture_rng``):

- ``rng``: torch's, CUDA's, numpy's and Python's global states and the training loader's generator *at the start
  of the epoch in progress*. Resuming restores them and draws the batches already done again (without training on
  them), so the resumed run sees the same data order, augmentation and sampled batches (the 2-D densities' and the
  spirals' data noise come from the loader's generator);
- ``rng["batch"]`` (mid-epoch only): the global states *at the batch position*, after the last batch done. Once the
  batches done are drawn again, these replace the global states, so every random draw inside the next step (the
  latent ODE's posterior sample, the CNF's Hutchinson probes, dropout) is the one the uninterrupted run made. This
  is the simplest exact design: models draw from torch's global generator as usual (nothing is threaded through
  their signatures, and a model or task of one's own is covered too), and the trainer records the global states
  after every batch (about 60 µs of CPU time on a 2-core x86-64 CPU). A per-step generator seeded from (seed,
  epoch, batch) would be exact too, but only for the draws of the code that is handed it.

**Files** in ``<run>/checkpoints/``: ``last.pt`` (written at every epoch's end and on a stop signal),
``previous.pt`` (the ``last.pt`` before it: ``save_checkpoint(..., keep_previous=True)``) and ``best.pt`` (the
epoch with the best test metric, a copy of that epoch's ``last.pt``). Each is written to a temporary file and
renamed, so a write cut short (a full disk, ``kill -9``) leaves the file before it whole.

**Integrity.** The file holds the checkpoint's bytes (``torch.save``) beside their SHA-256 digest; every load
(``load_checkpoint``) recomputes the digest, so a file damaged after it was written (flipped bytes on a disk or in
a copy, which ``torch.load`` may read without complaint) is refused in one sentence naming it, with the intact
checkpoint of the same folder to continue from when there is one. Checkpoints written before the digest are read
as they are, unverified. Not ``weights_only``: a checkpoint also holds random states and the scheduler's state, so
load only checkpoints you wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
PREVIOUS = "previous.pt"
BEST = "best.pt"
CHECKPOINT_FILES = (LAST, PREVIOUS, BEST)
# What the trainer writes into every checkpoint (``train``'s ``checkpoint``); resuming needs all of it.
TRAINING_STATE = ("model", "optimizer", "scheduler", "position", "rng", "config")
FORMAT = "node-run checkpoint"  # the outer file's "format": its "payload" is verified against its "sha256"


# --------------------------------------------------------------------------------------------- random states
def capture_global_rng() -> dict[str, Any]:
    """torch's, CUDA's, numpy's and Python's global random states (tens of microseconds: the trainer takes them
    after every batch)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": list(np.random.get_state()),
        "python": random.getstate(),
    }


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The global random states and the data loader's ``generator`` (a checkpoint taken mid-epoch adds ``batch``:
    ``capture_global_rng`` at the batch position)."""
    return {**capture_global_rng(), "loader": generator.get_state()}


def restore_global_rng(state: Mapping[str, Any]) -> None:
    """Undo ``capture_global_rng``."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_as_tuples(state["python"]))


def restore_rng(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Undo ``capture_rng`` as of the epoch's start (the ``batch`` states are the trainer's to restore, once it has
    drawn the batches done again)."""
    restore_global_rng(state)
    generator.set_state(state["loader"])


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------------------------------------------- writing
def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically, with the digest of its bytes; with ``keep_previous``, the file that
    was at ``path`` becomes ``previous.pt`` beside it (``path`` itself is never missing)."""
    payload = io.BytesIO()
    torch.save(state, payload)
    data = payload.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(
        {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
         "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)},
        temporary,
    )  # fmt: skip
    if keep_previous and path.is_file():
        copy_checkpoint(path, path.with_name(PREVIOUS))
    os.replace(temporary, path)


def copy_checkpoint(source: Path, target: Path) -> None:
    """Make ``target`` a copy of the checkpoint ``source``, atomically (a hard link where the file system has them:
    checkpoints are replaced, never changed in place, so the two names never see each other's later writes)."""
    temporary = target.with_name(target.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


# ------------------------------------------------------------------------------------------------- reading
def where(position: Mapping[str, Any]) -> str:
    """Where a checkpoint of ``position`` (epochs done, batches of the next done) stands, in words."""
    epoch, batches = position.get("epoch", 0), position.get("batches_done", 0)
    if batches:
        return f"epoch {epoch + 1}, after batch {batches}"
    return f"the end of epoch {epoch}" if epoch else "the start"


def resolve_checkpoint(resume: str | os.PathLike, key: str = "trainer.resume") -> Path:
    """The checkpoint file that ``resume`` points at: a file, or a run folder holding checkpoints/last.pt.

    ``key`` is the config key the path came from, named in the error message, which offers the intact checkpoint
    beside a missing one (``previous.pt``, ``best.pt``) when there is one.
    """
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LAST
    if path.is_file():
        return path
    offer = _intact_alternative(path, key)
    raise ConfigError(
        f"{key}={str(resume)!r}: no checkpoint at {path.resolve()}. "
        + (offer or f"Give a run folder (one holding {CHECKPOINT_DIR}/{LAST}) or a checkpoint file.")
    )


def load_checkpoint(
    path: Path, key: str = "trainer.resume", required: tuple[str, ...] = TRAINING_STATE
) -> dict[str, Any]:
    """Read and verify a checkpoint written by ``save_checkpoint`` onto the CPU (``load_state_dict`` moves the
    tensors).

    A file that cannot be read, whose bytes do not match their digest, or that lacks one of the ``required``
    entries, is a ``CheckpointError`` naming the file and ``key``, the config key it came from, and offering the
    intact checkpoint beside it when there is one.
    """
    try:
        state = _read(path)
    except CheckpointError as error:
        raise CheckpointError(f"{key}: the checkpoint {path} {error} {_fix(path, key)}") from None
    missing = [name for name in required if not isinstance(state, dict) or name not in state]
    if missing:
        raise CheckpointError(
            f"{key}: {path} is not a checkpoint written by node-run's trainer (it lacks {', '.join(missing)}). "
            f"{_fix(path, key)}"
        )
    return state


def _read(path: Path) -> Any:
    """The state saved in ``path``; a ``CheckpointError`` saying what is wrong with the file (without its name)."""
    try:
        outer = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # EOFError (empty), RuntimeError (cut short), UnpicklingError (not a checkpoint)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        raise CheckpointError(
            f"({_size(path)}) cannot be read ({reason}); it is empty, cut short (a full disk, an interrupted copy) or "
            "not a checkpoint of node-run."
        ) from None
    if not (isinstance(outer, dict) and outer.get("format") == FORMAT):
        return outer  # written before checkpoints carried a digest: nothing to verify it against
    try:
        data = outer["payload"].numpy().tobytes()
        intact = hashlib.sha256(data).hexdigest() == outer["sha256"]
    except (KeyError, AttributeError, TypeError):
        intact = False
    if not intact:
        raise CheckpointError(
            f"({_size(path)}) is damaged: its contents no longer match the checksum written with them (bytes changed "
            "on the disk or in a copy), so its weights cannot be trusted."
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def _fix(path: Path, key: str) -> str:
    """What to do about the unusable checkpoint ``path``: its folder's intact one, or another run's."""
    return _intact_alternative(path, key) or (
        f"Point {key} at another checkpoint (the folder of an earlier run, or a copy of this one), or start "
        f"afresh without {key}."
    )


def _intact_alternative(path: Path, key: str) -> str | None:
    """'<previous.pt, last.pt or best.pt> (at ...) is intact: use key=...' for the first checkpoint beside ``path``
    that reads and verifies; None when there is none."""
    for name in (PREVIOUS, LAST, BEST):
        candidate = path.with_name(name)
        if candidate.name == path.name or not candidate.is_file():
            continue
        try:
            state = _read(candidate)
            position = state["position"]
        except (CheckpointError, KeyError, TypeError):
            continue
        return f"{candidate}, of {where(position)}, is intact: continue from it with {key}={candidate}."
    return None


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size:,} bytes"
    except OSError:
        return "size unknown"
