"""``node-report records`` and ``node-report table2`` on what it copies: tiny spiral run folders written here as
node-run writes them (``.hydra/``, ``summary.json``, ``metrics.jsonl``, and the event files, checkpoints and logs
that records must leave behind), with no training, so that every number the tables print is known.

The sweep: latent ODE and RNN at n_obs = 30, seeds 10-12, ``data.noise=0.3``; the RNN's seed 12 diverged. Its
``multirun.yaml`` was written at t = 1000 s and its last summary at t = 4600 s: a wall time of 60 min.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
import yaml

from node_experiments.reports.cli import main
from node_experiments.reports.records import ELSEWHERE

METRIC = "test_rmse_extrapolation_clean"
# (experiment, seed) -> the run's extrapolation RMSE on its own test spirals; the RNN's seed 12 diverged.
VALUES = {("spiral_latent_ode", 10): 0.2, ("spiral_latent_ode", 11): 0.8, ("spiral_latent_ode", 12): 0.3,
          ("spiral_rnn", 10): 0.5, ("spiral_rnn", 11): 0.7, ("spiral_rnn", 12): None}  # fmt: skip
SWEEP_OVERRIDES = ["experiment=spiral_latent_ode,spiral_rnn", "data.n_obs=30", "trainer.seed=10,11,12",
                   "++data.noise=0.3"]  # fmt: skip
LEFT_BEHIND = ["tb/events.out.tfevents.1.vm", "checkpoints/last.pt", ".hydra/hydra.yaml", "node-run.log",
               "figures/latent_trajectories.png"]  # fmt: skip


def spiral_run(folder: Path, experiment: str, seed: int, value: float | None, test_range: str = "same",
               overrides: tuple[str, ...] = (), end: float = 2000.0) -> None:
    """A finished (``value`` given) or diverged run folder, with the files node-run leaves in it."""
    (folder / ".hydra").mkdir(parents=True)
    config = {"data": {"n_obs": 30, "test_range": test_range, "root": "/home/someone/mnist"},
              "trainer": {"seed": seed}, "paths": {"output_dir": "${oc.env:NODE_OUTPUT_DIR,outputs}"}}  # fmt: skip
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_overrides = [f"experiment={experiment}", "data.n_obs=30", f"trainer.seed={seed}", *overrides]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(run_overrides))
    summary = {"status": "completed" if value is not None else "diverged", "experiment": experiment,
               "run_dir": str(folder.resolve()), "train_time_s": 600.0, "resumed_from": None}  # fmt: skip
    if value is not None:
        other = "observed" if test_range == "same" else "same"
        summary |= {METRIC: value, f"test_{other}_range/rmse_extrapolation_clean": value + 1,
                    "test_train_spirals/rmse_extrapolation_clean": value + 0.01}  # fmt: skip
        if experiment == "spiral_latent_ode":
            summary |= {"test_latent_gap": 2 * value, "test_train_spirals/latent_gap": 2 * value + 0.01}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train/loss": 1.0}) + "\n")
    for name in LEFT_BEHIND:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x" * 10)
    os.utime(folder / "summary.json", (end, end))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    folder = tmp_path / "outputs" / "noise"
    for (experiment, seed), value in VALUES.items():
        spiral_run(folder / f"{experiment}_n30_seed{seed}", experiment, seed, value,
                   overrides=("++data.noise=0.3",), end=1000.0 + 60 * seed)  # fmt: skip
    os.utime(folder / "spiral_rnn_n30_seed11" / "summary.json", (4600.0, 4600.0))  # the last run to end
    multirun = {"hydra": {"overrides": {"hydra": ["hydra.sweep.dir=/somewhere"], "task": SWEEP_OVERRIDES}}}
    (folder / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    os.utime(folder / "multirun.yaml", (1000.0, 1000.0))
    return folder


def report(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_records_copies_the_small_files_with_neutral_paths(sweep: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    records = tmp_path / "records" / "noise"
    printed = report(capsys, "records", str(sweep), str(records))
    assert printed.startswith(f"{sweep} -> {records}: 5 runs, 1 grids, 21 files, ")
    copied = sorted(path.relative_to(records).as_posix() for path in records.rglob("*") if path.is_file())
    runs = sorted(f"{experiment}_n30_seed{seed}" for (experiment, seed), value in VALUES.items() if value)
    assert copied == sorted(["grid.json", *(f"{run}/{name}" for run in runs for name in (
        ".hydra/config.yaml", ".hydra/overrides.yaml", "summary.json", "metrics.jsonl"))])
    run = records / "spiral_latent_ode_n30_seed11"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run_dir"] == "spiral_latent_ode_n30_seed11" and summary[METRIC] == 0.8
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert config["data"]["root"] == f"{ELSEWHERE}/mnist", "an absolute path outside SRC: neutral"
    assert config["paths"]["output_dir"] == "${oc.env:NODE_OUTPUT_DIR,outputs}", "interpolations kept"
    assert (run / "metrics.jsonl").read_bytes() == (sweep / run.name / "metrics.jsonl").read_bytes()
    assert (run / ".hydra" / "overrides.yaml").read_bytes() == (sweep / run.name / ".hydra/overrides.yaml").read_bytes()
    assert json.loads((records / "grid.json").read_text()) == {
        "overrides": SWEEP_OVERRIDES, "wall_time_s": 3600.0, "not_completed": ["spiral_rnn_n30_seed12"]}
    for path in records.rglob("*"):
        assert not path.is_file() or str(tmp_path) not in path.read_text(), f"a machine path in {path}"

    bare = tmp_path / "bare"
    report(capsys, "records", str(sweep), str(bare), "--without-metrics")
    assert not list(bare.rglob("metrics.jsonl")) and len(list(bare.rglob("summary.json"))) == 5


def test_records_of_several_sources_each_go_to_their_own_folder(sweep: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    single = tmp_path / "single"
    spiral_run(single, "spiral_rnn", 1, 0.4)
    report(capsys, "records", str(sweep), str(single), str(tmp_path / "records"))
    assert json.loads((tmp_path / "records" / "single" / "summary.json").read_text())["run_dir"] == "."
    assert (tmp_path / "records" / "noise" / "grid.json").is_file()
    assert not (tmp_path / "records" / "single" / "grid.json").exists(), "a run folder is no grid"


@pytest.mark.parametrize("argv", [["records", "{sweep}"], ["records", "{sweep}", "{sweep}/copy"],
                                  ["records", "{sweep}", "{tmp}/x/noise", "{tmp}/out"]])
def test_records_refuses_a_command_it_cannot_carry_out(argv: list[str], sweep: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x" / "noise").mkdir(parents=True)
    try:
        status = main([item.format(sweep=sweep, tmp=tmp_path) for item in argv])
    except SystemExit as exit:  # a command-line mistake, from the parser
        status = exit.code
    assert status == 2
    (message,) = capsys.readouterr().err.splitlines()
    assert message.startswith("node-report records: ") and ("DEST" in message or "same name" in message)


def seed_cells(values: list[float], seeds: list[int], of: int = 3) -> str:
    """The statistics cells of table2 for these values."""
    spread = f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    count = f" ({len(values)} runs)" if len(values) != of else ""
    per_seed = ", ".join(f"{seed}: {value:.3f}" for seed, value in zip(seeds, values))
    return f"{spread}{count} | {statistics.median(values):.3f} | {per_seed}"


def test_table2_reads_a_sweep_and_its_records_alike(sweep: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    records = tmp_path / "records" / "noise"
    report(capsys, "records", str(sweep), str(records))
    from_sweep, from_records = (report(capsys, "table2", str(folder), "--metrics") for folder in (sweep, records))
    assert from_sweep == from_records
    lines = from_sweep.splitlines()
    assert f"| `data.noise=0.3` | RNN | 30 | 0.3937 | {seed_cells([0.5, 0.7], [10, 11])} |" in lines
    assert f"|  | Latent ODE | 30 | 0.1642 | {seed_cells([0.2, 0.8, 0.3], [10, 11, 12])} |" in lines
    assert ("`data.noise=0.3` (noise): 5 runs, seeds [10, 11, 12], wall time 60 min, training 50 min (all runs); "
            "not completed: spiral_rnn_n30_seed12") in lines
    consistency = lines[lines.index("| Grid | Model | n | metric | mean ± std | median | per seed |"):]
    assert f"|  |  |  | `train_spirals/latent_gap` | {seed_cells([0.41, 1.61, 0.61], [10, 11, 12])} |" in consistency
    assert sum("latent_gap" in line for line in consistency) == 2, "the RNN has no latent gap: no rows"


def test_table2_tabulates_any_grid_on_either_test_range(sweep: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """A plain folder of runs configured with data.test_range=observed is labelled by the overrides they share; on
    the observed range its runs give their own test metric, the sweep's runs their second test set's."""
    observed = tmp_path / "observed"
    for seed, value in ((3, 0.15), (4, 0.25)):
        spiral_run(observed / f"run{seed}", "spiral_latent_ode", seed, value, test_range="observed",
                   overrides=("data.test_range=observed",))  # fmt: skip
    printed = report(capsys, "table2", str(sweep), str(observed), "--test-range", "observed")
    lines = printed.splitlines()
    assert lines[0] == "`rmse_extrapolation_clean` on test spirals of data.test_range=observed, over seeds:"
    assert f"|  | Latent ODE | 30 | 0.1642 | {seed_cells([1.2, 1.8, 1.3], [10, 11, 12])} |" in lines
    assert f"| `data.test_range=observed` | Latent ODE | 30 | 0.1642 | {seed_cells([0.15, 0.25], [3, 4], 2)} |" in lines
    assert "`data.test_range=observed` (observed): 2 runs, seeds [3, 4], training 20 min (all runs)" in lines
    same = report(capsys, "table2", str(observed), "--test-range", "same").splitlines()
    assert f"| `data.test_range=observed` | Latent ODE | 30 | 0.1642 | {seed_cells([1.15, 1.25], [3, 4], 2)} |" in same


def test_table2_names_what_it_cannot_do_with_records(sweep: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    records = tmp_path / "records" / "noise"
    report(capsys, "records", str(sweep), str(records))
    assert main(["table2", str(records), "--figures", str(tmp_path / "figures")]) == 1
    assert "--figures needs the trained models" in capsys.readouterr().err
    (records / "grid.json").write_text("{}")
    assert main(["table2", str(records)]) == 1
    assert "grid.json cannot be read (KeyError: 'overrides')" in capsys.readouterr().err
    assert main(["table2", str(tmp_path)]) == 1, "a run and its records in one folder are two grids"
    assert "holds two spiral_rnn runs at n_obs=30, seed 10" in capsys.readouterr().err


def test_table2_takes_a_folder_of_single_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Runs started one by one (``node-run``, no ``-m``) into one folder: no multirun.yaml and no grid.json, the
    grid labelled by the overrides all its runs share, its wall time unknown."""
    folder = tmp_path / "singles"
    for (experiment, seed), value in VALUES.items():
        spiral_run(folder / f"{experiment}_{seed}", experiment, seed, value, overrides=("data.noise=0.3",))
    assert not (folder / "multirun.yaml").exists() and not (folder / "grid.json").exists()
    lines = report(capsys, "table2", str(folder)).splitlines()
    assert f"| `data.noise=0.3` | RNN | 30 | 0.3937 | {seed_cells([0.5, 0.7], [10, 11])} |" in lines
    assert f"|  | Latent ODE | 30 | 0.1642 | {seed_cells([0.2, 0.8, 0.3], [10, 11, 12])} |" in lines
    assert ("`data.noise=0.3` (singles): 5 runs, seeds [10, 11, 12], training 50 min (all runs); not completed: "
            "spiral_rnn_12") in lines
