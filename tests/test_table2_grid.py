"""Table 2's grid end to end: a tiny sweep of both spiral experiments through Hydra's joblib launcher, collected
by ``node-report table2`` into the table beside the paper's numbers, with Figures 8 and 9."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_node_run

ROOT = Path(__file__).resolve().parents[1]


def collect(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "node_experiments.reports", "table2", *args], env=env, capture_output=True, text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both experiments x n_obs 10 x seeds 0, 1 at data.noise=0.2 on debug=quick's tiny spirals (one epoch), two
    runs at a time."""
    folder = tmp_path_factory.mktemp("sweep") / "noise"
    result = run_node_run(
        ["-m", "experiment=spiral_latent_ode,spiral_rnn", "debug=quick", "data.n_obs=10", "trainer.seed=0,1",
         "data.noise=0.2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={folder}"],
        cwd=folder.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def table_rows(output: str) -> list[list[str]]:
    """The grid's rows of a results table: the n = 10 and n = 30 cells of each model."""
    return [line.split(" | ")[2:4] for line in output.splitlines() if line.startswith("| `debug=quick")]


@pytest.mark.e2e
def test_a_launcher_sweep_is_collected_into_table_2(grid: Path, tmp_path: Path) -> None:
    summaries = [json.loads(path.read_text()) for path in grid.rglob("summary.json")]
    assert sorted(s["experiment"] for s in summaries) == ["spiral_latent_ode"] * 2 + ["spiral_rnn"] * 2
    unfinished = grid / "9_spiral_rnn"  # a run that started and did not finish is named, not counted
    shutil.copytree(grid / "0_spiral_latent_ode" / ".hydra", unfinished / ".hydra")
    try:
        collected = collect(str(grid), "--definitions", "--output", str(tmp_path / "table2.md"),
                            "--figures", str(tmp_path / "figures"), "--figure-n-obs", "10")
    finally:
        shutil.rmtree(unfinished)
    assert collected.returncode == 0, collected.stderr[-3000:]
    table = collected.stdout
    assert (tmp_path / "table2.md").read_text() == table
    figures = sorted(path.name for path in (tmp_path / "figures").iterdir())
    assert figures == ["spirals_figure8_n10.png", "spirals_figure9_n10.png"], figures
    assert all((tmp_path / "figures" / name).stat().st_size > 10_000 for name in figures)
    assert "| paper | RNN | - | 0.3937 | 0.3202 | 0.1813 |" in table and "| paper | Latent ODE | - | 0.1642 |" in table
    for experiment, name in (("spiral_rnn", "RNN"), ("spiral_latent_ode", "Latent ODE")):
        values = [s["test_rmse_extrapolation_clean"] for s in summaries if s["experiment"] == experiment]
        cell = f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
        assert f"| {name} | {cell} | - | - | - |" in table, table
    assert "| `debug=quick data.noise=0.2` |" in table and "4 runs, seeds [0, 1]" in table and "not completed: " in table and "9_spiral_rnn" in table
    assert "| `rmse_interpolation_noisy_euclidean` | Latent ODE |" in table


@pytest.mark.slow
@pytest.mark.e2e
def test_retest_evaluates_the_trained_models_on_other_test_spirals(grid: Path) -> None:
    """With the test spirals unchanged, the runs' own numbers; with other test spirals, others; an override that
    would change the training spirals is refused."""
    plain, same, observed = (collect(str(grid), *extra) for extra in
                             ((), ("--retest", "data.test_range=same"), ("--retest", "data.test_range=observed")))
    rows = [table_rows(result.stdout) for result in (plain, same, observed)]
    assert rows[0] == rows[1] and rows[0] != rows[2] and len(rows[0]) == 2, rows
    refused = collect(str(grid), "--retest", "data.noise=0.3")
    assert refused.returncode != 0 and "changes the training spirals" in refused.stderr
