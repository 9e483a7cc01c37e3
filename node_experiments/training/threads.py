"""``trainer.num_threads``: how many threads torch computes with, always set by the run, never left to torch.

Torch's default is one thread per core. For the project's models (batches of 128 at 6x6 or 28x28, 4-D latent
states) the operations are small, and torch's threads meet at a barrier after each one; when any other process
wants a core, a thread waits for the scheduler at every barrier and a step becomes several times slower, not a
little (docs/performance.md: 7.4x the CPU time and 5.6x the wall time of one thread for the ODE-Net step, with
torch's 2 threads on a busy 2-core machine). So every run sets the count itself, one thread unless told
otherwise; give more only on cores the run has to itself.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..errors import ConfigError

log = logging.getLogger(__name__)


def configure_threads(num_threads: Any, key: str = "trainer.num_threads") -> int:
    """Check ``num_threads`` (a whole number >= 1), give torch that many threads and return the count."""
    usable = usable_cores()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigError(
            f"{key}={num_threads!r} is not a number of threads: give a whole number >= 1. One (the default) is "
            f"the fastest for the project's small models whenever another process shares the cores; more pay "
            f"only on cores the run has to itself (this process may run on {usable})."
        )
    if num_threads > usable:
        log.warning("%s=%d, but this process may run on %d cores: the threads will wait for each other.", key,
                    num_threads, usable)  # fmt: skip
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a Slurm allocation), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
