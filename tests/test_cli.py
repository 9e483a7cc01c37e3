"""node-run end to end on tiny data: through the installed console script in a subprocess once per exit status,
and in this process (``cli.main``) for each message.

One sweep runs every MNIST experiment with ``debug=quick``, its data and output folders given by the environment
(``NODE_DATA_DIR``, ``NODE_OUTPUT_DIR``); each writes summary.json, metrics.jsonl and the TensorBoard tags, and
Table 1 is built from them. Mistakes end in a short message, without a stack trace, before anything trains.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose, run_node_run, sweep_jobs, tiny_overrides
from node_experiments.cli import main
from node_experiments.reports.cli import main as report_main
from node_experiments.training import train
from node_experiments.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.e2e

MNIST_EXPERIMENTS = ["mnist_odenet", "mnist_resnet", "mnist_rknet", "mnist_mlp"]
SUMMARY_KEYS = {
    "experiment", "params", "epochs", "test_accuracy", "test_error", "nfe_forward", "nfe_backward",
    "peak_memory_bytes", "train_time_s", "device",
}
TAGS = {
    "train/loss", "train/accuracy", "test/accuracy", "test/error", "nfe/forward", "nfe/backward",
    "memory/peak_bytes", "time/step_s", "time/epoch_s", "lr",
}


def assert_clean_failure(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, f"{phrase!r} not in:\n{result.stderr}"


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def runs(tiny_data_root: Path, output_dir: Path) -> dict[str, Path]:
    """The job folder of each MNIST experiment, from one sweep with the folders set by environment variables."""
    result = run_node_run(
        ["-m", f"experiment={','.join(MNIST_EXPERIMENTS)}", "debug=quick", "data.download=false"],
        env={"NODE_DATA_DIR": str(tiny_data_root), "NODE_OUTPUT_DIR": str(output_dir)},
    )
    assert result.returncode == 0, result.stderr
    jobs = sweep_jobs(output_dir)
    assert list(jobs) == [f"{n}_{experiment}" for n, experiment in enumerate(MNIST_EXPERIMENTS)]
    return {experiment: jobs[f"{n}_{experiment}"] for n, experiment in enumerate(MNIST_EXPERIMENTS)}


@pytest.mark.parametrize("experiment", MNIST_EXPERIMENTS)
def test_experiment_runs_end_to_end(runs: dict[str, Path], tiny_data_root: Path, experiment: str) -> None:
    run_dir = runs[experiment]
    config = load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]  # resolved as the run saw it
    assert config["data"]["root"] == str(tiny_data_root), "data.root comes from NODE_DATA_DIR"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["experiment"] == experiment and summary["epochs"] == 1 and summary["device"] == "cpu"
    assert summary["test_error"] == pytest.approx(1 - summary["test_accuracy"])
    uses_solver = experiment in ("mnist_odenet", "mnist_rknet")
    assert ("solver" in config) == uses_solver == ("solver" in summary)
    assert (summary["nfe_forward"] > 0) == uses_solver, "only solver evaluations are counted"
    if uses_solver:
        assert summary["solver"]["gradient"] == ("adjoint" if experiment == "mnist_odenet" else "backprop")
    assert (summary["nfe_backward"] > 0) == (experiment == "mnist_odenet")  # RK-Net backprops, no backward solve
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and record["test/accuracy"] == summary["test_accuracy"]
    assert record["step"] == 2, "debug=quick: 32 training images in batches of 16"

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert TAGS <= set(events.Tags()["scalars"])
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")


def test_adjoint_memory_is_smaller_than_backprop_through_the_solver(runs: dict[str, Path]) -> None:
    memory = {name: json.loads((runs[name] / "summary.json").read_text())["peak_memory_bytes"] for name in runs}
    assert memory["mnist_odenet"] < memory["mnist_rknet"]


def test_a_tighter_tolerance_raises_the_nfe(runs: dict[str, Path], tiny_data_root: Path, tmp_path: Path) -> None:
    """The same run as the sweep's mnist_odenet (same data, seed and sizes), at rtol = atol = 1e-4 instead of 1e-3."""
    tight = ["debug=quick", f"data.root={tiny_data_root}", "data.download=false", "solver.rtol=1e-4", "solver.atol=1e-4"]
    summary = train(compose("mnist_odenet", tight), tmp_path)
    default = json.loads((runs["mnist_odenet"] / "summary.json").read_text())
    assert summary["nfe_forward"] > default["nfe_forward"]
    assert summary["nfe_backward"] > default["nfe_backward"]


