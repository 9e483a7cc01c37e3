"""Other processes kept busy while a benchmark measures: the condition of a machine shared with other jobs.

Used by ``bench_solver.py --busy K`` and ``bench_training.py --background K``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Iterator


@contextlib.contextmanager
def spinning(count: int, niceness: int) -> Iterator[None]:
    """``count`` processes spinning at ``nice niceness`` for the duration of the block (none when 0)."""
    spin = f"import os; os.nice({niceness})\nwhile True: pass"
    processes = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        time.sleep(0.5 if count else 0)  # let them start before the measurement does
        yield
    finally:
        for process in processes:
            process.kill()
            process.wait()
