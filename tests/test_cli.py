"""node-run end to end, through the installed console script in a subprocess, on tiny data.

Each MNIST experiment runs a few steps and writes summary.json, metrics.jsonl and the TensorBoard tags; an
override reaches the solver; a sweep runs; the error messages are short, useful and free of stack traces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_node_run, tiny_overrides

MNIST_EXPERIMENTS = ["mnist_odenet", "mnist_resnet", "mnist_rknet", "mnist_mlp"]
SUMMARY_KEYS = {
    "experiment", "params", "epochs", "test_accuracy", "test_error", "nfe_forward", "nfe_backward",
    "peak_memory_bytes", "train_time_s", "device",
}
TAGS = {
    "train/loss", "train/accuracy", "test/accuracy", "test/error", "nfe/forward", "nfe/backward",
    "memory/peak_bytes", "time/step_s", "time/epoch_s", "lr",
}
REPO = Path(__file__).resolve().parents[1]


def quick(data_root: Path, run_dir: Path) -> list[str]:
    """The tiny overrides, cut to 2 training steps of 16 images."""
    return [*tiny_overrides(data_root, run_dir), "data.train_subset=32"]


def assert_clean_failure(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} not in:\n{result.stderr}"


@pytest.fixture(scope="module")
def runs(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished run folder per MNIST experiment (shared by the tests below)."""
    folders = {}
    for experiment in MNIST_EXPERIMENTS:
        run_dir = tmp_path_factory.mktemp(experiment)
        result = run_node_run([f"experiment={experiment}", *quick(tiny_data_root, run_dir)])
        assert result.returncode == 0, result.stderr
        folders[experiment] = run_dir
    return folders


@pytest.mark.parametrize("experiment", MNIST_EXPERIMENTS)
def test_experiment_runs_end_to_end(runs: dict[str, Path], experiment: str) -> None:
    run_dir = runs[experiment]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["experiment"] == experiment and summary["epochs"] == 1 and summary["device"] == "cpu"
    assert summary["test_error"] == pytest.approx(1 - summary["test_accuracy"])
    assert summary["peak_memory_bytes"] > 0
    uses_solver = experiment in ("mnist_odenet", "mnist_rknet")
    assert (summary["nfe_forward"] > 0) == uses_solver
    assert ("solver" in summary) == uses_solver
    if uses_solver:
        assert summary["solver"]["gradient"] == ("adjoint" if experiment == "mnist_odenet" else "backprop")
    assert (summary["nfe_backward"] > 0) == (experiment == "mnist_odenet")  # RK-Net backprops, no backward solve
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and record["test/accuracy"] == summary["test_accuracy"]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.pt").is_file()

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert TAGS <= set(events.Tags()["scalars"])
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")


def test_adjoint_memory_is_smaller_than_backprop_through_the_solver(runs: dict[str, Path]) -> None:
    memory = {name: json.loads((runs[name] / "summary.json").read_text())["peak_memory_bytes"] for name in runs}
    assert memory["mnist_odenet"] < memory["mnist_rknet"]


def test_a_tighter_tolerance_raises_the_nfe(runs: dict[str, Path], tiny_data_root: Path, tmp_path: Path) -> None:
    result = run_node_run(
        ["experiment=mnist_odenet", *quick(tiny_data_root, tmp_path), "solver.rtol=1e-4", "solver.atol=1e-4"]
    )
    assert result.returncode == 0, result.stderr
    tight = json.loads((tmp_path / "summary.json").read_text())
    default = json.loads((runs["mnist_odenet"] / "summary.json").read_text())
    assert (tight["solver"]["rtol"], default["solver"]["rtol"]) == (1e-4, 1e-3)
    assert tight["nfe_forward"] > default["nfe_forward"]
    assert tight["nfe_backward"] > default["nfe_backward"]


def test_a_sweep_over_experiments_and_table1(tiny_data_root: Path, tmp_path: Path) -> None:
    overrides = [o for o in quick(tiny_data_root, tmp_path) if not o.startswith("hydra.run.dir")]
    result = run_node_run(
        ["-m", "experiment=mnist_mlp,mnist_resnet", "data=fashion_mnist", *overrides, f"hydra.sweep.dir={tmp_path}"]
    )
    assert result.returncode == 0, result.stderr
    summaries = sorted(tmp_path.glob("*/summary.json"))
    assert [path.parent.name for path in summaries] == ["0_mnist_mlp", "1_mnist_resnet"]
    assert all(json.loads(path.read_text())["data"] == "fashion_mnist" for path in summaries)

    table = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "table1.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Model") and len(rows) == 3
    assert rows[1].startswith("| 1-Layer MLP | fashion_mnist") and rows[2].startswith("| ResNet | fashion_mnist")


def test_bare_node_run_lists_the_experiments() -> None:
    assert_clean_failure(run_node_run([]), "no experiment given", *MNIST_EXPERIMENTS)


def test_a_misspelt_experiment_is_named_with_the_list() -> None:
    assert_clean_failure(
        run_node_run(["experiment=mnist_odnet"]), "unknown experiment 'mnist_odnet'", "experiment=mnist_odenet",
        *MNIST_EXPERIMENTS,
    )


def test_missing_data_names_the_folder_and_both_fixes(tmp_path: Path) -> None:
    result = run_node_run(["experiment=mnist_mlp", f"data.root={tmp_path / 'nowhere'}", "data.download=false",
                           f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_failure(result, str(tmp_path / "nowhere" / "MNIST" / "raw"), "data.download=true", "data.root=")


def test_the_retired_adjoint_flag_is_answered_with_its_replacement() -> None:
    result = run_node_run(["experiment=mnist_odenet", "solver.adjoint=false"])
    assert_clean_failure(result, "solver.adjoint=false is no longer a setting", "solver.gradient=backprop")


def test_a_bad_solver_value_is_named_before_training(tiny_data_root: Path, tmp_path: Path) -> None:
    result = run_node_run(["experiment=mnist_odenet", *quick(tiny_data_root, tmp_path), "solver.rtol=-1"])
    assert_clean_failure(result, "solver.rtol=-1")
    assert not (tmp_path / "checkpoints").exists()
