"""Checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, optimizer and scheduler states, the position in training (the epoch in progress
and the batches of it already done, the global step), the history of per-epoch metrics, the training time so
far, and the random states (torch, CUDA, numpy, Python, and the training loader's generator) as they were at
the start of that epoch. Resuming restores them and skips the batches already done, so the resumed run draws
the same data order and augmentation as an uninterrupted one.

Files are written atomically (to a temporary file, then renamed), so an interrupted write never leaves a
truncated ``last.pt``; a file damaged some other way (a full disk, a cut copy) is refused on loading with a
``CheckpointError`` naming it, not a stack trace from the unpickler.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
# What the trainer writes into every checkpoint (``train``'s ``checkpoint``); resuming needs all of it.
TRAINING_STATE = ("model", "optimizer", "scheduler", "position", "rng", "config")


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """The random states of torch, CUDA, numpy, Python and the data loader's ``generator``."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": random.getstate(),
        "loader": generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    """Undo ``capture_rng``: put every random state back."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_as_tuples(state["python"]))
    generator.set_state(state["loader"])


def _as_tuples(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def resolve_checkpoint(resume: str | os.PathLike, key: str = "trainer.resume") -> Path:
    """The checkpoint file that ``resume`` points at: a file, or a run folder holding checkpoints/last.pt.

    ``key`` is the config key the path came from, named in the error message.
    """
    path = Path(resume).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LAST
    if not path.is_file():
        raise ConfigError(
            f"{key}={str(resume)!r}: no checkpoint at {path.resolve()}. Give a run folder (one holding "
            f"{CHECKPOINT_DIR}/{LAST}) or a checkpoint file."
        )
    return path


def load_checkpoint(
    path: Path, key: str = "trainer.resume", required: tuple[str, ...] = TRAINING_STATE
) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` onto the CPU (``load_state_dict`` moves the tensors).

    A file that cannot be read, or that lacks one of the ``required`` entries, is a ``CheckpointError`` naming the
    file and ``key``, the config key it came from. Not ``weights_only``: a checkpoint also holds random states and
    the scheduler's state, so load only checkpoints you wrote.
    """
    fix = (
        f"Point {key} at another checkpoint (the folder of an earlier run, or a copy of this one), or start "
        f"afresh without {key}."
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # EOFError (empty), RuntimeError (cut short), UnpicklingError (not a checkpoint)
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        raise CheckpointError(
            f"{key}: the checkpoint {path} ({_size(path)}) cannot be read ({reason}); it is empty, cut short (a "
            f"full disk, an interrupted copy) or not a checkpoint of node-run. {fix}"
        ) from None
    missing = [name for name in required if not isinstance(state, dict) or name not in state]
    if missing:
        raise CheckpointError(
            f"{key}: {path} is not a checkpoint written by node-run's trainer (it lacks {', '.join(missing)}). {fix}"
        )
    return state


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size:,} bytes"
    except OSError:
        return "size unknown"
