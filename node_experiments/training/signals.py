"""Stopping cleanly on a signal: Ctrl-C (SIGINT), SIGTERM and the preemption signal of submitit.

Slurm and most schedulers send SIGTERM before they stop, preempt or time out a job; submitit sends its preemption
signal (``SUBMITIT_PREEMPT_SIGNAL``, USR2 by default) before a job's time runs out or it is preempted. Inside
``SignalStop`` each of these raises ``Interrupted`` (a ``KeyboardInterrupt``) in the training loop at once, even
inside a long solve, and the trainer writes a checkpoint of the position reached and says how to resume. Sections
that must not be cut in half (an optimizer step and the position that counts it: ``hold`` until the batch ends;
the bookkeeping and checkpoint at the end of an epoch: ``held()``) defer a signal to their end.

On leaving the block the handlers installed before are put back, and the signal is passed on to the one that was
there before, if it was a Python function: under submitit that requeues the job (its preemption handler calls the
launcher's ``checkpoint``, see ``node_experiments.cluster``) once the checkpoint is on disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """Training was stopped by the signal ``signum``; ``node-run`` exits with status 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


def stop_signals() -> list[signal.Signals]:
    """SIGINT, SIGTERM and submitit's preemption signal (the ones this platform has)."""
    names = ["SIGINT", "SIGTERM", "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")]
    return list(dict.fromkeys(getattr(signal, name) for name in names if hasattr(signal, name)))


class SignalStop:
    """Context manager: the stop signals raise ``Interrupted`` inside it (main thread only; elsewhere it does
    nothing, as Python delivers signals to the main thread alone)."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: int | None = None  # the first signal caught; repeats are ignored while stopping
        self._holding = 0
        self._raised = False

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._handle) for signum in stop_signals()}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            return
        self.received = signum
        if not self._holding:
            self._raise()

    def _raise(self) -> None:
        self._raised = True
        raise Interrupted(self.received)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A section a signal must not cut: a signal caught inside is raised when it ends."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        self._raise_if_received()

    def hold(self) -> None:
        """Hold signals until the batch that ``between`` yielded ends (from the optimizer's step on, say)."""
        self._holding += 1

    def between(self, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items``, one batch each; a hold taken during a batch (``hold``) ends with it, and a signal
        caught while it held is raised then, before the next batch is fetched."""
        for item in items:
            holding = self._holding
            try:
                yield item
            finally:
                self._holding = holding
            self._raise_if_received()

    def _raise_if_received(self) -> None:
        if not self._holding and self.received is not None and not self._raised:
            self._raise()

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if isinstance(error, Interrupted):
            previous = self.previous.get(error.signum)
            if callable(previous) and previous is not signal.default_int_handler:
                previous(error.signum, None)  # e.g. submitit's: requeue the job (it then exits the process)
