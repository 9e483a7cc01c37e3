"""``scripts/bench_training.py`` runs a case end to end with each experiment's own gradient strategy.

The timings are the script's business; this checks that it still builds the experiment, plugs the peer library
into the same model and prints the row, so that a change to the model or the configs cannot break it unnoticed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_training.py"


@pytest.mark.e2e
def test_the_latent_ode_case_runs_against_the_peer_library() -> None:
    pytest.importorskip("torchdiffeq")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", "latent_ode", "--steps", "1", "--warmup", "0"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| latent")]
    assert rows, result.stdout
    assert "torchdiffeq" in result.stdout
