"""Table 2's grid end to end: a tiny sweep of both spiral experiments through Hydra's joblib launcher, collected
by ``node-report table2`` into the table beside the paper's numbers, with Figures 8 and 9, and the same table from
the sweep's records (``node-report records``)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

import yaml

from conftest import run_node_run
from node_experiments.reports.cli import main

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
    """The grid's rows of a results table (n_obs = 10), without the grid's label."""
    return [line.split(" | ")[1:] for line in output.splitlines() if line.startswith("| ") and " | 10 | " in line]


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
    seeds = {path.parent: yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())["trainer"]["seed"]
             for path in grid.rglob("summary.json")}
    runs = {(json.loads((folder / "summary.json").read_text())["experiment"], seed): folder
            for folder, seed in seeds.items()}  # fmt: skip
    for experiment, name in (("spiral_rnn", "RNN"), ("spiral_latent_ode", "Latent ODE")):
        values = [json.loads((runs[experiment, seed] / "summary.json").read_text())["test_rmse_extrapolation_clean"]
                  for seed in (0, 1)]
        cells = (f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} | {statistics.median(values):.3f} | "
                 f"0: {values[0]:.3f}, 1: {values[1]:.3f}")
        assert f"| {name} | 10 | - | {cells} |" in table, table
    assert table.startswith("`rmse_extrapolation_clean` on each run's own test spirals, over seeds:")
    assert "| `debug=quick data.noise=0.2` | RNN | 10 | - |" in table and "4 runs, seeds [0, 1]" in table
    assert "; not completed: 9_spiral_rnn" in table
    assert "| `rmse_interpolation_noisy_euclidean` | RNN |" in table


@pytest.mark.e2e
def test_the_records_of_a_sweep_give_its_table(grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Records hold no machine path, and table2 prints from them what it prints from the sweep itself."""
    records = tmp_path / grid.name
    assert main(["records", str(grid), str(records)]) == 0
    for path in records.rglob("*"):
        assert not path.is_file() or str(grid.parent) not in path.read_text(), f"a machine path in {path}"
    capsys.readouterr()
    tables = []
    for folder in (grid, records):
        assert main(["table2", str(folder), "--metrics", "--test-range", "observed"]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "| `train_spirals/latent_gap` |" in tables[0]


@pytest.mark.slow
@pytest.mark.e2e
def test_retest_evaluates_the_trained_models_on_other_test_spirals(grid: Path) -> None:
    """With the test spirals unchanged, the runs' own numbers; with other test spirals, others, those the runs
    recorded for that test range; an override that would change the training spirals is refused."""
    plain, same, observed = (collect(str(grid), *extra) for extra in
                             ((), ("--retest", "data.test_range=same"), ("--retest", "data.test_range=observed")))
    rows = [table_rows(result.stdout) for result in (plain, same, observed)]
    assert rows[0] == rows[1] and rows[0] != rows[2] and len(rows[0]) == 2, rows
    assert rows[2] == table_rows(collect(str(grid), "--test-range", "observed").stdout), (
        "each run measured the other test range as retesting does")
    refused = collect(str(grid), "--retest", "data.noise=0.3")
    assert refused.returncode != 0 and "changes the training spirals" in refused.stderr