def test_table1_from_the_sweep(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """node-report table1 (in this process: torch is loaded already) on the sweep folder: a row per run, in the
    paper's order, each run's test error beside the paper's."""
    assert report_main(["table1", str(runs["mnist_odenet"].parent), "--output", str(tmp_path / "table1.md")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "table1.md").read_text() == printed
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith("| ")]
    assert rows[0][0] == "| Model" and [row[0] for row in rows[1:]] == ["| 1-Layer MLP", "| ResNet", "| RK-Net",
                                                                        "| ODE-Net"]
    paper_order = ["mnist_mlp", "mnist_resnet", "mnist_rknet", "mnist_odenet"]
    for row, experiment, paper in zip(rows[1:], paper_order, ("1.60%", "0.41%", "0.47%", "0.42%"), strict=True):
        summary = json.loads((runs[experiment] / "summary.json").read_text())
        assert row[3:7] == ["0", "`debug=quick`", f"{100 * summary['test_error']:.2f}%", paper]


def node_run_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``node-run ARGS`` in this process (``cli.main``, as the console script calls it): exit status, stdout, stderr.
    What only a separate process shows (the exit status the shell sees, no stack trace on a real stderr) is checked
    once per exit status by the subprocess tests."""
    monkeypatch.setattr(sys, "argv", ["node-run", *args])
    root = logging.getLogger()
    hydra_config, handlers, level = HydraConfig.instance().cfg, root.handlers[:], root.level
    try:
        main()
        status = 0
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
    finally:  # what Hydra's run sets for the process: the running config, the job's log handlers
        HydraConfig.instance().cfg = hydra_config
        for handler in set(root.handlers) - set(handlers):
            handler.close()
        root.handlers[:], root.level = handlers, level
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clean_status(status: int, expected: int, err: str, *phrases: str) -> None:
    assert status == expected, err
    assert "Traceback" not in err, err
    for phrase in phrases:
        assert phrase in err, f"{phrase!r} not in:\n{err}"


def test_a_model_without_an_ode_has_no_solver_settings(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    status, out, err = node_run_here(monkeypatch, capsys, "experiment=mnist_resnet", "--cfg", "job")
    assert status == 0, err
    config = yaml.safe_load(out)
    assert "solver" not in config and "solver" not in config["model"]
    assert "solver" in yaml.safe_load(node_run_here(monkeypatch, capsys, "experiment=mnist_odenet", "--cfg", "job")[1])


# One end-to-end subprocess test per exit status: 0 is the sweep above (`runs`), 2 a command-line mistake, 1 a
# mistake found once the config is composed; 128 + the signal's number is tests/test_signals.py's, a failed sweep
# job's 1 tests/test_sweeps.py's.
def test_bare_node_run_lists_the_experiments_and_exits_2() -> None:
    result = run_node_run([])
    assert_clean_failure(result, "no experiment given", *MNIST_EXPERIMENTS)
    assert result.returncode == 2


def test_a_bad_value_is_named_before_training_and_exits_1(tiny_data_root: Path, tmp_path: Path) -> None:
    override = "trainer.max_epochs=1.5"
    result = run_node_run(["experiment=mnist_odenet", *tiny_overrides(tiny_data_root, tmp_path), override])
    assert_clean_failure(result, "trainer.max_epochs=1.5: the number of epochs to train must be a whole number")
    assert result.returncode == 1
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_a_misspelt_experiment_is_named_with_the_list(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    status, _, err = node_run_here(monkeypatch, capsys, "experiment=mnist_odnet")
    assert_clean_status(status, 2, err, "unknown experiment 'mnist_odnet'", "experiment=mnist_odenet",
                        *MNIST_EXPERIMENTS)  # fmt: skip


def test_an_unknown_key_is_named_with_the_closest_real_key(monkeypatch: pytest.MonkeyPatch, capsys,
                                                           tmp_path: Path) -> None:  # fmt: skip
    status, _, err = node_run_here(monkeypatch, capsys, "experiment=mnist_odenet", "trainer.max_epoch=2",
                                   f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert_clean_status(status, 2, err, "Could not override 'trainer.max_epoch'", "Did you mean trainer.max_epochs=2?")
    assert not any(tmp_path.iterdir())


def test_the_retired_adjoint_flag_is_answered_with_its_replacement(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    status, _, err = node_run_here(monkeypatch, capsys, "experiment=mnist_odenet", "solver.adjoint=false")
    assert_clean_status(status, 2, err, "solver.adjoint=false is no longer a setting", "solver.gradient=backprop")


def test_missing_data_names_the_folder_and_both_fixes(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    status, _, err = node_run_here(monkeypatch, capsys, "experiment=mnist_mlp", f"data.root={tmp_path / 'nowhere'}",
                                   "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert_clean_status(status, 1, err, str(tmp_path / "nowhere" / "MNIST" / "raw"), "data.download=true",
                        "data.root=")  # fmt: skip


@pytest.mark.parametrize(
    "override, phrase",
    [
        ("solver.rtol=-1", "solver.rtol=-1"),
        ("trainer.grad_clip_norm=-1", "trainer.grad_clip_norm=-1: the largest global norm"),
    ],
)
def test_a_bad_value_is_named_before_training(monkeypatch: pytest.MonkeyPatch, capsys, tiny_data_root: Path,
                                              tmp_path: Path, override: str, phrase: str) -> None:  # fmt: skip
    status, _, err = node_run_here(monkeypatch, capsys, "experiment=mnist_odenet",
                                   *tiny_overrides(tiny_data_root, tmp_path), override)  # fmt: skip
    assert_clean_status(status, 1, err, phrase)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()
