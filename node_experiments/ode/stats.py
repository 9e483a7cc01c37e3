"""Counting the solver's work: NFE and accepted/rejected steps, forward and adjoint-backward.

The solver reports each finished solve to every recorder that is active at that moment, so a trainer wraps a
batch's forward *and* backward pass in one ``record_stats()`` block and reads both counts from it. Keeping the
backward count separate, and taken only inside the block, avoids the artefact where the count logged for a
forward pass included the previous batch's backward solve.

The recorder stack is a plain module-level list rather than a thread- or context-local one on purpose: autograd
runs backward passes of CUDA tensors on its own worker threads, and those backward solves must still be counted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator


@dataclass(eq=False)  # recorders are told apart by identity: two with equal counts are still two recorders
class SolverStats:
    """Work done by the solves recorded in one ``record_stats()`` block."""

    solves: int = 0
    nfe_forward: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    backward_solves: int = 0
    nfe_backward: int = 0
    backward_accepted_steps: int = 0
    backward_rejected_steps: int = 0


_ACTIVE: list[SolverStats] = []


@contextlib.contextmanager
def record_stats() -> Iterator[SolverStats]:
    """Count every solve that finishes while the block is open; blocks nest and each active one counts."""
    stats = SolverStats()
    _ACTIVE.append(stats)
    try:
        yield stats
    finally:
        _ACTIVE.remove(stats)


def report_solve(nfe: int, accepted: int, rejected: int, *, backward: bool, solves: int = 1) -> None:
    """Called by the solver once per finished solve (forward, or the adjoint's backward).

    ``solves=0`` reports evaluations made outside a solve (the adjoint's evaluations for time gradients).
    """
    for stats in _ACTIVE:
        if backward:
            stats.backward_solves += solves
            stats.nfe_backward += nfe
            stats.backward_accepted_steps += accepted
            stats.backward_rejected_steps += rejected
        else:
            stats.solves += solves
            stats.nfe_forward += nfe
            stats.accepted_steps += accepted
            stats.rejected_steps += rejected
